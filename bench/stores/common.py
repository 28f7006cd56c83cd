"""What every part of the store benchmark shares: topics, sizes, settings, task rows.

The queue is realistic where it matters for the plans: every table is
pre-loaded with many terminated tasks on the topic being reserved (``TOPIC``;
50,000 by default, created before the ready ones, so a plan that walked the
topic in ``seq`` order would have to step over all of them) and 10,000 leased
(running) tasks on another (``LEASED_TOPIC``).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from returns.result import Success

from bench.harness import check
from sokka.adapters.store import TaskFilter, TaskStore
from sokka.core.commands import Finish
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.core.transitions import Terminate

TOPIC: Final = "bench"  #: the topic reserved from (and where the finished tasks pile up)
LEASED_TOPIC: Final = "leased"  #: the leased tasks that extend, listing and supervision use
CREATE_TOPIC: Final = "created"  #: where the create measurements put their tasks
AUDIT_TOPIC: Final = "audit"  #: the statement audit's own tasks
PID: Final = "bench-worker"
BATCH: Final = 100
PAGE: Final = 1000
PLAN_READY: Final = 1000  #: ready tasks present while the query plans are taken
#: At most this many calls per side per round: the in-memory store would
#: otherwise grow by hundreds of thousands of tasks, and garbage collection
#: over them would distort its own figures.
MAX_CALLS: Final = 10_000

GOAL_RATIO: Final = 0.60
GOAL_CYCLE_MS: Final = 250.0
#: No lease lapses during the supervisor measurement.
POLICY: Final = LeasePolicy(lease_time_ms=3_600_000, default_snooze_ms=3_600_000)


#: The columns SQLStore inserts, in its order.
INSERT_COLUMNS: Final = (
    "task_id", "task_group_id", "topic", "sub_topic", "description", "data", "status", "pid",
    "record_ver", "attempt", "failures", "max_attempts", "lease_time_ms", "timeout_ms",
    "snooze_time_ms", "error", "errors", "created_at", "updated_at", "result", "trace_context",
)  # fmt: skip

Row = tuple[Any, ...]
Lease = tuple[str, int]  # (task_id, attempt)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def payload(i: int) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "n": i}


def payload_json(i: int) -> str:
    """``payload(i)`` as ``TaskSpec`` encodes it (canonical compact JSON)."""
    return json.dumps(payload(i), separators=(",", ":"), ensure_ascii=False)


_STATE: Final = {"starting": (None, 0, 0), "running": (PID, 1, 1), "terminated": (PID, 2, 1)}


def task_rows(topic: str, status: str, count: int) -> list[Row]:
    """Rows in INSERT_COLUMNS order, as the store would have written them."""
    pid, record_ver, attempt = _STATE[status]
    now = now_ms()
    rows = []
    for i in range(count):
        task_id = uuid.uuid4().hex
        rows.append((
            task_id, task_id, topic, "default", "", payload_json(i), status, pid,
            record_ver, attempt, 0, None, None, None, None, None, "[]", now, now, None, None,
        ))  # fmt: skip
    return rows


@dataclass(frozen=True)
class Settings:
    finished: int  #: terminated tasks pre-loaded on TOPIC
    leased: int  #: running tasks on LEASED_TOPIC
    rounds: int
    target_s: float  #: seconds per side per round (the slowest side)
    cycles: int  #: timed supervisor cycles per variant
    #: running tasks in each store of the HTTP comparison's supervisor cycle
    http_leased: int = 10_000
    profile: bool = False


FULL: Final = Settings(finished=50_000, leased=10_000, rounds=5, target_s=0.4, cycles=7)
QUICK: Final = Settings(
    finished=5_000, leased=10_000, rounds=3, target_s=0.02, cycles=3, http_leased=2_000
)


def terminations(tasks: Sequence[Task]) -> list[Finish]:
    """The outcomes that terminate ``tasks``, reserved by ``PID``: one ``finish_many``'s worth."""
    return [Finish(task_id=t.task_id, event=Terminate(pid=PID, attempt=t.attempt)) for t in tasks]


def add_through(store: TaskStore, status: str, topic: str, count: int, what: str) -> list[Task]:
    """Give ``store`` ``count`` tasks in ``status`` through its own calls; the running ones."""
    running: list[Task] = []
    done = 0
    while done < count:
        size = min(1000, count - done)
        specs = [TaskSpec(topic=topic, data=payload(done + i)) for i in range(size)]
        results = store.create_tasks(specs)
        check(all(isinstance(r, Success) for r in results), f"{what}: create failed")
        if status != "starting":
            tasks = store.reserve_tasks(topic, PID, size)
            check(len(tasks) == size, f"{what}: reserve during set-up came short")
            if status == "terminated":
                check(
                    all(isinstance(r, Success) for r in store.finish_many(terminations(tasks))),
                    f"{what}: finish during set-up failed",
                )
            else:
                running += tasks
        done += size
    return running


def counts_through(store: TaskStore, topic: str, status: Status | None = None) -> dict[str, int]:
    """Tasks of ``topic`` (in ``status``, if given) by status, listed through the store."""
    found: dict[str, int] = {}
    cursor = None
    while True:
        page = store.list_tasks(TaskFilter(topic=topic, status=status), cursor, 1000)
        for task in page.tasks:
            found[task.status.value] = found.get(task.status.value, 0) + 1
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def run_tag() -> str:
    """A tag private to this run, for table prefixes (several runs may share a database)."""
    return f"b{os.getpid() % 100_000}{secrets.token_hex(2)}"


def load_sqlite(conn: sqlite3.Connection, table: str, rows: Sequence[Row]) -> None:
    """Insert ``rows`` (``task_rows``) into ``table`` in one transaction, on the bare driver."""
    marks = ", ".join(["?"] * len(INSERT_COLUMNS))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO {table} ({', '.join(INSERT_COLUMNS)}) VALUES ({marks})", rows)
    conn.commit()


def load_postgres(conn: Any, table: str, rows: Sequence[Row]) -> None:
    """Copy ``rows`` (``task_rows``) into ``table`` over a psycopg connection."""
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(INSERT_COLUMNS)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
