"""Retention: delete finished tasks once they are old enough, in bounded batches.

``purge_all`` repeats the store's ``purge`` (one short batch per call) until
a batch comes back short, so no single statement holds a lock for long.
``PeriodicPurge`` runs it at an interval on a thread (``sokka serve``,
``sokka supervise``); ``periodic_purge_task`` is its asyncio twin. The age of
a task is measured by the store, on its own clock (``TaskStore.purge``); the
interval between purges is measured here, on the shell's monotonic clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Final

from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.store import (
    MAX_BATCH,
    MAX_PAGE_SIZE,
    TaskFilter,
    TaskStore,
    check_purge,
)
from sokka.core.errors import SokkaError, ValidationError
from sokka.core.task import Status
from sokka.shell.clock import Clock, MonotonicClock

__all__ = [
    "DEFAULT_PURGE_EVERY_MS",
    "PeriodicPurge",
    "RetentionPolicy",
    "apurge_all",
    "count_purgeable",
    "periodic_purge",
    "periodic_purge_task",
    "purge_all",
]

#: How often a periodic purge runs unless told otherwise: ten minutes.
DEFAULT_PURGE_EVERY_MS: Final = 600_000

_log = logging.getLogger("sokka.retention")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """What a periodic purge deletes, and how often it runs.

    Tasks in ``statuses`` (of ``topic``, every topic with ``None``) unchanged
    for ``older_than_ms`` on the store's clock are deleted, ``batch`` per
    store call, every ``every_ms`` of the shell's monotonic clock.
    """

    older_than_ms: int
    every_ms: int = DEFAULT_PURGE_EVERY_MS
    statuses: tuple[Status, ...] = (Status.TERMINATED, Status.FAILED)
    topic: str | None = None
    batch: int = MAX_BATCH

    def __post_init__(self) -> None:
        for name in ("older_than_ms", "every_ms", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(name, f"must be an integer (got {type(value).__name__})")
        if self.older_than_ms < 0:
            raise ValidationError("older_than_ms", f"must be 0 or more (got {self.older_than_ms})")
        if self.every_ms < 1:
            raise ValidationError("every_ms", f"must be 1 ms or more (got {self.every_ms})")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValidationError("batch", f"must be between 1 and {MAX_BATCH} (got {self.batch})")


def purge_all(
    store: TaskStore,
    statuses: Sequence[Status],
    older_than_ms: int,
    topic: str | None = None,
    batch: int = MAX_BATCH,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """Purge batch after batch until one comes back short (or ``stopping()``);
    return how many tasks were deleted in all."""
    deleted = 0
    while True:
        purged = store.purge(statuses, older_than_ms, topic, batch)
        deleted += purged.deleted
        if not purged.more or stopping():
            return deleted


async def apurge_all(
    store: AsyncTaskStore,
    statuses: Sequence[Status],
    older_than_ms: int,
    topic: str | None = None,
    batch: int = MAX_BATCH,
) -> int:
    """``purge_all`` on an async store (cancellable between batches)."""
    deleted = 0
    while True:
        purged = await store.purge(statuses, older_than_ms, topic, batch)
        deleted += purged.deleted
        if not purged.more:
            return deleted


def count_purgeable(
    store: TaskStore, statuses: Sequence[Status], older_than_ms: int, topic: str | None = None
) -> int:
    """How many tasks ``purge_all`` would delete now (a dry run), deleting nothing.

    The store's clock is read from ``count_tasks`` (its ``now``), so the age
    is the one ``purge`` would use; the finished tasks are then listed page by
    page. The arguments are checked as ``purge`` checks them.
    """
    chosen, older_than_ms, topic, _ = check_purge(statuses, older_than_ms, topic, 1)
    cutoff = store.count_tasks(topic).now - older_than_ms
    found = 0
    for status in sorted(chosen):
        cursor: str | None = None
        while True:
            page = store.list_tasks(TaskFilter(topic=topic, status=status), cursor, MAX_PAGE_SIZE)
            found += sum(1 for task in page.tasks if task.updated_at <= cutoff)
            cursor = page.next_cursor
            if cursor is None:
                break
    return found


class PeriodicPurge:
    """``purge_all`` at an interval, on a thread of its own.

    The first purge runs at once, then one every ``policy.every_ms`` of
    ``clock``. A store error is logged and the purge is tried again at the
    next interval: retention is never a reason to stop a server. ``tick()``
    runs a purge if one is due (the thread calls it; a test can too, stepping
    a ``ManualClock``).
    """

    def __init__(
        self,
        store: TaskStore,
        policy: RetentionPolicy,
        *,
        clock: Clock | None = None,
        log: logging.Logger = _log,
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock if clock is not None else MonotonicClock()
        self._log = log
        self._next_ms: int | None = None  # None: due now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def next_ms(self) -> int | None:
        """When the next purge is due on the clock (None: at once)."""
        return self._next_ms

    def tick(self) -> int | None:
        """Purge if one is due: how many tasks it deleted (None: not due, or failed)."""
        now = self._clock.now_ms()
        if self._next_ms is not None and now < self._next_ms:
            return None
        self._next_ms = now + self._policy.every_ms
        policy = self._policy
        try:
            deleted = purge_all(
                self._store, policy.statuses, policy.older_than_ms, policy.topic, policy.batch,
                stopping=self._stop.is_set,
            )  # fmt: skip
        except SokkaError as error:
            self._log.warning("retention: the purge failed (tried again in %d ms): %s",
                              policy.every_ms, error)  # fmt: skip
            return None
        self._log.info(
            "retention: purged %d %s tasks older than %d ms%s", deleted,
            "/".join(s.value for s in policy.statuses), policy.older_than_ms,
            f" of topic {policy.topic!r}" if policy.topic else "",
        )  # fmt: skip
        return deleted

    def start(self) -> None:
        """Run on a daemon thread until ``stop()``."""
        if self._thread is not None:
            raise RuntimeError("this PeriodicPurge has already been started")
        self._thread = threading.Thread(target=self._run, name="sokka-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the thread (a purge in flight ends after its current batch)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            due = self._next_ms if self._next_ms is not None else self._clock.now_ms()
            self._stop.wait(max(0, due - self._clock.now_ms()) / 1000)


@contextmanager
def periodic_purge(store: TaskStore, policy: RetentionPolicy | None) -> Iterator[None]:
    """Run a ``PeriodicPurge`` for the block (nothing when ``policy`` is None)."""
    if policy is None:
        yield
        return
    purger = PeriodicPurge(store, policy)
    purger.start()
    try:
        yield
    finally:
        purger.stop()


@asynccontextmanager
async def periodic_purge_task(
    store: AsyncTaskStore,
    policy: RetentionPolicy | None,
    *,
    clock: Clock | None = None,
    log: logging.Logger = _log,
) -> AsyncIterator[None]:
    """Run ``apurge_all`` every ``policy.every_ms`` as an asyncio task for the block
    (nothing when ``policy`` is None); the task is cancelled when the block ends."""
    if policy is None:
        yield
        return
    task = asyncio.create_task(_purge_periodically(store, policy, clock or MonotonicClock(), log))
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def _purge_periodically(
    store: AsyncTaskStore, policy: RetentionPolicy, clock: Clock, log: logging.Logger
) -> None:
    while True:
        started = clock.now_ms()
        try:
            deleted = await apurge_all(
                store, policy.statuses, policy.older_than_ms, policy.topic, policy.batch
            )
        except SokkaError as error:
            log.warning("retention: the purge failed (tried again in %d ms): %s",
                        policy.every_ms, error)  # fmt: skip
        else:
            log.info(
                "retention: purged %d %s tasks older than %d ms%s", deleted,
                "/".join(s.value for s in policy.statuses), policy.older_than_ms,
                f" of topic {policy.topic!r}" if policy.topic else "",
            )  # fmt: skip
        await asyncio.sleep(max(0, started + policy.every_ms - clock.now_ms()) / 1000)
