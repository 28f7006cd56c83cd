"""``sokka demo``: a rescue, in real time, in a couple of seconds.

Worker threads take tasks from an in-memory store and keep their leases
alive. One worker hangs in the middle of a task: it stops keeping its lease
alive. The supervisor sees that task's record version stop changing for a
whole lease (on its own monotonic clock), revokes the lease, and another
worker finishes the task. When the hung worker wakes up and tries to report
its result, the store refuses it: its attempt is stale (fencing).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskFilter, TaskStore
from sokka.core.commands import LeaseToken
from sokka.core.errors import LeaseLost, RetryableError
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.clock import MonotonicClock
from sokka.shell.supervisor import Supervisor

__all__ = ["DemoResult", "run_demo"]

_T = TypeVar("_T")


def _retrying(call: Callable[[], _T], tries: int = 50) -> _T:
    """Run a store call, retrying what the store says is retryable (a busy SQLite)."""
    for _ in range(tries - 1):
        try:
            return call()
        except RetryableError:
            time.sleep(0.02)
    return call()



@dataclass(slots=True)
class DemoResult:
    tasks: int
    done: int = 0
    rescued: list[str] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    finished_by: dict[str, list[str]] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.tasks - self.done

    @property
    def ok(self) -> bool:
        twice = any(len(who) > 1 for who in self.finished_by.values())
        return self.lost == 0 and not twice and bool(self.rescued)


def run_demo(
    *,
    tasks: int = 12,
    workers: int = 3,
    lease_ms: int = 600,
    work_ms: int = 150,
    store: TaskStore | None = None,
    say: Callable[[str], object] = print,
) -> DemoResult:
    """Run the demo and return what happened; ``say`` prints each event.

    Without ``store`` it runs in memory; with one, on a topic of its own
    (``demo-<random>``), so it never touches other tasks in that store.
    """
    clock = MonotonicClock()
    started = clock.now_ms()
    lock = threading.Lock()

    def tell(message: str) -> None:
        with lock:
            say(f"[{(clock.now_ms() - started) / 1000:5.2f}s] {message}")

    topic = "demo" if store is None else f"demo-{secrets.token_hex(4)}"
    store = store if store is not None else MemoryStore()
    prefix = "" if topic == "demo" else f"{topic}-"
    store.create_tasks(
        [
            TaskSpec(topic=topic, task_id=f"{prefix}task-{n:02d}", data={"n": n})
            for n in range(1, tasks + 1)
        ]
    )
    result = DemoResult(tasks=tasks)
    tell(
        f"queued {tasks} tasks; {workers} workers share them; a lease lives {lease_ms} ms "
        "unless its holder keeps it alive"
    )

    supervisor = Supervisor(
        store,
        topic,
        LeasePolicy(lease_time_ms=lease_ms, default_snooze_ms=lease_ms),
        clock,
        interval_ms=max(lease_ms // 6, 10),
    )
    stop = threading.Event()

    def supervise() -> None:
        while not stop.is_set():
            report = _retrying(supervisor.run_once)
            for task_id in report.revoked:
                with lock:
                    result.rescued.append(task_id)
                tell(
                    f"supervisor: {task_id} kept the same record version for a whole lease "
                    "on my clock; revoked its lease so another worker can take it"
                )
            stop.wait(supervisor.wait_ms() / 1000)

    hang_once = threading.Event()

    def work(name: str, hangs: bool) -> None:
        while not stop.is_set():
            got = _retrying(lambda: store.reserve_tasks(topic, name))
            if not got:
                if _all_done(store, topic):
                    return
                stop.wait(0.02)
                continue
            task = got[0]
            if hangs and not hang_once.is_set():
                hang_once.set()
                _hang(name, task, store, lease_ms, tell, result, lock)
                continue
            _run(name, task, store, lease_ms, work_ms)
            _retrying(partial(store.terminate, task.task_id, name, task.attempt))
            with lock:
                result.done += 1
                result.finished_by.setdefault(task.task_id, []).append(name)
            rescue = " (rescued)" if task.attempt > 1 else ""
            tell(f"{name}: finished {task.task_id}, attempt {task.attempt}{rescue}")

    threads = [threading.Thread(target=supervise, name="supervisor", daemon=True)]
    threads += [
        threading.Thread(target=work, args=(f"worker-{i}", i == 2), daemon=True)
        for i in range(1, workers + 1)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + max(10.0, 20 * lease_ms / 1000)
    while not _all_done(store, topic) and time.monotonic() < deadline:
        time.sleep(0.02)
    # Let the hung worker wake up and be refused before we stop everyone.
    hang_deadline = time.monotonic() + 3 * lease_ms / 1000
    while not result.fenced and hang_once.is_set() and time.monotonic() < hang_deadline:
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    return result


def _all_done(store: TaskStore, topic: str) -> bool:
    page = _retrying(lambda: store.list_tasks(TaskFilter(topic=topic), limit=1000))
    return all(t.status is Status.TERMINATED for t in page.tasks)


def _run(name: str, task: Task, store: TaskStore, lease_ms: int, work_ms: int) -> None:
    """Work for ``work_ms``, extending the lease every third of a lease."""
    step = min(lease_ms / 3, work_ms) / 1000
    until = time.monotonic() + work_ms / 1000
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(step, left))
        _retrying(lambda: store.extend_leases(name, [LeaseToken(task.task_id, task.attempt)]))


def _hang(
    name: str,
    task: Task,
    store: TaskStore,
    lease_ms: int,
    tell: Callable[[str], None],
    result: DemoResult,
    lock: threading.Lock,
) -> None:
    tell(f"{name}: took {task.task_id} (attempt {task.attempt}) ... and hangs: no keepalives")
    time.sleep(2.5 * lease_ms / 1000)
    try:
        store.terminate(task.task_id, name, task.attempt)
    except LeaseLost as refused:
        with lock:
            result.fenced.append(task.task_id)
        tell(
            f"{name}: woke up and tried to report {task.task_id} done: refused "
            f"({type(refused).__name__}), so its stale result is discarded"
        )
    else:  # pragma: no cover - would mean the supervisor never revoked
        tell(f"{name}: woke up and finished {task.task_id}: the lease was never revoked")
