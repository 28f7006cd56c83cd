"""The statement audit: the ceiling must run the statements the store runs.

Before anything is measured, every operation runs once on the store and once
on the ceiling (``bench.stores.ceiling.RawStore``); the statements each sends
to the driver, and its commits, are recorded, and the run fails if they
differ: when the store changes its statements, the ceiling must follow before
anything is measured.

The store's hot calls run below SQLAlchemy, on driver connections
(``SQLStore._driver`` on SQLite, ``SQLStore._autocommit`` on PostgreSQL), so
the store's side is recorded at the driver. On SQLite both sides are recorded
by ``sqlite3``'s own trace callback, which sees every statement SQLite runs,
BEGIN and COMMIT included, with its parameters' values written in: values
(quoted strings, numbers) are compared as ``?``. On PostgreSQL each of the
store's connections gets a psycopg cursor class that notes what it executes,
and the BEGIN psycopg sends before a transaction's first statement, while
SQLAlchemy's events note the commits; the ceiling records its own (it sends
no BEGIN it does not record as a commit's start, so the BEGINs are compared
by the commits that end them, and shown in the shapes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from returns.result import Success
from sqlalchemy import event

from bench.harness import BenchFailure, check
from bench.stores.backends import SqlBackend
from bench.stores.ceiling import Trace
from bench.stores.common import (
    AUDIT_TOPIC,
    BATCH,
    PAGE,
    PID,
    payload,
    payload_json,
    terminations,
)
from sokka.adapters.sql import SQLStore
from sokka.core.task import TaskSpec


def _normalise(statement: str) -> str:
    return " ".join(re.sub(r"%\(\w+\)s", "%s", statement).split())


_VALUE = re.compile(r"'(?:[^']|'')*'|(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])|\bNULL\b")


def _without_values(statement: str) -> str:
    """A traced SQLite statement with each value (a quoted string, a number, NULL)
    written as ``?``: the two sides' values differ (ids, clocks), not their form.

    >>> _without_values("UPDATE t SET a = 'it''s', b = 12, c = NULL WHERE t_2.x = -3.5")
    'UPDATE t SET a = ?, b = ?, c = ? WHERE t_2.x = ?'
    """
    return _VALUE.sub("?", statement)


class _Tracer:
    """A trace that records only while ``capturing``."""

    def __init__(self) -> None:
        self.trace: Trace | None = None

    def note(self, kind: str, statement: str) -> None:
        if self.trace is not None:
            self.trace.append((kind, statement))

    @contextmanager
    def capturing(self) -> Iterator[Trace]:
        self.trace = []
        try:
            yield self.trace
        finally:
            self.trace = None


class SqliteTrace(_Tracer):
    """``sqlite3``'s trace callback for every connection of an engine, from now
    on: while ``trace`` is a list, each statement SQLite runs is appended
    (``("statement", sql)``, as SQLite ran it: its values written in)."""

    def __call__(self, statement: str) -> None:
        self.note("statement", statement)

    def attach(self, engine: Any) -> None:
        """Trace the connections ``engine`` opens from now on."""

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.set_trace_callback(self)

        event.listen(engine, "connect", on_connect)


class PgTrace(_Tracer):
    """psycopg's cursors for every connection of an engine, from now on: while
    ``trace`` is a list, each statement a cursor executes is appended (``("execute",
    sql)``, ``("executemany", sql)``), after a ``("begin", "")`` when psycopg sends
    BEGIN first (a connection outside autocommit and outside a transaction), and
    each commit SQLAlchemy makes (``("commit", "")``). The store's own driver
    cursors (``SQLStore._autocommit``) and SQLAlchemy's are seen alike."""

    def attach(self, engine: Any) -> None:
        """Trace the connections ``engine`` opens from now on."""
        import psycopg

        idle = psycopg.pq.TransactionStatus.IDLE
        note = self.note

        class Traced(psycopg.Cursor[Any]):
            def _begins(self) -> None:
                conn = self.connection
                if not conn.autocommit and conn.info.transaction_status == idle:
                    note("begin", "")

            def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
                self._begins()
                note("execute", str(query))
                return super().execute(query, params, **kw)

            def executemany(self, query: Any, params_seq: Any, **kw: Any) -> None:
                self._begins()
                note("executemany", str(query))
                super().executemany(query, params_seq, **kw)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.cursor_factory = Traced

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "commit", lambda _conn: note("commit", ""))


def _short(kind: str, statement: str) -> str:
    """A statement in a few words, for the audit's summary."""
    if kind in ("begin", "commit"):
        return kind.upper()
    short = statement.split()[0]
    if short == "BEGIN":
        short = statement
    elif short == "SELECT":
        if "'starting'" in statement and statement.split()[2] == "FROM":
            short += " ready seq (look)"
        elif "'starting'" in statement:
            short += " ready"
        elif "'running'" in statement:
            short += " leased"
        elif "= ANY" in statement:
            short += " by id = ANY(array)"
        else:
            short += " by id"
        if "SKIP LOCKED" in statement:
            short += " FOR UPDATE SKIP LOCKED"
        elif "FOR UPDATE" in statement:
            short += " FOR UPDATE"
    elif short == "UPDATE" and "unnest(" in statement:
        short += " ... FROM unnest(arrays)"
    elif short == "UPDATE" and "json_each(" in statement:
        short += " ... FROM json_each(rows)"
    elif short == "UPDATE" and "SKIP LOCKED" in statement:
        short += " claim (SELECT ... FOR UPDATE SKIP LOCKED)"
    elif short == "UPDATE" and "LIMIT" in statement:
        short += " claim (SELECT ... LIMIT)"
    if short.startswith("UPDATE") and "RETURNING" in statement:
        short += " RETURNING"
    if kind == "executemany":
        short += " (executemany)"
    return short


def _difference(want: Trace, got: Trace) -> str:
    """Where two statement traces first differ, with a little context."""
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        if w != g:
            at = next((j for j, (a, b) in enumerate(zip(w[1], g[1], strict=False)) if a != b),
                      min(len(w[1]), len(g[1])))  # fmt: skip
            return (
                f"    statement {i + 1}: store {w[0]} ...{w[1][max(0, at - 60) : at + 60]}...\n"
                f"    statement {i + 1}: raw   {g[0]} ...{g[1][max(0, at - 60) : at + 60]}..."
            )
    return f"    the store ran {len(want)} statements, the ceiling {len(got)}"


def audit(backend: SqlBackend) -> list[str]:
    """Run each operation once on the store and on the ceiling; their statements must match.

    The store side runs on a second SQLStore over the store's table, so the
    measured store's engine never carries the audit's event listeners.
    """
    measured = backend.stores["store"]
    url = measured.engine.url.render_as_string(hide_password=False)
    store = SQLStore(url, prefix=backend.prefixes["store"])
    traced = SqliteTrace() if backend.name == "sqlite" else PgTrace()
    traced.attach(store.engine)  # before its first connection
    store.list_leased_tasks(None, None, 1)  # its first call checks the schema version, once
    try:
        return _audit(backend, store, traced)
    finally:
        store.close()


def _audit(backend: SqlBackend, store: SQLStore, traced: SqliteTrace | PgTrace) -> list[str]:
    raw = backend.raw
    assert raw is not None
    raw_traced = None
    if isinstance(traced, SqliteTrace):
        raw_traced = SqliteTrace()
        raw.conn.set_trace_callback(raw_traced)
    backend.add("starting", AUDIT_TOPIC, 2 + BATCH)
    tokens = backend.tokens

    def store_reserve_terminate(limit: int) -> None:
        tasks = store.reserve_tasks(AUDIT_TOPIC, PID, limit)
        check(len(tasks) == limit, "audit: store reserved too few")
        if limit == 1:
            store.terminate(tasks[0].task_id, PID, tasks[0].attempt)
        else:
            results = store.finish_many(terminations(tasks))
            check(all(isinstance(r, Success) for r in results), "audit")

    def raw_reserve_terminate(limit: int) -> None:
        leases = raw.reserve(AUDIT_TOPIC, PID, limit)
        check(len(leases) == limit, "audit: raw reserved too few")
        raw.terminate(PID, leases)

    specs = [TaskSpec(topic=AUDIT_TOPIC + "-c", data=payload(i)) for i in range(BATCH)]
    datas = [payload_json(i) for i in range(BATCH)]
    ops: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("create (one)", lambda: store.create_task(specs[0]),
         lambda: raw.create(AUDIT_TOPIC + "-c", datas[:1])),
        ("create_tasks (100)", lambda: store.create_tasks(specs),
         lambda: raw.create(AUDIT_TOPIC + "-c", datas)),
        ("reserve_tasks (1) + terminate", lambda: store_reserve_terminate(1),
         lambda: raw_reserve_terminate(1)),
        ("reserve_tasks (100) + finish_many (100)", lambda: store_reserve_terminate(BATCH),
         lambda: raw_reserve_terminate(BATCH)),
        ("extend_leases (1)", lambda: store.extend_leases(PID, tokens[:1]),
         lambda: raw.extend(PID, [(t.task_id, t.attempt) for t in tokens[:1]])),
        ("extend_leases (100)", lambda: store.extend_leases(PID, tokens[:BATCH]),
         lambda: raw.extend(PID, [(t.task_id, t.attempt) for t in tokens[:BATCH]])),
        ("list_leased_tasks (1000)", lambda: store.list_leased_tasks(None, None, PAGE),
         lambda: raw.list_leased(PAGE)),
    ]  # fmt: skip
    # The prefix names the tables and, on PostgreSQL, the channel that inserts notify.
    prefix_store, prefix_raw = backend.prefixes["store"], backend.prefixes["ceiling"]
    lines = []
    for label, store_op, raw_op in ops:
        with traced.capturing() as store_trace:
            store_op()
        if raw_traced is not None:
            with raw_traced.capturing() as raw_trace:
                raw_op()
            form = _without_values  # SQLite's trace writes the values in
        else:
            raw.trace = []
            try:
                raw_op()
                raw_trace = raw.trace
            finally:
                raw.trace = None
            form = str
        want = [(kind, _normalise(form(s))) for kind, s in store_trace if kind != "begin"]
        got = [(kind, _normalise(form(s.replace(prefix_raw, prefix_store))))
               for kind, s in raw_trace]  # fmt: skip
        if want != got:
            raise BenchFailure(
                f"the ceiling does not run the store's statements for {label}:\n"
                + _difference(want, got)
            )
        # Named from the statements as sent (a traced one's values tell the look apart).
        shape = " / ".join(_short(kind, s) for kind, s in store_trace)
        lines.append(f"{label:<42} {shape}")
    return lines
