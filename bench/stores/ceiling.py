"""The ceiling, and the minimal loop: SQLStore's work done on the bare driver.

**The ceiling** (SQLite and PostgreSQL). In the same run, a hand-written loop
on the bare driver (``sqlite3`` / ``psycopg``: no SQLAlchemy, no sokka) runs
*the same statements* the store runs, on an identical table (made by the
store's own ``create_schema()`` under another prefix, so columns and indexes
are the same): the same SQL text modulo parameter style, the same
transactions (on SQLite the read-only look before a reservation, then
``BEGIN IMMEDIATE``), the same session settings, the same round trips (on
PostgreSQL a claim, and a finish of one kind, is one statement in
autocommit: no BEGIN nor COMMIT): one
guarded ``UPDATE ... RETURNING`` claims (PostgreSQL: ``seq = ANY(ARRAY(SELECT
... FOR UPDATE SKIP LOCKED))``; SQLite: ``seq IN (SELECT ... LIMIT)``), and
one guarded ``UPDATE ... FROM unnest(arrays)`` (PostgreSQL) or ``... FROM
json_each(rows)`` (SQLite) ``RETURNING`` finishes or extends a batch (the
store compiles these from the core's ``SetRule``). The statement audit
(``bench.stores.audit``) fails the run when they drift apart. Each store row
prints its ratio to this ceiling: what the store costs on top of the database
work its design requires.

**The minimal loop** (reference only, *not* the ceiling): the smallest set of
statements that does the same job: the same one-statement claim, and one
``UPDATE`` without RETURNING finishes (fenced on pid and attempt), each in its
own autocommit transaction (no look before the claim on SQLite). What is left
between it and the ceiling is the store's transactions and the rows it returns.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, Final

from bench.harness import check
from bench.stores.common import INSERT_COLUMNS, Lease, Row, now_ms

#: How SQLAlchemy's psycopg dialect casts each inserted parameter.
PG_INSERT_CASTS: Final = (
    "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "", "VARCHAR", "VARCHAR",
    "BIGINT", "INTEGER", "INTEGER", "INTEGER", "BIGINT", "BIGINT", "BIGINT",
    "VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "", "VARCHAR",
)  # fmt: skip
#: PostgreSQL: the array type of each column in the batch INSERT ... FROM unnest(...).
PG_INSERT_ARRAYS: Final = (
    "text", "text", "text", "text", "text", "json", "text", "text",
    "bigint", "integer", "integer", "integer", "bigint", "bigint", "bigint",
    "text", "text", "bigint", "bigint", "json", "text",
)  # fmt: skip
#: The columns SQLStore selects (seq first); row indexes below follow this order.
SELECT_COLUMNS: Final = ("seq", *INSERT_COLUMNS)
#: The columns of PostgreSQL's json type (SQLStore reads them as text).
_JSON_COLUMNS: Final = frozenset({"data", "result"})
R_ID, R_ATTEMPT = 1, 10
#: The effects each guarded UPDATE writes (SQLStore compiles them from the core's
#: SetRule: core.transitions.set_rule), and the statuses it moves from.
RESERVE_SET = "status = 'running', pid = {e_pid}, attempt = {t}.attempt + 1, snooze_time_ms = NULL"
TERMINATE_SET = "status = 'terminated', result = {e_result_json}"  # None: no result
EXTEND_SET = "status = 'running'"
TERMINATE_FROM = "IN ('running', 'snoozed')"
EXTEND_FROM = "= 'running'"


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
        self.notify = (
            f", CASE WHEN status = 'starting' THEN pg_notify('{channel}', topic) END" if pg else ""
        )
        # The JSON columns (data, result) are read as text on PostgreSQL.
        self.columns = ", ".join(
            f"CAST({t}.{c} AS TEXT) AS {c}" if pg and c in _JSON_COLUMNS else f"{t}.{c}"
            for c in SELECT_COLUMNS
        )
        self.select = f"SELECT {self.columns} \nFROM {t} \n"
        # The topic reserved from is not paused (its second parameter is the topic again).
        paused = t.removesuffix("tasks") + "paused_topics"
        not_paused = f"AND NOT EXISTS (SELECT 1 FROM {paused} WHERE topic = {'%s' if pg else '?'}) "
        if pg:
            self.leased = (
                self.select + f"WHERE status IN ('running', 'snoozed') AND {t}.seq > %s::BIGINT "
                f"ORDER BY {t}.seq \n LIMIT %s"
            )
        else:
            # SQLite looks for ready tasks with a read before taking the writer lock.
            self.ready_look = (
                f"SELECT {t}.seq \nFROM {t} \nWHERE {t}.topic = ? AND status = 'starting' "
                + not_paused
                + f"ORDER BY {t}.seq\n LIMIT ? OFFSET ?"
            )
            self.leased = (
                self.select + f"WHERE status IN ('running', 'snoozed') AND {t}.seq > ? "
                f"ORDER BY {t}.seq\n LIMIT ? OFFSET ?"
            )
        # The named parameters of the statements SQLStore sends through exec_driver_sql.
        self.p = (lambda name: f"%({name})s") if pg else (lambda name: f":{name}")
        self._inserts: dict[int, str] = {}
        p = self.p
        pick = (
            f"SELECT seq FROM {t} WHERE topic = {p('topic')} AND status = 'starting' "
            f"AND NOT EXISTS (SELECT 1 FROM {paused} WHERE topic = {p('topic')}) "
            f"ORDER BY seq LIMIT {p('limit')}"
        )
        chosen = (
            f"{t}.seq = ANY(ARRAY({pick} FOR UPDATE SKIP LOCKED))"
            if pg
            else (f"{t}.seq IN ({pick})")
        )
        effects = RESERVE_SET.format(e_pid=p("e_pid"), t=t)
        # PostgreSQL: the rows locked by the pick are found by seq alone (the lock
        # re-checked them); SQLite restates the status guard.
        guard = "" if pg else f" AND {t}.status = 'starting'"
        self.claim = (
            f"UPDATE {t} SET {effects}, record_ver = {t}.record_ver + 1, "
            f"updated_at = {p('now')} WHERE {chosen}{guard} "
            f"RETURNING {self.columns}"
        )
        self.terminate = self._finish(TERMINATE_SET, TERMINATE_FROM, with_result=True)
        self.extend = self._finish(EXTEND_SET, EXTEND_FROM)

    def _finish(self, effects: str, statuses: str, *, with_result: bool = False) -> str:
        """One guarded UPDATE ... RETURNING for a batch of owner events: rows
        ``(task_id, pid, attempt[, result])`` as arrays (PostgreSQL) or one JSON
        array (SQLite)."""
        t = self.table
        if self.pg:
            result = ", CAST(%(e_result_json)s AS json[])" if with_result else ""
            named = ", e_result_json" if with_result else ""
            source = (
                "unnest(CAST(%(ids)s AS text[]), CAST(%(pids)s AS text[]), "
                f"CAST(%(attempts)s AS integer[]){result}) AS v(k_id, k_pid, k_attempt{named})"
            )
            key, pid, attempt = "v.k_id", "v.k_pid", "v.k_attempt"
            effects = effects.format(e_result_json="v.e_result_json")
        else:
            source = "json_each(:rows) AS v"
            key, pid, attempt = "v.value ->> 0", "v.value ->> 1", "v.value ->> 2"
            effects = effects.format(e_result_json="v.value ->> 3")
        return (
            f"UPDATE {t} SET {effects}, record_ver = {t}.record_ver + 1, updated_at = "
            f"{self.p('now')} FROM {source} WHERE {t}.task_id = {key} AND {t}.status "
            f"{statuses} AND {t}.pid = {pid} AND {t}.attempt = {attempt} RETURNING {self.columns}"
        )

    def _param(self, cast: str) -> str:
        if not self.pg:
            return "?"
        return f"%s::{cast}" if cast else "%s"

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
                f"{self.table}.task_id, CASE WHEN ({self.table}.status = 'starting') THEN "
                f"pg_notify('{self.table.removesuffix('tasks')}ready', {self.table}.topic) END "
                "AS anon_1"
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

    def _execute(self, statement: str, params: Sequence[Any] | dict[str, Any]) -> Any:
        if self.trace is not None:
            self.trace.append(("execute", statement))
        return self.conn.execute(statement, params)

    def _begin(self, write: bool) -> None:
        if not self.pg:
            self._execute("BEGIN IMMEDIATE" if write else "BEGIN", ())

    def _commit(self) -> None:
        if self.trace is not None:
            self.trace.append(("commit", ""))
        self.conn.commit()

    def _one_statement(
        self, statement: str, params: Sequence[Any] | dict[str, Any]
    ) -> list[Any]:
        """A write that is one statement: on PostgreSQL in autocommit (one round
        trip, no BEGIN nor COMMIT), on SQLite in BEGIN IMMEDIATE ... COMMIT."""
        if not self.pg:
            self._begin(write=True)
            rows: list[Any] = self._execute(statement, params).fetchall()
            self._commit()
            return rows
        self.conn.autocommit = True
        try:
            return list(self._execute(statement, params).fetchall())
        finally:
            self.conn.autocommit = False

    def create(self, topic: str, datas: Sequence[str]) -> int:
        now = now_ms()
        params: list[Any] = []
        for data in datas:
            task_id = uuid.uuid4().hex
            params += (task_id, task_id, topic, "default", "", data, "starting", None,
                       0, 0, 0, None, None, None, None, None, "[]", now, now, None,
                       None)  # fmt: skip
        # One INSERT, its own transaction, as SQLStore creates (autocommit on PostgreSQL).
        if self.pg and len(datas) > 1:
            width = len(INSERT_COLUMNS)
            arrays = [params[i::width] for i in range(width)]
            return len(self._one_statement(self.sql.insert_batch_pg(), arrays))
        return len(self._one_statement(self.sql.insert(len(datas)), params))

    def reserve(self, topic: str, pid: str, limit: int) -> list[Lease]:
        args = (topic, topic, limit) if self.pg else (topic, topic, limit, 0)
        if not self.pg:  # look first, in a read transaction, as SQLStore does
            self._begin(write=False)
            found = self._execute(self.sql.ready_look, args).fetchone()
            self._commit()
            if found is None:
                return []
        params = {"topic": topic, "limit": limit, "e_pid": pid, "now": now_ms()}
        rows = self._one_statement(self.sql.claim, params)
        return [(r[R_ID], r[R_ATTEMPT]) for r in rows]

    def _finish(
        self, statement: str, pid: str, leases: Sequence[Lease], *, with_result: bool = False
    ) -> int:
        """One guarded UPDATE for every lease; each must have been held. A
        terminate carries each task's result (none here, as a no-op handler's)."""
        params: dict[str, Any] = {"now": now_ms()}
        if self.pg:
            params.update(ids=[t for t, _ in leases], pids=[pid] * len(leases),
                          attempts=[a for _, a in leases])  # fmt: skip
            if with_result:
                params["e_result_json"] = [None] * len(leases)
        else:
            extra = [None] if with_result else []
            params["rows"] = json.dumps([[t, pid, a, *extra] for t, a in leases])
        rows = self._one_statement(statement, params)
        check(len(rows) == len(leases), f"raw: {len(leases) - len(rows)} leases lost")
        return len(rows)

    def terminate(self, pid: str, leases: Sequence[Lease]) -> int:
        return self._finish(self.sql.terminate, pid, leases, with_result=True)

    def extend(self, pid: str, leases: Sequence[Lease]) -> int:
        return self._finish(self.sql.extend, pid, leases)

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
