"""Retention (``sokka.shell.retention``) and bulk requeue (``sokka.shell.admin``) on
real stores, with a ManualClock where time matters."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import MAX_BATCH, Page, Purged, TaskFilter
from sokka.core.errors import Unavailable, ValidationError
from sokka.core.task import Status, TaskSpec
from sokka.shell.admin import Requeued, requeue_failed
from sokka.shell.clock import ManualClock
from sokka.shell.retention import (
    PeriodicPurge,
    RetentionPolicy,
    apurge_all,
    count_purgeable,
    periodic_purge,
    periodic_purge_task,
    purge_all,
)

FINAL = (Status.TERMINATED, Status.FAILED)
DAY_MS = 86_400_000


def _finished(store: MemoryStore, count: int, topic: str = "emails", *, fail: bool = False,
              first: int = 0) -> None:  # fmt: skip
    for i in range(first, first + count):
        store.create_task(TaskSpec(topic=topic, task_id=f"{topic}-{i}", max_attempts=1))
        (task,) = store.reserve_tasks(topic, "w1")
        if fail:
            store.fail(task.task_id, "w1", 1, "boom")
        else:
            store.terminate(task.task_id, "w1", 1)


def _left(store: MemoryStore) -> int:
    return len(store.list_tasks(limit=1000).tasks)


class _CountingStore(MemoryStore):
    """A memory store that counts its purge calls."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.purges = 0

    def purge(self, statuses: Sequence[Status], older_than_ms: int, topic: str | None = None,
              limit: int = MAX_BATCH) -> Purged:  # fmt: skip
        self.purges += 1
        return super().purge(statuses, older_than_ms, topic, limit)


def test_purge_all_repeats_batches_until_one_comes_back_short() -> None:
    clock = ManualClock(start_ms=1_000)
    store = _CountingStore(clock)
    _finished(store, 5)
    store.create_task(TaskSpec(topic="emails", task_id="waiting"))
    clock.advance(DAY_MS)
    assert purge_all(store, FINAL, DAY_MS, batch=2) == 5
    assert store.purges == 3  # 2 + 2 + 1
    assert [t.task_id for t in store.list_tasks().tasks] == ["waiting"]


def test_count_purgeable_counts_what_a_purge_would_delete_on_the_store_clock() -> None:
    clock = ManualClock(start_ms=1_000)
    store = MemoryStore(clock=clock)
    _finished(store, 3)
    _finished(store, 2, fail=True, first=3)
    clock.advance(DAY_MS)
    _finished(store, 1, first=5)  # young
    assert count_purgeable(store, FINAL, DAY_MS) == 5
    assert count_purgeable(store, [Status.FAILED], DAY_MS) == 2
    assert count_purgeable(store, FINAL, DAY_MS, topic="reports") == 0
    assert _left(store) == 6  # counting deleted nothing
    assert purge_all(store, FINAL, DAY_MS) == 5


@pytest.mark.parametrize(
    ("statuses", "age", "field"),
    [([Status.RUNNING], 0, "statuses"), ([], 0, "statuses"), (FINAL, -1, "older_than_ms")],
)
def test_count_purgeable_refuses_what_purge_refuses(
    statuses: Sequence[Status], age: int, field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        count_purgeable(MemoryStore(), statuses, age)
    assert refused.value.field == field


def test_a_periodic_purge_runs_at_once_then_every_interval_of_its_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store_clock = ManualClock(start_ms=1_000)
    store = MemoryStore(clock=store_clock)
    shell_clock = ManualClock(start_ms=0)
    purger = PeriodicPurge(
        store, RetentionPolicy(older_than_ms=DAY_MS, every_ms=600_000), clock=shell_clock
    )
    _finished(store, 2)
    store_clock.advance(DAY_MS)
    with caplog.at_level(logging.INFO, logger="sokka.retention"):
        assert purger.tick() == 2
    assert "purged 2 terminated/failed tasks older than 86400000 ms" in caplog.text
    assert purger.next_ms == 600_000
    _finished(store, 3, first=2)
    store_clock.advance(DAY_MS)
    shell_clock.advance(599_999)
    assert purger.tick() is None  # not due yet
    assert _left(store) == 3
    shell_clock.advance(1)
    assert purger.tick() == 3
    assert _left(store) == 0


class _DownStore(MemoryStore):
    """A memory store whose purge fails as an unreachable database does."""

    def purge(self, statuses: Sequence[Status], older_than_ms: int, topic: str | None = None,
              limit: int = MAX_BATCH) -> Purged:  # fmt: skip
        raise Unavailable("the database cannot be reached")


def test_a_failed_periodic_purge_is_logged_and_tried_at_the_next_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    purger = PeriodicPurge(_DownStore(), RetentionPolicy(older_than_ms=0, every_ms=1_000),
                           clock=clock)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="sokka.retention"):
        assert purger.tick() is None
    assert "the purge failed (tried again in 1000 ms)" in caplog.text
    assert purger.next_ms == 1_000


def test_the_periodic_purge_thread_purges_and_stops() -> None:
    store_clock = ManualClock(start_ms=1_000)
    store = MemoryStore(clock=store_clock)
    _finished(store, 4)
    store_clock.advance(DAY_MS)
    with periodic_purge(store, RetentionPolicy(older_than_ms=DAY_MS, every_ms=3_600_000)):
        deadline = time.monotonic() + 10
        while _left(store) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert _left(store) == 0


def test_the_periodic_purge_task_purges_and_is_cancelled_with_its_block() -> None:
    async def scenario() -> int:
        store_clock = ManualClock(start_ms=1_000)
        store = AsyncMemoryStore(clock=store_clock)
        _finished(store.sync, 3)
        store_clock.advance(DAY_MS)
        policy = RetentionPolicy(older_than_ms=DAY_MS, every_ms=3_600_000)
        async with periodic_purge_task(store, policy):
            for _ in range(1000):
                if not _left(store.sync):
                    break
                await asyncio.sleep(0.01)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        _finished(store.sync, 2, first=3)
        store_clock.advance(DAY_MS)
        return await apurge_all(store, FINAL, DAY_MS, batch=1)

    assert asyncio.run(scenario()) == 2


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"older_than_ms": -1}, "older_than_ms"), ({"every_ms": 0}, "every_ms"),
     ({"batch": MAX_BATCH + 1}, "batch"), ({"older_than_ms": 1.5}, "older_than_ms")],
)  # fmt: skip
def test_a_bad_retention_policy_names_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        RetentionPolicy(**{"older_than_ms": 0, **fields})  # type: ignore[arg-type]
    assert refused.value.field == field


class _BusyAdminStore(MemoryStore):
    """A memory store where another operator requeues the first task of every listing
    page just after it was listed: a task that moved on meanwhile."""

    def list_tasks(self, filter: TaskFilter | None = None, cursor: str | None = None,
                   limit: int = 100) -> Page:  # fmt: skip
        page = super().list_tasks(filter, cursor, limit)
        if page.tasks and filter is not None and filter.status is Status.FAILED:
            super().requeue(page.tasks[0].task_id)
        return page


def test_bulk_requeue_counts_a_task_that_moved_on_and_does_not_force_it() -> None:
    store = _BusyAdminStore()
    _finished(store, 5, fail=True)
    _finished(store, 1, topic="reports", fail=True)
    done = requeue_failed(store, "emails", page_size=2)
    assert done == Requeued(requeued=2, moved_on=3)  # pages of 2, 2, 1
    statuses = {t.task_id: t.status for t in store.list_tasks().tasks}
    assert statuses == {**{f"emails-{i}": Status.STARTING for i in range(5)},
                        "reports-0": Status.FAILED}  # fmt: skip


def test_bulk_requeue_pages_through_more_than_one_page() -> None:
    store = MemoryStore()
    _finished(store, 7, fail=True)
    _finished(store, 2, first=7)  # terminated: not requeued
    assert requeue_failed(store, "emails", page_size=3) == Requeued(requeued=7, moved_on=0)
    assert store.count_tasks("emails").topics[0].starting == 7
