"""The contract: concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from returns.result import Failure, Result, Success

from sokka.adapters.store import (
    TaskStore,
    execute,
)
from sokka.core.commands import RevokeLease
from sokka.core.errors import (
    SokkaError,
    StaleRecord,
)
from sokka.core.task import (
    Status,
    Task,
)
from tests.adapters.contract.helpers import (
    TOPIC,
    failure,
    listing,
    running,
    spec,
)


def test_concurrent_reservers_reserve_each_task_exactly_once(store: TaskStore) -> None:
    expected = [f"t{i:03}" for i in range(500)]
    results = store.create_tasks([spec(task_id) for task_id in expected])
    assert all(isinstance(r, Success) for r in results)
    threads = 8
    barrier = threading.Barrier(threads, timeout=10)

    def reserve_all(n: int) -> list[Task]:
        pid = f"w{n}"
        got: list[Task] = []
        barrier.wait()
        while batch := store.reserve_tasks(TOPIC, pid, limit=1 + n % 4):
            got.extend(batch)
        return got

    with ThreadPoolExecutor(max_workers=threads) as pool:
        per_thread = list(pool.map(reserve_all, range(threads)))

    reserved = [t.task_id for got in per_thread for t in got]
    assert len(reserved) == len(expected)
    assert sorted(reserved) == expected
    owner = {t.task_id: f"w{n}" for n, got in enumerate(per_thread) for t in got}
    for got in per_thread:
        assert all(t.attempt == 1 for t in got)
    stored = listing(store)
    assert all(t.status is Status.RUNNING for t in stored)
    assert {t.task_id: t.pid for t in stored} == owner
    assert all(t.record_ver == 1 for t in stored)


def test_concurrent_revokes_of_one_observation_succeed_exactly_once(store: TaskStore) -> None:
    task = running(store, "t1")
    threads = 8
    barrier = threading.Barrier(threads, timeout=10)

    def revoke(_: int) -> Result[Task, SokkaError]:
        barrier.wait()
        return execute(
            store,
            RevokeLease(
                task_id="t1", record_ver=task.record_ver, status=Status.RUNNING, overdue_ms=1
            ),
        )

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(revoke, range(threads)))

    assert sum(isinstance(o, Success) for o in outcomes) == 1, outcomes
    refusals = [failure(o) for o in outcomes if isinstance(o, Failure)]
    assert all(isinstance(r, StaleRecord) for r in refusals), refusals  # say what else came
    after = store.get_task("t1")
    assert after.record_ver == task.record_ver + 1
    assert after.failures == 1
