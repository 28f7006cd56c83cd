"""Benchmark the stores' operations, and the SQL store against its raw-driver ceiling.

For each store (``memory``, ``sqlite``: a file in a temporary directory,
``postgres``: run-private table prefixes, dropped at the end) this measures
operations per second of:

* ``create_task`` one at a time, and ``create_tasks`` in batches of 100;
* reserve+terminate one at a time (``reserve_tasks(limit=1)`` + ``terminate``);
* reserve+terminate in batches of 100 (``reserve_tasks(limit=100)`` +
  ``finish_many`` of 100 ``Terminate`` outcomes);
* ``extend_leases`` of one lease, and of 100 leases;
* one page (1000 tasks) of ``list_leased_tasks``;

and the time of one full supervisor cycle (``Supervisor.run_once()``: every
page of leased tasks, mark, sweep) over the leased tasks, with nothing changed
between cycles and with 1% of the leases extended between cycles.

The queue is realistic where it matters for the plans: every table is
pre-loaded with many terminated tasks on the topic being reserved (50,000 by
default, created before the ready ones, so a plan that walked the topic in
``seq`` order would have to step over all of them) and 10,000 leased
(running) tasks on another topic.

**The ceiling** (SQLite and PostgreSQL). In the same run, a hand-written loop
on the bare driver (``sqlite3`` / ``psycopg``: no SQLAlchemy, no sokka) runs
*the same statements* the store runs, on an identical table (made by the
store's own ``create_schema()`` under another prefix, so columns and indexes
are the same): the same SQL text modulo parameter style, the same
transactions (on SQLite the read-only look before a reservation, then
``BEGIN IMMEDIATE``; ``FOR UPDATE SKIP LOCKED`` / ``FOR UPDATE`` on
PostgreSQL), the same session settings, the same round trips (the batch compare-and-set
updates as the store sends them: ``executemany`` on SQLite, one ``UPDATE ...
FROM unnest(arrays)`` on PostgreSQL). Before measuring, a statement audit runs
every operation once on both sides, records the statements each sends to the
driver (and the commits), and fails the run if they differ: when the store
changes its statements, the ceiling must follow before anything is measured. Each store row
prints its ratio to this ceiling: what the store costs on top of the
database work its design requires.

**The minimal loop** (reference only, *not* the ceiling): the smallest set of
statements that does the same job: one ``UPDATE ... RETURNING`` claims
(PostgreSQL: ``WHERE task_id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED
LIMIT n))``; SQLite: ``WHERE seq IN (SELECT ... LIMIT n)``), one ``UPDATE``
finishes (fenced on pid and attempt), each in its own autocommit
transaction. It shows what the read-apply-compare-and-set design costs.

Method: ``time.perf_counter``; per operation a warm-up and three sizing runs
(the best of them sizes the rounds to about ``target`` seconds of the slowest
side), then ``rounds`` rounds; in each round every side (store, ceiling, minimal) runs the same
number of calls on its own table, in an order that rotates from round to
round so machine noise hits all sides alike; each side's median round is
reported, and the ratio to the ceiling is the median of the rounds' ratios
(store and ceiling ran back to back within a round).
Every measured call is checked: every reserved task ended terminated, every
batch element succeeded, every page was full.

**Over HTTP** (``http`` in ``--stores``). Reserve+terminate, one at a time
and in batches of 100 (the calls above), through ``HTTPStore`` -> uvicorn on
127.0.0.1 (``sokka.shell.http.create_app``) -> a backing store, against the
same kind of backing store called in-process, for each backing store of
``--http-over`` (default: the other stores selected, or all three when only
``http`` is). Each side has its own identical store (pre-loaded with the same
terminated tasks), measured with the same rounds as above; the ratio is the
median of the rounds' HTTP / in-process. The server runs in two ways
(``--http-server``, default both): on a thread of this process
(``serve_in_background``), where client, event loop and the store's worker
threads share one GIL, so the figure includes that contention; and in a child
process (``python -c`` running uvicorn on a free port, serving its own store
on the same SQLite file or PostgreSQL tables), with no GIL shared. The checks
are the same: every call reserved and terminated its full count, as answered
over HTTP, and after every round no task of the topic is left ``starting`` or
``running`` in any side's store (read from the store itself, not over HTTP,
except for a child's in-memory store), and at the end every side's store
holds exactly the tasks it was given, all terminated.

Then the supervisor cycle over HTTP: every side's store is given the same
10,000 running tasks (2,000 with ``--quick``, as the output says), and one
``Supervisor.run_once()`` (every page of ``list_leased_tasks``, mark, sweep;
nothing changed between cycles) runs through each side's client: the
in-process store, or an ``HTTPStore`` on each server. After a warm-up cycle
per side, each round runs one cycle per side, in an order that rotates from
round to round; each side's median is reported, and the ratio is the median of
the rounds' HTTP / in-process time. Every cycle is checked (complete, every
lease listed and monitored, nothing revoked: the lease is an hour long), and
at the end every side's store still holds exactly those tasks, all running.

Run: ``python bench/store_ops.py [--stores memory,sqlite,postgres,http] [--quick]
[--postgres-url URL] [--profile] [--http-over memory,sqlite,postgres]
[--http-server both|thread|process]``. ``--profile`` also runs cProfile on the
store side of the operation with the lowest ratio to its ceiling, for each
SQL store, and on every reserve+terminate operation that misses its goal.
Exits 0 unless a correctness check fails (goals are reported, not enforced).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import pstats
import queue
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy
from returns.result import Success
from sqlalchemy import event
from sqlalchemy.engine import make_url

from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import MAX_PAGE_SIZE, TaskFilter, TaskStore
from sokka.core.commands import Finish, LeaseToken
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.core.transitions import Terminate
from sokka.shell.supervisor import Supervisor

TOPIC: Final = "bench"  #: the topic reserved from (and where the finished tasks pile up)
LEASED_TOPIC: Final = "leased"  #: the leased tasks that extend, listing and supervision use
CREATE_TOPIC: Final = "created"  #: where the create measurements put their tasks
AUDIT_TOPIC: Final = "audit"  #: the statement audit's own tasks
PID: Final = "bench-worker"
BATCH: Final = 100
PAGE: Final = 1000
PLAN_READY: Final = 1000  #: ready tasks present while the query plans are taken
#: At most this many calls per side per round: the in-memory store would
#: otherwise grow by hundreds of thousands of tasks, and garbage collection
#: over them would distort its own figures.
MAX_CALLS: Final = 10_000

GOAL_RATIO: Final = 0.60
GOAL_CYCLE_MS: Final = 250.0
#: No lease lapses during the supervisor measurement.
POLICY: Final = LeasePolicy(lease_time_ms=3_600_000, default_snooze_ms=3_600_000)
DEFAULT_POSTGRES_URL: Final = os.environ.get(
    "SOKKA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STORES: Final = ("memory", "sqlite", "postgres")
HTTP: Final = "http"  #: the HTTP comparison, selected like a store

#: The columns SQLStore inserts, in its order.
INSERT_COLUMNS: Final = (
    "task_id", "task_group_id", "topic", "sub_topic", "description", "data", "status", "pid",
    "record_ver", "attempt", "failures", "max_attempts", "lease_time_ms", "timeout_ms",
    "snooze_time_ms", "error", "errors", "created_at", "updated_at",
)  # fmt: skip
#: How SQLAlchemy's psycopg dialect casts each inserted parameter.
PG_INSERT_CASTS: Final = (
    "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "", "VARCHAR", "VARCHAR",
    "BIGINT", "INTEGER", "INTEGER", "INTEGER", "BIGINT", "BIGINT", "BIGINT",
    "VARCHAR", "VARCHAR", "BIGINT", "BIGINT",
)  # fmt: skip
#: PostgreSQL: the array type of each column in the batch INSERT ... FROM unnest(...).
PG_INSERT_ARRAYS: Final = (
    "text", "text", "text", "text", "text", "json", "text", "text",
    "bigint", "integer", "integer", "integer", "bigint", "bigint", "bigint",
    "text", "text", "bigint", "bigint",
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
R_ID, R_STATUS, R_PID, R_VER, R_ATTEMPT = 1, 7, 8, 9, 10

Row = tuple[Any, ...]
Lease = tuple[str, int]  # (task_id, attempt)


class BenchFailure(Exception):
    """A correctness check failed: the numbers would mean nothing."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise BenchFailure(message)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def payload(i: int) -> dict[str, Any]:
    return {"to": f"user{i}@example.com", "n": i}


def payload_json(i: int) -> str:
    """``payload(i)`` as ``TaskSpec`` encodes it (canonical compact JSON)."""
    return json.dumps(payload(i), separators=(",", ":"), ensure_ascii=False)


_STATE: Final = {"starting": (None, 0, 0), "running": (PID, 1, 1), "terminated": (PID, 2, 1)}


def task_rows(topic: str, status: str, count: int) -> list[Row]:
    """Rows in INSERT_COLUMNS order, as the store would have written them."""
    pid, record_ver, attempt = _STATE[status]
    now = now_ms()
    rows = []
    for i in range(count):
        task_id = uuid.uuid4().hex
        rows.append((
            task_id, task_id, topic, "default", "", payload_json(i), status, pid,
            record_ver, attempt, 0, None, None, None, None, None, "[]", now, now,
        ))  # fmt: skip
    return rows


@dataclass(frozen=True)
class Settings:
    finished: int  #: terminated tasks pre-loaded on TOPIC
    leased: int  #: running tasks on LEASED_TOPIC
    rounds: int
    target_s: float  #: seconds per side per round (the slowest side)
    cycles: int  #: timed supervisor cycles per variant
    #: running tasks in each store of the HTTP comparison's supervisor cycle
    http_leased: int = 10_000
    profile: bool = False


FULL: Final = Settings(finished=50_000, leased=10_000, rounds=5, target_s=0.4, cycles=7)
QUICK: Final = Settings(
    finished=5_000, leased=10_000, rounds=3, target_s=0.02, cycles=3, http_leased=2_000
)


# -- the statements SQLStore runs, written out by hand --------------------------------


class Statements:
    """SQLStore's SQL for one table, per dialect (the audit checks it against the store)."""

    def __init__(self, table: str, pg: bool) -> None:
        t = table
        self.table = t
        self.pg = pg
        data = f"CAST({t}.data AS TEXT) AS data" if pg else f"{t}.data"
        self.columns = ", ".join(data if c == "data" else f"{t}.{c}" for c in SELECT_COLUMNS)
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
            f"unnest({arrays}) ON CONFLICT (task_id) DO NOTHING RETURNING task_id"
        )

    def insert(self, count: int) -> str:
        statement = self._inserts.get(count)
        if statement is None:
            one = "(" + ", ".join(self._param(cast) for cast in PG_INSERT_CASTS) + ")"
            returning = f"{self.table}.task_id" if self.pg else "task_id"
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
                       0, 0, 0, None, None, None, None, None, "[]", now, now)  # fmt: skip
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
            "CAST(data AS TEXT) AS data" if pg and c == "data" else c for c in SELECT_COLUMNS
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


# -- the stores under test ----------------------------------------------------------------


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


def add_through(store: TaskStore, status: str, topic: str, count: int, what: str) -> list[Task]:
    """Give ``store`` ``count`` tasks in ``status`` through its own calls; the running ones."""
    running: list[Task] = []
    done = 0
    while done < count:
        size = min(1000, count - done)
        specs = [TaskSpec(topic=topic, data=payload(done + i)) for i in range(size)]
        results = store.create_tasks(specs)
        check(all(isinstance(r, Success) for r in results), f"{what}: create failed")
        if status != "starting":
            tasks = store.reserve_tasks(topic, PID, size)
            check(len(tasks) == size, f"{what}: reserve during set-up came short")
            if status == "terminated":
                outcomes = [
                    Finish(task_id=t.task_id, event=Terminate(pid=PID, attempt=t.attempt))
                    for t in tasks
                ]
                check(
                    all(isinstance(r, Success) for r in store.finish_many(outcomes)),
                    f"{what}: finish during set-up failed",
                )
            else:
                running += tasks
        done += size
    return running


def counts_through(store: TaskStore, topic: str, status: Status | None = None) -> dict[str, int]:
    """Tasks of ``topic`` (in ``status``, if given) by status, listed through the store."""
    found: dict[str, int] = {}
    cursor = None
    while True:
        page = store.list_tasks(TaskFilter(topic=topic, status=status), cursor, 1000)
        for task in page.tasks:
            found[task.status.value] = found.get(task.status.value, 0) + 1
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


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
        run = f"b{os.getpid() % 100_000}{secrets.token_hex(2)}"
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
        marks = ", ".join(["?"] * len(INSERT_COLUMNS))
        for side, conn in self.loaders.items():
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {self.tables[side]} ({', '.join(INSERT_COLUMNS)}) VALUES ({marks})",
                rows,
            )
            conn.commit()

    def _query(self, side: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self.loaders[side].execute(sql, params).fetchall())

    def _execute(self, side: str, sql: str, params: Sequence[Any] = ()) -> None:
        self.loaders[side].execute(sql, params)

    def plans(self) -> list[tuple[str, str, list[str]]]:
        found = []
        for label, sql, params in (
            ("reserve_tasks: look (SELECT seq)", self.statements.ready_look, (TOPIC, BATCH, 0)),
            ("reserve_tasks: SELECT ready", self.statements.ready, (TOPIC, BATCH, 0)),
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
        import psycopg

        self.name = "postgres"
        self.url = url
        self.conninfo = (
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self.loader = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
        version = self.loader.execute("SHOW server_version").fetchone()
        shown = make_url(url).render_as_string(hide_password=True)
        self.label = f"postgres ({shown}; PostgreSQL {version[0] if version else '?'})"
        run = f"b{os.getpid() % 100_000}{secrets.token_hex(2)}"
        prefixes = {side: f"{run}_{side[0]}_" for side in self.sides}
        self.stores = {}
        try:
            self._setup(lambda side: url, prefixes)
        except Exception:
            self._drop()
            self.loader.close()
            raise

    def _connect(self, side: str) -> Any:
        import psycopg

        # The session settings SQLStore's connections carry (lock timeout, idle
        # transaction timeout), read from a live connection of its engine. The
        # ceiling stays transactional (BEGIN is sent before the first
        # statement, as under SQLAlchemy); the minimal loop is autocommit.
        with self.stores["store"].engine.connect() as conn:
            options = " ".join(
                f"-c {name}={conn.exec_driver_sql(f'SHOW {name}').scalar()}"
                for name in ("lock_timeout", "idle_in_transaction_session_timeout")
            )
        return psycopg.connect(
            self.conninfo, autocommit=side == "minimal", connect_timeout=5, options=options
        )

    def add(self, status: str, topic: str, count: int) -> None:
        rows = task_rows(topic, status, count)
        with self.loader.cursor() as cursor:
            for table in self.tables.values():
                with cursor.copy(f"COPY {table} ({', '.join(INSERT_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)

    def analyze(self) -> None:
        for table in self.tables.values():
            self.loader.execute(f"ANALYZE {table}")

    def _query(self, side: str, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self.loader.execute(sql, params).fetchall())

    def _execute(self, side: str, sql: str, params: Sequence[Any] = ()) -> None:
        self.loader.execute(sql, params)

    def plans(self) -> list[tuple[str, str, list[str]]]:
        found = []
        for label, sql, params in (
            ("reserve_tasks: SELECT ready", self.statements.ready, (TOPIC, BATCH)),
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


# -- the statement audit ----------------------------------------------------------------------


def _normalise(statement: str) -> str:
    return " ".join(re.sub(r"%\(\w+\)s", "%s", statement).split())


@contextmanager
def captured(sql_store: SQLStore) -> Iterator[Trace]:
    """The statements SQLStore sends to the driver (and its commits), while inside."""
    trace: Trace = []
    engine = sql_store.engine

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        trace.append(("executemany" if isinstance(parameters, list) else "execute", statement))

    def on_commit(conn: Any) -> None:
        trace.append(("commit", ""))

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield trace
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


def _short(kind: str, statement: str) -> str:
    """A statement in a few words, for the audit's summary."""
    if kind == "commit":
        return "COMMIT"
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
    store.list_leased_tasks(None, None, 1)  # its first call checks the schema version, once
    try:
        return _audit(backend, store)
    finally:
        store.close()


def _audit(backend: SqlBackend, store: SQLStore) -> list[str]:
    raw = backend.raw
    assert raw is not None
    backend.add("starting", AUDIT_TOPIC, 2 + BATCH)
    tokens = backend.tokens

    def store_reserve_terminate(limit: int) -> None:
        tasks = store.reserve_tasks(AUDIT_TOPIC, PID, limit)
        check(len(tasks) == limit, "audit: store reserved too few")
        outcomes = [Finish(task_id=t.task_id, event=Terminate(pid=PID, attempt=t.attempt))
                    for t in tasks]  # fmt: skip
        if limit == 1:
            store.terminate(tasks[0].task_id, PID, tasks[0].attempt)
        else:
            check(all(isinstance(r, Success) for r in store.finish_many(outcomes)), "audit")

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
    table_store, table_raw = backend.tables["store"], backend.tables["ceiling"]
    lines = []
    for label, store_op, raw_op in ops:
        with captured(store) as store_trace:
            store_op()
        raw.trace = []
        try:
            raw_op()
            raw_trace = raw.trace
        finally:
            raw.trace = None
        want = [(kind, _normalise(s)) for kind, s in store_trace]
        got = [(kind, _normalise(s.replace(table_raw, table_store))) for kind, s in raw_trace]
        if want != got:
            raise BenchFailure(
                f"the ceiling does not run the store's statements for {label}:\n"
                + _difference(want, got)
            )
        steps = [_short(kind, s) for kind, s in want]
        if backend.name == "postgres":  # psycopg sends BEGIN before a transaction's first statement
            steps = [
                step
                for i, x in enumerate(steps)
                for step in (["(BEGIN)", x] if i == 0 or steps[i - 1] == "COMMIT" else [x])
            ]
        shape = " / ".join(steps)
        lines.append(f"{label:<42} {shape}")
    return lines


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Case:
    """One operation, measured on every side of a store."""

    key: str
    label: str
    unit: str
    units_per_call: int
    warmup_calls: int
    sides: dict[str, Callable[[int], int]]  #: run(calls) -> units done (checked)
    prepare: Callable[[int], None] = lambda calls: None  #: untimed, before a round
    verify: Callable[[], None] = lambda: None  #: after a round
    goal: bool = False  #: the ratio goal applies


@dataclass
class Measured:
    backend: str
    key: str
    label: str
    unit: str
    units_per_call: int
    goal: bool
    calls: int
    rates: dict[str, float]  #: side -> median units per second
    spread: dict[str, float]  #: side -> (max - min) / median over the rounds
    #: store / ceiling in each round (the two ran back to back, so a slow
    #: spell of the machine mostly hits both)
    round_ratios: list[float]
    #: side -> units per second in each round, in round order
    samples: dict[str, list[float]] = field(default_factory=dict)

    def ratio(self) -> float | None:
        """The median of the per-round ratios store / ceiling."""
        if not self.round_ratios:
            return None
        return statistics.median(self.round_ratios)


def _timed(run: Callable[[int], int], calls: int) -> tuple[int, float]:
    started = time.perf_counter()
    units = run(calls)
    return units, time.perf_counter() - started


def measure(backend: str, case: Case, settings: Settings) -> Measured:
    names = list(case.sides)
    # Warm-up (statement caches, prepared statements), then three sizing runs
    # per side: the best of them, so that one slow spell cannot shrink the rounds.
    warm = case.warmup_calls
    case.prepare(4 * warm)
    slowest = 0.0
    for name in names:
        run = case.sides[name]
        run(warm)
        best = float("inf")
        for _ in range(3):
            units, seconds = _timed(run, warm)
            check(units == warm * case.units_per_call, f"{case.label} {name}: {units} units")
            best = min(best, seconds / warm)
        slowest = max(slowest, best)
    case.verify()
    calls = max(warm, min(MAX_CALLS, round(settings.target_s / slowest)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.rounds):
        case.prepare(calls)
        gc.collect()
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            units, seconds = _timed(case.sides[name], calls)
            check(
                units == calls * case.units_per_call,
                f"{backend} {case.label} {name}: {units} units, expected "
                f"{calls * case.units_per_call}",
            )
            samples[name].append(units / seconds)
        case.verify()
    rates = {name: statistics.median(s) for name, s in samples.items()}
    paired = "ceiling" in samples
    round_ratios = (
        [st / ce for st, ce in zip(samples["store"], samples["ceiling"], strict=True)]
        if paired
        else []
    )
    spread = {name: (max(s) - min(s)) / rates[name] for name, s in samples.items()}
    return Measured(
        backend,
        case.key,
        case.label,
        case.unit,
        case.units_per_call,
        case.goal,
        calls,
        rates,
        spread,
        round_ratios,
        samples,
    )


def build_cases(backend: Backend) -> list[Case]:
    store = backend.store
    raw, minimal = backend.raw, backend.minimal
    tokens = backend.tokens
    leases = [(t.task_id, t.attempt) for t in tokens]
    inputs: dict[str, Any] = {}

    # -- create
    def prepare_create(calls_times: int) -> Callable[[int], None]:
        def prepare(calls: int) -> None:
            count = calls * calls_times
            inputs["specs"] = [TaskSpec(topic=CREATE_TOPIC, data=payload(i)) for i in range(count)]
            inputs["datas"] = [payload_json(i) for i in range(count)]

        return prepare

    def store_create_one(calls: int) -> int:
        for spec in inputs["specs"][:calls]:
            store.create_task(spec)
        return calls

    def store_create_batch(calls: int) -> int:
        specs = inputs["specs"]
        done = 0
        for i in range(0, calls * BATCH, BATCH):
            results = store.create_tasks(specs[i : i + BATCH])
            done += sum(isinstance(r, Success) for r in results)
        return done

    # -- reserve + terminate
    def prepare_ready(per_call: int) -> Callable[[int], None]:
        return lambda calls: backend.add("starting", TOPIC, calls * per_call)

    def store_reserve_one(calls: int) -> int:
        done = 0
        for _ in range(calls):
            tasks = store.reserve_tasks(TOPIC, PID, 1)
            check(len(tasks) == 1, "store: reserved nothing")
            task = tasks[0]
            if store.terminate(task.task_id, PID, task.attempt).status is Status.TERMINATED:
                done += 1
        return done

    def store_reserve_batch(calls: int) -> int:
        done = 0
        for _ in range(calls):
            tasks = store.reserve_tasks(TOPIC, PID, BATCH)
            results = store.finish_many(
                [Finish(task_id=t.task_id, event=Terminate(pid=PID, attempt=t.attempt))
                 for t in tasks]
            )  # fmt: skip
            done += sum(isinstance(r, Success) for r in results)
        return done

    def verify_reserved() -> None:
        for side in backend.sides:
            counts = backend.counts(side, TOPIC)
            left = counts.get("starting", 0) + counts.get("running", 0)
            check(left == 0, f"{backend.name} {side}: {left} tasks of {TOPIC!r} not terminated")

    # -- extend
    def store_extend(size: int) -> Callable[[int], int]:
        batches = [tokens[i : i + size] for i in range(0, len(tokens) - size + 1, size)]
        offset = [0]

        def run(calls: int) -> int:
            done = 0
            start = offset[0]
            for i in range(start, start + calls):
                results = store.extend_leases(PID, batches[i % len(batches)])
                done += sum(isinstance(r, Success) for r in results)
            offset[0] = start + calls
            return done

        return run

    # -- list
    def store_list(calls: int) -> int:
        done = 0
        for _ in range(calls):
            page = store.list_leased_tasks(None, None, PAGE)
            check(page.next_cursor is not None, "list_leased_tasks: expected more pages")
            done += len(page.tasks) == PAGE
        return done

    cases = [
        Case("create1", "create_task (one at a time)", "tasks/s", 1, 30,
             {"store": store_create_one}, prepare_create(1)),
        Case("create100", "create_tasks (batches of 100)", "tasks/s", BATCH, 3,
             {"store": store_create_batch}, prepare_create(BATCH)),
        Case("rt1", "reserve+terminate (one at a time)", "tasks/s", 1, 30,
             {"store": store_reserve_one}, prepare_ready(1), verify_reserved, goal=True),
        Case("rt100", "reserve+terminate (batches of 100)", "tasks/s", BATCH, 3,
             {"store": store_reserve_batch}, prepare_ready(BATCH), verify_reserved, goal=True),
        Case("ext1", "extend_leases (1 lease)", "calls/s", 1, 30,
             {"store": store_extend(1)}),
        Case("ext100", "extend_leases (100 leases)", "leases/s", BATCH, 3,
             {"store": store_extend(BATCH)}),
        Case("list", "list_leased_tasks (page of 1000)", "pages/s", 1, 5,
             {"store": store_list}),
    ]  # fmt: skip
    if raw is None or minimal is None:
        return cases

    def raw_create(size: int) -> Callable[[int], int]:
        def run(calls: int) -> int:
            datas = inputs["datas"]
            return sum(
                raw.create(CREATE_TOPIC, datas[i : i + size]) for i in range(0, calls * size, size)
            )

        return run

    def raw_reserve(limit: int) -> Callable[[int], int]:
        def run(calls: int) -> int:
            done = 0
            for _ in range(calls):
                taken = raw.reserve(TOPIC, PID, limit)
                check(len(taken) == limit, "raw: reserved too few")
                done += raw.terminate(PID, taken)
            return done

        return run

    def minimal_reserve(limit: int) -> Callable[[int], int]:
        def run(calls: int) -> int:
            done = 0
            for _ in range(calls):
                taken = minimal.claim(TOPIC, PID, limit)
                check(len(taken) == limit, "minimal: claimed too few")
                done += minimal.finish(PID, taken)
            return done

        return run

    def raw_extend(size: int) -> Callable[[int], int]:
        batches = [leases[i : i + size] for i in range(0, len(leases) - size + 1, size)]
        offset = [0]

        def run(calls: int) -> int:
            done = 0
            start = offset[0]
            for i in range(start, start + calls):
                done += raw.extend(PID, batches[i % len(batches)])
            offset[0] = start + calls
            return done

        return run

    def raw_list(calls: int) -> int:
        return sum(len(raw.list_leased(PAGE)) == PAGE for _ in range(calls))

    extra: dict[str, dict[str, Callable[[int], int]]] = {
        "create1": {"ceiling": raw_create(1)},
        "create100": {"ceiling": raw_create(BATCH)},
        "rt1": {"ceiling": raw_reserve(1), "minimal": minimal_reserve(1)},
        "rt100": {"ceiling": raw_reserve(BATCH), "minimal": minimal_reserve(BATCH)},
        "ext1": {"ceiling": raw_extend(1)},
        "ext100": {"ceiling": raw_extend(BATCH)},
        "list": {"ceiling": raw_list},
    }
    for case in cases:
        case.sides.update(extra[case.key])
    return cases


# -- the supervisor cycle ------------------------------------------------------------------------


def supervisor_cycles(backend: Backend, settings: Settings, changed: bool) -> float:
    """Median ms of ``Supervisor.run_once()``.

    With ``changed``, 1% of the leases are extended (untimed) before each cycle.
    """
    store = backend.store
    tokens = backend.tokens
    supervisor = Supervisor(store, None, POLICY)
    supervisor.run_once()  # the first cycle meets every lease
    step = max(1, len(tokens) // 100)
    times = []
    for cycle in range(settings.cycles):
        if changed:
            first = (cycle * step) % (len(tokens) - step + 1)
            results = store.extend_leases(PID, tokens[first : first + step])
            check(all(isinstance(r, Success) for r in results), "supervisor: extend failed")
        gc.collect()
        started = time.perf_counter()
        report = supervisor.run_once()
        times.append((time.perf_counter() - started) * 1000)
        check(
            report.complete and report.listed == len(tokens) and report.monitored == len(tokens),
            f"{backend.name} supervisor listed {report.listed} of {len(tokens)} "
            f"(complete={report.complete}, monitored={report.monitored})",
        )
        check(
            not (report.revoked or report.failed or report.woken or report.conflicts),
            f"{backend.name} supervisor revoked something: {report}",
        )
    return statistics.median(times)


# -- profiling ------------------------------------------------------------------------------------

_AREAS: Final = (
    ("sqlalchemy/", "SQLAlchemy (Core execution, pool, result rows)"),
    ("psycopg", "psycopg (driver, incl. waiting for the server)"),
    ("sqlite3.", "sqlite3 (driver + SQLite engine)"),
    ("sokka/core/transitions.py", "sokka core: apply (transitions.py)"),
    ("sokka/core/task.py", "sokka core: Task / validation (task.py)"),
    ("sokka/core/", "sokka core: other"),
    ("sokka/adapters/sql.py", "sokka SQLStore (sql.py: _task, _write, _changed_columns ...)"),
    ("sokka/adapters/", "sokka adapters: other"),
    ("dataclasses", "dataclasses (replace)"),
    ("returns/", "returns (Result)"),
    ("json/", "json"),
    ("uuid", "uuid"),
    ("threading", "threading"),
)


def _area(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    where = filename.replace(os.sep, "/") + " " + name
    for needle, area in _AREAS:
        if needle in where:
            return area
    if name.startswith(("<built-in", "<method", "<function")):
        return "Python built-ins (getattr, isinstance, ...)"
    return "other Python: " + os.path.basename(filename)


def profile_case(backend: Backend, case: Case, calls: int, out: Callable[[str], None]) -> None:
    case.prepare(calls)
    profiler = cProfile.Profile()
    gc.collect()
    started = time.perf_counter()
    profiler.enable()
    units = case.sides["store"](calls)
    profiler.disable()
    seconds = time.perf_counter() - started
    for name, run in case.sides.items():  # the other tables got the same tasks: use them up
        if name != "store":
            run(calls)
    case.verify()
    check(units == calls * case.units_per_call, "profile: wrong unit count")
    stats = pstats.Stats(profiler)
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw_stats.values())
    out(f"profile: {backend.name} store, {case.label}: {calls} calls, {seconds:.2f} s under "
        f"cProfile (its overhead inflates Python-heavy parts)")  # fmt: skip
    areas: dict[str, float] = {}
    for func, value in raw_stats.items():
        areas[_area(func)] = areas.get(_area(func), 0.0) + value[2]
    out("  self time by area:")
    for area, spent in sorted(areas.items(), key=lambda kv: -kv[1])[:12]:
        out(f"    {100 * spent / total:5.1f}%  {area}")
    out("  top functions by self time (tottime; cumtime):")
    top = sorted(raw_stats.items(), key=lambda kv: -kv[1][2])[:15]
    for (filename, line, name), value in top:
        short = "/".join(filename.replace(os.sep, "/").split("/")[-2:])
        where = f"{short}:{line} {name}" if line else name
        out(f"    {100 * value[2] / total:5.1f}%  {value[2] * 1e6 / calls:7.1f} us/call  "
            f"cum {value[3] * 1e6 / calls:7.1f} us/call  {where[:90]}")  # fmt: skip


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Results:
    measured: list[Measured] = field(default_factory=list)
    cycles: dict[str, tuple[float, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    http: list[Measured] = field(default_factory=list)  #: the HTTP comparison
    http_cycles: list[HttpCycles] = field(default_factory=list)  #: its supervisor cycles
    http_skipped: dict[str, str] = field(default_factory=dict)


def _fmt(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:,.0f}"


def run_backend(
    backend: Backend, settings: Settings, results: Results, out: Callable[[str], None]
) -> None:
    out(f"\n== {backend.label} ==")
    started = time.perf_counter()
    backend.add("terminated", TOPIC, settings.finished)
    backend.add("running", LEASED_TOPIC, settings.leased)
    if isinstance(backend, SqlBackend):
        backend.tokens = backend.leased_tokens()
    check(len(backend.tokens) == settings.leased, "set-up: leased tasks missing")
    # Collections during the timed loops need not re-traverse the set-up's objects
    # (the memory store's tasks, the lease tokens): the same for every side.
    gc.collect()
    gc.freeze()
    out(f"set-up: {settings.finished:,} terminated tasks on topic {TOPIC!r}, "
        f"{settings.leased:,} running on {LEASED_TOPIC!r}"
        + (", in each of 3 identical tables (store, ceiling, minimal)"
           if isinstance(backend, SqlBackend) else "")
        + f" ({time.perf_counter() - started:.1f} s)")  # fmt: skip

    if isinstance(backend, SqlBackend):
        backend.add("starting", TOPIC, PLAN_READY)
        if isinstance(backend, PostgresBackend):
            backend.analyze()
        analyzed = " after ANALYZE" if isinstance(backend, PostgresBackend) else ""
        out(f"query plans (store table, {PLAN_READY:,} ready tasks on {TOPIC!r} behind the "
            f"{settings.finished:,} terminated ones{analyzed}):")  # fmt: skip
        for label, sql, lines in backend.plans():
            where = sql[sql.index("WHERE") :].replace("\n", "")
            out(f"  {label}: ... {' '.join(where.split())}")
            for line in lines:
                out(f"      {line}")
        backend.finish_plan_rows()
        out("statement audit (each operation once on the store and on the ceiling; the "
            "statements sent to the driver must match):")  # fmt: skip
        for line in audit(backend):
            out(f"  same: {line}")

    header = f"  {'operation':<38} {'unit':<9} {'store':>10}"
    if isinstance(backend, SqlBackend):
        header += f" {'ceiling':>10} {'ratio':>6} {'minimal*':>10}"
    out(header + "   calls/round  spread")
    measured_here = []
    cases = build_cases(backend)
    for case in cases:
        m = measure(backend.name, case, settings)
        measured_here.append(m)
        results.measured.append(m)
        ratio = m.ratio()
        line = f"  {case.label:<38} {case.unit:<9} {_fmt(m.rates['store']):>10}"
        if isinstance(backend, SqlBackend):
            line += (f" {_fmt(m.rates.get('ceiling')):>10}"
                     f" {'-' if ratio is None else f'{100 * ratio:.0f}%':>6}"
                     f" {_fmt(m.rates.get('minimal')):>10}")  # fmt: skip
        line += f"   {m.calls:>11,}  {100 * max(m.spread.values()):5.1f}%"
        out(line)
    if isinstance(backend, SqlBackend):
        out("  * minimal: the one-statement claim + one-statement finish loop; a different, "
            "smaller set of statements, NOT the ceiling")  # fmt: skip

    for side in backend.sides:  # every task ever reserved on TOPIC ended terminated
        counts = backend.counts(side, TOPIC)
        check(set(counts) <= {"terminated"}, f"{backend.name} {side}: {counts} on {TOPIC!r}")

    steady = supervisor_cycles(backend, settings, changed=False)
    changing = supervisor_cycles(backend, settings, changed=True)
    results.cycles[backend.name] = (steady, changing)
    out(f"  supervisor cycle (run_once over {len(backend.tokens):,} leased tasks, median of "
        f"{settings.cycles}): {steady:.0f} ms unchanged, {changing:.0f} ms with 1% of the leases "
        "extended between cycles")  # fmt: skip

    if settings.profile and isinstance(backend, SqlBackend):
        # The lowest ratio to the ceiling, and every goal operation that missed.
        with_ratio = [m for m in measured_here if m.ratio() is not None]
        chosen = [min(with_ratio, key=lambda m: m.ratio() or 0.0)]
        chosen += [m for m in with_ratio
                   if m.goal and (m.ratio() or 0.0) < GOAL_RATIO and m not in chosen]  # fmt: skip
        for m in chosen:
            (case,) = (c for c in cases if c.key == m.key)
            profile_case(backend, case, m.calls, out)


def summary(
    results: Results,
    settings: Settings,
    out: Callable[[str], None],
    stores: bool = True,
    http: bool = False,
) -> None:
    """``stores``: the stores' part (any of memory, sqlite, postgres was selected);
    ``http``: the HTTP comparison's."""
    if stores:
        _summary_stores(results, settings, out)
    if http:
        summary_http(results, out)


def _summary_stores(results: Results, settings: Settings, out: Callable[[str], None]) -> None:
    out("\n== summary (medians over the rounds; ratio: median of the rounds' store / ceiling) ==")
    out(f"{'store':<9} {'operation':<38} {'unit':<9} {'store':>10} {'ceiling':>10} {'ratio':>6} "
        f"{'minimal*':>10}")  # fmt: skip
    for m in results.measured:
        ratio = m.ratio()
        out(f"{m.backend:<9} {m.label:<38} {m.unit:<9} {_fmt(m.rates['store']):>10} "
            f"{_fmt(m.rates.get('ceiling')):>10} "
            f"{'-' if ratio is None else f'{100 * ratio:.0f}%':>6} "
            f"{_fmt(m.rates.get('minimal')):>10}")  # fmt: skip
    if any("minimal" in m.rates for m in results.measured):
        out("* minimal: one UPDATE ... RETURNING claims, one UPDATE finishes: a different, "
            "smaller set of statements, NOT the ceiling")  # fmt: skip
    if results.cycles:
        out(f"\nsupervisor cycle, Supervisor.run_once() over {settings.leased:,} leased tasks "
            f"(median of {settings.cycles} cycles):")  # fmt: skip
        for name, (steady, changing) in results.cycles.items():
            out(f"  {name:<9} {steady:7.0f} ms unchanged   {changing:7.0f} ms with 1% extended")
    out("\ngoals:")
    for m in results.measured:
        ratio = m.ratio()
        if m.goal and ratio is not None:
            verdict = "MET" if ratio >= GOAL_RATIO else "MISSED"
            low, high = min(m.round_ratios), max(m.round_ratios)
            out(f"  {m.backend:<9} {m.label:<38} {100 * ratio:5.1f}% of the ceiling "
                f"(rounds {100 * low:.0f}-{100 * high:.0f}%; {_fmt(m.rates['store'])} vs "
                f"{_fmt(m.rates['ceiling'])} {m.unit}); goal >= {100 * GOAL_RATIO:.0f}%: "
                f"{verdict}")  # fmt: skip
    if "postgres" in results.cycles:
        for variant, ms in zip(("unchanged", "1% extended"), results.cycles["postgres"],
                               strict=True):  # fmt: skip
            verdict = "MET" if ms < GOAL_CYCLE_MS else "MISSED"
            out(f"  postgres  supervisor cycle, {variant:<28} {ms:4.0f} ms; goal < "
                f"{GOAL_CYCLE_MS:.0f} ms: {verdict}")  # fmt: skip
    for name, why in results.skipped.items():
        out(f"  {name}: not measured ({why})")


# -- over HTTP ------------------------------------------------------------------------------------

#: Where the HTTP side's server runs: on a thread of this process, or in a child process.
HTTP_MODES: Final = ("thread", "process")
#: The HTTP comparison's sides, as printed.
HTTP_LABELS: Final = {"direct": "in-process", "thread": "HTTP thread", "process": "HTTP child"}
#: HTTP requests per measured call: reserve_tasks, then terminate or finish_many.
HTTP_REQUESTS_PER_CALL: Final = 2

#: The child-process server: ``python -c CHILD_SERVER kind url prefix finished``.
#: It makes its own store (a new MemoryStore, given ``finished`` terminated
#: tasks by this file's ``add_through``, as the other sides' are; or a SQLStore
#: on the file or tables this process made and loaded), binds a free loopback
#: port, prints it, and serves the store as ``serve_in_background`` does (same
#: uvicorn settings) until SIGTERM.
CHILD_SERVER: Final = """
import socket, sys
import uvicorn
from sokka.shell.http import create_app
kind, url, prefix, finished = sys.argv[1:5]
if kind == "memory":
    from sokka.adapters.memory import MemoryStore
    import store_ops
    store = MemoryStore()
    store_ops.add_through(store, "terminated", store_ops.TOPIC, int(finished), "child")
else:
    from sokka.adapters.sql import SQLStore
    store = SQLStore(url, prefix=prefix)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(create_app(store), lifespan="off", log_config=None, access_log=False)
uvicorn.Server(config).run(sockets=[sock])
"""


class StoreUnreachable(Exception):
    """The backing store's server does not answer: the comparison is skipped."""


class HttpBackend:
    """One kind of backing store, as identical stores, one per side.

    ``direct``: the store, called in-process. ``thread``: an ``HTTPStore`` on a
    uvicorn server on a thread of this process, fronting its own store.
    ``process``: an ``HTTPStore`` on a uvicorn server in a child process,
    fronting its own store (for SQL: on a file or tables this process made and
    loaded). Everything is undone by ``stack``: servers stopped first, then the
    PostgreSQL tables dropped.
    """

    def __init__(
        self,
        kind: str,
        modes: Sequence[str],
        stack: ExitStack,
        directory: str,
        url: str,
        finished: int,
    ) -> None:
        started = time.perf_counter()
        self.kind = kind
        self.names: tuple[str, ...] = ("direct", *modes)
        self.stack = stack
        self.directory = directory
        self.clients: dict[str, TaskStore] = {}  #: what each side's measured calls call
        self.backing: dict[str, TaskStore] = {}  #: each side's store, when in this process
        self.sql: dict[str, tuple[str, str]] = {}  #: side -> (url, prefix) of its store
        self.tables: dict[str, str] = {}
        self.loaders: dict[str, Any] = {}  #: side -> driver connection on its table
        self.servers: dict[str, str] = {}  #: side -> how its server runs
        self.added = 0  #: tasks each side's store was given on TOPIC
        if kind == "memory":
            self.label = "memory"
            for name in self.names:
                if name != "process":
                    self.backing[name] = MemoryStore()
        elif kind == "sqlite":
            self.label = f"sqlite (files in {directory})"
            for name in self.names:
                path = os.path.join(directory, f"http-{name}.db")
                self._sql_store(name, f"sqlite:///{path}", "h_")
                conn = sqlite3.connect(path, isolation_level=None)
                stack.callback(conn.close)
                self.loaders[name] = conn
        else:
            import psycopg

            conninfo = (
                make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            )
            try:
                loader = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
            except Exception as error:
                first = (str(error).strip().splitlines() or [repr(error)])[0]
                raise StoreUnreachable(f"PostgreSQL not reachable: {first}") from error
            stack.callback(loader.close)
            version = loader.execute("SHOW server_version").fetchone()
            shown = make_url(url).render_as_string(hide_password=True)
            self.label = f"postgres ({shown}; PostgreSQL {version[0] if version else '?'})"
            run = f"b{os.getpid() % 100_000}{secrets.token_hex(2)}"
            for name in self.names:
                self._sql_store(name, url, f"{run}_h{name[0]}_")
                self.loaders[name] = loader
        self.clients["direct"] = self.backing["direct"]
        if "thread" in self.names:
            from sokka.shell.http import create_app, serve_in_background

            base = stack.enter_context(serve_in_background(create_app(self.backing["thread"])))
            self.clients["thread"] = self._http(base)
            self.servers["thread"] = (
                f"uvicorn on a thread of this process ({base}): the client, the event loop "
                "and the store's worker threads share one GIL"
            )
        # Every store gets ``finished`` terminated tasks on TOPIC (a child's
        # in-memory store makes its own as it starts: faster than over HTTP).
        self.add("terminated", TOPIC, finished)
        self.analyze()
        if "process" in self.names:
            url, prefix = self.sql.get("process", ("", ""))
            self.clients["process"] = self._http(self._child(url, prefix, finished))
        self.setup_s = time.perf_counter() - started

    def _sql_store(self, name: str, url: str, prefix: str) -> None:
        sql_store = SQLStore(url, prefix=prefix)
        self.stack.callback(sql_store.close)
        self.stack.callback(self._drop, sql_store)  # before the close (last in, first out)
        sql_store.drop_schema()
        sql_store.create_schema()
        self.sql[name] = (url, prefix)
        self.tables[name] = f"{prefix}tasks"
        if name != "process":
            self.backing[name] = sql_store

    @staticmethod
    def _drop(sql_store: SQLStore) -> None:
        try:
            sql_store.drop_schema()
        except Exception as error:
            print(f"  (could not drop {sql_store!r}: {error})")

    def _http(self, base_url: str) -> TaskStore:
        from sokka.adapters.http import HTTPStore

        client = HTTPStore(base_url)
        self.stack.callback(client.close)
        return client

    def _child(self, url: str, prefix: str, finished: int) -> str:
        """Start the child-process server; its base URL once it answers /health."""
        import httpx

        import sokka

        # sokka (where this process found it), and this file (for add_through)
        root = os.path.dirname(os.path.dirname(os.path.abspath(sokka.__file__)))
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, here, env.get("PYTHONPATH")) if p)
        log_path = os.path.join(self.directory, f"child-{self.kind}.log")
        log = open(log_path, "wb")  # noqa: SIM115 - closed by the stack
        self.stack.callback(log.close)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_SERVER, self.kind, url, prefix, str(finished)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        self.stack.callback(self._stop, child)
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = child.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()

        def failed(why: str) -> RuntimeError:
            with open(log_path, "rb") as f:
                tail = f.read().decode(errors="replace").strip().splitlines()[-5:]
            return RuntimeError(f"the child HTTP server {why}: " + " | ".join(tail))

        try:
            port = int(lines.get(timeout=60))
        except (queue.Empty, ValueError):
            raise failed("did not start") from None
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise failed("did not answer /health")
            time.sleep(0.02)
        self.servers["process"] = (
            f"uvicorn in a child process (pid {child.pid}, `python -c`, {base}), serving its "
            "own store: no GIL shared with the client"
        )
        return base

    @staticmethod
    def _stop(child: subprocess.Popen[bytes]) -> None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    def add(self, status: str, topic: str, count: int) -> None:
        """Give every side's store ``count`` identical tasks in ``status`` (a child's
        in-memory store: once it runs)."""
        if self.kind == "memory":
            for name in self.names:
                if name not in self.clients and name not in self.backing:
                    continue  # the child's store, not started yet: it makes its own
                # Through the store itself where it is here; a child's, over HTTP.
                store = self.backing[name] if name in self.backing else self.clients[name]
                add_through(store, status, topic, count, f"http {self.kind} {name}")
        else:
            rows = task_rows(topic, status, count)
            for name in self.names:
                table, loader = self.tables[name], self.loaders[name]
                if self.kind == "sqlite":
                    marks = ", ".join(["?"] * len(INSERT_COLUMNS))
                    loader.execute("BEGIN IMMEDIATE")
                    loader.executemany(
                        f"INSERT INTO {table} ({', '.join(INSERT_COLUMNS)}) VALUES ({marks})",
                        rows,
                    )
                    loader.commit()
                else:
                    copy_sql = f"COPY {table} ({', '.join(INSERT_COLUMNS)}) FROM STDIN"
                    with loader.cursor() as cursor, cursor.copy(copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
        if topic == TOPIC:
            self.added += count

    def analyze(self) -> None:
        if self.kind == "postgres":
            for name in self.names:
                self.loaders[name].execute(f"ANALYZE {self.tables[name]}")

    def counts(self, name: str, unfinished: bool = False, topic: str = TOPIC) -> dict[str, int]:
        """Tasks of ``topic`` by status in ``name``'s store (``unfinished``: only those
        starting or running), read from the store itself: SQL on its table, or its
        own calls (over HTTP for a child's in-memory store)."""
        if self.kind == "memory":
            store = self.backing[name] if name in self.backing else self.clients[name]
            if not unfinished:
                return counts_through(store, topic)
            found: dict[str, int] = {}
            for status in (Status.STARTING, Status.RUNNING):
                found.update(counts_through(store, topic, status))
            return found
        p = "?" if self.kind == "sqlite" else "%s"
        sql = f"SELECT status, count(*) FROM {self.tables[name]} WHERE topic = {p} GROUP BY status"
        rows = self.loaders[name].execute(sql, (topic,)).fetchall()
        found = {status: int(n) for status, n in rows}
        if unfinished:
            return {s: n for s, n in found.items() if s in ("starting", "running")}
        return found


def http_cases(backend: HttpBackend) -> list[Case]:
    def reserve_terminate(name: str, limit: int) -> Callable[[int], int]:
        store = backend.clients[name]
        where = f"http {backend.kind} {name}"

        def run(calls: int) -> int:
            done = 0
            for _ in range(calls):
                tasks = store.reserve_tasks(TOPIC, PID, limit)
                check(len(tasks) == limit, f"{where}: reserved {len(tasks)} of {limit}")
                if limit == 1:
                    task = tasks[0]
                    if store.terminate(task.task_id, PID, task.attempt).status is Status.TERMINATED:
                        done += 1
                    continue
                results = store.finish_many(
                    [Finish(task_id=t.task_id, event=Terminate(pid=PID, attempt=t.attempt))
                     for t in tasks]
                )  # fmt: skip
                done += sum(
                    isinstance(r, Success) and r.unwrap().status is Status.TERMINATED
                    for r in results
                )
            return done

        return run

    def prepare(per_call: int) -> Callable[[int], None]:
        return lambda calls: backend.add("starting", TOPIC, calls * per_call)

    def verify() -> None:
        for name in backend.names:
            left = sum(backend.counts(name, unfinished=True).values())
            check(left == 0, f"http {backend.kind} {name}: {left} of {TOPIC!r} not terminated")

    return [
        # Warm-up: 10 calls (the connection is kept alive after the first; psycopg
        # prepares after 5), not 30: at ~1 ms a request, --quick stays short.
        Case("http1", "reserve+terminate (one at a time)", "tasks/s", 1, 10,
             {name: reserve_terminate(name, 1) for name in backend.names}, prepare(1), verify),
        Case("http100", "reserve+terminate (batches of 100)", "tasks/s", BATCH, 3,
             {name: reserve_terminate(name, BATCH) for name in backend.names}, prepare(BATCH),
             verify),
    ]  # fmt: skip


def http_ratio(m: Measured, name: str) -> float:
    """The median of the rounds' ratios ``name`` / in-process (they ran in the same round)."""
    return statistics.median(
        h / d for h, d in zip(m.samples[name], m.samples["direct"], strict=True)
    )


def http_added_us(m: Measured, name: str) -> float:
    """Microseconds added per HTTP request, from the two sides' median rates."""
    per_call = m.units_per_call / m.rates[name] - m.units_per_call / m.rates["direct"]
    return per_call / HTTP_REQUESTS_PER_CALL * 1e6


@dataclass
class HttpCycles:
    """One ``Supervisor.run_once()`` per side per round, over the same leased tasks."""

    backend: str
    leased: int  #: running tasks in each side's store, all of them listed every cycle
    pages: int  #: list_leased_tasks pages a cycle reads (HTTP requests, over HTTP)
    samples: dict[str, list[float]]  #: side -> ms of its cycle in each round, in round order

    def ms(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def round_ratios(self, name: str) -> list[float]:
        """``name`` / in-process, each round (the sides ran back to back)."""
        return [h / d for h, d in zip(self.samples[name], self.samples["direct"], strict=True)]

    def ratio(self, name: str) -> float:
        """The median of the rounds' ratios: how many times the in-process cycle's time."""
        return statistics.median(self.round_ratios(name))

    def added_ms(self, name: str) -> float:
        """Milliseconds added per page (HTTP request), from the two sides' medians."""
        return (self.ms(name) - self.ms("direct")) / self.pages


def http_supervisor_cycles(backend: HttpBackend, settings: Settings) -> HttpCycles:
    """``Supervisor.run_once()`` through each side's client, in interleaved rounds.

    Every side's store is given the same ``settings.http_leased`` running tasks on
    LEASED_TOPIC (the only leased tasks in it: every task of TOPIC was checked
    terminated). One warm-up cycle per side meets every lease; then in each of
    ``settings.cycles`` rounds every side runs one cycle, in an order that rotates
    from round to round. Every cycle is checked: complete, every lease listed and
    monitored, nothing revoked (the lease is an hour long). At the end every side's
    store still holds exactly those tasks, all running.
    """
    leased = settings.http_leased
    backend.add("running", LEASED_TOPIC, leased)
    backend.analyze()
    names = list(backend.names)
    direct = backend.clients["direct"]
    pages, cursor = 0, None
    while True:  # the pages one cycle reads (untimed, on the in-process store)
        page = direct.list_leased_tasks(None, cursor, MAX_PAGE_SIZE)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    supervisors = {name: Supervisor(backend.clients[name], None, POLICY) for name in names}

    def cycle(name: str) -> float:
        gc.collect()
        started = time.perf_counter()
        report = supervisors[name].run_once()
        elapsed = (time.perf_counter() - started) * 1000
        where = f"http {backend.kind} {name} supervisor"
        check(
            report.complete and report.listed == leased and report.monitored == leased,
            f"{where} listed {report.listed}, monitored {report.monitored} of {leased} "
            f"(complete={report.complete}, listing errors: {report.listing_errors})",
        )
        check(
            not (report.revoked or report.failed or report.woken or report.conflicts
                 or report.retryable_errors),
            f"{where} revoked something: {report}",
        )  # fmt: skip
        return elapsed

    gc.collect()
    gc.freeze()  # the leased tasks just made, as run_http froze the set-up's
    for name in names:
        cycle(name)  # the first cycle meets every lease
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.cycles):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(cycle(name))
    for name in names:
        counts = backend.counts(name, topic=LEASED_TOPIC)
        check(
            counts == {"running": leased},
            f"http {backend.kind} {name}: {counts} on {LEASED_TOPIC!r} after the supervisor "
            f"cycles, expected {leased} running",
        )
    return HttpCycles(backend.kind, leased, pages, samples)


def _http_cycle_header(modes: Sequence[str]) -> str:
    line = f"{'in-process':>10}"
    for name in modes:
        line += f"  {HTTP_LABELS[name]:>11} {'ratio':>6} {'+ms/req':>7}"
    return line


def _http_cycle_row(c: HttpCycles) -> str:
    line = f"{c.ms('direct'):7.1f} ms"
    for name in HTTP_MODES:
        if name in c.samples:
            line += f"  {c.ms(name):8.1f} ms {c.ratio(name):5.1f}x {c.added_ms(name):7.1f}"
    return line


def _leased_note(settings: Settings) -> str:
    if settings.http_leased == FULL.http_leased:
        return ""
    return f" (--quick: {settings.http_leased:,} leased tasks, not {FULL.http_leased:,})"


def _http_modes(m: Measured) -> list[str]:
    return [name for name in HTTP_MODES if name in m.rates]


def _http_header(modes: Sequence[str]) -> str:
    line = f"{'operation':<38} {'unit':<9} {'in-process':>10}"
    for name in modes:
        line += f"  {HTTP_LABELS[name]:>11} {'ratio':>6} {'+us/req':>7}"
    return line


def _http_row(m: Measured) -> str:
    line = f"{m.label:<38} {m.unit:<9} {_fmt(m.rates['direct']):>10}"
    for name in _http_modes(m):
        line += (f"  {_fmt(m.rates[name]):>11} {100 * http_ratio(m, name):5.1f}%"
                 f" {http_added_us(m, name):7.0f}")  # fmt: skip
    return line


def run_http(
    backend: HttpBackend, settings: Settings, results: Results, out: Callable[[str], None]
) -> None:
    out(f"\n== HTTP: HTTPStore -> uvicorn on 127.0.0.1 -> {backend.label}; against the same "
        "store called in-process ==")  # fmt: skip
    gc.collect()
    gc.freeze()
    sides = ", ".join(HTTP_LABELS[name] for name in backend.names)
    out(f"set-up: {settings.finished:,} terminated tasks on topic {TOPIC!r}, in each of "
        f"{len(backend.names)} identical stores ({sides}), servers started "
        f"({backend.setup_s:.1f} s)")  # fmt: skip
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    versions = {n: importlib.metadata.version(n) for n in ("uvicorn", "starlette", "httpx")}
    out(f"servers: uvicorn {versions['uvicorn']} ({loop}, {http}), Starlette "
        f"{versions['starlette']}; client: HTTPStore on httpx {versions['httpx']}, one "
        "kept-alive connection")  # fmt: skip
    for name, how in backend.servers.items():
        out(f"  {HTTP_LABELS[name]}: {how}")
    out(f"  {_http_header([n for n in HTTP_MODES if n in backend.names])}   calls/round  spread")
    for case in http_cases(backend):
        m = measure(backend.kind, case, settings)
        results.http.append(m)
        out(f"  {_http_row(m)}   {m.calls:>11,}  {100 * max(m.spread.values()):5.1f}%")
    out("  ratio: median of the rounds' HTTP / in-process; +us/req: time added per HTTP "
        f"request ({HTTP_REQUESTS_PER_CALL} per call: reserve_tasks, then terminate or "
        "finish_many)")  # fmt: skip
    for name in backend.names:  # every task each store was given ended terminated
        counts = backend.counts(name)
        check(
            counts == {"terminated": backend.added},
            f"http {backend.kind} {name}: {counts} on {TOPIC!r}, expected "
            f"{backend.added} terminated",
        )
    out(f"  checked: every side's store holds its {backend.added:,} tasks of {TOPIC!r}, all "
        "terminated")  # fmt: skip

    c = http_supervisor_cycles(backend, settings)
    results.http_cycles.append(c)
    modes = [n for n in HTTP_MODES if n in backend.names]
    out(f"  supervisor cycle: Supervisor.run_once() over {c.leased:,} leased tasks on "
        f"{LEASED_TOPIC!r} ({c.pages} pages of list_leased_tasks), nothing changed; median "
        f"of {settings.cycles} rounds, one cycle per side per round"
        f"{_leased_note(settings)}")  # fmt: skip
    out(f"    {_http_cycle_header(modes)}")
    out(f"    {_http_cycle_row(c)}")
    out("    ratio: median of the rounds' HTTP / in-process cycle time; +ms/req: time added "
        "per page (one HTTP request each)")  # fmt: skip
    out(f"  checked: every cycle complete, listed and monitored all {c.leased:,} leases, "
        f"revoked nothing; every side's store still holds them, all running")  # fmt: skip


def summary_http(results: Results, out: Callable[[str], None]) -> None:
    out("\n== HTTP summary (medians over the rounds; ratio: median of the rounds' HTTP / "
        "in-process, with its range) ==")  # fmt: skip
    modes = [n for n in HTTP_MODES if any(n in m.rates for m in results.http)]
    out(f"{'backing':<9} {_http_header(modes)}")
    for m in results.http:
        out(f"{m.backend:<9} {_http_row(m)}")
    for m in results.http:
        for name in _http_modes(m):
            ratios = [h / d for h, d in zip(m.samples[name], m.samples["direct"], strict=True)]
            out(f"  {m.backend:<9} {m.label:<38} {HTTP_LABELS[name]:<11} "
                f"{100 * http_ratio(m, name):5.1f}% (rounds {100 * min(ratios):.1f}-"
                f"{100 * max(ratios):.1f}%)")  # fmt: skip
    if results.http_cycles:
        leased = sorted({c.leased for c in results.http_cycles})
        out(f"\nsupervisor cycle over HTTP: Supervisor.run_once() over "
            f"{'/'.join(f'{n:,}' for n in leased)} leased tasks, nothing changed (median of "
            "the rounds; ratio: median of the rounds' HTTP / in-process time, with its "
            "range)" + ("" if leased == [FULL.http_leased] else
                        f"; --quick: not {FULL.http_leased:,} leased tasks"))  # fmt: skip
        out(f"{'backing':<9} {_http_cycle_header(modes)}")
        for c in results.http_cycles:
            out(f"{c.backend:<9} {_http_cycle_row(c)}")
        for c in results.http_cycles:
            for name in HTTP_MODES:
                if name in c.samples:
                    low, high = min(c.round_ratios(name)), max(c.round_ratios(name))
                    out(f"  {c.backend:<9} supervisor cycle {HTTP_LABELS[name]:<11} "
                        f"{c.ratio(name):5.1f}x (rounds {low:.1f}-{high:.1f}x)")  # fmt: skip
    if "thread" in modes:
        out("HTTP thread: the server on a thread of this process, sharing the GIL with the "
            "client")  # fmt: skip
    if "process" in modes:
        out("HTTP child: the server in a child process (python -c uvicorn): no GIL shared")
    for name, why in results.http_skipped.items():
        out(f"  {name}: not measured ({why})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--stores",
        default=",".join((*STORES, HTTP)),
        help="comma-separated, from memory,sqlite,postgres,http (default: all); http: "
        "reserve+terminate and the supervisor cycle over HTTP against in-process, on the "
        "--http-over stores",
    )
    parser.add_argument(
        "--http-over",
        default=None,
        help="comma-separated backing stores of the HTTP comparison, from "
        "memory,sqlite,postgres (default: the other stores selected, or all three when "
        "--stores is only http)",
    )
    parser.add_argument(
        "--http-server",
        choices=("both", *HTTP_MODES),
        default="both",
        help="where the HTTP server runs: on a thread of this process (shares the GIL "
        "with the client), in a child process, or both (default)",
    )
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the store side of each SQL store's lowest-ratio operation, and of "
        "every reserve+terminate operation that misses its goal",
    )
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in (*STORES, HTTP)]
    if unknown or not wanted:
        parser.error(f"unknown store(s) {unknown}; choose from {','.join((*STORES, HTTP))}")
    if args.http_over is None:
        http_over = [s for s in STORES if s in wanted] or list(STORES)
    else:
        if HTTP not in wanted:
            parser.error("--http-over needs http in --stores")
        http_over = [s.strip() for s in args.http_over.split(",") if s.strip()]
        unknown = [s for s in http_over if s not in STORES]
        if unknown or not http_over:
            parser.error(f"unknown --http-over store(s) {unknown}; choose from {','.join(STORES)}")
    http_modes = HTTP_MODES if args.http_server == "both" else (args.http_server,)
    base = QUICK if args.quick else FULL
    settings = dataclasses.replace(base, profile=args.profile)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        import psycopg

        psycopg_version = psycopg.__version__
    except ImportError:  # pragma: no cover - only without the postgres extra
        psycopg_version = "not installed"
    out(f"sokka store benchmark{' (--quick)' if args.quick else ''}: {settings.rounds} rounds, "
        f"~{settings.target_s} s per side per round, medians")  # fmt: skip
    out(f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, psycopg "
        f"{psycopg_version}, SQLite {sqlite3.sqlite_version}; {platform.machine()}, "
        f"{os.cpu_count()} CPUs")  # fmt: skip
    results = Results()
    started = time.perf_counter()
    try:
        for name in STORES:
            if name not in wanted:
                continue
            with ExitStack() as stack:
                backend: Backend
                if name == "memory":
                    backend = MemoryBackend(settings)
                elif name == "sqlite":
                    directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="sokka-"))
                    backend = SQLiteBackend(settings, directory)
                else:
                    try:
                        backend = PostgresBackend(settings, args.postgres_url)
                    except Exception as error:
                        first = (str(error).strip().splitlines() or [repr(error)])[0]
                        results.skipped[name] = f"PostgreSQL not reachable: {first}"
                        out(f"\n== postgres: skipped ({results.skipped[name]}) ==")
                        continue
                stack.callback(backend.close)
                section = time.perf_counter()
                run_backend(backend, settings, results, out)
                gc.unfreeze()
                out(f"  ({name}: {time.perf_counter() - section:.0f} s)")
        for name in STORES if HTTP in wanted else ():
            if name not in http_over:
                continue
            with ExitStack() as stack:
                directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="sokka-http-"))
                try:
                    http_backend = HttpBackend(
                        name, http_modes, stack, directory, args.postgres_url, settings.finished
                    )
                except StoreUnreachable as error:
                    results.http_skipped[f"http over {name}"] = str(error)
                    out(f"\n== HTTP over {name}: skipped ({error}) ==")
                    continue
                section = time.perf_counter()
                run_http(http_backend, settings, results, out)
                gc.unfreeze()
                out(f"  (http over {name}: {time.perf_counter() - section:.0f} s)")
    except BenchFailure as failure:
        out(f"\nCORRECTNESS CHECK FAILED: {failure}")
        return 1
    summary(results, settings, out, any(s in wanted for s in STORES), HTTP in wanted)
    out(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
