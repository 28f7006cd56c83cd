"""``AsyncSQLStore``: the SQL store for asyncio, on PostgreSQL (psycopg's async
connections) and SQLite.

There is one SQL store, not two: every call runs ``SQLStore``'s own code
(its statements, its transactions, its reading and writing of tasks through
``core.transitions.apply``, its translation of driver errors). How that code
waits differs, chosen by measurement (docs/stores.md):

* PostgreSQL: on the sync face of an ``AsyncEngine`` whose driver is
  psycopg's ``AsyncConnection`` (``AsyncEngine.sync_engine``). SQLAlchemy
  runs the call in a greenlet (``greenlet_spawn``, the mechanism of
  ``AsyncConnection.run_sync``); wherever it would wait for the server, the
  driver's coroutine is awaited on the event loop instead. A call cancelled
  while it waits is rolled back.
* SQLite: the sync store, each call on a thread of the store's own pool
  (``pool_size`` threads). SQLite has no async driver: aiosqlite runs every
  driver call on a thread too, so a call of ours would cross threads a dozen
  times instead of twice, and reserve+terminate ran at about a third of the
  speed. A call cancelled while it runs still completes in its thread: as
  with a lost answer, its write may or may not have been applied.
  An ``AsyncEngine`` passed in (aiosqlite, say) is used through the greenlet
  as for PostgreSQL.

Either way the event loop never waits on I/O, and ``SQLStore``'s hot paths
are not touched by this store's existence. The same URLs as ``SQLStore``
(``sqlite:///file.db``, ``postgresql+psycopg://...``, ``postgresql://...``;
also ``sqlite+aiosqlite://`` and ``postgresql+psycopg_async://``, read as
the first two), the same prefix and schema, the same errors.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from returns.result import Result
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.util import greenlet_spawn

from sokka.adapters.memory import wall_clock_ms
from sokka.adapters.ready import Doorbell
from sokka.adapters.sql import SQLStore, _engine_arguments, _parse_url
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
from sokka.core.errors import SokkaError, ValidationError
from sokka.core.task import Status, Task, TaskSpec

__all__ = ["AsyncSQLStore"]

_T = TypeVar("_T")

# The async drivers' own URL names, read as the sync names they stand for.
_ASYNC_SCHEMES = {
    "sqlite+aiosqlite://": "sqlite+pysqlite://",
    "postgresql+psycopg_async://": "postgresql+psycopg://",
}


def _sync_url(url: str) -> URL:
    """``SQLStore``'s reading of ``url`` (refused with ``SQLStore``'s errors)."""
    if isinstance(url, str):
        for async_scheme, sync_scheme in _ASYNC_SCHEMES.items():
            if url.startswith(async_scheme):
                url = sync_scheme + url[len(async_scheme) :]
    return _parse_url(url)


class AsyncSQLStore:
    """An ``AsyncTaskStore`` in SQLite or PostgreSQL: ``SQLStore``, awaitable.

    ``url_or_engine``: a URL (see ``sokka.adapters.sql.SUPPORTED_URLS``) or an
    ``AsyncEngine`` you configured yourself. The other options are
    ``SQLStore``'s, ``create_file`` included (SQLite only: with False, a
    missing file is a ``ValidationError`` naming it and nothing is created).
    The schema is created explicitly: ``await create_schema()`` or ``sokka
    init`` (the tables are the same).
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
        create_file: bool = True,
    ) -> None:
        self._async_engine: AsyncEngine | None = None
        self._threads: ThreadPoolExecutor | None = None
        options: dict[str, Any] = {"prefix": prefix, "clock": clock, "new_id": new_id}
        if isinstance(url_or_engine, AsyncEngine):
            self._async_engine = url_or_engine
        else:
            url = _sync_url(url_or_engine)
            if url.get_backend_name() == "sqlite":
                self._sync = SQLStore(
                    url.render_as_string(hide_password=False),
                    pool_size=pool_size,
                    lock_timeout_ms=lock_timeout_ms,
                    connect_timeout_s=connect_timeout_s,
                    create_file=create_file,
                    **options,
                )
                # As many threads as pooled connections: a call never waits for a
                # thread while a connection is free, nor the other way round.
                self._threads = ThreadPoolExecutor(pool_size, thread_name_prefix="sokka-sqlite")
                return
            arguments = _engine_arguments(
                url,
                pool_size=pool_size,
                lock_timeout_ms=lock_timeout_ms,
                connect_timeout_s=connect_timeout_s,
            )
            # create_async_engine picks psycopg's async dialect for postgresql+psycopg.
            self._async_engine = create_async_engine(url, **arguments)
        # SQLStore configures SQLite's connections (WAL, busy timeout, BEGIN
        # IMMEDIATE for writes) on the sync face, as for an engine of its own.
        self._sync = SQLStore(
            self._async_engine.sync_engine, lock_timeout_ms=lock_timeout_ms, **options
        )

    async def _run(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run one of ``SQLStore``'s calls without blocking the event loop."""
        if self._threads is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, functools.partial(call, *args))
        return await greenlet_spawn(call, *args)

    @property
    def engine(self) -> Engine:
        """The (sync) engine ``SQLStore``'s code runs on: for PostgreSQL, the sync
        face of ``async_engine``."""
        return self._sync.engine

    @property
    def async_engine(self) -> AsyncEngine | None:
        """The ``AsyncEngine`` calls are awaited on; None for SQLite on threads."""
        return self._async_engine

    @property
    def dialect(self) -> str:
        """The database's kind: ``"sqlite"`` or ``"postgresql"``."""
        return self._sync.dialect

    @property
    def single_writer(self) -> bool:
        """True for SQLite: one write transaction at a time for the whole file."""
        return self._sync.single_writer

    async def aclose(self) -> None:
        """Close every pooled connection (after the calls under way have ended)."""
        if self._async_engine is not None:
            # The listener (if a waiter started it) has a connection of its own.
            await asyncio.to_thread(self._sync._listener.stop)
            await self._async_engine.dispose()
            return
        threads = self._threads
        assert threads is not None

        def close() -> None:
            threads.shutdown(wait=True)
            self._sync.close()

        await asyncio.to_thread(close)

    async def __aenter__(self) -> AsyncSQLStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
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

    # -- waking waiters (``Wakeable``, the sync store's own) --------------------

    def ready_signal(self, topic: str) -> Doorbell:
        """``SQLStore.ready_signal``: a blocking hint, for a waiter on a thread."""
        return self._sync.ready_signal(topic)

    def subscribe_ready(self, topic: str, ring: Callable[[], None]) -> Callable[[], None]:
        """``SQLStore.subscribe_ready``: ``ring()`` on every hint for ``topic`` (this
        process's changes at once, other processes' from the store's listener
        thread); returns the unsubscribe call. It may block while the listener
        connects (up to ``connect_timeout_s``): an asyncio waiter subscribes
        from a thread (``asyncio.to_thread``) and passes a ``ring`` that hops
        onto its loop (``loop.call_soon_threadsafe``)."""
        return self._sync.subscribe_ready(topic, ring)

    # -- AsyncTaskStore --------------------------------------------------------

    async def create_task(self, spec: TaskSpec, *, connection: object = None) -> Task:
        """``AsyncTaskStore.create_task``; with ``connection``, in the caller's transaction.

        ``connection``: a SQLAlchemy ``AsyncConnection`` or ``AsyncSession`` on
        this store's database (aiosqlite, psycopg's async driver, ...). The
        insert then runs on it, in the caller's transaction, and the store
        neither commits nor rolls back: the task exists if and only if the
        caller commits. A connection to another database, or anything else,
        is a ``ValidationError`` naming ``connection``, and nothing is written
        (``SQLStore.create_task``'s rules, checked by its own code).
        """
        if connection is None:
            return await self._run(self._sync.create_task, spec)
        run_sync = await self._caller(connection)
        return await run_sync(lambda sync: self._sync.create_task(spec, connection=sync))

    async def create_tasks(
        self, specs: Sequence[TaskSpec], *, connection: object = None
    ) -> list[Result[Task, SokkaError]]:
        """``AsyncTaskStore.create_tasks``; ``connection`` as for ``create_task``."""
        if connection is None:
            return await self._run(self._sync.create_tasks, specs)
        run_sync = await self._caller(connection)
        return await run_sync(lambda sync: self._sync.create_tasks(specs, connection=sync))

    async def _caller(self, connection: object) -> Callable[[Callable[[Any], _T]], Awaitable[_T]]:
        """How to run ``SQLStore``'s code on the caller's ``AsyncConnection`` or
        ``AsyncSession``: its ``run_sync``, which hands that code the sync face
        (a ``Connection`` or ``Session``) inside the caller's transaction."""
        if not isinstance(connection, AsyncConnection | AsyncSession):
            raise ValidationError(
                "connection",
                "must be a SQLAlchemy AsyncConnection or AsyncSession on the store's "
                f"database (got {type(connection).__name__})",
            )
        if not self._sync._schema_checked:
            # On a connection of the store's own, off the loop, before the caller's
            # transaction is touched: a missing schema is SQLStore's SchemaError.
            await self._run(self._check_schema)
        run_sync: Callable[[Callable[[Any], _T]], Awaitable[_T]] = connection.run_sync
        return run_sync

    def _check_schema(self) -> None:
        with self._sync._session(write=False):
            pass

    async def get_task(self, task_id: str) -> Task:
        return await self._run(self._sync.get_task, task_id)

    async def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        return await self._run(self._sync.tasks_in_group, task_group_id, limit)

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

    async def reserve_and_finish(
        self, topic: str, pid: str, limit: int, outcomes: Sequence[Finish]
    ) -> tuple[list[Task], list[Result[Task, SokkaError]]]:
        """``SQLStore.reserve_and_finish`` (``AsyncReservesAndFinishes``)."""
        return await self._run(self._sync.reserve_and_finish, topic, pid, limit, outcomes)

    async def terminate(self, task_id: str, pid: str, attempt: int, result: Any = None) -> Task:
        return await self._run(self._sync.terminate, task_id, pid, attempt, result)

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

    async def pause_topic(self, topic: str) -> bool:
        return await self._run(self._sync.pause_topic, topic)

    async def resume_topic(self, topic: str) -> bool:
        return await self._run(self._sync.resume_topic, topic)

    async def paused_topics(self) -> list[str]:
        return await self._run(self._sync.paused_topics)

    async def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        return await self._run(self._sync.list_leased_tasks, topic, cursor, limit)

    async def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts:
        return await self._run(self._sync.count_tasks, topic, status, failed_within_ms)

    async def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged:
        return await self._run(self._sync.purge, statuses, older_than_ms, topic, limit)
