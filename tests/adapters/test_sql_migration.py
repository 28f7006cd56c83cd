"""Schema upgrades on real old databases: version 1 -> 4 (through 2: the
``result`` column and the paused topics), version 2 -> 4 (through 3: the
``trace_context`` column) and version 3 -> 4 (the group index for grouped
tasks only, BRIN on ``created_at`` on PostgreSQL).

The old databases are built here from each version's own DDL (what that
version's ``create_schema`` wrote), so the upgrade is tested against what
exists in the field, not against this code's idea of it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sokka.adapters.sql import SCHEMA_VERSION, SQLStore
from sokka.adapters.store import TaskFilter
from sokka.core.errors import SchemaError, SokkaError
from sokka.core.task import Status, TaskSpec
from tests.databases import postgres_engine, postgres_url, test_prefix

#: Version 1's tables, as its create_schema made them ({p}: the prefix; {seq} and
#: {json}: the column types that differ between SQLite and PostgreSQL).
V1_DDL = """
CREATE TABLE {p}tasks (
    seq {seq},
    task_id VARCHAR(128) NOT NULL,
    task_group_id VARCHAR(128) NOT NULL,
    topic VARCHAR(128) NOT NULL,
    sub_topic VARCHAR(128) NOT NULL,
    description TEXT NOT NULL,
    data {json} NOT NULL,
    status VARCHAR(16) NOT NULL,
    pid VARCHAR(128),
    record_ver BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    max_attempts INTEGER,
    lease_time_ms BIGINT,
    timeout_ms BIGINT,
    snooze_time_ms BIGINT,
    error TEXT,
    errors TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (seq),
    CONSTRAINT {p}tasks_status
        CHECK (status IN ('starting', 'running', 'snoozed', 'failed', 'terminated')),
    UNIQUE (task_id)
);
CREATE INDEX {p}tasks_ready ON {p}tasks (topic, seq) WHERE status = 'starting';
CREATE INDEX {p}tasks_leased ON {p}tasks (topic, seq) WHERE status IN ('running', 'snoozed');
CREATE INDEX {p}tasks_group ON {p}tasks (task_group_id, seq);
CREATE INDEX {p}tasks_created ON {p}tasks (created_at);
CREATE INDEX {p}tasks_leased_all ON {p}tasks (seq) WHERE status IN ('running', 'snoozed');
CREATE INDEX {p}tasks_topic ON {p}tasks (topic, sub_topic, status, seq);
CREATE TABLE {p}schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL);
INSERT INTO {p}schema_version (version, applied_at) VALUES (1, 1000);
INSERT INTO {p}tasks (task_id, task_group_id, topic, sub_topic, description, data, status,
    pid, record_ver, attempt, failures, errors, created_at, updated_at)
VALUES ('old-done', 'old-done', 'q', 'default', '', '{{"n":1}}', 'terminated',
    'w1', 2, 1, 0, '[]', 1000, 1001);
INSERT INTO {p}tasks (task_id, task_group_id, topic, sub_topic, description, data, status,
    pid, record_ver, attempt, failures, errors, created_at, updated_at)
VALUES ('old-ready', 'old-ready', 'q', 'default', '', 'null', 'starting',
    NULL, 0, 0, 0, '[]', 1002, 1002);
"""

#: Version 2's tables, as its create_schema made them: version 1's with each
#: task's result, and the paused topics.
V2_DDL = """
CREATE TABLE {p}tasks (
    seq {seq},
    task_id VARCHAR(128) NOT NULL,
    task_group_id VARCHAR(128) NOT NULL,
    topic VARCHAR(128) NOT NULL,
    sub_topic VARCHAR(128) NOT NULL,
    description TEXT NOT NULL,
    data {json} NOT NULL,
    status VARCHAR(16) NOT NULL,
    pid VARCHAR(128),
    record_ver BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    max_attempts INTEGER,
    lease_time_ms BIGINT,
    timeout_ms BIGINT,
    snooze_time_ms BIGINT,
    error TEXT,
    errors TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    result {json},
    PRIMARY KEY (seq),
    CONSTRAINT {p}tasks_status
        CHECK (status IN ('starting', 'running', 'snoozed', 'failed', 'terminated')),
    UNIQUE (task_id)
);
CREATE INDEX {p}tasks_ready ON {p}tasks (topic, seq) WHERE status = 'starting';
CREATE INDEX {p}tasks_leased ON {p}tasks (topic, seq) WHERE status IN ('running', 'snoozed');
CREATE INDEX {p}tasks_group ON {p}tasks (task_group_id, seq);
CREATE INDEX {p}tasks_created ON {p}tasks (created_at);
CREATE INDEX {p}tasks_leased_all ON {p}tasks (seq) WHERE status IN ('running', 'snoozed');
CREATE INDEX {p}tasks_topic ON {p}tasks (topic, sub_topic, status, seq);
CREATE TABLE {p}paused_topics (
    topic VARCHAR(128) NOT NULL,
    paused_at BIGINT NOT NULL,
    PRIMARY KEY (topic)
);
CREATE TABLE {p}schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL);
INSERT INTO {p}schema_version (version, applied_at) VALUES (2, 1000);
INSERT INTO {p}tasks (task_id, task_group_id, topic, sub_topic, description, data, status,
    pid, record_ver, attempt, failures, errors, created_at, updated_at, result)
VALUES ('old-done', 'old-done', 'q', 'default', '', '{{"n":1}}', 'terminated',
    'w1', 2, 1, 0, '[]', 1000, 1001, '{{"kept":1}}');
INSERT INTO {p}tasks (task_id, task_group_id, topic, sub_topic, description, data, status,
    pid, record_ver, attempt, failures, errors, created_at, updated_at)
VALUES ('old-ready', 'old-ready', 'q', 'default', '', 'null', 'starting',
    NULL, 0, 0, 0, '[]', 1002, 1002);
INSERT INTO {p}paused_topics (topic, paused_at) VALUES ('held', 1003);
"""

#: Version 3's tables: version 2's and the trace context; a task in another's group.
V3_DDL = """
CREATE TABLE {p}tasks (
    seq {seq},
    task_id VARCHAR(128) NOT NULL,
    task_group_id VARCHAR(128) NOT NULL,
    topic VARCHAR(128) NOT NULL,
    sub_topic VARCHAR(128) NOT NULL,
    description TEXT NOT NULL,
    data {json} NOT NULL,
    status VARCHAR(16) NOT NULL,
    pid VARCHAR(128),
    record_ver BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    max_attempts INTEGER,
    lease_time_ms BIGINT,
    timeout_ms BIGINT,
    snooze_time_ms BIGINT,
    error TEXT,
    errors TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    result {json},
    trace_context TEXT,
    PRIMARY KEY (seq),
    CONSTRAINT {p}tasks_status
        CHECK (status IN ('starting', 'running', 'snoozed', 'failed', 'terminated')),
    UNIQUE (task_id)
);
CREATE INDEX {p}tasks_ready ON {p}tasks (topic, seq) WHERE status = 'starting';
CREATE INDEX {p}tasks_leased ON {p}tasks (topic, seq) WHERE status IN ('running', 'snoozed');
CREATE INDEX {p}tasks_group ON {p}tasks (task_group_id, seq);
CREATE INDEX {p}tasks_created ON {p}tasks (created_at);
CREATE INDEX {p}tasks_leased_all ON {p}tasks (seq) WHERE status IN ('running', 'snoozed');
CREATE INDEX {p}tasks_topic ON {p}tasks (topic, sub_topic, status, seq);
CREATE TABLE {p}paused_topics (
    topic VARCHAR(128) NOT NULL,
    paused_at BIGINT NOT NULL,
    PRIMARY KEY (topic)
);
CREATE TABLE {p}schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL);
INSERT INTO {p}schema_version (version, applied_at) VALUES (3, 1000);
INSERT INTO {p}tasks (task_id, task_group_id, topic, sub_topic, description, data, status,
    pid, record_ver, attempt, failures, errors, created_at, updated_at, result)
VALUES ('old-done', 'old-done', 'q', 'default', '', '{{"n":1}}', 'terminated',
    'w1', 2, 1, 0, '[]', 1000, 1001, '{{"kept":1}}');
INSERT INTO {p}tasks (task_id, task_group_id, topic, sub_topic, description, data, status,
    pid, record_ver, attempt, failures, errors, created_at, updated_at)
VALUES ('old-ready', 'old-ready', 'q', 'default', '', 'null', 'starting',
    NULL, 0, 0, 0, '[]', 1002, 1002);
INSERT INTO {p}tasks (task_id, task_group_id, topic, sub_topic, description, data, status,
    pid, record_ver, attempt, failures, errors, created_at, updated_at)
VALUES ('old-grouped', 'old-ready', 'q', 'default', '', 'null', 'starting',
    NULL, 0, 0, 0, '[]', 1004, 1004);
INSERT INTO {p}paused_topics (topic, paused_at) VALUES ('held', 1003);
"""

_TYPES = {
    "sqlite": {"seq": "INTEGER NOT NULL", "json": "TEXT"},
    "postgresql": {"seq": "BIGINT GENERATED BY DEFAULT AS IDENTITY", "json": "JSON"},
}


def _build(url: str, prefix: str, ddl_text: str) -> None:
    engine = sa.create_engine(url)
    ddl = ddl_text.format(p=prefix, **_TYPES[engine.dialect.name])
    with engine.begin() as conn:
        for statement in ddl.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    engine.dispose()


def _old_database(
    request: pytest.FixtureRequest, tmp_path: Path, name: str, ddl: str
) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / (name + '.db')}", "sokka_"
    else:
        postgres_engine()  # skip (or fail under SOKKA_REQUIRE_POSTGRES) when unreachable
        url, prefix = postgres_url(), test_prefix(name)
    _build(url, prefix, ddl)
    yield url, prefix
    if request.param == "postgres":
        with SQLStore(url, prefix=prefix) as store:
            store.drop_schema()


@pytest.fixture(params=["sqlite", "postgres"])
def v1(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database of schema version 1 with two tasks in it: (url, prefix)."""
    yield from _old_database(request, tmp_path, "v1", V1_DDL)


@pytest.fixture(params=["sqlite", "postgres"])
def v3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database of schema version 3: version 2's, and a task grouped under
    another's id: (url, prefix)."""
    yield from _old_database(request, tmp_path, "v3", V3_DDL)


@pytest.fixture(params=["sqlite", "postgres"])
def v2(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database of schema version 2 with two tasks (one with a result) and a
    paused topic in it: (url, prefix)."""
    yield from _old_database(request, tmp_path, "v2", V2_DDL)


def test_create_schema_upgrades_a_version_1_database_in_place(v1: tuple[str, str]) -> None:
    url, prefix = v1
    with SQLStore(url, prefix=prefix) as store:
        assert store.schema_version() == 1
        assert store.create_schema() == SCHEMA_VERSION == 4
        assert store.schema_version() == 4
        # The old tasks are kept, with no result; the new column takes one.
        old = store.get_task("old-done")
        assert (old.status, old.data, old.result, old.record_ver) == (
            Status.TERMINATED, {"n": 1}, None, 2,
        )  # fmt: skip
        (ready,) = store.reserve_tasks("q", "w2")
        assert ready.task_id == "old-ready"
        done = store.terminate("old-ready", "w2", 1, {"sent": True})
        assert store.get_task("old-ready").result == {"sent": True} == done.result
        store.create_task(TaskSpec(topic="q", task_id="new"))
        assert store.get_task("new").result is None
        # Running it again changes nothing.
        assert store.create_schema() == 4
        assert store.get_task("old-ready").result == {"sent": True}
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = conn.exec_driver_sql(f"SELECT version FROM {prefix}schema_version").all()
    engine.dispose()
    assert versions == [(4,)]  # the one version row is updated, not added to


def test_a_version_1_database_is_refused_until_upgraded(v1: tuple[str, str]) -> None:
    url, prefix = v1
    with SQLStore(url, prefix=prefix) as store:
        with pytest.raises(SchemaError, match="schema version 1, older than this sokka's") as e:
            store.get_task("old-done")
        assert "sokka init" in str(e.value)
        assert store.schema_version() == 1  # nothing was changed


def test_sokka_init_upgrades_a_version_1_database_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    _build(url, "sokka_", V1_DDL)
    run = subprocess.run(
        [sys.executable, "-m", "sokka", "init", "--db", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "sokka schema version 4 upgraded from version 1" in run.stdout
    with SQLStore(url) as store:
        assert store.schema_version() == 4
        assert store.get_task("old-done").result is None


def test_create_schema_upgrades_a_version_2_database_in_place(v2: tuple[str, str]) -> None:
    url, prefix = v2
    context = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with SQLStore(url, prefix=prefix) as store:
        assert store.schema_version() == 2
        with pytest.raises(SchemaError, match=r"version 2, older than this sokka's \(4\)"):
            store.get_task("old-done")
        assert store.create_schema() == SCHEMA_VERSION == 4
        # The old tasks keep their results, and have no trace context; the paused
        # topic stays paused.
        old = store.get_task("old-done")
        assert (old.status, old.result, old.trace_context) == (Status.TERMINATED, {"kept": 1}, None)
        assert store.paused_topics() == ["held"]
        (ready,) = store.reserve_tasks("q", "w2")
        assert (ready.task_id, ready.trace_context) == ("old-ready", None)
        # The new column takes a context, through create_task and create_tasks.
        store.create_task(TaskSpec(topic="q", task_id="new", trace_context=context))
        (made,) = store.create_tasks([TaskSpec(topic="q", task_id="new2", trace_context=context)])
        assert made.unwrap().trace_context == context
        assert store.get_task("new").trace_context == context
        assert store.create_schema() == 4  # again: nothing to do
        assert store.get_task("new2").trace_context == context
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = conn.exec_driver_sql(f"SELECT version FROM {prefix}schema_version").all()
        column = conn.exec_driver_sql(
            f"SELECT trace_context FROM {prefix}tasks WHERE task_id = 'new'"
        ).scalar()
    engine.dispose()
    assert versions == [(4,)]
    assert column == (
        '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
    )  # canonical JSON text


def test_a_failed_upgrade_step_leaves_a_version_2_database_as_it_was(v2: tuple[str, str]) -> None:
    """The step and the version row are one transaction: a database whose column is
    already there (made by hand) fails the ALTER, and stays at version 2, unchanged."""
    url, prefix = v2
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {prefix}tasks ADD COLUMN trace_context INTEGER")
    engine.dispose()
    with SQLStore(url, prefix=prefix) as store:
        with pytest.raises(SokkaError, match=r"(?i)duplicate|already exists"):
            store.create_schema()
        assert store.schema_version() == 2


def test_sokka_init_upgrades_a_version_2_database_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v2.db'}"
    _build(url, "sokka_", V2_DDL)
    run = subprocess.run(
        [sys.executable, "-m", "sokka", "init", "--db", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "sokka schema version 4 upgraded from version 2" in run.stdout
    with SQLStore(url) as store:
        assert store.get_task("old-done").trace_context is None


def _indexes(url: str, prefix: str) -> dict[str, str]:
    """The tasks table's indexes by name, as the database describes them."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                (f"{prefix}tasks",),
            ).all()
        else:
            rows = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s",
                {"t": f"{prefix}tasks"},
            ).all()
    engine.dispose()
    return {str(name).removeprefix(prefix): str(sql) for name, sql in rows if sql}


def test_create_schema_upgrades_a_version_3_database_in_place(v3: tuple[str, str]) -> None:
    """Version 4 rebuilds two indexes: the group index keeps only tasks grouped
    under another's id, and on PostgreSQL the creation-time index is BRIN. The
    tasks and what finds them are as before."""
    url, prefix = v3
    before = _indexes(url, prefix)
    assert "<>" not in before["tasks_group"]
    with SQLStore(url, prefix=prefix) as store:
        assert store.schema_version() == 3
        with pytest.raises(SchemaError, match=r"version 3, older than this sokka's \(4\)"):
            store.tasks_in_group("old-ready")
        assert store.create_schema() == SCHEMA_VERSION == 4
        assert [t.task_id for t in store.tasks_in_group("old-ready")] == [
            "old-ready", "old-grouped",
        ]  # fmt: skip
        assert [t.task_id for t in store.tasks_in_group("old-done")] == ["old-done"]
        listed = store.list_tasks(TaskFilter(task_group_id="old-ready"))
        assert [t.task_id for t in listed.tasks] == ["old-ready", "old-grouped"]
        assert [t.task_id for t in store.reserve_tasks("q", "w", 5)] == [
            "old-ready", "old-grouped",
        ]  # fmt: skip
        assert store.create_schema() == 4  # again: nothing to do
    after = _indexes(url, prefix)
    assert set(after) == set(before)  # the same indexes, by name
    # PostgreSQL shows the predicate with parentheses and casts.
    shown = after["tasks_group"].replace("::text", "").replace("(", "").replace(")", "")
    assert "WHERE task_group_id <> task_id" in shown
    if url.startswith("postgresql"):
        assert "USING brin (created_at)" in after["tasks_created"]
    for unchanged in ("tasks_ready", "tasks_leased", "tasks_leased_all", "tasks_topic"):
        assert after[unchanged] == before[unchanged]
