"""``sokka demo``'s account of a rescue, on a real SQLite store and journal.

The whole demo (real worker processes, SIGKILL, SIGSTOP) runs in
tests/shell/test_cli.py; here its summary is given a history that the demo
meets only now and then, played step by step through the real store calls.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from sokka.adapters.sql import SQLStore
from sokka.core.task import TaskSpec
from sokka.shell import demo

_PER_WORKER = re.compile(r"^(worker-\d+) (?:killed|paused|not stopped): .*, rescued (\d+)\b", re.M)
_TOTAL = re.compile(r"^leases rescued:\s+(\d+)\b", re.M)


def rescue_counts(summary: str) -> tuple[dict[str, int], int]:
    """The per-worker rescue counts of a demo summary, and its total."""
    per_worker = {name: int(count) for name, count in _PER_WORKER.findall(summary)}
    (total,) = _TOTAL.findall(summary)
    return per_worker, int(total)


def test_per_worker_rescues_add_up_to_the_total_when_the_journal_misses_a_lease(
    tmp_path: Path,
) -> None:
    """Seen: "rescued 2", "rescued 1" against "tasks rescued: 4". The per-worker
    lines counted the tasks the journal showed in a handler at the fault, run
    again by *another* worker; the total counted every task reserved twice. A
    lease reserved but not yet in a handler, and a paused worker that runs its
    own task again on waking, were in the total only."""
    store = SQLStore(f"sqlite:///{tmp_path / 'demo.db'}")
    store.create_schema()
    topic = "demo-t"
    journal_path = tmp_path / "journal.jsonl"
    watched = demo._Revokes(store)

    def journal(task_id: str, attempt: int, worker: str, *events: str) -> None:
        with journal_path.open("a") as out:
            for ev in events:
                out.write(json.dumps({"task": task_id, "attempt": attempt, "worker": worker,
                                      "ev": ev, "t": time.monotonic()}) + "\n")  # fmt: skip

    def revoke_every_lease() -> None:
        for task in watched.list_leased_tasks(topic).tasks:
            watched.revoke_lease(task.task_id, task.record_ver)

    def run_and_finish(worker: str) -> None:
        (task,) = store.reserve_tasks(topic, worker)
        journal(task.task_id, task.attempt, worker, "start", "end")
        store.terminate(task.task_id, worker, task.attempt)

    store.create_tasks([TaskSpec(topic=topic, task_id=i, data={"ms": 1}) for i in "abc"])
    # worker-1 holds a (in its handler) and b (reserved, its handler not started
    # yet: not in the journal) when it is killed.
    assert [t.task_id for t in store.reserve_tasks(topic, "worker-1", limit=2)] == ["a", "b"]
    journal("a", 1, "worker-1", "start")
    killed = demo._Fault("worker-1", "killed", time.monotonic(), tasks=["a"])
    revoke_every_lease()
    run_and_finish("worker-3")
    run_and_finish("worker-3")
    # worker-2 is paused in c's handler; on waking it reserves c again itself.
    assert [t.task_id for t in store.reserve_tasks(topic, "worker-2")] == ["c"]
    journal("c", 1, "worker-2", "start")
    paused = demo._Fault("worker-2", "paused", time.monotonic(), tasks=["c"])
    revoke_every_lease()
    paused.until = time.monotonic()
    run_and_finish("worker-2")

    lines: list[str] = []
    code = demo._summary(
        store, topic, 3, journal_path, tmp_path, [killed, paused],
        {"worker-1": -9, "worker-2": 0, "worker-3": 0}, watched, 2_000, lines.append,
    )  # fmt: skip
    summary = "\n".join(lines)
    assert code == 0, summary
    per_worker, total = rescue_counts(summary)
    assert per_worker == {"worker-1": 2, "worker-2": 1}, summary
    assert total == 3 == sum(per_worker.values()), summary
    store.close()
