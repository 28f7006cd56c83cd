"""``AsyncSQLStore`` beyond the contract: its URLs, its errors, and the event loop.

The contract suite (``sqlite-async``, ``postgres-async``) checks every call's
answers. Here: the same URLs and refusals as ``SQLStore``, driver errors
mapped to the same taxonomy, the schema shared with ``SQLStore``, and what
only an async store can get wrong: a call that waits on the database must
leave the event loop free, and a call cancelled while waiting must change
nothing and give its connection back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.sql import SQLStore
from sokka.core.errors import SchemaError, Throttled, Unavailable, ValidationError
from sokka.core.task import Status, TaskSpec
from tests.databases import postgres_engine, postgres_url, test_prefix

TOPIC = "aio"
PID = "worker-1"


def _error(make: Callable[[], Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        make()
    return str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h/db", "postgresql+psycopg://u@h/db", "postgresql+psycopg_async://u@h/db"],
)
def test_postgresql_urls_reach_psycopgs_async_connections(url: str) -> None:
    store = AsyncSQLStore(url)
    assert store.async_engine is not None
    assert store.async_engine.dialect.is_async
    assert store.async_engine.dialect.driver == "psycopg"
    asyncio.run(store.aclose())


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+aiosqlite"])
def test_sqlite_urls_run_the_sync_driver_on_threads(scheme: str, tmp_path: Path) -> None:
    store = AsyncSQLStore(f"{scheme}:///{tmp_path / 'x.db'}")
    assert store.async_engine is None
    assert store.engine.dialect.driver == "pysqlite"
    asyncio.run(store.aclose())


@pytest.mark.parametrize(
    "url",
    ["", "mysql://u@h/db", "sqlite://", "sqlite:///:memory:", "postgresql://u@h", "no url", 42],
)
def test_a_bad_url_is_refused_with_sqlstores_own_error(url: Any) -> None:
    assert _error(lambda: AsyncSQLStore(url)) == _error(lambda: SQLStore(url))
    assert _error(lambda: AsyncSQLStore(url)).startswith("url: ")


@pytest.mark.parametrize("url", ["sqlite:///x.db", "postgresql://u@h/db"])
def test_a_bad_prefix_is_refused_naming_the_prefix(url: str) -> None:
    with pytest.raises(ValidationError, match=r"^prefix: must be 1 to 30"):
        AsyncSQLStore(url, prefix="Bad-Prefix")


def test_create_file_false_refuses_a_missing_sqlite_file_as_sqlstore_does(
    tmp_path: Path,
) -> None:
    """The sokka commands open their store so: a missing file is named, not created."""
    missing = tmp_path / "missing.db"
    url = f"sqlite:///{missing}"
    said = _error(lambda: AsyncSQLStore(url, create_file=False))
    assert said == _error(lambda: SQLStore(url, create_file=False))
    assert said.startswith(f"url: the SQLite file {missing} does not exist")
    assert list(tmp_path.iterdir()) == []
    sqlite3.connect(missing).close()  # the file now exists: it is opened, not refused

    async def main() -> None:
        async with AsyncSQLStore(url, create_file=False) as store:
            assert await store.schema_version() is None

    asyncio.run(main())


def test_a_store_without_a_schema_raises_schema_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncSQLStore(f"sqlite:///{tmp_path / 'empty.db'}") as store:
            assert await store.schema_version() is None
            with pytest.raises(SchemaError, match="sokka init"):
                await store.get_task("t-1")

    asyncio.run(main())


def test_an_unreachable_postgres_is_unavailable() -> None:
    async def main() -> None:
        # Port 1 on loopback: nothing listens, the connection is refused at once.
        url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
        async with AsyncSQLStore(url, connect_timeout_s=2) as store:
            with pytest.raises(Unavailable, match="cannot be reached"):
                await store.get_task("t-1")

    asyncio.run(main())


def _sqlite_store(path: Path, mode: str, **options: Any) -> AsyncSQLStore:
    """SQLite on threads (a URL), or through an aiosqlite ``AsyncEngine`` passed in."""
    if mode == "threads":
        return AsyncSQLStore(f"sqlite:///{path}", **options)
    return AsyncSQLStore(create_async_engine(f"sqlite+aiosqlite:///{path}"), **options)


SQLITE_MODES = ["threads", "aiosqlite"]


@pytest.mark.parametrize("mode", SQLITE_MODES)
def test_a_locked_sqlite_file_is_throttled_and_left_as_it_was(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "locked.db"
    SQLStore(f"sqlite:///{path}").create_schema()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the file's one writer lock, held

    async def main() -> None:
        async with _sqlite_store(path, mode, lock_timeout_ms=50) as store:
            with pytest.raises(Throttled, match="busy"):
                await store.create_task(TaskSpec(topic=TOPIC, task_id="t-1"))
            holder.execute("ROLLBACK")
            assert (await store.list_tasks()).tasks == ()

    try:
        asyncio.run(main())
    finally:
        holder.close()


@pytest.mark.parametrize("mode", SQLITE_MODES)
def test_sqlstore_and_asyncsqlstore_share_one_schema(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "shared.db"
    sync = SQLStore(f"sqlite:///{path}")

    async def main() -> None:
        async with _sqlite_store(path, mode) as store:
            await store.create_schema()
            sync.create_task(TaskSpec(topic=TOPIC, task_id="t-1"))
            (reserved,) = await store.reserve_tasks(TOPIC, PID)
            assert sync.get_task("t-1") == reserved

    try:
        asyncio.run(main())
    finally:
        sync.close()


@pytest.mark.parametrize("mode", SQLITE_MODES)
def test_a_call_waiting_on_sqlites_writer_lock_leaves_the_event_loop_free(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "busy.db"
    sync = SQLStore(f"sqlite:///{path}")
    sync.create_schema()
    sync.create_task(TaskSpec(topic=TOPIC, task_id="t-1"))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the file's one writer lock, held

    async def main() -> None:
        # A store that blocked the loop would wait out its lock timeout inside
        # create_task and fail with Throttled, the lock still held.
        async with _sqlite_store(path, mode, lock_timeout_ms=5_000) as store:
            creating = asyncio.create_task(store.create_task(TaskSpec(topic=TOPIC, task_id="t-2")))
            await asyncio.sleep(0.05)  # let the write reach the lock
            # Reads never wait for the writer (WAL): the loop runs one to completion.
            assert (await store.get_task("t-1")).status is Status.STARTING
            assert not creating.done()
            await asyncio.to_thread(holder.execute, "ROLLBACK")
            assert (await creating).task_id == "t-2"

    try:
        asyncio.run(main())
    finally:
        holder.close()
        sync.close()


# -- the event loop, on PostgreSQL (a row lock is a wait the test controls) --------


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting until {what}")


def _with_a_locked_task(body: Callable[[AsyncSQLStore, Any], Awaitable[None]]) -> None:
    """Run ``body(store, holder)`` with task ``t-1`` running and its row locked by
    ``holder``, a transaction on another connection (``holder.commit()`` frees it)."""
    engine = postgres_engine()
    prefix = test_prefix("aio_lock")
    sync = SQLStore(engine, prefix=prefix)
    sync.drop_schema()
    sync.create_schema()
    sync.create_task(TaskSpec(topic=TOPIC, task_id="t-1"))
    sync.create_task(TaskSpec(topic=TOPIC, task_id="t-2"))
    sync.reserve_tasks(TOPIC, PID)
    holder = engine.connect()
    holder.begin()
    holder.execute(sa.text(f"SELECT * FROM {prefix}tasks WHERE task_id = 't-1' FOR UPDATE"))

    async def main() -> None:
        async with AsyncSQLStore(postgres_url(), prefix=prefix, lock_timeout_ms=30_000) as store:
            await body(store, holder)

    try:
        asyncio.run(main())
    finally:
        holder.close()
        sync.drop_schema()


async def _waiting_on_a_lock(store: AsyncSQLStore) -> bool:
    assert store.async_engine is not None
    async with store.async_engine.connect() as conn:
        found = await conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database() "
                "AND query LIKE '%tasks%' AND pid <> pg_backend_pid()"
            )
        )
        return bool(found.scalar())


def test_a_call_waiting_on_a_row_lock_leaves_the_event_loop_free() -> None:
    async def body(store: AsyncSQLStore, holder: Any) -> None:
        terminating = asyncio.create_task(store.terminate("t-1", PID, 1))
        await _until(lambda: _waiting_on_a_lock(store), "terminate waits on the row lock")
        # Meanwhile the loop runs other calls to completion.
        assert (await store.get_task("t-2")).status is Status.STARTING
        assert (await store.reserve_tasks(TOPIC, "worker-2"))[0].task_id == "t-2"
        assert not terminating.done()
        await asyncio.to_thread(holder.commit)
        assert (await terminating).status is Status.TERMINATED

    _with_a_locked_task(body)


def test_a_call_cancelled_while_waiting_changes_nothing_and_frees_its_connection() -> None:
    async def body(store: AsyncSQLStore, holder: Any) -> None:
        before = await store.get_task("t-1")
        terminating = asyncio.create_task(store.terminate("t-1", PID, 1))
        await _until(lambda: _waiting_on_a_lock(store), "terminate waits on the row lock")
        terminating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await terminating
        await asyncio.to_thread(holder.commit)
        assert await store.get_task("t-1") == before
        assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert (await store.terminate("t-1", PID, 1)).status is Status.TERMINATED

    _with_a_locked_task(body)


@pytest.mark.parametrize("mode", ["sqlite", "postgres"])
def test_a_task_created_on_another_connection_rings_the_async_stores_waiters(
    tmp_path: Path, mode: str
) -> None:
    # Only the store's listener can hear the other store's change. On PostgreSQL the
    # async store's own connections live on its event loop, so its listener opens a
    # blocking connection of its own (with one of the async pool's, it failed).
    if mode == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'q.db'}", "sokka_"
    else:
        postgres_engine()  # skip (or fail under SOKKA_REQUIRE_POSTGRES) when unreachable
        url, prefix = postgres_url(), test_prefix("aio_waking")

    async def scenario() -> bool:
        store = AsyncSQLStore(url, prefix=prefix)
        await store.create_schema()
        writing = SQLStore(url, prefix=prefix)
        rung = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            unsubscribe = await asyncio.to_thread(
                store.subscribe_ready, TOPIC, lambda: loop.call_soon_threadsafe(rung.set)
            )
            try:
                await asyncio.to_thread(writing.create_task, TaskSpec(topic=TOPIC))
                async with asyncio.timeout(10):
                    await rung.wait()
                return True
            finally:
                unsubscribe()
        finally:
            writing.close()
            await store.drop_schema()
            await store.aclose()

    assert asyncio.run(scenario())
