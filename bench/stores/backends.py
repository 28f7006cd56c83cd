"""The stores under test: memory, SQLite and PostgreSQL.

A SQL store comes with three identical tables (made by the store's own
``create_schema()`` under three prefixes): the store's, the ceiling's and the
minimal loop's, given the same tasks at the same moments. SQLite's are files
in a temporary directory; PostgreSQL's are run-private table prefixes,
dropped at the end.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from bench.harness import PgServer
from bench.stores.ceiling import MinimalLoop, RawStore, Statements
from bench.stores.common import (
    BATCH,
    LEASED_TOPIC,
    PAGE,
    PID,
    TOPIC,
    Row,
    Settings,
    add_through,
    counts_through,
    load_postgres,
    load_sqlite,
    now_ms,
    run_tag,
    task_rows,
)
from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from sokka.core.commands import LeaseToken


class Backend:
    """One store under test, with its ceiling and minimal loop when it is a SQL store."""

    name: str
    label: str
    store: TaskStore
    raw: RawStore | None = None
    minimal: MinimalLoop | None = None
    tokens: list[LeaseToken]
    sides: tuple[str, ...] = ("store",)

    def add(self, status: str, topic: str, count: int) -> None:
        """Give every side's table ``count`` identical tasks in ``status``."""
        raise NotImplementedError

    def counts(self, side: str, topic: str) -> dict[str, int]:
        """Tasks of ``topic`` by status, in ``side``'s table."""
        raise NotImplementedError

    def finish_plan_rows(self) -> None:
        raise NotImplementedError

    def plans(self) -> list[tuple[str, str, list[str]]]:
        return []

    def close(self) -> None:
        pass


class MemoryBackend(Backend):
    def __init__(self, settings: Settings) -> None:
        self.name = self.label = "memory"
        self.store = MemoryStore()
        self.tokens = []

    def add(self, status: str, topic: str, count: int) -> None:
        running = add_through(self.store, status, topic, count, "memory")
        self.tokens += [LeaseToken(t.task_id, t.attempt) for t in running]

    def counts(self, side: str, topic: str) -> dict[str, int]:
        return counts_through(self.store, topic)


class SqlBackend(Backend):
    """Three identical tables: the store's, the ceiling's, the minimal loop's."""

    sides = ("store", "ceiling", "minimal")
    stores: dict[str, SQLStore]
    prefixes: dict[str, str]
    tables: dict[str, str]
    statements: Statements

    def _connect(self, side: str) -> Any:
        raise NotImplementedError

    def _setup(self, url_for: Callable[[str], str], prefixes: dict[str, str]) -> None:
        self.stores = {}
        for side, prefix in prefixes.items():
            sql_store = SQLStore(url_for(side), prefix=prefix)
            self.stores[side] = sql_store
            sql_store.drop_schema()
            sql_store.create_schema()
        self.store = self.stores["store"]
        self.prefixes = prefixes
        self.tables = {side: f"{prefix}tasks" for side, prefix in prefixes.items()}
        pg = self.name == "postgres"
        self.statements = Statements(self.tables["store"], pg)
        self.raw = RawStore(self._connect("ceiling"), Statements(self.tables["ceiling"], pg))
        self.minimal = MinimalLoop(self._connect("minimal"), self.tables["minimal"], pg)

    def leased_tokens(self) -> list[LeaseToken]:
        rows = self._query(
            "store",
            f"SELECT task_id, attempt FROM {self.tables['store']} WHERE topic = {self._p} "
            "AND status = 'running' ORDER BY seq",
            (LEASED_TOPIC,),
        )
        return [LeaseToken(task_id, attempt) for task_id, attempt in rows]

    _p = "?"

    def _query(self, side: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _execute(self, side: str, sql: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def counts(self, side: str, topic: str) -> dict[str, int]:
        rows = self._query(
            side,
            f"SELECT status, count(*) FROM {self.tables[side]} WHERE topic = {self._p} "
            "GROUP BY status",
            (topic,),
        )
        return {status: int(n) for status, n in rows}

    def finish_plan_rows(self) -> None:
        """Terminate the ready tasks the plans were taken with, on every table alike."""
        for side, table in self.tables.items():
            self._execute(
                side,
                f"UPDATE {table} SET status = 'terminated', pid = {self._p}, record_ver = 2, "
                f"attempt = 1 WHERE topic = {self._p} AND status = 'starting'",
                (PID, TOPIC),
            )

    def _driver_connections(self) -> list[Any]:
        """The ceiling's and the minimal loop's connections."""
        return [side.conn for side in (self.raw, self.minimal) if side is not None]

    def close(self) -> None:
        for sql_store in self.stores.values():
            sql_store.close()


class SQLiteBackend(SqlBackend):
    def __init__(self, settings: Settings, directory: str) -> None:
        self.name = "sqlite"
        self.directory = directory
        self.paths = {side: os.path.join(directory, f"{side}.db") for side in self.sides}
        self.label = f"sqlite (files in {directory}; SQLite {sqlite3.sqlite_version})"
        self.loaders: dict[str, sqlite3.Connection] = {}
        run = run_tag()
        prefixes = {side: f"{run}_{side[0]}_" for side in self.sides}
        self._setup(lambda side: f"sqlite:///{self.paths[side]}", prefixes)
        for side in self.sides:
            self.loaders[side] = self._connect(side)

    def _connect(self, side: str) -> sqlite3.Connection:
        # As SQLStore's engine connects: transactions begun by hand, and the
        # pragmas its connections carry (WAL, synchronous, busy timeout, foreign
        # keys), read from a live connection of the store's own engine.
        conn = sqlite3.connect(self.paths[side], isolation_level=None)
        for name, value in self._store_pragmas().items():
            conn.execute(f"PRAGMA {name}={value}")
        return conn

    def _store_pragmas(self) -> dict[str, Any]:
        with self.stores["store"].engine.connect() as conn:
            return {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }

    def add(self, status: str, topic: str, count: int) -> None:
        rows = task_rows(topic, status, count)
        for side, conn in self.loaders.items():
            load_sqlite(conn, self.tables[side], rows)

    def _query(self, side: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self.loaders[side].execute(sql, params).fetchall())

    def _execute(self, side: str, sql: str, params: Sequence[Any] = ()) -> None:
        self.loaders[side].execute(sql, params)

    def plans(self) -> list[tuple[str, str, list[str]]]:
        found = []
        params: Sequence[Any] | dict[str, Any]
        for label, sql, params in (
            (
                "reserve_tasks: look (SELECT seq)",
                self.statements.ready_look,
                (TOPIC, TOPIC, BATCH, 0),
            ),
            ("reserve_tasks: claim (UPDATE ... RETURNING)", self.statements.claim, claim_params()),
            ("list_leased_tasks: SELECT leased", self.statements.leased, (0, PAGE + 1, 0)),
        ):
            rows = self.loaders["store"].execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            depth = {0: -1}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, -1) + 1
                lines.append("  " * depth[node] + str(detail))
            found.append((label, sql, lines))
        return found

    def close(self) -> None:
        for conn in (*self.loaders.values(), *self._driver_connections()):
            conn.close()
        super().close()


class PostgresBackend(SqlBackend):
    _p = "%s"

    def __init__(self, settings: Settings, url: str) -> None:
        self.name = "postgres"
        self.url = url
        self.server = PgServer(url)
        self.loader = self.server.connect()
        self.label = self.server.label(self.loader)
        run = run_tag()
        prefixes = {side: f"{run}_{side[0]}_" for side in self.sides}
        self.stores = {}
        try:
            self._setup(lambda side: url, prefixes)
        except Exception:
            self._drop()
            self.loader.close()
            raise

    def _connect(self, side: str) -> Any:
        # The session settings SQLStore's connections carry (lock timeout, idle
        # transaction timeout), read from a live connection of its engine. The
        # ceiling stays transactional (BEGIN is sent before the first
        # statement, as under SQLAlchemy); the minimal loop is autocommit.
        with self.stores["store"].engine.connect() as conn:
            options = " ".join(
                f"-c {name}={conn.exec_driver_sql(f'SHOW {name}').scalar()}"
                for name in ("lock_timeout", "idle_in_transaction_session_timeout")
            )
        return self.server.connect(autocommit=side == "minimal", options=options)

    def add(self, status: str, topic: str, count: int) -> None:
        rows = task_rows(topic, status, count)
        for table in self.tables.values():
            load_postgres(self.loader, table, rows)

    def analyze(self) -> None:
        for table in self.tables.values():
            self.loader.execute(f"ANALYZE {table}")

    def _query(self, side: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self.loader.execute(sql, params).fetchall())

    def _execute(self, side: str, sql: str, params: Sequence[Any] = ()) -> None:
        self.loader.execute(sql, params)

    def plans(self) -> list[tuple[str, str, list[str]]]:
        found = []
        params: Sequence[Any] | dict[str, Any]
        for label, sql, params in (
            ("reserve_tasks: claim (UPDATE ... RETURNING)", self.statements.claim, claim_params()),
            ("list_leased_tasks: SELECT leased", self.statements.leased, (0, PAGE + 1)),
        ):
            # ANALYZE runs the query (and takes the row locks): roll it back.
            with self.loader.transaction(force_rollback=True):
                rows = self.loader.execute(
                    "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + sql, params
                ).fetchall()
            found.append((label, sql, [str(r[0]) for r in rows]))
        return found

    def _drop(self) -> None:
        for sql_store in self.stores.values():
            try:
                sql_store.drop_schema()
            except Exception as error:
                print(f"  (could not drop {sql_store!r}: {error})")

    def close(self) -> None:
        for conn in self._driver_connections():
            conn.close()
        self._drop()
        self.loader.close()
        super().close()


def claim_params() -> dict[str, Any]:
    """The parameters of the claim statement, for its query plan."""
    return {"topic": TOPIC, "limit": BATCH, "e_pid": PID, "now": now_ms()}
