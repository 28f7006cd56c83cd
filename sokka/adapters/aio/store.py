"""``AsyncTaskStore``: the store protocol for the asyncio runtime.

Every call of ``TaskStore`` (``sokka.adapters.store``), awaitable, with the
same arguments, the same answers and the same errors; the contract is stated
once, on ``TaskStore``, and the contract suite runs unchanged over both. An
async store may block the event loop only for as long as a dict lookup: I/O
is awaited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from returns.result import Result

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

__all__ = ["AsyncReservesAndFinishes", "AsyncTaskStore"]


@runtime_checkable
class AsyncReservesAndFinishes(Protocol):
    """``ReservesAndFinishes``, awaitable: a claim and a batch of outcomes in one call."""

    async def reserve_and_finish(
        self, topic: str, pid: str, limit: int, outcomes: Sequence[Finish]
    ) -> tuple[list[Task], list[Result[Task, SokkaError]]]: ...


@runtime_checkable
class AsyncTaskStore(Protocol):
    """``TaskStore``, awaitable: see each method's contract there."""

    async def create_task(self, spec: TaskSpec) -> Task: ...

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]: ...

    async def get_task(self, task_id: str) -> Task: ...

    async def tasks_in_group(
        self, task_group_id: str, limit: int = MAX_PAGE_SIZE
    ) -> list[Task]: ...

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page: ...

    async def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]: ...

    async def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]: ...

    async def terminate(
        self, task_id: str, pid: str, attempt: int, result: Any = None
    ) -> Task: ...

    async def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task: ...

    async def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task: ...

    async def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]: ...

    async def revoke_lease(self, task_id: str, record_ver: int) -> Task: ...

    async def requeue(self, task_id: str) -> Task: ...

    async def cancel(self, task_id: str, reason: str) -> Task: ...

    async def pause_topic(self, topic: str) -> bool: ...

    async def resume_topic(self, topic: str) -> bool: ...

    async def paused_topics(self) -> list[str]: ...

    async def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page: ...

    async def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts: ...

    async def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged: ...

    async def aclose(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...
