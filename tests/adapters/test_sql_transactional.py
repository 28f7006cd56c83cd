"""Creating tasks inside the caller's own transaction (``connection=``), on SQLite
and PostgreSQL.

The application has its own engine, as it would: the store is handed one of
its connections (or an ORM ``Session``), and the task exists if and only if
the application's transaction commits. A second ``SQLStore`` on the same
database plays the worker, so what it sees is what another process sees.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from sokka.adapters.sql import SQLStore
from sokka.core.errors import NotFound, ValidationError
from sokka.core.task import Status, TaskSpec
from tests import databases

TOPIC = "orders"
_prefix_numbers = itertools.count()


@dataclass
class World:
    kind: str
    store: SQLStore  #: the store the application creates tasks with
    worker: SQLStore  #: another store on the same database: what other processes see
    app: Engine  #: the application's own engine, with an ``orders`` table of its own


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'app.db'}", "sokka_"
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        url, prefix = databases.postgres_url(), databases.test_prefix(f"tx{next(_prefix_numbers)}")
    store, worker = SQLStore(url, prefix=prefix), SQLStore(url, prefix=prefix)
    app = sa.create_engine(url)
    orders = f"{prefix}orders"
    store.create_schema()
    with app.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {orders} (id text PRIMARY KEY)")
    try:
        yield World(request.param, store, worker, app)
    finally:
        with app.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {orders}")
        app.dispose()
        worker.close()
        if request.param == "postgres":
            store.drop_schema()
        store.close()


def order(world: World, conn: sa.Connection, order_id: str) -> None:
    """The application's own write, in the same transaction as the task."""
    conn.execute(
        sa.text(f"INSERT INTO {world.store._prefix}orders (id) VALUES (:id)"), {"id": order_id}
    )


def orders(world: World) -> list[str]:
    with world.app.connect() as conn:
        table = f"{world.store._prefix}orders"
        return list(conn.execute(sa.text(f"SELECT id FROM {table} ORDER BY id")).scalars())


def unseen(world: World, *task_ids: str) -> None:
    """None of ``task_ids`` is visible to another process (nor reservable)."""
    for task_id in task_ids:
        with pytest.raises(NotFound):
            world.worker.get_task(task_id)
    assert list(world.worker.list_tasks().tasks) == []
    if world.kind == "postgres":
        # SQLite has one writer: while the caller's transaction holds it, a
        # reservation (a write) would wait for it, so only PostgreSQL is asked.
        assert world.worker.reserve_tasks(TOPIC, "worker-1") == []


def test_a_task_created_in_a_committed_transaction_exists_after_the_commit(
    world: World,
) -> None:
    with world.app.begin() as conn:
        order(world, conn, "o1")
        task = world.store.create_task(
            TaskSpec(topic=TOPIC, task_id="t1", data={"order": "o1"}), connection=conn
        )
        assert task.status is Status.STARTING
        unseen(world, "t1")
    assert orders(world) == ["o1"]
    (reserved,) = world.worker.reserve_tasks(TOPIC, "worker-1")
    assert (reserved.task_id, reserved.data) == ("t1", {"order": "o1"})


def test_a_task_created_in_a_rolled_back_transaction_does_not_exist(world: World) -> None:
    with world.app.connect() as conn:
        transaction = conn.begin()
        order(world, conn, "o1")
        world.store.create_task(TaskSpec(topic=TOPIC, task_id="t1"), connection=conn)
        transaction.rollback()
    assert orders(world) == []
    unseen(world, "t1")
    # The id is free again: the rollback left nothing behind.
    assert world.store.create_task(TaskSpec(topic=TOPIC, task_id="t1")).task_id == "t1"


def test_a_batch_follows_the_transaction_both_ways(world: World) -> None:
    # More than one spec: PostgreSQL's batch insert (arrays through unnest) is used.
    specs = [TaskSpec(topic=TOPIC, task_id=f"t{n}") for n in range(3)]
    with world.app.connect() as conn:
        transaction = conn.begin()
        results = world.store.create_tasks(specs, connection=conn)
        assert all(r.unwrap().status is Status.STARTING for r in results)
        transaction.rollback()
    unseen(world, "t0", "t1", "t2")
    with world.app.begin() as conn:
        delayed = TaskSpec(topic=TOPIC, task_id="d1", delay_ms=1)
        world.store.create_tasks([*specs, delayed], connection=conn)
    reserved = world.worker.reserve_tasks(TOPIC, "worker-1", limit=10)
    assert sorted(t.task_id for t in reserved) == ["t0", "t1", "t2"]
    assert world.worker.get_task("d1").status is Status.SNOOZED


def test_a_session_is_used_through_its_connection(world: World) -> None:
    with Session(world.app) as session:
        world.store.create_task(TaskSpec(topic=TOPIC, task_id="t1"), connection=session)
        unseen(world, "t1")
        session.rollback()
    unseen(world, "t1")
    with Session(world.app) as session:
        order(world, session.connection(), "o2")
        world.store.create_task(TaskSpec(topic=TOPIC, task_id="t2"), connection=session)
        session.commit()
    assert orders(world) == ["o2"]
    assert world.worker.get_task("t2").status is Status.STARTING


def test_a_scoped_session_stands_for_its_current_session(world: World) -> None:
    # Flask-SQLAlchemy's db.session is a scoped_session: the task joins the
    # transaction of the session it holds now, and goes with its rollback.
    scoped = scoped_session(sessionmaker(world.app))
    try:
        world.store.create_task(TaskSpec(topic=TOPIC, task_id="t1"), connection=scoped)
        unseen(world, "t1")
        scoped.rollback()
        unseen(world, "t1")
        order(world, scoped.connection(), "o2")
        world.store.create_task(TaskSpec(topic=TOPIC, task_id="t2"), connection=scoped)
        scoped.commit()
    finally:
        scoped.remove()
    assert orders(world) == ["o2"]
    assert world.worker.get_task("t2").status is Status.STARTING


def test_an_id_already_stored_is_refused_inside_the_transaction_too(world: World) -> None:
    world.store.create_task(TaskSpec(topic=TOPIC, task_id="t1", data=1))
    with world.app.begin() as conn:
        (result,) = world.store.create_tasks(
            [TaskSpec(topic=TOPIC, task_id="t1", data=2)], connection=conn
        )
    assert "already exists" in str(result.failure())
    assert world.worker.get_task("t1").data == 1


def refused_connection(world: World, connection: object, rule: str) -> None:
    with pytest.raises(ValidationError) as raised:
        world.store.create_task(TaskSpec(topic=TOPIC, task_id="t1"), connection=connection)
    assert raised.value.field == "connection"
    assert rule in str(raised.value)
    with pytest.raises(ValidationError) as raised:
        world.store.create_tasks([TaskSpec(topic=TOPIC, task_id="t2")], connection=connection)
    assert raised.value.field == "connection"
    assert list(world.worker.list_tasks().tasks) == []


def test_a_connection_to_another_database_is_refused(world: World, tmp_path: Path) -> None:
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with other.connect() as conn:
            refused_connection(world, conn, "must be on the store's database")
        with Session(other) as session:
            refused_connection(world, session, "must be on the store's database")
    finally:
        other.dispose()
    # A different database on the same server is another database too.
    assert world.store.engine.url.database is not None
    elsewhere = sa.create_engine(world.store.engine.url.set(database="elsewhere"))
    try:
        with Session(elsewhere) as session:
            # Refused from the URL alone: no connection to "elsewhere" is opened.
            refused_connection(world, session, "must be on the store's database")
    finally:
        elsewhere.dispose()


def test_what_is_not_a_connection_is_refused(world: World) -> None:
    refused_connection(world, world.app, "must be a SQLAlchemy Connection or Session")
    refused_connection(world, "sqlite:///app.db", "must be a SQLAlchemy Connection or Session")
    with Session() as unbound:
        refused_connection(world, unbound, "it has no bind")
