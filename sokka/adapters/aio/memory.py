"""``AsyncMemoryStore``: the in-memory reference store, awaitable.

The memory store does no I/O and holds its lock only for a dict update, so
each call runs inline on the event loop; it is the same ``MemoryStore``
(``.sync``), which a test may read and write directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from returns.result import Result

from sokka.adapters.memory import MemoryStore, _new_id, wall_clock_ms
from sokka.adapters.ready import Doorbell
from sokka.adapters.store import (
    DEFAULT_FAILED_WITHIN_MS,
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Counts,
    Page,
    Purged,
    TaskFilter,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import SokkaError
from sokka.core.task import Status, Task, TaskSpec

__all__ = ["AsyncMemoryStore"]


class AsyncMemoryStore:
    """An ``AsyncTaskStore`` over a ``MemoryStore`` (``sync``, made if not given)."""

    def __init__(
        self,
        sync: MemoryStore | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self.sync = sync if sync is not None else MemoryStore(clock=clock, new_id=new_id)

    # -- waking waiters (``Wakeable``, the sync store's own) --------------------

    def ready_signal(self, topic: str) -> Doorbell:
        """``MemoryStore.ready_signal``: a blocking hint, for a waiter on a thread."""
        return self.sync.ready_signal(topic)

    def subscribe_ready(self, topic: str, ring: Callable[[], None]) -> Callable[[], None]:
        """``MemoryStore.subscribe_ready``: ``ring()`` on every hint for ``topic``,
        on the thread that made the change; returns the unsubscribe call. An
        asyncio waiter passes a ``ring`` that hops onto its loop
        (``loop.call_soon_threadsafe``)."""
        return self.sync.subscribe_ready(topic, ring)

    # -- AsyncTaskStore --------------------------------------------------------

    async def create_task(self, spec: TaskSpec) -> Task:
        return self.sync.create_task(spec)

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        return self.sync.create_tasks(specs)

    async def get_task(self, task_id: str) -> Task:
        return self.sync.get_task(task_id)

    async def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        return self.sync.tasks_in_group(task_group_id, limit)

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        return self.sync.list_tasks(filter, cursor, limit)

    async def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        return self.sync.reserve_tasks(topic, pid, limit)

    async def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        return self.sync.extend_leases(pid, leases)

    async def terminate(self, task_id: str, pid: str, attempt: int, result: Any = None) -> Task:
        return self.sync.terminate(task_id, pid, attempt, result)

    async def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task:
        return self.sync.snooze(task_id, pid, attempt, snooze_ms)

    async def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task:
        return self.sync.fail(task_id, pid, attempt, error, retry_after_ms)

    async def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]:
        return self.sync.finish_many(outcomes)

    async def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        return self.sync.revoke_lease(task_id, record_ver)

    async def requeue(self, task_id: str) -> Task:
        return self.sync.requeue(task_id)

    async def cancel(self, task_id: str, reason: str) -> Task:
        return self.sync.cancel(task_id, reason)

    async def pause_topic(self, topic: str) -> bool:
        return self.sync.pause_topic(topic)

    async def resume_topic(self, topic: str) -> bool:
        return self.sync.resume_topic(topic)

    async def paused_topics(self) -> list[str]:
        return self.sync.paused_topics()

    async def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        return self.sync.list_leased_tasks(topic, cursor, limit)

    async def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts:
        return self.sync.count_tasks(topic, status, failed_within_ms)

    async def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged:
        return self.sync.purge(statuses, older_than_ms, topic, limit)

    async def aclose(self) -> None:
        return None
