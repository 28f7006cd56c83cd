"""Concurrency of the SQL store with real threads and separate connections.

The contract suite (``tests/adapters/contract/``) already runs a few races on one
store object. Here each thread plays a separate process: it has its own
``SQLStore``, so its own engine, pool and database connections, and the only
thing the threads share is the database. Every scenario runs on SQLite (a
file in ``tmp_path``) and on PostgreSQL (under a run-private table prefix,
created before and dropped after each test).

A retryable error (``Throttled``: SQLite busy, a PostgreSQL lock timeout or
deadlock; ``Unavailable``) changed nothing by contract, so a thread retries
the same call; the tests count the retries and print them, but the end
state they assert is exact either way.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
from returns.result import Failure, Result, Success

from sokka.adapters.sql import SQLStore
from sokka.adapters.store import MAX_BATCH, TaskFilter, capture
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import NotRunning, RetryableError, SokkaError, StaleRecord
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.core.transitions import Terminate
from sokka.shell.clock import ManualClock
from sokka.shell.supervisor import Supervisor, SupervisorReport
from tests import databases

TOPIC = "concurrency"
#: How long a thread waits for the others at a barrier before the test fails.
BARRIER_TIMEOUT_S = 30
#: A thread gives up retrying one call after this many retryable errors.
MAX_RETRIES = 200

_T = TypeVar("_T")
_prefix_numbers = itertools.count()


# -- the database each test runs against -------------------------------------------


@dataclass
class Database:
    """One database (SQLite file or PostgreSQL prefix) and the stores opened on it."""

    kind: str
    url: str
    prefix: str
    stores: list[SQLStore] = field(default_factory=list)

    def new_store(self) -> SQLStore:
        """A store with its own engine and connection pool (a separate "process")."""
        store = SQLStore(self.url, prefix=self.prefix)
        self.stores.append(store)
        return store


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty schema; every store opened on it is closed afterwards."""
    if request.param == "sqlite":
        db = Database("sqlite", f"sqlite:///{tmp_path / 'concurrency.db'}", "sokka_")
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        prefix = databases.test_prefix(f"conc{next(_prefix_numbers)}")
        db = Database("postgres", databases.postgres_url(), prefix)
    admin = SQLStore(db.url, prefix=db.prefix)
    try:
        admin.create_schema()
        yield db
    finally:
        for store in db.stores:
            store.close()
        if db.kind == "postgres":
            admin.drop_schema()
        admin.close()


# -- helpers -----------------------------------------------------------------------


class Retries:
    """Counts the retryable errors the threads of one test met (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_kind: Counter[str] = Counter()

    def note(self, error: RetryableError) -> None:
        with self._lock:
            self.by_kind[type(error).__name__] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_kind.values())

    def __str__(self) -> str:
        with self._lock:
            return ", ".join(f"{k}={v}" for k, v in sorted(self.by_kind.items())) or "none"


def retrying(call: Callable[[], _T], retries: Retries) -> _T:
    """``call()``, again after each retryable error (which changed nothing, by contract)."""
    for tries in itertools.count(1):
        try:
            return call()
        except RetryableError as error:
            retries.note(error)
            if tries >= MAX_RETRIES:
                raise
            time.sleep(0.001 * min(tries, 20))
    raise AssertionError("unreachable")  # pragma: no cover


def create(store: SQLStore, count: int) -> list[str]:
    """Create ``count`` tasks in batches of at most ``MAX_BATCH``; their ids, in order."""
    ids: list[str] = []
    for start in range(0, count, MAX_BATCH):
        size = min(MAX_BATCH, count - start)
        results = store.create_tasks([TaskSpec(topic=TOPIC) for _ in range(size)])
        ids.extend(r.unwrap().task_id for r in results)
    assert len(set(ids)) == count
    return ids


def every_task(store: SQLStore) -> list[Task]:
    tasks: list[Task] = []
    cursor: str | None = None
    while True:
        page = store.list_tasks(TaskFilter(topic=TOPIC), cursor, limit=1000)
        tasks.extend(page.tasks)
        if page.next_cursor is None:
            return tasks
        cursor = page.next_cursor


def run_together(calls: list[Callable[[], _T]]) -> list[_T]:
    """Run each call on its own thread, all released at once; their results, in order.

    An exception in any thread is raised here (after every thread ended).
    """
    barrier = threading.Barrier(len(calls), timeout=BARRIER_TIMEOUT_S)

    def run(call: Callable[[], _T]) -> _T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result() for future in futures]


# -- 1. reservers draining a queue ---------------------------------------------------


def test_eight_reservers_on_separate_connections_drain_2000_tasks_each_reserved_exactly_once(
    database: Database,
) -> None:
    setup = database.new_store()
    all_ids = create(setup, 2_000)
    retries = Retries()

    def drain(n: int, store: SQLStore) -> list[str]:
        pid = f"reserver-{n}"
        rng = random.Random(n)
        reserved: list[str] = []
        while True:
            limit = 1 if rng.random() < 0.5 else rng.randint(10, 50)
            tasks = retrying(partial(store.reserve_tasks, TOPIC, pid, limit), retries)
            if not tasks:
                return reserved
            assert len(tasks) <= limit
            for task in tasks:
                assert (task.status, task.pid, task.attempt) == (Status.RUNNING, pid, 1)
            reserved.extend(task.task_id for task in tasks)
            if len(tasks) == 1:
                (one,) = tasks
                done = retrying(partial(store.terminate, one.task_id, pid, one.attempt), retries)
                assert done.status is Status.TERMINATED
            else:
                outcomes = [
                    Finish(task_id=t.task_id, event=Terminate(pid=pid, attempt=t.attempt))
                    for t in tasks
                ]
                results = retrying(partial(store.finish_many, outcomes), retries)
                refused = [
                    (t.task_id, r.failure()) for t, r in zip(tasks, results, strict=True)
                    if isinstance(r, Failure)
                ]  # fmt: skip
                assert refused == [], f"{pid} cannot finish tasks it reserved: {refused[:5]}"
                assert all(r.unwrap().status is Status.TERMINATED for r in results)

    stores = [database.new_store() for _ in range(8)]
    for store in stores:  # connect and check the schema now, not once the race is on
        assert store.list_leased_tasks(TOPIC).tasks == ()
    started = time.monotonic()
    per_thread = run_together([partial(drain, n, s) for n, s in enumerate(stores)])
    elapsed = time.monotonic() - started

    reserved = [task_id for got in per_thread for task_id in got]
    duplicates = [task_id for task_id, n in Counter(reserved).items() if n > 1]
    assert duplicates == [], f"handed out more than once: {duplicates[:10]}"
    assert len(reserved) == len(all_ids)
    assert set(reserved) == set(all_ids)
    owner = {task_id: f"reserver-{n}" for n, got in enumerate(per_thread) for task_id in got}
    stored = every_task(setup)
    assert len(stored) == len(all_ids)
    for task in stored:
        # One reservation (attempt 1), by the thread that reported it, then one
        # terminate: record_ver 2. A second hand-out would show as attempt 2
        # (or as a task reserved by two threads above).
        assert (task.status, task.attempt, task.record_ver, task.failures) == (
            Status.TERMINATED, 1, 2, 0,
        ), task  # fmt: skip
        assert task.pid == owner[task.task_id]
    print(
        f"\n[{database.kind}] drained {len(all_ids)} tasks with 8 reservers in {elapsed:.2f}s; "
        f"per thread {[len(got) for got in per_thread]}; retryable errors: {retries}"
    )


# -- 2. supervisors sweeping the same stale leases ----------------------------------------


def test_four_supervisors_on_separate_connections_revoke_each_stale_lease_exactly_once(
    database: Database,
) -> None:
    setup = database.new_store()
    all_ids = create(setup, 300)
    reserved = setup.reserve_tasks(TOPIC, "lost-worker", limit=300)
    assert sorted(t.task_id for t in reserved) == sorted(all_ids)
    clock = ManualClock(start_ms=0)
    policy = LeasePolicy(lease_time_ms=1_000, default_snooze_ms=1_000)
    supervisors = [
        Supervisor(database.new_store(), TOPIC, policy, clock, sleep=lambda _s: None)
        for _ in range(4)
    ]
    for supervisor in supervisors:
        first = supervisor.run_once()
        assert (first.listed, first.complete, first.revoked) == (300, True, ())
    clock.advance(policy.lease_time_ms + 1)

    reports: list[SupervisorReport] = run_together([s.run_once for s in supervisors])
    rounds = 1
    throttled = sum(r.retryable_errors for r in reports)
    # A revoke that only met retryable errors is kept and retried by the next
    # cycle of the same supervisor; run cycles until none is left.
    last = reports
    while any(r.retryable_errors for r in last):
        rounds += 1
        assert rounds <= 20, f"revokes still throttled after {rounds} cycles"
        last = run_together([s.run_once for s in supervisors])
        throttled += sum(r.retryable_errors for r in last)
        reports.extend(last)

    revoked = [task_id for report in reports for task_id in report.revoked]
    duplicates = [task_id for task_id, n in Counter(revoked).items() if n > 1]
    assert duplicates == [], f"revoked more than once: {duplicates[:10]}"
    assert sum(len(r.revoked) for r in reports) == len(all_ids)
    assert set(revoked) == set(all_ids)
    assert all(r.failed == () and r.woken == () for r in reports)
    assert all(r.listing_errors == () for r in reports)
    stored = every_task(setup)
    assert len(stored) == len(all_ids)
    for task in stored:
        # Reserved once (record_ver 1), revoked once (2); a second revoke would
        # make it 3 and count a second failure.
        assert (task.status, task.pid, task.record_ver, task.attempt, task.failures) == (
            Status.STARTING, None, 2, 1, 1,
        ), task  # fmt: skip
    print(
        f"\n[{database.kind}] revoked per supervisor {[len(r.revoked) for r in reports[:4]]}, "
        f"conflicts {[r.conflicts for r in reports[:4]]}, cycles {rounds}, "
        f"retryable errors {throttled}"
    )


# -- 3. a keepalive racing a revoke -------------------------------------------------------


def test_keepalive_racing_a_revoke_of_the_same_record_lets_exactly_one_win(
    database: Database,
) -> None:
    rounds = 500
    setup = database.new_store()
    worker_store = database.new_store()
    supervisor_store = database.new_store()
    all_ids = create(setup, rounds)
    pid = "worker"
    reserved = setup.reserve_tasks(TOPIC, pid, limit=rounds)
    assert sorted(t.task_id for t in reserved) == sorted(all_ids)
    assert all((t.record_ver, t.attempt) == (1, 1) for t in reserved)
    retries = Retries()
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT_S)

    def keepalive(task: Task) -> Result[Task, SokkaError]:
        lease = LeaseToken(task.task_id, task.attempt)
        barrier.wait()
        (result,) = retrying(lambda: worker_store.extend_leases(pid, [lease]), retries)
        return result

    def revoke(task: Task) -> Result[Task, SokkaError]:
        barrier.wait()
        return capture(
            lambda: retrying(
                lambda: supervisor_store.revoke_lease(task.task_id, task.record_ver), retries
            )
        )

    wins: Counter[str] = Counter()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for task in reserved:
            extending = pool.submit(keepalive, task)
            revoking = pool.submit(revoke, task)
            extended, revoked = extending.result(), revoking.result()
            after = setup.get_task(task.task_id)
            match extended, revoked:
                case Success(kept), Failure(StaleRecord() as stale):
                    wins["keepalive"] += 1
                    assert (stale.expected, stale.actual) == (1, 2)
                    assert (kept.status, kept.pid, kept.record_ver) == (Status.RUNNING, pid, 2)
                    assert (after.status, after.pid, after.record_ver, after.failures) == (
                        Status.RUNNING, pid, 2, 0,
                    ), after  # fmt: skip
                case Failure(NotRunning()), Success(back):
                    wins["revoke"] += 1
                    assert (back.status, back.pid, back.record_ver) == (Status.STARTING, None, 2)
                    assert (after.status, after.pid, after.record_ver, after.failures) == (
                        Status.STARTING, None, 2, 1,
                    ), after  # fmt: skip
                case _:
                    pytest.fail(
                        f"round on {task.task_id}: not exactly one winner: "
                        f"extend -> {extended!r}, revoke -> {revoked!r}, stored -> {after!r}"
                    )
            assert after.attempt == 1
    elapsed = time.monotonic() - started
    assert wins.total() == rounds
    print(
        f"\n[{database.kind}] {rounds} rounds in {elapsed:.2f}s: keepalive won "
        f"{wins['keepalive']}, revoke won {wins['revoke']}; retryable errors: {retries}"
    )
