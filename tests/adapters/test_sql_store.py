"""What is particular to the SQL store: URLs, the schema, prefixes, error translation, plans.

The behaviour every store shares is in the contract suite (tests/adapters/contract/).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sokka.adapters.sql import SCHEMA_VERSION, SQLStore
from sokka.core.errors import SchemaError, Throttled, Unavailable, ValidationError
from sokka.core.task import Status, Task, TaskSpec
from tests.databases import postgres_engine, postgres_url, test_prefix


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


@pytest.fixture
def pg_url() -> str:
    postgres_engine()  # skip (or fail under SOKKA_REQUIRE_POSTGRES) when unreachable
    return postgres_url()


@pytest.fixture(params=["sqlite", "postgres"])
def url_and_prefix(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'q.db'}", "sokka_"
        return
    postgres_engine()
    prefix = test_prefix("sql")
    yield postgres_url(), prefix
    with SQLStore(postgres_url(), prefix=prefix) as store:
        store.drop_schema()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "must be a database URL"),
        ("not a url", "is not a database URL"),
        ("mysql://root@localhost/test", "the scheme 'mysql' is not supported"),
        ("sqlite:///:memory:", "SQLite needs a file"),
        ("sqlite://", "SQLite needs a file"),
        ("sqlite://relative.db", "write sqlite:///relative.db for a path relative"),
        ("sqlite://dir/q.db", "write sqlite:///dir/q.db for a path relative"),
        ("postgresql+psycopg://postgres@localhost", "must name a database"),
    ],
)
def test_an_unsupported_url_is_a_clear_error_listing_what_is_supported(url: str, says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        SQLStore(url)
    assert raised.value.field == "url"
    assert says in raised.value.rule
    assert "sqlite:///" in raised.value.rule
    assert "postgresql+psycopg://" in raised.value.rule
    assert "http://" in raised.value.rule
    assert "https://" in raised.value.rule


def test_a_store_that_must_not_create_its_file_names_the_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(ValidationError) as raised:
        SQLStore(f"sqlite:///{missing}", create_file=False)
    assert raised.value.field == "url"
    assert f"the SQLite file {missing} does not exist" in raised.value.rule
    assert list(tmp_path.iterdir()) == []


def test_a_store_that_must_not_create_its_file_never_creates_it_later(tmp_path: Path) -> None:
    """The check at opening is not all: a file deleted after it is not created by
    the first connection either (SQLite is opened read/write, without create)."""
    path = tmp_path / "q.db"
    with SQLStore(f"sqlite:///{path}") as creator:
        creator.create_schema()
        creator.create_task(TaskSpec(topic="q", task_id="kept"))
    with SQLStore(f"sqlite:///{path}", create_file=False) as store:
        assert store.get_task("kept").status is Status.STARTING
        store.create_task(TaskSpec(topic="q", task_id="written"))
    with SQLStore(f"sqlite:///{path}", create_file=False) as store:
        path.unlink()
        with pytest.raises(Unavailable):
            store.list_tasks()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("prefix", ["", "Upper_", "1x_", "x" * 31, "a-b", "a b"])
def test_a_bad_prefix_is_refused(sqlite_url: str, prefix: str) -> None:
    with pytest.raises(ValidationError, match="prefix"):
        SQLStore(sqlite_url, prefix=prefix)


def test_create_schema_is_idempotent_and_versioned(url_and_prefix: tuple[str, str]) -> None:
    url, prefix = url_and_prefix
    with SQLStore(url, prefix=prefix) as store:
        assert store.schema_version() is None
        assert store.create_schema() == SCHEMA_VERSION
        store.create_task(TaskSpec(topic="q", task_id="kept"))
        assert store.create_schema() == SCHEMA_VERSION
        assert store.schema_version() == SCHEMA_VERSION
        assert store.get_task("kept").status is Status.STARTING


def test_a_missing_schema_is_a_clear_error(url_and_prefix: tuple[str, str]) -> None:
    url, prefix = url_and_prefix
    with SQLStore(url, prefix=prefix) as store, pytest.raises(SchemaError, match="sokka init"):
        store.get_task("x")


def test_a_newer_schema_is_refused_never_downgraded(url_and_prefix: tuple[str, str]) -> None:
    url, prefix = url_and_prefix
    with SQLStore(url, prefix=prefix) as store:
        store.create_schema()
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {prefix}schema_version SET version = 99")
    with SQLStore(url, prefix=prefix) as fresh:
        with pytest.raises(SchemaError, match="version 99, newer than this sokka knows"):
            fresh.get_task("x")
        with pytest.raises(SchemaError, match="upgrade sokka"):
            fresh.create_schema()
        assert fresh.schema_version() == 99


def test_prefixes_keep_queues_apart_in_one_database(sqlite_url: str) -> None:
    with SQLStore(sqlite_url, prefix="a_") as a, SQLStore(sqlite_url, prefix="b_") as b:
        a.create_schema()
        b.create_schema()
        a.create_task(TaskSpec(topic="q", task_id="t1"))
        b.create_task(TaskSpec(topic="q", task_id="t1"))  # same id, other queue
        assert [t.task_id for t in a.reserve_tasks("q", "w")] == ["t1"]
        assert b.get_task("t1").status is Status.STARTING


def test_concurrent_create_schema_calls_all_succeed(pg_url: str) -> None:
    prefix = test_prefix("race")
    stores = [SQLStore(pg_url, prefix=prefix) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def create(store: SQLStore) -> None:
        barrier.wait()
        try:
            store.create_schema()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=create, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert stores[0].schema_version() == SCHEMA_VERSION
    finally:
        stores[0].drop_schema()
        for store in stores:
            store.close()


def test_an_unreachable_postgres_is_unavailable_not_a_driver_error() -> None:
    store = SQLStore("postgresql+psycopg://postgres@127.0.0.1:1/test", connect_timeout_s=1)
    with pytest.raises(Unavailable, match="cannot be reached"):
        store.get_task("t1")
    with pytest.raises(Unavailable):
        store.create_schema()


def test_a_locked_sqlite_database_is_throttled(sqlite_url: str) -> None:
    with SQLStore(sqlite_url, lock_timeout_ms=50) as store:
        store.create_schema()
        store.create_task(TaskSpec(topic="q", task_id="t1"))
        blocker = sa.create_engine(sqlite_url)
        with blocker.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(Throttled, match="busy"):
                store.reserve_tasks("q", "w")
            conn.exec_driver_sql("ROLLBACK")
        blocker.dispose()
        # nothing was changed, and the store works again once the lock is gone
        assert store.get_task("t1").status is Status.STARTING
        assert [t.task_id for t in store.reserve_tasks("q", "w")] == ["t1"]


def test_a_busy_postgres_row_lock_is_throttled(pg_url: str) -> None:
    prefix = test_prefix("lock")
    with SQLStore(pg_url, prefix=prefix, lock_timeout_ms=100) as store:
        store.create_schema()
        try:
            store.create_tasks([TaskSpec(topic="q", task_id="t1")])
            store.reserve_tasks("q", "w")
            with store.engine.connect() as conn, conn.begin():
                conn.exec_driver_sql(f"SELECT 1 FROM {prefix}tasks FOR UPDATE")
                with pytest.raises(Throttled):
                    store.terminate("t1", "w", 1)
            assert store.terminate("t1", "w", 1).status is Status.TERMINATED
        finally:
            store.drop_schema()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    with SQLStore(sqlite_url, lock_timeout_ms=1234) as store:
        store.create_schema()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_plans_use_the_partial_indexes(sqlite_url: str) -> None:
    with SQLStore(sqlite_url) as store:
        store.create_schema()
        with store.engine.connect() as conn:

            def plan(sql: str) -> str:
                rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
                return " | ".join(str(row[-1]) for row in rows)

            ready = plan(
                "SELECT seq FROM sokka_tasks WHERE topic = 'q' AND status = 'starting' "
                "ORDER BY seq LIMIT 10"
            )
            leased = plan(
                "SELECT seq FROM sokka_tasks WHERE status IN ('running', 'snoozed') "
                "AND seq > 0 ORDER BY seq LIMIT 10"
            )
        assert "USING INDEX sokka_tasks_ready" in ready
        assert "TEMP B-TREE" not in ready  # no sort: the index is in seq order
        assert "USING INDEX sokka_tasks_leased_all" in leased


def test_postgres_reservation_plan_uses_the_ready_index(pg_url: str) -> None:
    prefix = test_prefix("plan")
    with SQLStore(pg_url, prefix=prefix) as store:
        store.create_schema()
        try:
            with store.engine.begin() as conn:
                conn.exec_driver_sql(
                    f"INSERT INTO {prefix}tasks (task_id, task_group_id, topic, sub_topic, "
                    "description, data, status, record_ver, attempt, failures, errors, "
                    "created_at, updated_at) SELECT 'done' || g, 'done' || g, 'q', 'default', "
                    "'', 'null', 'terminated', 2, 1, 0, '[]', 0, 0 "
                    "FROM generate_series(1, 20000) AS g"
                )
                conn.exec_driver_sql(f"ANALYZE {prefix}tasks")
                rows = conn.exec_driver_sql(
                    f"EXPLAIN SELECT seq FROM {prefix}tasks WHERE topic = 'q' "
                    "AND status = 'starting' ORDER BY seq LIMIT 10 FOR UPDATE SKIP LOCKED"
                ).all()
            plan = "\n".join(row[0] for row in rows)
            assert f"{prefix}tasks_ready" in plan, plan
            assert "Seq Scan" not in plan, plan
        finally:
            store.drop_schema()


def test_the_columns_read_are_task_fields_in_order(sqlite_url: str) -> None:
    """Rows become tasks by position (``task_from_values``): the selected columns,
    after seq, must be Task's fields in declaration order (data is data_json, result
    is result_json)."""
    store = SQLStore(sqlite_url)
    names = [c.name for c in store._columns][1:]
    stored_as = {"data": "data_json", "result": "result_json"}
    assert [stored_as.get(n, n) for n in names] == [
        f.name for f in dataclasses.fields(Task)
    ]
    store.create_schema()
    spec = TaskSpec(topic="q", task_id="t1", data={"a": 1}, max_attempts=3, lease_time_ms=500)
    created = store.create_task(spec)
    (reserved,) = store.reserve_tasks("q", "w1")
    assert store.get_task("t1") == reserved
    assert (reserved.max_attempts, reserved.lease_time_ms, reserved.data) == (3, 500, {"a": 1})
    assert created.record_ver == 0
    store.close()
