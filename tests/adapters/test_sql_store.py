"""What is particular to the SQL store: URLs, the schema, prefixes, error translation, plans.

The behaviour every store shares is in the contract suite (tests/adapters/contract/).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from returns.result import Failure

from sokka.adapters.sql import SCHEMA_VERSION, SQLStore
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import SchemaError, StoreError, Throttled, Unavailable, ValidationError
from sokka.core.task import Status, Task, TaskSpec
from sokka.core.transitions import Snooze, Terminate
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


def test_an_sqlite_engine_of_your_own_with_one_shared_connection_works_too() -> None:
    """The hot calls run on driver connections the store keeps, except on an engine
    whose pool shares one connection or ties them to threads (an in-memory
    database's ``StaticPool``): there they run through SQLAlchemy, alike."""
    engine = sa.create_engine(
        "sqlite://", poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
    )
    with SQLStore(engine) as store:
        store.create_schema()
        store.create_tasks([TaskSpec(topic="q", task_id=f"t{i}") for i in range(3)])
        first, second = store.reserve_tasks("q", "w", 2)
        assert store.terminate(first.task_id, "w", 1).status is Status.TERMINATED
        assert store.extend_leases("w", [LeaseToken(second.task_id, 1)])[0].unwrap().record_ver
        assert [t.task_id for t in store.reserve_tasks("q", "w", 5)] == ["t2"]
        assert store.reserve_tasks("q", "w") == []


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
    is result_json, trace_context is trace_context_json)."""
    store = SQLStore(sqlite_url)
    names = [c.name for c in store._columns][1:]
    stored_as = {
        "data": "data_json", "result": "result_json", "trace_context": "trace_context_json",
    }  # fmt: skip
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


class DriverTrace:
    """What the driver runs on every connection an engine opens from now on, while
    ``sent`` is a list: it also sees the store's hot calls, which run below
    SQLAlchemy. SQLite: ``sqlite3``'s trace callback (BEGIN and COMMIT included);
    PostgreSQL: psycopg's cursors, each connection's ``cursor_factory`` one that
    notes what it executes (SQLAlchemy's cursors and the store's own alike)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.sent: list[str] | None = None
        trace = self

        def on_connect(dbapi: Any, _record: object) -> None:
            if engine.dialect.name == "sqlite":
                dbapi.set_trace_callback(self)
                return
            import psycopg

            class Traced(psycopg.Cursor[Any]):
                def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
                    conn = self.connection
                    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                    if idle and not conn.autocommit:
                        trace("BEGIN")  # psycopg sends it first, a round trip of its own
                    trace(str(query))
                    return super().execute(query, params, **kw)

            dbapi.cursor_factory = Traced

        sa.event.listen(engine, "connect", on_connect)

    def __call__(self, statement: str) -> None:
        if self.sent is not None:
            self.sent.append(statement)


def _statements(store: SQLStore, call: Callable[[], object], traced: DriverTrace) -> list[str]:
    """The first word (two for a claim or a set update) of every statement ``call`` sends
    (``traced``: the driver's own trace of the store's connections). PostgreSQL's
    BEGINs are kept (each is a round trip: the hot calls send none), SQLite's
    BEGIN and COMMIT are not (they are the transaction's own, in process)."""
    sent: list[str] = []
    traced.sent = sent
    try:
        call()
    finally:
        traced.sent = None
    words = []
    for statement in sent:
        first = statement.split()[0]
        if first == "UPDATE":
            kind = "claim" if " LIMIT " in statement else "set" if " FROM " in statement else "cas"
            words.append(f"UPDATE {kind}")
        elif first not in ("BEGIN", "COMMIT") or not store.single_writer:
            words.append(first)
    return words


def test_the_hot_calls_are_one_statement_each(url_and_prefix: tuple[str, str]) -> None:
    """Creating is one INSERT; claiming, one guarded UPDATE; finishing or extending a
    batch, one per kind of outcome; a refused element alone also takes the general
    path (read, apply). On PostgreSQL none but the general path opens a transaction
    (each statement is its own, in autocommit: no BEGIN)."""
    url, prefix = url_and_prefix
    with SQLStore(url, prefix=prefix) as store:
        traced = DriverTrace(store.engine)
        store.create_schema()
        # Creating is one INSERT, for one task (its VALUES) or a batch (as arrays on PostgreSQL).
        specs = [TaskSpec(topic="q", task_id=f"t{i}") for i in range(4)]
        assert _statements(store, lambda: store.create_task(specs[0]), traced) == ["INSERT"]
        assert _statements(store, lambda: store.create_tasks(specs[1:]), traced) == ["INSERT"]
        reserved: list[Task] = []
        look = ["SELECT"] if store.single_writer else []  # SQLite looks before it locks
        claim = lambda: reserved.extend(store.reserve_tasks("q", "w1", 4))  # noqa: E731
        assert _statements(store, claim, traced) == [*look, "UPDATE claim"]
        assert [t.task_id for t in reserved] == ["t0", "t1", "t2", "t3"]
        leases = [LeaseToken(t.task_id, t.attempt) for t in reserved]
        extend = lambda: store.extend_leases("w1", leases)  # noqa: E731
        assert _statements(store, extend, traced) == ["UPDATE set"]
        outcomes = [
            Finish(task_id="t0", event=Terminate(pid="w1", attempt=1)),
            Finish(task_id="t1", event=Snooze(pid="w1", attempt=1, snooze_ms=50)),
            Finish(task_id="t2", event=Terminate(pid="w1", attempt=7)),  # stale: refused
        ]
        answers: list[object] = []
        finish = lambda: answers.extend(store.finish_many(outcomes))  # noqa: E731
        # Terminates and snoozes: one UPDATE each; the refused one is read to say why.
        # On PostgreSQL the first kind is a statement of its own, the rest one transaction.
        begin = [] if store.single_writer else ["BEGIN"]
        assert _statements(store, finish, traced) == ["UPDATE set", *begin, "UPDATE set", "SELECT"]
        named = [type(a.failure()).__name__ if isinstance(a, Failure) else "ok" for a in answers]
        assert named == ["ok", "ok", "StaleAttempt"]
        assert store.get_task("t0").status is Status.TERMINATED
        assert store.get_task("t1").status is Status.SNOOZED
        assert store.get_task("t2").status is Status.RUNNING
        fail = lambda: store.fail("t3", "w1", 1, "boom")  # noqa: E731
        # Fail's effects depend on the task (its failure budget): read, apply, compare-and-set.
        assert _statements(store, fail, traced) == [*begin, "SELECT", "UPDATE cas"]
        store.drop_schema()


def test_a_claim_with_a_batch_of_outcomes_is_one_statement_on_postgres(
    url_and_prefix: tuple[str, str],
) -> None:
    """``reserve_and_finish``: the claim and the batch's terminates are ONE statement
    on PostgreSQL (one round trip, one commit), and one transaction on SQLite,
    where the two calls take two of each."""
    url, prefix = url_and_prefix
    with SQLStore(url, prefix=prefix) as store:
        traced = DriverTrace(store.engine)
        store.create_schema()
        store.create_tasks([TaskSpec(topic="q", task_id=f"t{i}") for i in range(4)])
        held = store.reserve_tasks("q", "w1", 2)
        done = [Finish(task_id=t.task_id, event=Terminate(pid="w1", attempt=1)) for t in held]
        answers: list[object] = []
        both = lambda: answers.extend(store.reserve_and_finish("q", "w1", 2, done))  # noqa: E731
        if store.single_writer:
            sent: list[str] = []
            traced.sent = sent
            both()
            traced.sent = None
            claim, finish = sent[1:3]
            assert [sent[0], sent[3:]] == ["BEGIN IMMEDIATE", ["COMMIT"]]
            assert " LIMIT " in claim
            assert finish.startswith("UPDATE")
            assert " FROM json_each" in finish
        else:
            assert _statements(store, both, traced) == ["WITH"]
        tasks, results = answers
        assert [t.task_id for t in tasks] == ["t2", "t3"]  # type: ignore[attr-defined]
        assert [r.unwrap().status for r in results] == [Status.TERMINATED] * 2  # type: ignore[attr-defined]
        store.drop_schema()


def test_create_schema_upgrades_a_version_1_database_in_place(
    url_and_prefix: tuple[str, str],
) -> None:
    """A database made by sokka 0.1 (schema 1: no paused topics, no results) keeps its tasks,
    is refused with a clear error until `sokka init` runs, then works as new."""
    url, prefix = url_and_prefix
    with SQLStore(url, prefix=prefix) as store:
        store.create_schema()
        store.create_task(TaskSpec(topic="q", task_id="kept"))
        with store.engine.begin() as conn:  # what version 1 had: no paused_topics, no result
            conn.exec_driver_sql(f"DROP TABLE {prefix}paused_topics")
            conn.exec_driver_sql(f"ALTER TABLE {prefix}tasks DROP COLUMN result")
            conn.exec_driver_sql(f"ALTER TABLE {prefix}tasks DROP COLUMN trace_context")
            conn.exec_driver_sql(f"UPDATE {prefix}schema_version SET version = 1")
    with SQLStore(url, prefix=prefix) as old:
        assert old.schema_version() == 1
        with pytest.raises(
            SchemaError, match=r"version 1, older than this sokka's \(4\): run `sokka init`"
        ):
            old.reserve_tasks("q", "w")
        assert old.create_schema() == SCHEMA_VERSION == 4
        assert old.schema_version() == SCHEMA_VERSION
        assert old.get_task("kept").status is Status.STARTING
        assert old.pause_topic("q") is True
        assert old.reserve_tasks("q", "w") == []
        assert old.create_schema() == SCHEMA_VERSION  # again: nothing to do
        assert old.paused_topics() == ["q"]
    with SQLStore(url, prefix=prefix) as fresh:  # a new process sees the upgrade
        fresh.resume_topic("q")
        assert [t.task_id for t in fresh.reserve_tasks("q", "w")] == ["kept"]


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows the scans of an EXPLAIN (ANALYZE, FORMAT JSON) plan produced or threw
    away by a filter, over every node (a scan that reads a backlog shows it here)."""
    own = 0
    if "Scan" in plan["Node Type"]:
        loops = plan.get("Actual Loops", 1)
        own = (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * loops
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.parametrize("analysed", [False, True], ids=["no statistics", "analysed"])
def test_a_postgres_claim_reads_about_the_rows_it_claims_not_the_backlog(
    pg_url: str, analysed: bool
) -> None:
    """A claim of 50 behind a backlog of 5,000 ready tasks reads about 50 rows,
    whatever the planner knows of the table. (The guard once restated in the
    UPDATE led PostgreSQL, on a table without statistics, to scan every ready
    row through the partial index and filter them by seq: each claim cost as
    much as the whole backlog.)"""
    prefix = test_prefix("claimplan")
    with SQLStore(pg_url, prefix=prefix) as store:
        store.create_schema()
        try:
            for start in range(0, 5000, 1000):
                store.create_tasks(
                    [TaskSpec(topic="q", task_id=f"t{i}") for i in range(start, start + 1000)]
                )
            if analysed:
                with store.engine.begin() as conn:
                    conn.exec_driver_sql(f"ANALYZE {prefix}tasks")
            assert len(store.reserve_tasks("q", "w", 50)) == 50  # some claimed rows too
            with store.engine.connect() as conn:
                explained = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + store._reserve_sql,
                    {"topic": "q", "limit": 50, "e_pid": "w", "now": 0},
                ).scalar_one()
                conn.rollback()
            plan = explained[0]["Plan"]
            assert plan["Actual Rows"] == 50
            assert _rows_read(plan) <= 4 * 50, json.dumps(plan, indent=1)
        finally:
            store.drop_schema()


def _grouped_store(store: SQLStore) -> None:
    """5,000 tasks that are their own group, and a group "g0" of 13: its own
    task (the id is the group) and twelve grouped under it, interleaved."""
    for start in range(0, 5000, 990):
        store.create_tasks(
            [TaskSpec(topic="q", task_id=f"t{i}") for i in range(start, min(5000, start + 990))]
            + ([TaskSpec(topic="q", task_id="g0")] if start == 0 else [])
            + [TaskSpec(topic="q", task_id=f"g0-{start}-{k}", task_group_id="g0") for k in (0, 1)]
        )


@pytest.mark.parametrize("analysed", [False, True], ids=["no statistics", "analysed"])
def test_a_postgres_group_lookup_reads_its_group_not_the_table(
    pg_url: str, analysed: bool
) -> None:
    """tasks_in_group reads the group's rows through two indexes (the group
    index holds only tasks grouped under another's id; the group's own task is
    found by id), whatever the planner knows of the table."""
    prefix = test_prefix("groupplan")
    with SQLStore(pg_url, prefix=prefix) as store:
        store.create_schema()
        try:
            _grouped_store(store)
            if analysed:
                with store.engine.begin() as conn:
                    conn.exec_driver_sql(f"ANALYZE {prefix}tasks")
            assert [t.task_id for t in store.tasks_in_group("g0")][:3] == [
                "g0", "g0-0-0", "g0-0-1",
            ]  # fmt: skip
            assert len(store.tasks_in_group("g0")) == 13
            assert [t.task_id for t in store.tasks_in_group("t7")] == ["t7"]
            with store.engine.connect() as conn:
                sql = str(store._select_group.compile(dialect=conn.dialect))
                explained = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + sql, {"group": "g0", "limit": 100}
                ).scalar_one()
            plan = explained[0]["Plan"]
            assert plan["Actual Rows"] == 13
            assert _rows_read(plan) <= 2 * 13, json.dumps(plan, indent=1)
        finally:
            store.drop_schema()


def test_ungrouped_tasks_leave_no_entry_in_the_group_index(
    url_and_prefix: tuple[str, str],
) -> None:
    """Most tasks are their own group: the group index holds none of them, so
    their creation and every status change write no entry there. On PostgreSQL
    the creation-time index is BRIN (a summary per block range, not an entry
    per row version)."""
    url, prefix = url_and_prefix
    with SQLStore(url, prefix=prefix) as store:
        store.create_schema()
        _grouped_store(store)
        for _ in range(10):
            store.reserve_tasks("q", "w", 100)
        claimed = [t.task_id for t in store.tasks_in_group("g0") if t.attempt]
        assert claimed == ["g0", "g0-0-0", "g0-0-1"]
        index = f"{prefix}tasks_group"
        with store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Entries of an index, counted through it (INDEXED BY fails if it cannot).
                entries = conn.exec_driver_sql(
                    f"SELECT count(*) FROM {prefix}tasks INDEXED BY {index} "
                    "WHERE task_group_id > '' AND task_group_id <> task_id"
                ).scalar_one()
                assert entries == 12
                return
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
            entries = conn.exec_driver_sql(
                f"SELECT tuple_count FROM pgstattuple('{index}')"
            ).scalar_one()
            created = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %(n)s",
                {"n": f"{prefix}tasks_created"},
            ).scalar_one()
        # The twelve grouped tasks, and a second version of the two of them the
        # 1,000 claims took; the 998 other claims wrote no entry here.
        assert entries == 12 + 2
        assert "USING brin (created_at)" in created


def test_an_sqlite_group_lookup_searches_two_indexes(sqlite_url: str) -> None:
    """On SQLite too, tasks_in_group finds grouped tasks through the partial
    group index and the group's own task by its id: no scan of the table."""
    with SQLStore(sqlite_url) as store:
        store.create_schema()
        _grouped_store(store)
        with store.engine.connect() as conn:
            sql = str(store._select_group.compile(dialect=conn.dialect))
            steps = [
                str(row[3])
                for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + sql, ("g0", 100, 0, "g0", "g0", 100, 0)
                )
            ]
    assert any("USING INDEX sokka_tasks_group (task_group_id=?)" in s for s in steps), steps
    assert any("(task_id=?)" in s for s in steps), steps
    assert not any(s.startswith("SCAN sokka_tasks") for s in steps), steps


def test_a_drivers_own_errors_translate_as_sqlalchemys_would() -> None:
    """The hot calls run below SQLAlchemy, so the driver's exceptions reach the store
    unwrapped: a lost connection is still ``Unavailable`` (retryable: a worker
    waits and tries again) and a lock timeout ``Throttled``, as through SQLAlchemy."""
    import sqlite3

    import psycopg

    from sokka.adapters.sql import _translate

    lost = psycopg.OperationalError("consuming input failed: server closed the connection")
    assert isinstance(_translate(lost), Unavailable)
    assert isinstance(_translate(psycopg.InterfaceError("the connection is closed")), Unavailable)
    assert isinstance(_translate(psycopg.errors.LockNotAvailable("lock timeout")), Throttled)
    assert isinstance(_translate(sqlite3.OperationalError("disk I/O error")), Unavailable)
    assert isinstance(_translate(sqlite3.OperationalError("database is locked")), Throttled)
    assert type(_translate(psycopg.DataError("invalid input syntax"))) is StoreError


def test_a_connection_lost_below_sqlalchemy_costs_one_failed_call_not_one_per_pooled_one() -> None:
    """PostgreSQL's hot calls borrow a pooled connection below SQLAlchemy. When the
    server has dropped the pool's connections (a restart, an admin's terminate),
    the first call on one fails as ``Unavailable`` (retryable) and the pool's
    other connections of that age are replaced at their checkout, as SQLAlchemy
    does on a disconnect: the next calls succeed, none on another dead connection."""
    admin = postgres_engine()
    prefix = test_prefix("lost")
    with SQLStore(postgres_url(), prefix=prefix, pool_size=3) as store:
        store.create_schema()
        store.create_tasks([TaskSpec(topic="q", task_id=f"t{i}") for i in range(6)])
        held = [store.engine.connect() for _ in range(3)]  # three connections in the pool
        pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in held]
        for conn in held:
            conn.close()
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM unnest(%(p)s) AS pid",
                                 {"p": pids})  # fmt: skip
        with pytest.raises(Unavailable):
            store.reserve_tasks("q", "w1", 1)
        claimed = [store.reserve_tasks("q", "w1", 1) for _ in range(3)]
        assert [len(tasks) for tasks in claimed] == [1, 1, 1]
        store.drop_schema()
