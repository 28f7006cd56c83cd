"""The ceiling, and the minimal loop: SQLStore's work done on the bare driver.

**The ceiling** (SQLite and PostgreSQL). In the same run, a hand-written loop
on the bare driver (``sqlite3`` / ``psycopg``: no SQLAlchemy, no sokka) runs
*the same statements* the store runs, on an identical table (made by the
store's own ``create_schema()`` under another prefix, so columns and indexes
are the same): the same SQL text modulo parameter style, the same
transactions (on SQLite the read-only look before a reservation, then
``BEGIN IMMEDIATE``; ``FOR UPDATE SKIP LOCKED`` / ``FOR UPDATE`` on
PostgreSQL), the same session settings, the same round trips (the batch
compare-and-set updates as the store sends them: ``executemany`` on SQLite,
one ``UPDATE ... FROM unnest(arrays)`` on PostgreSQL). The statement audit
(``bench.stores.audit``) fails the run when they drift apart. Each store row
prints its ratio to this ceiling: what the store costs on top of the database
work its design requires.

**The minimal loop** (reference only, *not* the ceiling): the smallest set of
statements that does the same job: one ``UPDATE ... RETURNING`` claims
(PostgreSQL: ``WHERE task_id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED
LIMIT n))``; SQLite: ``WHERE seq IN (SELECT ... LIMIT n)``), one ``UPDATE``
finishes (fenced on pid and attempt), each in its own autocommit
transaction. It shows what the read-apply-compare-and-set design costs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

from bench.harness import BenchFailure, check
from bench.stores.common import INSERT_COLUMNS, Lease, Row, now_ms

#: How SQLAlchemy's psycopg dialect casts each inserted parameter.
PG_INSERT_CASTS: Final = (
    "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "", "VARCHAR", "VARCHAR",
    "BIGINT", "INTEGER", "INTEGER", "INTEGER", "BIGINT", "BIGINT", "BIGINT",
    "VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "",
)  # fmt: skip
#: PostgreSQL: the array type of each column in the batch INSERT ... FROM unnest(...).
PG_INSERT_ARRAYS: Final = (
    "text", "text", "text", "text", "text", "json", "text", "text",
    "bigint", "integer", "integer", "integer", "bigint", "bigint", "bigint",
    "text", "text", "bigint", "bigint", "json",
)  # fmt: skip
#: The columns each write changes, in SQLStore's order (``_MUTABLE``).
RESERVE_COLUMNS: Final = ("status", "pid", "record_ver", "attempt", "updated_at")
TERMINATE_COLUMNS: Final = ("status", "record_ver", "updated_at")
EXTEND_COLUMNS: Final = ("record_ver", "updated_at")
#: PostgreSQL: the cast of each changed column in the one-row UPDATE, and its
#: array type in the batch UPDATE ... FROM unnest(...).
PG_CASTS: Final = {"status": "VARCHAR", "pid": "VARCHAR", "record_ver": "BIGINT",
                   "attempt": "INTEGER", "updated_at": "BIGINT"}  # fmt: skip
PG_ARRAYS: Final = {"status": "text", "pid": "text", "record_ver": "bigint",
                    "attempt": "integer", "updated_at": "bigint"}  # fmt: skip
#: The columns SQLStore selects (seq first); row indexes below follow this order.
SELECT_COLUMNS: Final = ("seq", *INSERT_COLUMNS)
#: The columns of PostgreSQL's json type (SQLStore reads them as text).
_JSON_COLUMNS: Final = frozenset({"data", "result"})
R_ID, R_STATUS, R_PID, R_VER, R_ATTEMPT = 1, 7, 8, 9, 10


# -- the statements SQLStore runs, written out by hand --------------------------------


class Statements:
    """SQLStore's SQL for one table, per dialect (the audit checks it against the store)."""

    def __init__(self, table: str, pg: bool) -> None:
        t = table
        self.table = t
        self.pg = pg
        # PostgreSQL: every insert notifies the store's channel with its topic
        # (SQLStore.ready_signal's listeners), as part of its RETURNING.
        channel = t.removesuffix("tasks") + "ready"
        self.notify = f", pg_notify('{channel}', topic)" if pg else ""
        # The JSON columns (data, result) are read as text on PostgreSQL.
        self.columns = ", ".join(
            f"CAST({t}.{c} AS TEXT) AS {c}" if pg and c in _JSON_COLUMNS else f"{t}.{c}"
            for c in SELECT_COLUMNS
        )
        self.select = f"SELECT {self.columns} \nFROM {t} \n"
        if pg:
            self.ready = (
                self.select + f"WHERE {t}.topic = %s::VARCHAR AND status = 'starting' "
                f"ORDER BY {t}.seq \n LIMIT %s FOR UPDATE SKIP LOCKED"
            )
            self.leased = (
                self.select + f"WHERE status IN ('running', 'snoozed') AND {t}.seq > %s::BIGINT "
                f"ORDER BY {t}.seq \n LIMIT %s"
            )
        else:
            self.ready = (
                self.select + f"WHERE {t}.topic = ? AND status = 'starting' "
                f"ORDER BY {t}.seq\n LIMIT ? OFFSET ?"
            )
            # SQLite looks for ready tasks with a read before taking the writer lock.
            self.ready_look = (
                f"SELECT {t}.seq \nFROM {t} \nWHERE {t}.topic = ? AND status = 'starting' "
                f"ORDER BY {t}.seq\n LIMIT ? OFFSET ?"
            )
            self.leased = (
                self.select + f"WHERE status IN ('running', 'snoozed') AND {t}.seq > ? "
                f"ORDER BY {t}.seq\n LIMIT ? OFFSET ?"
            )
        # PostgreSQL reads the rows of a batch with one array parameter.
        self.by_ids_pg = self.select + f"WHERE {t}.task_id = ANY (%s::VARCHAR[]) FOR UPDATE"
        self._by_ids: dict[int, str] = {}
        self._inserts: dict[int, str] = {}
        self._updates: dict[tuple[str, ...], str] = {}

    def _param(self, cast: str) -> str:
        if not self.pg:
            return "?"
        return f"%s::{cast}" if cast else "%s"

    def update(self, columns: tuple[str, ...]) -> str:
        """The compare-and-set of one row: SET <columns> WHERE task_id AND record_ver."""
        statement = self._updates.get(columns)
        if statement is None:
            t = self.table
            values = ", ".join(f"{c}={self._param(PG_CASTS[c])}" for c in columns)
            statement = (
                f"UPDATE {t} SET {values} WHERE {t}.task_id = {self._param('VARCHAR')} "
                f"AND {t}.record_ver = {self._param('BIGINT')}"
            )
            self._updates[columns] = statement
        return statement

    def update_batch_pg(self, columns: tuple[str, ...]) -> str:
        """PostgreSQL: the compare-and-set of many rows in one UPDATE, values as arrays."""
        key = ("pg", *columns)
        statement = self._updates.get(key)
        if statement is None:
            arrays = ", ".join(
                ["CAST(%s AS text[])", "CAST(%s AS bigint[])"]
                + [f"CAST(%s AS {PG_ARRAYS[c]}[])" for c in columns]
            )
            statement = (
                f"UPDATE {self.table} AS t SET "
                + ", ".join(f"{c} = v.{c}" for c in columns)
                + f" FROM unnest({arrays}) AS v(k_id, k_seen, {', '.join(columns)})"
                " WHERE t.task_id = v.k_id AND t.record_ver = v.k_seen"
            )
            self._updates[key] = statement
        return statement

    def by_ids(self, count: int) -> str:
        """SQLite reads the rows of a batch with ``IN (?, ?, ...)``."""
        statement = self._by_ids.get(count)
        if statement is None:
            marks = ", ".join(["?"] * count)
            statement = self.select + f"WHERE {self.table}.task_id IN ({marks})"
            self._by_ids[count] = statement
        return statement

    def insert_batch_pg(self) -> str:
        """PostgreSQL: many rows in one INSERT ... SELECT FROM unnest(arrays)."""
        arrays = ", ".join(f"CAST(%s AS {kind}[])" for kind in PG_INSERT_ARRAYS)
        return (
            f"INSERT INTO {self.table} ({', '.join(INSERT_COLUMNS)}) SELECT * FROM "
            f"unnest({arrays}) ON CONFLICT (task_id) DO NOTHING RETURNING task_id{self.notify}"
        )

    def insert(self, count: int) -> str:
        statement = self._inserts.get(count)
        if statement is None:
            one = "(" + ", ".join(self._param(cast) for cast in PG_INSERT_CASTS) + ")"
            returning = (
                f"{self.table}.task_id, pg_notify('{self.table.removesuffix('tasks')}ready', "
                f"{self.table}.topic) AS pg_notify_1"
                if self.pg
                else "task_id"
            )
            statement = (
                f"INSERT INTO {self.table} ({', '.join(INSERT_COLUMNS)}) VALUES "
                + ", ".join([one] * count)
                + f" ON CONFLICT (task_id) DO NOTHING RETURNING {returning}"
            )
            self._inserts[count] = statement
        return statement


Trace = list[tuple[str, str]]  # (execute | executemany | commit, statement)


class RawStore:
    """The ceiling: SQLStore's statements, transactions and round trips on the bare driver.

    ``conn`` is a ``sqlite3`` connection in autocommit mode (``isolation_level
    = None``: transactions are begun by hand, as SQLStore does) or a
    ``psycopg`` connection in its default transactional mode (the driver
    sends BEGIN before the first statement, as under SQLAlchemy).
    """

    def __init__(self, conn: Any, statements: Statements) -> None:
        self.conn = conn
        self.sql = statements
        self.pg = statements.pg
        self.trace: Trace | None = None  # the audit records statements here

    def _execute(self, statement: str, params: Sequence[Any]) -> Any:
        if self.trace is not None:
            self.trace.append(("execute", statement))
        return self.conn.execute(statement, params)

    def _executemany(self, statement: str, params: Sequence[Sequence[Any]]) -> int:
        if self.trace is not None:
            self.trace.append(("executemany", statement))
        if self.pg:
            cursor = self.conn.cursor()
            cursor.executemany(statement, params)
            return int(cursor.rowcount)
        return int(self.conn.executemany(statement, params).rowcount)

    def _begin(self, write: bool) -> None:
        if not self.pg:
            self._execute("BEGIN IMMEDIATE" if write else "BEGIN", ())

    def _commit(self) -> None:
        if self.trace is not None:
            self.trace.append(("commit", ""))
        self.conn.commit()

    def _write(self, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """The compare-and-set updates, as SQLStore writes them.

        Each row is ``(*new values of columns, task_id, record_ver seen)``. One
        row: one UPDATE. Several: one executemany on SQLite; on PostgreSQL one
        UPDATE ... FROM unnest(arrays), the values passed column by column.
        """
        if len(rows) == 1:
            count = self._execute(self.sql.update(columns), rows[0]).rowcount
        elif self.pg:
            *values, ids, seen = (list(column) for column in zip(*rows, strict=True))
            count = self._execute(self.sql.update_batch_pg(columns), [ids, seen, *values]).rowcount
        else:
            count = self._executemany(self.sql.update(columns), rows)
        if count not in (-1, len(rows)):
            raise BenchFailure(f"raw compare-and-set updated {count} of {len(rows)} rows")

    def create(self, topic: str, datas: Sequence[str]) -> int:
        now = now_ms()
        params: list[Any] = []
        for data in datas:
            task_id = uuid.uuid4().hex
            params += (task_id, task_id, topic, "default", "", data, "starting", None,
                       0, 0, 0, None, None, None, None, None, "[]", now, now, None)  # fmt: skip
        self._begin(write=True)
        if self.pg and len(datas) > 1:
            width = len(INSERT_COLUMNS)
            arrays = [params[i::width] for i in range(width)]
            inserted = self._execute(self.sql.insert_batch_pg(), arrays).fetchall()
        else:
            inserted = self._execute(self.sql.insert(len(datas)), params).fetchall()
        self._commit()
        return len(inserted)

    def reserve(self, topic: str, pid: str, limit: int) -> list[Lease]:
        args = (topic, limit) if self.pg else (topic, limit, 0)
        if not self.pg:  # look first, in a read transaction, as SQLStore does
            self._begin(write=False)
            found = self._execute(self.sql.ready_look, args).fetchone()
            self._commit()
            if found is None:
                return []
        self._begin(write=True)
        rows = self._execute(self.sql.ready, args).fetchall()
        now = now_ms()
        params = [
            ("running", pid, r[R_VER] + 1, r[R_ATTEMPT] + 1, now, r[R_ID], r[R_VER]) for r in rows
        ]
        if params:
            self._write(RESERVE_COLUMNS, params)
        self._commit()
        return [(p[5], p[3]) for p in params]

    def _owned(self, pid: str, leases: Sequence[Lease], statuses: tuple[str, ...]) -> list[Row]:
        """Read the leased rows (locked), in the order read; check each lease is held."""
        ids = [t for t, _ in leases]
        if self.pg:
            rows: list[Row] = self._execute(self.sql.by_ids_pg, (ids,)).fetchall()
        else:
            rows = self._execute(self.sql.by_ids(len(ids)), ids).fetchall()
        attempts = dict(leases)
        check(len(rows) == len(attempts), "raw: a leased task is missing")
        for r in rows:
            if r[R_STATUS] not in statuses or r[R_PID] != pid or r[R_ATTEMPT] != attempts[r[R_ID]]:
                raise BenchFailure(f"raw: lease of {r[R_ID]} lost: {r[R_STATUS]} {r[R_PID]}")
        return rows

    def terminate(self, pid: str, leases: Sequence[Lease]) -> int:
        self._begin(write=True)
        rows = self._owned(pid, leases, ("running", "snoozed"))
        now = now_ms()
        self._write(
            TERMINATE_COLUMNS, [("terminated", r[R_VER] + 1, now, r[R_ID], r[R_VER]) for r in rows]
        )
        self._commit()
        return len(rows)

    def extend(self, pid: str, leases: Sequence[Lease]) -> int:
        self._begin(write=True)
        rows = self._owned(pid, leases, ("running",))
        now = now_ms()
        self._write(EXTEND_COLUMNS, [(r[R_VER] + 1, now, r[R_ID], r[R_VER]) for r in rows])
        self._commit()
        return len(rows)

    def list_leased(self, limit: int) -> list[Row]:
        self._begin(write=False)
        args = (0, limit + 1) if self.pg else (0, limit + 1, 0)
        rows = self._execute(self.sql.leased, args).fetchall()
        self._commit()
        return list(rows[:limit])


class MinimalLoop:
    """Reference only: one UPDATE claims, one UPDATE finishes (autocommit, one round trip each).

    A different and smaller set of statements than SQLStore's: not the ceiling.
    """

    def __init__(self, conn: Any, table: str, pg: bool) -> None:
        self.conn = conn
        self.pg = pg
        t = table
        columns = ", ".join(
            f"CAST({c} AS TEXT) AS {c}" if pg and c in _JSON_COLUMNS else c for c in SELECT_COLUMNS
        )
        p = "%s" if pg else "?"
        claim_set = (
            f"UPDATE {t} SET status = 'running', pid = {p}, record_ver = record_ver + 1, "
            f"attempt = attempt + 1, snooze_time_ms = NULL, updated_at = {p} "
        )
        if pg:
            self.claim_sql = claim_set + (
                f"WHERE task_id = ANY(ARRAY(SELECT task_id FROM {t} WHERE topic = %s "
                "AND status = 'starting' ORDER BY seq FOR UPDATE SKIP LOCKED LIMIT %s)) "
                f"RETURNING {columns}"
            )
        else:
            self.claim_sql = claim_set + (
                f"WHERE seq IN (SELECT seq FROM {t} WHERE topic = ? AND status = 'starting' "
                f"ORDER BY seq LIMIT ?) RETURNING {columns}"
            )
        finish_set = (
            f"UPDATE {t} SET status = 'terminated', record_ver = record_ver + 1, updated_at = {p} "
        )
        owner = f"pid = {p} AND status IN ('running', 'snoozed')"
        self.finish_one_sql = finish_set + f"WHERE task_id = {p} AND attempt = {p} AND {owner}"
        self.finish_batch_pg = (
            f"UPDATE {t} SET status = 'terminated', record_ver = {t}.record_ver + 1, "
            "updated_at = %s FROM unnest(%s::varchar[], %s::int[]) AS f(task_id, attempt) "
            f"WHERE {t}.task_id = f.task_id AND {t}.attempt = f.attempt "
            f"AND {t}.pid = %s AND {t}.status IN ('running', 'snoozed')"
        )
        self._finish_batch_sqlite: dict[int, str] = {}
        self._finish_set = finish_set
        self._owner = owner

    def claim(self, topic: str, pid: str, limit: int) -> list[Lease]:
        rows = self.conn.execute(self.claim_sql, (pid, now_ms(), topic, limit)).fetchall()
        return [(r[R_ID], r[R_ATTEMPT]) for r in rows]

    def finish(self, pid: str, leases: Sequence[Lease]) -> int:
        now = now_ms()
        if len(leases) == 1:
            ((task_id, attempt),) = leases
            count = self.conn.execute(self.finish_one_sql, (now, task_id, attempt, pid)).rowcount
        elif self.pg:
            ids = [t for t, _ in leases]
            attempts = [a for _, a in leases]
            count = self.conn.execute(self.finish_batch_pg, (now, ids, attempts, pid)).rowcount
        else:
            count = self.conn.execute(self._sqlite_batch(len(leases)), (
                now, *(t for t, _ in leases), *(x for lease in leases for x in lease), pid,
            )).rowcount  # fmt: skip
        check(count == len(leases), f"minimal: finished {count} of {len(leases)}")
        return int(count)

    def _sqlite_batch(self, count: int) -> str:
        statement = self._finish_batch_sqlite.get(count)
        if statement is None:
            # task_id IN (...) lets the unique index find the rows; the row values fence.
            ids = ", ".join(["?"] * count)
            pairs = ", ".join(["(?, ?)"] * count)
            statement = self._finish_set + (
                f"WHERE task_id IN ({ids}) AND (task_id, attempt) IN (VALUES {pairs}) "
                f"AND {self._owner}"
            )
            self._finish_batch_sqlite[count] = statement
        return statement
