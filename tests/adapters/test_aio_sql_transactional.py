"""``AsyncSQLStore.create_task(connection=)``: a task created inside the caller's
own async transaction, on SQLite (aiosqlite) and PostgreSQL (psycopg's async
driver).

The application has its own ``AsyncEngine``, as it would: the store is handed
one of its ``AsyncConnection``s (or an ``AsyncSession``), and the task exists
if and only if the application's transaction commits. A sync ``SQLStore`` on
the same database plays another process: what it sees is what a worker sees.
The rules (same database, nothing written on a refusal) are ``SQLStore``'s,
run by its own code; these tests check that the async path keeps them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.sql import SQLStore
from sokka.core.errors import NotFound, ValidationError
from sokka.core.task import Status, TaskSpec
from tests import databases

TOPIC = "orders"
_prefix_numbers = itertools.count()


@dataclass
class World:
    kind: str
    url: str  #: the application's async URL
    prefix: str
    worker: SQLStore  #: a sync store on the same database: what other processes see

    def run(self, body: Callable[[AsyncSQLStore, AsyncEngine], Awaitable[Any]]) -> Any:
        """Run ``body(store, app_engine)`` on a fresh event loop, both closed after."""

        async def main() -> Any:
            store = AsyncSQLStore(self.url, prefix=self.prefix)
            app = create_async_engine(self.url)
            try:
                return await body(store, app)
            finally:
                await app.dispose()
                await store.aclose()

        return asyncio.run(main())

    def orders(self) -> list[str]:
        with self.worker.engine.connect() as conn:
            table = f"{self.prefix}orders"
            return list(conn.execute(sa.text(f"SELECT id FROM {table} ORDER BY id")).scalars())

    def unseen(self, *task_ids: str) -> None:
        """None of ``task_ids`` is visible to another process."""
        for task_id in task_ids:
            with pytest.raises(NotFound):
                self.worker.get_task(task_id)
        assert list(self.worker.list_tasks().tasks) == []


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        url, sync_url, prefix = f"sqlite+aiosqlite:///{path}", f"sqlite:///{path}", "sokka_"
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        sync_url = databases.postgres_url()
        url = sync_url  # postgresql+psycopg: create_async_engine takes psycopg's async side
        prefix = databases.test_prefix(f"atx{next(_prefix_numbers)}")
    worker = SQLStore(sync_url, prefix=prefix)
    worker.create_schema()
    with worker.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {prefix}orders (id text PRIMARY KEY)")
    try:
        yield World(request.param, url, prefix, worker)
    finally:
        with worker.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {prefix}orders")
        if request.param == "postgres":
            worker.drop_schema()
        worker.close()


async def order(world: World, conn: AsyncConnection | AsyncSession, order_id: str) -> None:
    """The application's own write, in the same transaction as the task."""
    statement = sa.text(f"INSERT INTO {world.prefix}orders (id) VALUES (:id)")
    await conn.execute(statement, {"id": order_id})


def test_a_task_created_in_a_committed_transaction_exists_after_the_commit(
    world: World,
) -> None:
    async def body(store: AsyncSQLStore, app: AsyncEngine) -> None:
        async with app.begin() as conn:
            await order(world, conn, "o1")
            task = await store.create_task(
                TaskSpec(topic=TOPIC, task_id="t1", data={"order": "o1"}), connection=conn
            )
            assert task.status is Status.STARTING
            world.unseen("t1")

    world.run(body)
    assert world.orders() == ["o1"]
    (reserved,) = world.worker.reserve_tasks(TOPIC, "worker-1")
    assert (reserved.task_id, reserved.data) == ("t1", {"order": "o1"})


def test_a_task_created_in_a_rolled_back_transaction_does_not_exist(world: World) -> None:
    async def body(store: AsyncSQLStore, app: AsyncEngine) -> None:
        async with app.connect() as conn:
            transaction = await conn.begin()
            await order(world, conn, "o1")
            await store.create_task(TaskSpec(topic=TOPIC, task_id="t1"), connection=conn)
            await transaction.rollback()
        world.unseen("t1")
        # The id is free again: the rollback left nothing behind.
        assert (await store.create_task(TaskSpec(topic=TOPIC, task_id="t1"))).task_id == "t1"

    world.run(body)
    assert world.orders() == []


def test_a_batch_follows_the_transaction_both_ways(world: World) -> None:
    specs = [TaskSpec(topic=TOPIC, task_id=f"t{n}") for n in range(3)]

    async def body(store: AsyncSQLStore, app: AsyncEngine) -> None:
        async with app.connect() as conn:
            transaction = await conn.begin()
            results = await store.create_tasks(specs, connection=conn)
            assert all(r.unwrap().status is Status.STARTING for r in results)
            await transaction.rollback()
        world.unseen("t0", "t1", "t2")
        async with app.begin() as conn:
            await store.create_tasks(specs, connection=conn)

    world.run(body)
    reserved = world.worker.reserve_tasks(TOPIC, "worker-1", limit=10)
    assert sorted(t.task_id for t in reserved) == ["t0", "t1", "t2"]


def test_an_async_session_is_used_through_its_connection(world: World) -> None:
    async def body(store: AsyncSQLStore, app: AsyncEngine) -> None:
        async with AsyncSession(app) as session:
            await store.create_task(TaskSpec(topic=TOPIC, task_id="t1"), connection=session)
            world.unseen("t1")
            await session.rollback()
        world.unseen("t1")
        async with AsyncSession(app) as session:
            await order(world, session, "o2")
            await store.create_task(TaskSpec(topic=TOPIC, task_id="t2"), connection=session)
            await session.commit()

    world.run(body)
    assert world.orders() == ["o2"]
    assert world.worker.get_task("t2").status is Status.STARTING


async def refused(store: AsyncSQLStore, connection: object, rule: str) -> None:
    with pytest.raises(ValidationError) as raised:
        await store.create_task(TaskSpec(topic=TOPIC, task_id="t1"), connection=connection)
    assert raised.value.field == "connection"
    assert rule in str(raised.value)
    with pytest.raises(ValidationError) as raised:
        await store.create_tasks([TaskSpec(topic=TOPIC, task_id="t2")], connection=connection)
    assert raised.value.field == "connection"


def test_a_connection_to_another_database_is_refused(world: World, tmp_path: Path) -> None:
    async def body(store: AsyncSQLStore, app: AsyncEngine) -> None:
        other = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
        try:
            async with other.connect() as conn:
                await refused(store, conn, "must be on the store's database")
            async with AsyncSession(other) as session:
                await refused(store, session, "must be on the store's database")
        finally:
            await other.dispose()

    world.run(body)
    assert list(world.worker.list_tasks().tasks) == []


def test_what_is_not_an_async_connection_is_refused(world: World) -> None:
    async def body(store: AsyncSQLStore, app: AsyncEngine) -> None:
        rule = "must be a SQLAlchemy AsyncConnection or AsyncSession"
        await refused(store, app, rule)
        await refused(store, "sqlite:///app.db", rule)
        with world.worker.engine.connect() as sync_connection:  # a sync one: SQLStore's
            await refused(store, sync_connection, rule)

    world.run(body)
    assert list(world.worker.list_tasks().tasks) == []
