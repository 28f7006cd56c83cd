"""``AsyncSQLStore``: the SQL store for asyncio, SQLite (aiosqlite) and PostgreSQL
(psycopg's async connections), through SQLAlchemy's asyncio extension.

There is one SQL store, not two: every call runs ``SQLStore``'s own code
(its statements, its transactions, its reading and writing of tasks through
``core.transitions.apply``, its translation of driver errors) on the sync
face of an ``AsyncEngine`` (``AsyncEngine.sync_engine``). SQLAlchemy runs
that code in a greenlet (``greenlet_spawn``, the mechanism of
``AsyncConnection.run_sync``); wherever it would wait for the database, the
async driver's coroutine is awaited on the event loop instead, so the loop
never blocks on I/O. A statement or a rule written once in ``sokka.adapters.sql``
behaves the same here by construction, and ``SQLStore``'s hot paths are not
touched by this store's existence.

The same URLs as ``SQLStore`` (``sqlite:///file.db``,
``postgresql+psycopg://...``, ``postgresql://...``; also the async drivers'
own names ``sqlite+aiosqlite://`` and ``postgresql+psycopg_async://``), the
same prefix and schema, the same errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from returns.result import Result
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from sokka.adapters.memory import wall_clock_ms
from sokka.adapters.sql import SQLStore, _engine_arguments, _parse_url
from sokka.adapters.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, TaskFilter
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import SokkaError, StoreError
from sokka.core.task import Task, TaskSpec

__all__ = ["AsyncSQLStore"]

_T = TypeVar("_T")

# The async drivers' own URL names, accepted as the sync names they stand for.
_ASYNC_SCHEMES = {
    "sqlite+aiosqlite://": "sqlite+pysqlite://",
    "postgresql+psycopg_async://": "postgresql+psycopg://",
}


def _async_url(url: str) -> URL:
    """The async driver's URL for a ``SQLStore`` URL (refused with ``SQLStore``'s errors)."""
    if isinstance(url, str):
        for async_scheme, sync_scheme in _ASYNC_SCHEMES.items():
            if url.startswith(async_scheme):
                url = sync_scheme + url[len(async_scheme) :]
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        try:
            import aiosqlite  # noqa: F401
        except ImportError:
            raise StoreError(
                "SQLite under asyncio needs aiosqlite: pip install aiosqlite"
            ) from None
        return parsed.set(drivername="sqlite+aiosqlite")
    # create_async_engine picks psycopg's async dialect for postgresql+psycopg.
    return parsed


class AsyncSQLStore:
    """An ``AsyncTaskStore`` in SQLite or PostgreSQL: ``SQLStore``, awaitable.

    ``url_or_engine``: a URL (see ``sokka.adapters.sql.SUPPORTED_URLS``) or an
    ``AsyncEngine`` you configured yourself. The other options are
    ``SQLStore``'s. The schema is created explicitly: ``await
    create_schema()`` or ``sokka init`` (the tables are the same).
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine,
        *,
        prefix: str = "sokka_",
        clock: Callable[[], int] = wall_clock_ms,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        pool_size: int = 10,
        lock_timeout_ms: int = 5_000,
        connect_timeout_s: int = 5,
    ) -> None:
        if isinstance(url_or_engine, AsyncEngine):
            engine = url_or_engine
        else:
            url = _async_url(url_or_engine)
            arguments = _engine_arguments(
                url,
                pool_size=pool_size,
                lock_timeout_ms=lock_timeout_ms,
                connect_timeout_s=connect_timeout_s,
            )
            engine = create_async_engine(url, **arguments)
        self._engine = engine
        # SQLStore configures SQLite's connections (WAL, busy timeout, BEGIN
        # IMMEDIATE for writes) on the sync face, as for an engine of its own.
        self._sync = SQLStore(
            engine.sync_engine,
            prefix=prefix,
            clock=clock,
            new_id=new_id,
            lock_timeout_ms=lock_timeout_ms,
        )

    async def _run(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run one of ``SQLStore``'s calls, awaiting the driver wherever it waits."""
        return await greenlet_spawn(call, *args)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._sync.dialect

    @property
    def single_writer(self) -> bool:
        """True for SQLite: one write transaction at a time for the whole file."""
        return self._sync.single_writer

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    async def __aenter__(self) -> AsyncSQLStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"AsyncSQLStore({url!r}, prefix={self._sync._prefix!r})"

    # -- schema --------------------------------------------------------------

    async def create_schema(self) -> int:
        """``SQLStore.create_schema``: create the tables if missing, return the version."""
        return await self._run(self._sync.create_schema)

    async def drop_schema(self) -> None:
        """``SQLStore.drop_schema``: drop this prefix's tables and every task in them."""
        await self._run(self._sync.drop_schema)

    async def schema_version(self) -> int | None:
        """``SQLStore.schema_version``: the version in the database, None without one."""
        return await self._run(self._sync.schema_version)

    # -- AsyncTaskStore --------------------------------------------------------

    async def create_task(self, spec: TaskSpec) -> Task:
        return await self._run(self._sync.create_task, spec)

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        return await self._run(self._sync.create_tasks, specs)

    async def get_task(self, task_id: str) -> Task:
        return await self._run(self._sync.get_task, task_id)

    async def tasks_in_group(self, task_group_id: str) -> list[Task]:
        return await self._run(self._sync.tasks_in_group, task_group_id)

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        return await self._run(self._sync.list_tasks, filter, cursor, limit)

    async def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        return await self._run(self._sync.reserve_tasks, topic, pid, limit)

    async def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        return await self._run(self._sync.extend_leases, pid, leases)

    async def terminate(self, task_id: str, pid: str, attempt: int) -> Task:
        return await self._run(self._sync.terminate, task_id, pid, attempt)

    async def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task:
        return await self._run(self._sync.snooze, task_id, pid, attempt, snooze_ms)

    async def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task:
        return await self._run(self._sync.fail, task_id, pid, attempt, error, retry_after_ms)

    async def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]:
        return await self._run(self._sync.finish_many, outcomes)

    async def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        return await self._run(self._sync.revoke_lease, task_id, record_ver)

    async def requeue(self, task_id: str) -> Task:
        return await self._run(self._sync.requeue, task_id)

    async def cancel(self, task_id: str, reason: str) -> Task:
        return await self._run(self._sync.cancel, task_id, reason)

    async def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        return await self._run(self._sync.list_leased_tasks, topic, cursor, limit)
