"""The SQL store: SQLite (the embedded default) and PostgreSQL, on SQLAlchemy Core.

Every change reads the task, runs ``core.transitions.apply`` on it, and writes
the result back with a compare-and-set::

    UPDATE tasks SET ... WHERE task_id = :id AND record_ver = :seen

so the state machine exists once, in the core. Writes run in short
transactions: on PostgreSQL the rows are locked (``FOR UPDATE``; reservation
uses ``FOR UPDATE SKIP LOCKED`` so reservers never wait for each other); on
SQLite a write transaction starts with ``BEGIN IMMEDIATE`` and so holds the
single writer lock from its first statement.

Queries are written so that the indexes serve them: the status values a
partial index is defined on appear as literals (a bound parameter would hide
them from the planner), and every listing is a keyset scan in creation order
(``seq > :after ORDER BY seq LIMIT n``), never OFFSET.

Driver errors never leak: a lost or refused connection becomes
``Unavailable``, a lock timeout, deadlock or serialization failure becomes
``Throttled`` (both retryable), a missing schema ``SchemaError``, anything
else ``StoreError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final
from urllib.parse import quote

import sqlalchemy as sa
from returns.result import Failure, Result, Success
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session, scoped_session

from sokka.adapters.listeners import DataVersionWatcher, PgListener
from sokka.adapters.memory import wall_clock_ms
from sokka.adapters.ready import Doorbell, Doorbells
from sokka.adapters.store import (
    DEFAULT_FAILED_WITHIN_MS,
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Counts,
    EventCalls,
    Page,
    Purged,
    TaskFilter,
    TopicCounts,
    check_counting,
    check_leased_listing,
    check_listing,
    check_purge,
    check_topic,
    encode_cursor,
    require_batch,
    require_limit,
    require_spec,
)
from sokka.core.commands import Finish
from sokka.core.errors import (
    AlreadyExists,
    NotFound,
    RetryableError,
    SchemaError,
    SokkaError,
    StoreError,
    Throttled,
    Unavailable,
    ValidationError,
)
from sokka.core.task import Status, Task, TaskSpec, require_name, task_from_values
from sokka.core.transitions import (
    Event,
    Extend,
    Fail,
    FromEvent,
    Increment,
    Release,
    Reserve,
    SetRule,
    Snooze,
    Terminate,
    apply,
    set_rule,
)

__all__ = ["SCHEMA_VERSION", "SUPPORTED_URLS", "SQLStore", "ready_channel"]

#: The schema this code writes and reads. A database with a newer one is refused;
#: an older one is upgraded in place by ``create_schema`` (``_upgrade``).
#: 1: the tasks. 2: the tasks' ``result``, and paused topics (``{prefix}paused_topics``).
#: 3: the tasks' ``trace_context``. 4: cheaper indexes to keep up on every status
#: change (the group index only for tasks in another's group; on PostgreSQL a
#: BRIN index on ``created_at``): see ``_upgrade_to_4``.
SCHEMA_VERSION: Final = 4

#: Every store URL sokka accepts, for the error messages (one list, shared by
#: every message that lists them). The http(s) URL is that of a ``sokka serve``;
#: open it with ``HTTPStore`` (the command line's ``--db`` takes all three).
SUPPORTED_URLS: Final = (
    "sqlite:///relative/path.db or sqlite:////absolute/path.db",
    "postgresql+psycopg://user:password@host:5432/database (pip install 'sokka[postgres]')",
    "http://host:port or https://host:port of a `sokka serve` (HTTPStore; "
    "pip install 'sokka[http]')",
)

_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]{0,29}$")
_LEASED_SQL = "status IN ('running', 'snoozed')"
_READY_SQL = "status = 'starting'"
#: The group index holds only tasks grouped under another task's id: most tasks
#: are their own group (``task_group_id`` defaults to ``task_id``), and an index
#: entry is written for every row version, so each status change of an
#: ungrouped task would pay for an entry no query needs. A task that is its own
#: group is found by its id (``_in_group``).
_GROUPED_SQL = "task_group_id <> task_id"

# The columns a transition may change; everything else is fixed at creation.
_MUTABLE: Final = (
    "status",
    "pid",
    "record_ver",
    "attempt",
    "failures",
    "snooze_time_ms",
    "error",
    "errors",
    "updated_at",
    "result",
)
_STATUS: Final = {s.value: s for s in Status}
_INSERT_ARRAY_TYPES: Final = {
    "task_id": "text",
    "task_group_id": "text",
    "topic": "text",
    "sub_topic": "text",
    "description": "text",
    "data": "json",
    "status": "text",
    "pid": "text",
    "record_ver": "bigint",
    "attempt": "integer",
    "failures": "integer",
    "max_attempts": "integer",
    "lease_time_ms": "bigint",
    "timeout_ms": "bigint",
    "snooze_time_ms": "bigint",
    "error": "text",
    "errors": "text",
    "created_at": "bigint",
    "updated_at": "bigint",
    "result": "json",
    "trace_context": "text",
}
#: The columns an INSERT writes (every one but ``seq``): ``_insert_row``'s keys.
_INSERT_COLUMNS: Final = tuple(_INSERT_ARRAY_TYPES)
_PG_ARRAY_TYPES: Final = {
    "status": "text",
    "pid": "text",
    "record_ver": "bigint",
    "attempt": "integer",
    "failures": "integer",
    "snooze_time_ms": "bigint",
    "error": "text",
    "errors": "text",
    "updated_at": "bigint",
    "result": "json",
}


class _JsonText(sa.types.UserDefinedType[str]):
    """PostgreSQL's ``json`` type, exchanged with Python as text.

    ``json`` (not ``jsonb``) keeps the text exactly as written, so a task reads
    back byte for byte as it was created, as from every other store; the
    server still checks that it is JSON. Cast to ``jsonb`` in an expression
    index if you need to query inside ``data``.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON"

    def column_expression(self, colexpr: Any) -> Any:
        return sa.cast(colexpr, sa.Text)


def _unsupported(url: object, why: str) -> ValidationError:
    supported = "; ".join(SUPPORTED_URLS)
    return ValidationError("url", f"{why} (supported: {supported})")


def _parse_url(url: str) -> URL:
    if not isinstance(url, str) or not url:
        raise _unsupported(url, "must be a database URL")
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise _unsupported(url, f"{url!r} is not a database URL") from None
    name = parsed.drivername
    if name in ("postgresql", "postgres", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
        if not parsed.database:
            raise _unsupported(url, "a PostgreSQL URL must name a database")
        return parsed
    if name in ("sqlite", "sqlite+pysqlite"):
        if parsed.host or parsed.username or parsed.port:
            # sqlite://relative.db reads "relative.db" as a host name, and then
            # finds no file at all: say so, and show the form that was meant.
            path = "/".join(part for part in (parsed.host, parsed.database) if part)
            raise _unsupported(
                url,
                f"{url!r} has two slashes, so {parsed.host!r} is read as a host, and an "
                f"SQLite URL has none: write sqlite:///{path} for a path relative to the "
                f"working directory, or sqlite:////absolute/path.db",
            )
        if not parsed.database or parsed.database == ":memory:":
            raise _unsupported(
                url,
                "SQLite needs a file (an in-memory database is private to one connection; "
                "use sokka.MemoryStore instead)",
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise _unsupported(url, f"the scheme {name!r} is not supported")


def _existing_sqlite_file(url: URL) -> URL:
    """``url`` opened read/write without ever creating the file.

    A missing file is refused here, naming it; and the URL becomes an SQLite
    URI with ``mode=rw``, so that a file deleted after this check is not
    quietly created again by the first connection either.
    """
    if url.query.get("uri"):
        return url  # the caller wrote an SQLite URI of their own: theirs to say
    path = os.path.abspath(str(url.database))
    if not os.path.isfile(path):
        raise ValidationError(
            "url",
            f"the SQLite file {path} does not exist: create it with `sokka init` "
            "(or SQLStore(...).create_schema())",
        )
    query = {**url.query, "mode": "rw", "uri": "true"}
    return url.set(database=f"file:{quote(path)}", query=query)


def _create_engine(
    url: URL, *, pool_size: int, lock_timeout_ms: int, connect_timeout_s: int
) -> Engine:
    arguments = _engine_arguments(
        url,
        pool_size=pool_size,
        lock_timeout_ms=lock_timeout_ms,
        connect_timeout_s=connect_timeout_s,
    )
    engine = sa.create_engine(url, **arguments)
    if url.get_backend_name() == "sqlite":
        _configure_sqlite(engine, busy_timeout_ms=lock_timeout_ms)
    return engine


def _engine_arguments(
    url: URL, *, pool_size: int, lock_timeout_ms: int, connect_timeout_s: int
) -> dict[str, Any]:
    """``create_engine``'s arguments for ``url``: the pool, and PostgreSQL's timeouts.

    Shared with ``AsyncSQLStore``, whose engine is configured the same way.
    """
    pool = {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": connect_timeout_s}
    if url.get_backend_name() == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise StoreError("PostgreSQL needs psycopg 3: pip install 'sokka[postgres]'") from None
        # A client stopped in the middle of a transaction (a paused process) must
        # not hold its row locks for ever: the server ends such a session.
        options = (
            f"-c lock_timeout={lock_timeout_ms} "
            f"-c idle_in_transaction_session_timeout={max(10_000, 2 * lock_timeout_ms)}"
        )
        return {
            **pool,
            "connect_args": {"connect_timeout": connect_timeout_s, "options": options},
        }
    return pool


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    """WAL, a busy timeout, foreign keys, and transactions sokka starts itself.

    The sqlite3 module's own transaction handling is switched off, so that a
    write can begin with BEGIN IMMEDIATE: it takes the writer lock at once,
    instead of failing later when a read transaction tries to become a write.
    """

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("sokka_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _translate(error: Exception) -> SokkaError:
    """The sokka error for a driver's exception (never returns the driver's own)."""
    if isinstance(error, SokkaError):
        return error
    if isinstance(error, sa_exc.TimeoutError):
        return Throttled("no database connection free in time (the pool is exhausted)")
    orig = getattr(error, "orig", None) or error
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return Unavailable(f"the database connection was lost: {message}")
    if isinstance(sqlstate, str):
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
            return Unavailable(f"the database cannot be reached: {message}")
        if sqlstate in ("40001", "40P01", "55P03", "57014") or sqlstate.startswith("53"):
            return Throttled(f"the database is busy: {message}")
        if sqlstate in ("42P01", "42703"):
            return SchemaError(f"{message}: run `sokka init` to create the schema")
    lowered = message.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return Throttled(f"the database is busy: {message}")
    if "no such table" in lowered or "no such column" in lowered:
        return SchemaError(f"{message}: run `sokka init` to create the schema")
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) or _unreachable(orig):
        return Unavailable(f"the database cannot be reached: {message}")
    if isinstance(orig, OSError):
        return Unavailable(f"the database cannot be reached: {message}")
    return StoreError(f"the database failed: {type(orig).__name__}: {message}")


class SQLStore(EventCalls):
    """A ``TaskStore`` in SQLite or PostgreSQL.

    ``url_or_engine``: a URL (see ``SUPPORTED_URLS``) or a SQLAlchemy
    ``Engine`` you configured yourself. ``prefix`` names the tables
    (``{prefix}tasks``, ``{prefix}schema_version``), so independent queues can
    share one database. The schema is created explicitly: ``create_schema()``
    or ``sokka init``.

    ``create_file`` (SQLite only): with True, the default, the first connection
    creates a missing database file, as SQLite does. With False, a missing
    file is a ``ValidationError`` naming it, and nothing is created: the
    file is opened read/write, never created (the ``sokka`` commands other
    than ``init`` open their store so, and leave no empty file behind).
    """

    def __init__(
        self,
        url_or_engine: str | Engine,
        *,
        prefix: str = "sokka_",
        clock: Callable[[], int] = wall_clock_ms,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        pool_size: int = 10,
        lock_timeout_ms: int = 5_000,
        connect_timeout_s: int = 5,
        create_file: bool = True,
        watch_interval_ms: int = 3,
    ) -> None:
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            raise ValidationError(
                "prefix",
                "must be 1 to 30 lower-case letters, digits or _, not starting with a digit",
            )
        if isinstance(url_or_engine, Engine):
            self._engine = url_or_engine
            if self._engine.dialect.name == "sqlite":
                _configure_sqlite(self._engine, busy_timeout_ms=lock_timeout_ms)
        else:
            url = _parse_url(url_or_engine)
            if not create_file and url.get_backend_name() == "sqlite":
                url = _existing_sqlite_file(url)
            self._engine = _create_engine(
                url,
                pool_size=pool_size,
                lock_timeout_ms=lock_timeout_ms,
                connect_timeout_s=connect_timeout_s,
            )
        self._dialect = self._engine.dialect.name
        if self._dialect not in ("sqlite", "postgresql"):
            raise _unsupported(self._dialect, f"the {self._dialect} dialect is not supported")
        self._pg = self._dialect == "postgresql"
        self._prefix = prefix
        self._clock = clock
        self._new_id = new_id
        self._schema_checked = False
        self._metadata, self._tasks, self._versions = _tables(prefix)
        self._paused = _paused_table(self._metadata, prefix)
        # Waiters for tasks becoming ready (ready_signal), rung by this store's own
        # changes at once and by a listener thread for other processes' changes.
        self._bells = Doorbells()
        self._connect_timeout_s = connect_timeout_s
        self._listener = (
            PgListener(self._listener_connection, self._bells, ready_channel(prefix))
            if self._pg
            else DataVersionWatcher(
                self._listener_connection,
                self._bells,
                require_limit("watch_interval_ms", watch_interval_ms, 60_000),
            )
        )
        # The hot calls run on driver connections (``_driver``, ``_autocommit``).
        # SQLite's are taken from the engine's pool once and kept: at most
        # ``_MAX_IDLE_DRIVERS`` idle. PostgreSQL's are borrowed for each call.
        self._idle_drivers: list[Any] = []
        pooled = isinstance(self._engine.pool, sa.pool.QueuePool | sa.pool.NullPool)
        dialect = self._engine.dialect
        self._own_drivers = pooled and dialect.driver == "pysqlite"
        self._own_pg_drivers = pooled and dialect.driver == "psycopg"
        self._build_statements()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine the store runs its statements on."""
        return self._engine

    @property
    def single_writer(self) -> bool:
        """True for SQLite: one write transaction at a time for the whole file."""
        return not self._pg

    @property
    def dialect(self) -> str:
        """The database's kind: ``"sqlite"`` or ``"postgresql"``."""
        return self._dialect

    def close(self) -> None:
        """Stop the listener (if a ``ready_signal`` started it); close every pooled
        connection."""
        self._listener.stop()
        while self._idle_drivers:
            with contextlib.suppress(Exception):
                self._idle_drivers.pop().close()  # back to the engine's pool
        self._engine.dispose()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"SQLStore({url!r}, prefix={self._prefix!r})"

    # -- waking waiters -------------------------------------------------------

    def ready_signal(self, topic: str) -> Doorbell:
        """A hint that tasks of ``topic`` may be ready (``sokka.adapters.ready``).

        PostgreSQL: every statement that makes a task ready notifies the
        channel ``{prefix}ready`` with its topic in the same transaction, and
        one connection per store LISTENs to it. SQLite: a thread reads
        ``PRAGMA data_version`` every ``watch_interval_ms`` while anyone waits.
        Either way, this process's own changes ring at once. The listener
        runs while any signal is open (and stops at ``close()``).
        """
        require_name("topic", topic)
        signal = self._bells.signal(topic)
        # After subscribing: a listener that was just ending sees the new waiter,
        # or has already let go and a new one starts.
        self._listener.ensure_running(wait_s=self._connect_timeout_s)
        return signal

    def subscribe_ready(self, topic: str, ring: Callable[[], None]) -> Callable[[], None]:
        """``ring()`` on every hint for ``topic`` (as ``ready_signal``); returns the
        unsubscribe call."""
        unsubscribe = self._bells.subscribe(topic, ring)
        self._listener.ensure_running(wait_s=self._connect_timeout_s)
        return unsubscribe

    def _listener_connection(self) -> Any:
        """A connection of the store's engine, taken out of its pool for good."""
        engine = self._engine
        if engine.dialect.is_async:
            # The sync face of an AsyncEngine (AsyncSQLStore): its connections are
            # used on their event loop only, so the listener's thread opens a
            # blocking one to the same database, with the blocking driver.
            driver = "psycopg" if self._pg else "pysqlite"
            url = engine.url.set(drivername=f"{engine.url.get_backend_name()}+{driver}")
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        pooled = engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()
        return connection

    # -- schema --------------------------------------------------------------

    def create_schema(self) -> int:
        """Create the tables and indexes if missing, or upgrade an older schema in
        place; return the schema version.

        Idempotent and safe to run from several processes at once. A database
        of an older schema is upgraded step by step (``_upgrade``), in one
        transaction: it ends at ``SCHEMA_VERSION``, or, if a step fails, as it
        was. A database whose schema is newer than this code knows is refused
        (``SchemaError``), never downgraded.
        """
        with self._session(write=True, check_schema=False) as conn:
            if self._pg:
                # Serialise concurrent create_schema calls on this prefix.
                key = int.from_bytes(hashlib.sha256(self._prefix.encode()).digest()[:8], "big")
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key - 2**63})
            self._metadata.create_all(conn, checkfirst=True)
            found = conn.execute(sa.select(self._versions.c.version)).scalar()
            if found is None:
                conn.execute(
                    self._versions.insert().values(version=SCHEMA_VERSION, applied_at=self._clock())
                )
                found = SCHEMA_VERSION
            self._check_version(found, upgrading=True)
            if found < SCHEMA_VERSION:
                self._upgrade(conn, found)
        self._schema_checked = True
        return SCHEMA_VERSION

    def _upgrade(self, conn: Connection, found: int) -> None:
        """Bring a database of schema version ``found`` up to ``SCHEMA_VERSION`` in
        place, one step per version, in the caller's transaction (all or nothing).

        Each step is idempotent: ``create_all`` has already made any table that
        was missing, so a step only does what that cannot (alter, backfill).
        """
        steps = {2: self._upgrade_to_2, 3: self._upgrade_to_3, 4: self._upgrade_to_4}
        for version in range(found + 1, SCHEMA_VERSION + 1):
            steps[version](conn)
        conn.execute(
            self._versions.update().values(version=SCHEMA_VERSION, applied_at=self._clock())
        )

    def _upgrade_to_2(self, conn: Connection) -> None:
        """Version 2: the tasks' ``result`` (``ok(result)``) and the paused topics
        (``pause_topic``)."""
        _add_column(conn, self._tasks.c.result)
        self._paused.create(conn, checkfirst=True)

    def _upgrade_to_3(self, conn: Connection) -> None:
        """Version 3: the tasks' ``trace_context`` (what a tracer injected at enqueue)."""
        _add_column(conn, self._tasks.c.trace_context)

    def _upgrade_to_4(self, conn: Connection) -> None:
        """Version 4: the group index holds only tasks of another's group, and on
        PostgreSQL the creation-time index is BRIN (``_tables`` says why).

        Both are rebuilt in the upgrade's transaction, which holds the table
        against writes while the indexes build: a large table takes a while.
        """
        for name in ("tasks_group", "tasks_created"):
            (index,) = (i for i in self._tasks.indexes if i.name == f"{self._prefix}{name}")
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {index.name}"))
            index.create(conn)

    def drop_schema(self) -> None:
        """Drop this prefix's tables (and every task in them)."""
        with self._session(write=True, check_schema=False) as conn:
            self._metadata.drop_all(conn, checkfirst=True)
        self._schema_checked = False

    def schema_version(self) -> int | None:
        """The schema version in the database, or None when there is no schema."""
        with self._session(write=False, check_schema=False) as conn:
            if not sa.inspect(conn).has_table(self._versions.name):
                return None
            found = conn.execute(sa.select(self._versions.c.version)).scalar()
            return None if found is None else int(found)

    def _check_version(self, found: int | None, *, upgrading: bool = False) -> None:
        if found is None:
            raise SchemaError(
                f"no sokka schema under the prefix {self._prefix!r}: run `sokka init` "
                "or SQLStore.create_schema()"
            )
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"the database has schema version {found}, newer than this sokka knows "
                f"({SCHEMA_VERSION}): upgrade sokka"
            )
        if found < SCHEMA_VERSION and not upgrading:
            raise SchemaError(
                f"the database has schema version {found}, older than this sokka's "
                f"({SCHEMA_VERSION}): run `sokka init` (or SQLStore.create_schema()) to "
                "upgrade it in place"
            )

    # -- sessions and statements ------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool, check_schema: bool = True) -> Iterator[Connection]:
        with _translated_errors(), self._engine.connect() as conn:
            if write and not self._pg:
                conn.execution_options(sokka_write=True)
            if check_schema and not self._schema_checked:
                with conn.begin():
                    self._verify_schema(conn)
            with conn.begin():
                yield conn

    @contextmanager
    def _one_statement(self) -> Iterator[Connection]:
        """A connection for ONE write statement, which is its own transaction.

        On PostgreSQL it runs in autocommit: one round trip, where BEGIN, the
        statement and COMMIT take three (and on a threaded worker each round
        trip may also wait for the GIL). One statement is atomic either way.
        On SQLite, as ``_session(write=True)`` (BEGIN IMMEDIATE: the writer lock).
        """
        if not self._pg:
            with self._session(write=True) as conn:
                yield conn
            return
        with _translated_errors(), self._engine.connect() as conn:
            if not self._schema_checked:
                with conn.begin():
                    self._verify_schema(conn)
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def _driver(self, *, write: bool) -> Iterator[Any]:
        """SQLite's hot path: a cursor of a driver (``sqlite3``) connection in one
        transaction (BEGIN IMMEDIATE to write, BEGIN to read), committed at the
        end and rolled back on an error, below SQLAlchemy's execution layer.

        For one task the layer (a pooled ``Connection``, its events, a result's
        metadata) costs more than SQLite's own work; the statements, the
        transactions and the errors (``_translated_errors``) are the same. The
        connections come from the engine's pool (so they are configured as every
        other: WAL, the busy timeout) and are kept, up to ``_MAX_IDLE_DRIVERS``.
        An engine whose driver is not ``sqlite3`` (aiosqlite, under the async
        store), or whose pool ties connections to threads or shares one
        (``SingletonThreadPool``, ``StaticPool``), runs them through SQLAlchemy
        instead (``exec_driver_sql``: the same statements).
        """
        if not self._own_drivers:
            with self._session(write=write) as conn:
                yield _DriverSQL(conn)
            return
        if not self._schema_checked:
            with self._session(write=False):
                pass  # checks the schema version, once
        idle = self._idle_drivers
        with _translated_errors():
            try:
                fairy = idle.pop()
            except IndexError:
                fairy = self._engine.raw_connection()
            raw = fairy.driver_connection
            try:
                cursor = raw.cursor()
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield cursor
                except BaseException:
                    cursor.close()
                    raw.rollback()
                    raise
                # A statement not read to its end would keep its snapshot after the
                # COMMIT (sqlite3 leaves it open): the next BEGIN IMMEDIATE on this
                # connection would then fail at once with "database is locked".
                cursor.close()
                raw.commit()
            except BaseException:
                if raw.in_transaction:  # a COMMIT or ROLLBACK failed: drop the connection
                    fairy.invalidate()
                    raise
                self._keep_driver(fairy)
                raise
            self._keep_driver(fairy)

    @contextmanager
    def _autocommit(self) -> Iterator[Any]:
        """PostgreSQL's hot path: a driver (psycopg) cursor in autocommit, for
        statements each of which is its own transaction (``_one_statement``),
        below SQLAlchemy's execution layer: for a claim of one task, a
        ``Connection``'s checkout, events and result cost about two thirds of
        the time the server takes. The statements and the errors
        (``_translated_errors``) are the same, and so is the connection: the
        engine's pool lends it, configured as every other (the lock and idle
        timeouts), and takes it back out of autocommit. A connection that broke
        is dropped, and the pool's older ones with it, as SQLAlchemy does on a
        disconnect. Another driver or pool runs them through SQLAlchemy.
        """
        if not self._own_pg_drivers:
            with self._one_statement() as conn:
                yield _DriverSQL(conn)
            return
        if not self._schema_checked:
            with self._session(write=False):
                pass  # checks the schema version, once
        with _translated_errors():
            fairy = self._engine.raw_connection()
            # psycopg's connection, or SQLAlchemy's sync face of psycopg's async one
            # (AsyncSQLStore runs this code in a greenlet): the same calls either way.
            raw: Any = fairy.dbapi_connection
            try:
                raw.autocommit = True
                cursor = raw.cursor()
                try:
                    yield _DriverCursor(cursor)
                finally:
                    cursor.close()
                raw.autocommit = False
            except BaseException as error:
                if raw.broken:
                    # The server went away: as SQLAlchemy does on a disconnect, every
                    # connection the pool made before now is replaced at its checkout.
                    self._engine.pool._invalidate(fairy, error)
                elif raw.info.transaction_status != _PG_IDLE:
                    fairy.invalidate(error)
                else:
                    raw.autocommit = False
                raise
            finally:
                fairy.close()  # back to the pool (or, invalidated, closed)

    def _keep_driver(self, fairy: Any) -> None:
        if len(self._idle_drivers) < _MAX_IDLE_DRIVERS:
            self._idle_drivers.append(fairy)
        else:
            fairy.close()  # back to the engine's pool

    def _verify_schema(self, conn: Connection) -> None:
        try:
            found = conn.execute(sa.select(self._versions.c.version)).scalar()
        except sa_exc.DBAPIError as error:
            translated = _translate(error)
            if isinstance(translated, SchemaError):
                self._check_version(None)
            raise translated from error
        self._check_version(found)
        self._schema_checked = True

    def _build_statements(self) -> None:
        t = self._tasks
        self._columns = (
            t.c.seq, t.c.task_id, t.c.task_group_id, t.c.topic, t.c.sub_topic,
            t.c.description, t.c.data, t.c.status, t.c.pid, t.c.record_ver, t.c.attempt,
            t.c.failures, t.c.max_attempts, t.c.lease_time_ms, t.c.timeout_ms,
            t.c.snooze_time_ms, t.c.error, t.c.errors, t.c.created_at, t.c.updated_at,
            t.c.result, t.c.trace_context,
        )  # fmt: skip
        select_tasks = sa.select(*self._columns)
        not_paused = sa.text(_not_paused_sql(self._paused.name))
        self._select_ready_ids = (
            sa.select(t.c.seq)
            .where(t.c.topic == sa.bindparam("topic"), sa.text(_READY_SQL), not_paused)
            .order_by(t.c.seq)
            .limit(sa.bindparam("limit"))
        )
        if not self._pg:
            self._sqlite_look = _Compiled.of(self._select_ready_ids, self._engine.dialect)
        if self._pg:
            # One array parameter, whatever the batch size: one prepared statement.
            ids = sa.bindparam("ids", type_=postgresql.ARRAY(sa.String))
            self._select_by_ids = select_tasks.where(t.c.task_id == sa.any_(ids)).with_for_update()
        else:
            ids = sa.bindparam("ids", expanding=True)
            self._select_by_ids = select_tasks.where(t.c.task_id.in_(ids))
        self._select_one = select_tasks.where(t.c.task_id == sa.bindparam("task_id"))
        self._select_group = self._in_group([], sa.bindparam("group"), sa.bindparam("limit"))
        leased = select_tasks.where(sa.text(_LEASED_SQL), t.c.seq > sa.bindparam("after"))
        self._select_leased_all = leased.order_by(t.c.seq).limit(sa.bindparam("limit"))
        self._select_leased_topic = (
            leased.where(t.c.topic == sa.bindparam("topic"))
            .order_by(t.c.seq)
            .limit(sa.bindparam("limit"))
        )
        insert = postgresql.insert(t) if self._pg else sqlite.insert(t)
        # Every insert makes a task ready: it notifies its topic as it returns its
        # id, in the same statement (no round trip more). PostgreSQL folds repeated
        # notifications of one transaction into one.
        channel = ready_channel(self._prefix)
        # Only a task created ready notifies; a delayed one (created snoozed) waits
        # for a supervisor to wake it, and the wake notifies then.
        notify = (
            f", CASE WHEN status = 'starting' THEN pg_notify('{channel}', topic) END"
            if self._pg
            else ""
        )
        # PostgreSQL: a batch as arrays, one statement and one plan whatever its size
        # (a multi-row VALUES is new SQL text for every batch size).
        columns = ", ".join(_INSERT_ARRAY_TYPES)
        arrays = ", ".join(f"CAST(:{c} AS {k}[])" for c, k in _INSERT_ARRAY_TYPES.items())
        pg_insert = sa.text(
            f"INSERT INTO {t.name} ({columns}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT (task_id) DO NOTHING RETURNING task_id{notify}"
        )
        returning: list[Any] = [t.c.task_id]
        if self._pg:
            returning.append(
                sa.case(
                    (
                        t.c.status == sa.literal_column("'starting'"),
                        sa.func.pg_notify(sa.literal_column(f"'{channel}'"), t.c.topic),
                    )
                )
            )
        self._insert = insert.on_conflict_do_nothing(index_elements=[t.c.task_id]).returning(
            *returning
        )
        # PostgreSQL's INSERTs as the driver's SQL (``_insert_pg``): one task (its
        # VALUES), and a batch (as arrays).
        dialect = self._engine.dialect
        self._insert_sql = str(self._insert.compile(dialect=dialect, column_keys=_INSERT_COLUMNS))
        self._pg_insert_sql = str(pg_insert.compile(dialect=dialect))
        # Tasks made ready by an update (revoke, wake, requeue, release): one
        # notification per topic, in the transaction that made them ready.
        self._pg_notify = sa.text(
            f"SELECT pg_notify('{channel}', topic) FROM unnest(CAST(:topics AS text[])) AS topic"
        )
        self._updates: dict[tuple[str, ...], Any] = {}  # statements by changed columns
        # The hot statements, as the driver's own SQL text (exec_driver_sql: no
        # compiling, no cache lookup), their SET and guard compiled from the
        # core's SetRule (core.transitions.set_rule), never written here by hand.
        compiled = str(select_tasks.compile(dialect=self._engine.dialect))
        self._returning = compiled.removeprefix("SELECT ").split(" \nFROM ")[0]
        self._reserve_sql = self._compile_reserve(_rule(Reserve))
        # The same claim beside a batch's outcomes (reserve_and_finish).
        self._claim_sql = self._compile_reserve(_rule(Reserve), prefix="c_")
        self._claims_and_sets: dict[type[Event], str] = {}
        self._set_updates: dict[type[Event], str] = {}

    def _update_for(self, columns: tuple[str, ...]) -> Any:
        """UPDATE ... SET <columns> WHERE task_id = :id AND record_ver = :seen (cached)."""
        statement = self._updates.get(columns)
        if statement is None:
            t = self._tasks
            statement = (
                sa.update(t)
                .where(
                    t.c.task_id == sa.bindparam("k_id"), t.c.record_ver == sa.bindparam("k_seen")
                )
                .values({c: sa.bindparam(f"v_{c}") for c in columns})
            )
            self._updates[columns] = statement
        return statement

    def _pg_update_for(self, columns: tuple[str, ...]) -> Any:
        """PostgreSQL: one UPDATE for a whole batch, its values as arrays (cached).

        ``UPDATE t SET c = v.c FROM unnest(:ids, :seen, :c...) AS v WHERE
        t.task_id = v.k_id AND t.record_ver = v.k_seen``: the same
        compare-and-set as one statement per task, in one round trip and one
        plan, whatever the batch size.
        """
        key = ("pg", *columns)
        statement = self._updates.get(key)
        if statement is None:
            table = self._tasks.name
            arrays = ", ".join(
                ["CAST(:k_id AS text[])", "CAST(:k_seen AS bigint[])"]
                + [f"CAST(:v_{c} AS {_PG_ARRAY_TYPES[c]}[])" for c in columns]
            )
            statement = sa.text(
                f"UPDATE {table} AS t SET "
                + ", ".join(f"{c} = v.{c}" for c in columns)
                + f" FROM unnest({arrays}) AS v(k_id, k_seen, {', '.join(columns)})"
                " WHERE t.task_id = v.k_id AND t.record_ver = v.k_seen"
            )
            self._updates[key] = statement
        return statement

    def _param(self, name: str) -> str:
        """A named parameter in the driver's own style (psycopg ``%(x)s``, sqlite3 ``:x``)."""
        return f"%({name})s" if self._pg else f":{name}"

    def _compile_set(self, rule: SetRule, value_of: Callable[[str], str]) -> str:
        """The SET clause of ``rule`` (``value_of(event field)``: the SQL of a
        value taken from the event)."""
        table = self._tasks.name
        parts = [f"status = '{rule.to_status.value}'"]
        for field, effect in rule.effects.items():
            column = _COLUMN_OF.get(field, field)
            if effect is None:
                parts.append(f"{column} = NULL")
            elif isinstance(effect, Increment):
                parts.append(f"{column} = {table}.{column} + {int(effect.by)}")
            else:
                parts.append(f"{column} = {value_of(effect.field)}")
        parts.append(f"record_ver = {table}.record_ver + 1")
        parts.append(f"updated_at = {self._param('now')}")
        return ", ".join(parts)

    def _guard(self, rule: SetRule, *, qualified: bool = True) -> str:
        """The statuses ``rule`` moves from, as literals (the partial indexes see them)."""
        listed = ", ".join(f"'{s.value}'" for s in rule.from_statuses)
        column = f"{self._tasks.name}.status" if qualified else "status"
        return f"{column} = {listed}" if len(rule.from_statuses) == 1 else f"{column} IN ({listed})"

    def _compile_reserve(self, rule: SetRule, prefix: str = "") -> str:
        """Claim the oldest ready tasks of a topic in ONE guarded UPDATE ... RETURNING.

        PostgreSQL picks the rows in a subquery ``FOR UPDATE SKIP LOCKED`` (run
        once, as an ARRAY: see ``_purge_for``), so reservers never wait for
        each other. The lock re-checks the pick's WHERE on a row's newest
        version (a row that changed before it was locked is left), and a locked
        row cannot change until this statement's transaction ends: the UPDATE
        then finds its rows by ``seq`` alone, through the primary key. With the
        rule's status guard restated there, PostgreSQL may instead scan every
        ready row through the partial index and filter them by ``seq`` (seen on
        a table without statistics: a claim of 100 read all 20,000 ready rows),
        so each claim would cost as much as the backlog.
        SQLite holds the writer lock (BEGIN IMMEDIATE) and finds rows by rowid;
        there the guard restates the rule. ``prefix`` names its parameters apart
        from another statement's (``_claim_and_set``), ``now`` excepted.
        """
        table = self._tasks.name
        ready = self._guard(rule, qualified=False)  # the ready index's predicate
        topic = self._param(f"{prefix}topic")
        pick = (
            f"SELECT seq FROM {table} WHERE topic = {topic} AND {ready} "
            f"AND {_not_paused_sql(self._paused.name, topic)} "
            f"ORDER BY seq LIMIT {self._param(f'{prefix}limit')}"
        )
        chosen = (
            f"{table}.seq = ANY(ARRAY({pick} FOR UPDATE SKIP LOCKED))"
            if self._pg
            else f"{table}.seq IN ({pick})"
        )
        values = self._compile_set(rule, lambda field: self._param(f"{prefix}e_{field}"))
        guard = "" if self._pg else f" AND {self._guard(rule)}"
        return f"UPDATE {table} SET {values} WHERE {chosen}{guard} RETURNING {self._returning}"

    def _set_update_for(self, rule: SetRule) -> str:
        """One guarded UPDATE ... RETURNING for a batch of owner events of one kind (cached).

        Each row is ``(task_id, pid, attempt, *event fields)``: PostgreSQL
        passes them as arrays (``FROM unnest(...)``: one plan whatever the batch
        size), SQLite as one JSON array (``FROM json_each(...)``). A task is
        changed only if it is in one of the rule's statuses and its pid and
        attempt are the caller's: exactly when ``apply`` would accept the event.
        """
        statement = self._set_updates.get(rule.event)
        if statement is not None:
            return statement
        table = self._tasks.name
        columns = _event_fields(rule)
        fields = list(columns)
        if self._pg:
            arrays = ["CAST(%(ids)s AS text[])", "CAST(%(pids)s AS text[])",
                      "CAST(%(attempts)s AS integer[])"]  # fmt: skip
            arrays += [f"CAST(%(e_{f})s AS {_PG_ARRAY_TYPES[columns[f]]}[])" for f in fields]
            names = ", ".join(["k_id", "k_pid", "k_attempt", *(f"e_{f}" for f in fields)])
            source = f"unnest({', '.join(arrays)}) AS v({names})"
            key, pid, attempt = "v.k_id", "v.k_pid", "v.k_attempt"

            def value_of(field: str) -> str:
                return f"v.e_{field}"
        else:
            source = "json_each(:rows) AS v"
            key, pid, attempt = "v.value ->> 0", "v.value ->> 1", "v.value ->> 2"

            def value_of(field: str) -> str:
                return f"v.value ->> {3 + fields.index(field)}"

        values = self._compile_set(rule, value_of)
        statement = (
            f"UPDATE {table} SET {values} FROM {source} WHERE {table}.task_id = {key} "
            f"AND {self._guard(rule)} AND {table}.pid = {pid} AND {table}.attempt = {attempt} "
            f"RETURNING {self._returning}"
        )
        self._set_updates[rule.event] = statement
        return statement

    def _write(self, conn: Connection, changes: Sequence[tuple[Task, Task]]) -> None:
        """Persist transitions, each as a compare-and-set on the version it was read at."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for old, new in changes:
            values = _changed_columns(old, new)
            params = {f"v_{c}": v for c, v in values.items()}
            params["k_id"] = new.task_id
            params["k_seen"] = old.record_ver
            groups.setdefault(tuple(values), []).append(params)
        for columns, rows in groups.items():
            if self._pg and len(rows) > 1:
                arrays = {name: [row[name] for row in rows] for name in rows[0]}
                result = conn.execute(self._pg_update_for(columns), arrays)
            else:
                result = conn.execute(self._update_for(columns), rows)
            if result.rowcount != -1 and result.rowcount != len(rows):
                # The rows are locked by this transaction (FOR UPDATE / BEGIN
                # IMMEDIATE), so this would mean the database broke that promise.
                raise StoreError(f"compare-and-set updated {result.rowcount} of {len(rows)} tasks")

    def _fetch(self, conn: Connection, task_ids: Sequence[str]) -> dict[str, tuple[int, Task]]:
        rows = conn.execute(self._select_by_ids, {"ids": list(task_ids)})
        return {row[1]: (row[0], _task(row)) for row in rows}

    def _apply_events(self, items: Sequence[tuple[str, Event]]) -> list[Result[Task, SokkaError]]:
        """Apply events in order; each element on its own.

        When every element names a different task, the owner events whose
        effects are plain data (``core.transitions.set_rule``: extend,
        terminate, snooze, release) are applied one guarded UPDATE per kind;
        the tasks it did not change, and every other event, then take the
        general path (read, ``apply``, compare-and-set), which gives the exact
        error (``NotRunning``, ``WrongOwner``, ``StaleAttempt``, ...).

        Each element's outcome is atomic, not the call's: on PostgreSQL the
        first kind's UPDATE is a statement of its own (``_one_statement``), so
        the usual call (a batch of one kind, all accepted) is one round trip;
        whatever is left runs in one transaction after it.
        """
        return self._reserve_and_apply(None, items)[1]

    def _reserve_and_apply(
        self, claim: dict[str, Any] | None, items: Sequence[tuple[str, Event]]
    ) -> tuple[Sequence[Sequence[Any]], list[Result[Task, SokkaError]]]:
        """``_apply_events``, after a claim when given (``reserve_and_finish``):
        the claim goes into the first transaction, before the outcomes, so it
        sees the queue as it was before them. On PostgreSQL the claim and the
        first kind's UPDATE are ONE statement (``_claim_and_set``); on SQLite
        the claim and every kind's UPDATE are one transaction. The rows claimed,
        and each element's result. Once a claim is made, a retryable failure of
        the rest becomes those elements' results, so the claim is never lost.
        """
        results: list[Result[Task, SokkaError] | None] = [None] * len(items)
        claimed: Sequence[Sequence[Any]] = []
        ready: set[str] = set()
        groups = _set_groups(items)
        now = self._clock()
        if claim is not None:
            claim = {**claim, "now": now}
        first, later = (groups[:1], groups[1:]) if self._pg else (groups, [])
        if self._pg and (first or claim is not None):
            with self._autocommit() as cursor:
                if claim is not None and first:
                    rule, positions = first[0]
                    params = self._set_params(rule, [items[i] for i in positions], now)
                    claimed, changed = self._claim_and_set(cursor, claim, rule, params)
                    _settle_group(rule, positions, items, changed, results, ready)
                elif claim is not None:
                    claimed = cursor.execute(self._claim_sql, claim).fetchall()
                else:
                    self._set_apply_all(cursor, first, items, now, results, ready)
        elif first or claim is not None:  # SQLite: one transaction on the driver
            with self._driver(write=True) as cursor:
                if claim is not None:
                    claimed = cursor.execute(self._claim_sql, claim).fetchall()
                self._set_apply_all(cursor, first, items, now, results, ready)
        try:
            self._apply_rest(later, items, now, results, ready)
        except RetryableError as error:
            if claim is None:
                raise
            results = [Failure(error) if r is None else r for r in results]
        if ready:
            self._bells.ring(sorted(ready))
        return claimed, [r for r in results if r is not None]

    def _apply_rest(
        self,
        later: Sequence[tuple[SetRule, list[int]]],
        items: Sequence[tuple[str, Event]],
        now: int,
        results: list[Result[Task, SokkaError] | None],
        ready: set[str],
    ) -> None:
        """The kinds left after the first transaction, then the general path for
        every element still without a result, in one transaction (which also
        notifies the topics made ready, on PostgreSQL)."""
        rest = [i for i, r in enumerate(results) if r is None]
        if not (later or rest or (ready and self._pg)):
            return
        with self._session(write=True) as conn:
            self._set_apply_all(_DriverSQL(conn), later, items, now, results, ready)
            rest = [i for i, r in enumerate(results) if r is None]
            if rest:
                answers = self._apply_each(conn, [items[i] for i in rest], now, ready)
                for i, answer in zip(rest, answers, strict=True):
                    results[i] = answer
            if ready and self._pg:
                conn.execute(self._pg_notify, {"topics": sorted(ready)})

    def _claim_and_set(
        self, cursor: Any, claim: dict[str, Any], rule: SetRule, params: dict[str, Any]
    ) -> tuple[list[Sequence[Any]], list[Sequence[Any]]]:
        """PostgreSQL: the claim and ``rule``'s guarded UPDATE as ONE statement (two
        data-modifying CTEs over one snapshot: the claim takes ready rows, the
        UPDATE running ones, never the same row), so a worker's next claim and
        its last outcomes cost one round trip and one commit. The rows claimed,
        and the rows the UPDATE changed."""
        statement = self._claims_and_sets.get(rule.event)
        if statement is None:
            statement = (
                f"WITH claimed AS ({self._claim_sql}), "
                f"finished AS ({self._set_update_for(rule)}) "
                "SELECT 1, claimed.* FROM claimed UNION ALL SELECT 0, finished.* FROM finished"
            )
            self._claims_and_sets[rule.event] = statement
        claimed: list[Sequence[Any]] = []
        changed: list[Sequence[Any]] = []
        for row in cursor.execute(statement, {**claim, **params}).fetchall():
            (claimed if row[0] else changed).append(row[1:])
        return claimed, changed

    def _set_apply_all(
        self,
        cursor: Any,
        groups: Sequence[tuple[SetRule, list[int]]],
        items: Sequence[tuple[str, Event]],
        now: int,
        results: list[Result[Task, SokkaError] | None],
        ready: set[str],
    ) -> None:
        """Each group's guarded UPDATE, on ``cursor`` (a driver cursor, or
        ``_DriverSQL``); the tasks it changed into ``results`` (and the topics of
        those it made ready into ``ready``)."""
        for rule, positions in groups:
            rows = self._set_apply(cursor, rule, [items[i] for i in positions], now)
            _settle_group(rule, positions, items, rows, results, ready)

    def _set_apply(
        self, cursor: Any, rule: SetRule, items: Sequence[tuple[str, Event]], now: int
    ) -> Sequence[Sequence[Any]]:
        """Run ``rule``'s guarded UPDATE over ``items``; the rows it changed, as they are now."""
        changed: Sequence[Sequence[Any]] = cursor.execute(
            self._set_update_for(rule), self._set_params(rule, items, now)
        ).fetchall()
        return changed

    def _set_params(
        self, rule: SetRule, items: Sequence[tuple[str, Event]], now: int
    ) -> dict[str, Any]:
        """The parameters of ``rule``'s guarded UPDATE over ``items``."""
        fields = _event_fields(rule)
        owned = [(task_id, _owner_event(event)) for task_id, event in items]
        if self._pg:
            params: dict[str, Any] = {
                "ids": [task_id for task_id, _ in owned],
                "pids": [event.pid for _, event in owned],
                "attempts": [event.attempt for _, event in owned],
                "now": now,
            }
            for f in fields:
                params[f"e_{f}"] = [getattr(event, f) for _, event in owned]
        else:
            rows = [
                [task_id, event.pid, event.attempt, *(getattr(event, f) for f in fields)]
                for task_id, event in owned
            ]
            params = {"rows": json.dumps(rows), "now": now}
        return params

    def _apply_each(
        self, conn: Connection, items: Sequence[tuple[str, Event]], now: int, ready: set[str]
    ) -> list[Result[Task, SokkaError]]:
        """The general path: read the tasks, ``apply`` each event in order, compare-and-set."""
        ids = list(dict.fromkeys(task_id for task_id, _ in items))
        found = self._fetch(conn, ids)
        original = {task_id: task for task_id, (_, task) in found.items()}
        current = dict(original)
        results: list[Result[Task, SokkaError]] = []
        for task_id, event in items:
            task = current.get(task_id)
            if task is None:
                results.append(Failure(NotFound(task_id)))
                continue
            result = apply(task, event, now)
            if isinstance(result, Success):
                current[task_id] = result.unwrap()
            results.append(result)
        changes = [(original[k], v) for k, v in current.items() if v is not original[k]]
        self._write(conn, changes)
        ready.update(
            new.topic
            for old, new in changes
            if new.status is Status.STARTING and old.status is not Status.STARTING
        )
        return results

    # -- creating and reading -------------------------------------------------------

    def create_task(self, spec: TaskSpec, *, connection: object = None) -> Task:
        """``TaskStore.create_task``; with ``connection``, inside the caller's transaction.

        ``connection``: a SQLAlchemy ``Connection`` or ``Session`` on this
        store's database. The insert then runs on it, in the caller's
        transaction, and the store neither commits nor rolls back: the task
        exists if and only if the caller commits. A connection to another
        database, or anything else, is a ``ValidationError`` naming
        ``connection``, and nothing is written.
        """
        (result,) = self.create_tasks([require_spec(spec)], connection=connection)
        if isinstance(result, Failure):
            raise result.failure()
        return result.unwrap()

    def create_tasks(
        self, specs: Sequence[TaskSpec], *, connection: object = None
    ) -> list[Result[Task, SokkaError]]:
        """``TaskStore.create_tasks``; ``connection`` as for ``create_task``."""
        require_batch("specs", specs)
        caller = None if connection is None else self._caller_connection(connection)
        now = self._clock()
        results: list[Result[Task, SokkaError]] = []
        fresh: dict[str, Task] = {}
        given: Sequence[object] = specs  # callers may pass anything; refuse per element
        for spec in given:
            try:
                require_spec(spec)
            except ValidationError as error:
                results.append(Failure(error))
                continue
            assert isinstance(spec, TaskSpec)
            task = spec.to_task(spec.task_id or self._new_id(), now)
            if task.task_id in fresh:
                results.append(Failure(AlreadyExists(task.task_id)))
                continue
            fresh[task.task_id] = task
            results.append(Success(task))
        if not fresh:
            return results
        if caller is None:
            # One INSERT (the batch as arrays on PostgreSQL): its own transaction.
            if self._pg:
                with self._autocommit() as cursor:
                    inserted = self._insert_pg(cursor, fresh.values())
            else:
                with self._one_statement() as conn:
                    inserted = self._insert_tasks(conn, fresh.values())
            self._bells.ring(
                task.topic
                for task in fresh.values()
                if task.task_id in inserted and task.status is Status.STARTING
            )
        else:
            if not self._schema_checked:
                with self._session(write=False):
                    pass  # checks the schema on a connection of the store's own
            with _translated_errors():
                inserted = self._insert_tasks(caller, fresh.values())
            # No hint here: the caller may still roll back. The listener (NOTIFY on
            # PostgreSQL, SQLite's data version) rings once the caller commits.
        return [
            Failure(AlreadyExists(r.unwrap().task_id))
            if isinstance(r, Success) and r.unwrap().task_id not in inserted
            else r
            for r in results
        ]

    def _insert_tasks(self, conn: Connection, tasks: Iterable[Task]) -> set[str]:
        """Insert new tasks (an id already stored is skipped); the ids inserted."""
        if self._pg:
            return self._insert_pg(_DriverSQL(conn), tasks)
        return set(conn.execute(self._insert, [_insert_row(task) for task in tasks]).scalars())

    def _insert_pg(self, cursor: Any, tasks: Iterable[Task]) -> set[str]:
        """PostgreSQL's ``_insert_tasks`` on ``cursor`` (a driver cursor, or
        ``_DriverSQL``): one task by its VALUES, a batch as arrays."""
        rows = [_insert_row(task) for task in tasks]
        if len(rows) > 1:
            arrays = {name: [row[name] for row in rows] for name in _INSERT_ARRAY_TYPES}
            found = cursor.execute(self._pg_insert_sql, arrays).fetchall()
        else:
            found = cursor.execute(self._insert_sql, rows[0]).fetchall()
        return {row[0] for row in found}

    def _caller_connection(self, connection: object) -> Connection:
        """The caller's ``Connection`` (a ``Session``'s own), if it is on this
        store's database; else a ``ValidationError`` naming ``connection``.

        A ``scoped_session`` (Flask-SQLAlchemy's ``db.session``) stands for the
        session it holds for the current scope (thread, request)."""
        if isinstance(connection, scoped_session):
            connection = connection()
        if isinstance(connection, Session):
            try:
                bind = connection.get_bind()
            except sa_exc.UnboundExecutionError:
                raise ValidationError(
                    "connection", "must be a Session bound to the store's database (it has no bind)"
                ) from None
            if not _same_database(bind.engine, self._engine):
                raise _other_database(bind.engine, self._engine)
            connection = connection.connection()
        if not isinstance(connection, Connection):
            raise ValidationError(
                "connection",
                "must be a SQLAlchemy Connection or Session on the store's database "
                f"(got {type(connection).__name__})",
            )
        if not _same_database(connection.engine, self._engine):
            raise _other_database(connection.engine, self._engine)
        return connection

    def get_task(self, task_id: str) -> Task:
        require_name("task_id", task_id)
        with self._session(write=False) as conn:
            row = conn.execute(self._select_one, {"task_id": task_id}).first()
        if row is None:
            raise NotFound(task_id)
        return _task(row)

    def _in_group(self, clauses: list[Any], group: Any, limit: Any) -> sa.Select[Any]:
        """The first ``limit`` tasks of ``group`` by ``seq`` that meet ``clauses``.

        The group index holds only tasks grouped under another task's id
        (``_GROUPED_SQL``); the task that is its own group (the group's first,
        usually) is found by its id. Two index lookups in one statement,
        merged in ``seq`` order: a plan that needs no statistics.
        """
        t = self._tasks
        others = (
            sa.select(*self._columns)
            .where(*clauses, t.c.task_group_id == group, sa.text(_GROUPED_SQL))
            .order_by(t.c.seq)
            .limit(limit)
            .subquery()
        )
        itself = (
            sa.select(*self._columns)
            .where(*clauses, t.c.task_id == group, t.c.task_group_id == group)
            .subquery()
        )
        both = sa.union_all(sa.select(others), sa.select(itself)).subquery()
        return sa.select(both).order_by(both.c.seq).limit(limit)

    def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        require_name("task_group_id", task_group_id)
        require_limit("limit", limit, MAX_PAGE_SIZE)
        params = {"group": task_group_id, "limit": limit}
        with self._session(write=False) as conn:
            return [_task(row) for row in conn.execute(self._select_group, params)]

    def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        wanted, after = check_listing(filter, cursor, limit)
        t = self._tasks
        clauses: list[Any] = [t.c.seq > after]
        for name in ("topic", "sub_topic"):
            value = getattr(wanted, name)
            if value is not None:
                clauses.append(t.c[name] == value)
        if wanted.status is not None:
            clauses.append(t.c.status == wanted.status.value)
        if wanted.created_from is not None:
            clauses.append(t.c.created_at >= wanted.created_from)
        if wanted.created_before is not None:
            clauses.append(t.c.created_at < wanted.created_before)
        if wanted.task_group_id is None:
            statement = (
                sa.select(*self._columns).where(*clauses).order_by(t.c.seq).limit(limit + 1)
            )
        else:
            statement = self._in_group(clauses, wanted.task_group_id, limit + 1)
        with self._session(write=False) as conn:
            rows = conn.execute(statement).all()
        return _page(rows, limit)

    def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        after = check_leased_listing(topic, cursor, limit)
        with self._session(write=False) as conn:
            if topic is None:
                params: dict[str, Any] = {"after": after, "limit": limit + 1}
                rows = conn.execute(self._select_leased_all, params).all()
            else:
                params = {"after": after, "limit": limit + 1, "topic": topic}
                rows = conn.execute(self._select_leased_topic, params).all()
        return _page(rows, limit)

    def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts:
        topic, wanted, window = check_counting(topic, status, failed_within_ms)
        # One GROUP BY over the table: a count, the earliest updated_at (read for
        # the starting group only) and the recent ones (read for the failed group
        # only) per (topic, status), in one pass and one round trip.
        t = self._tasks
        recent = sa.func.sum(sa.case((t.c.updated_at >= sa.bindparam("since"), 1), else_=0))
        statement = sa.select(
            t.c.topic, t.c.status, sa.func.count(), sa.func.min(t.c.updated_at), recent
        ).group_by(t.c.topic, t.c.status)
        if topic is not None:
            statement = statement.where(t.c.topic == topic)
        if wanted is not None:
            statement = statement.where(t.c.status == wanted.value)
        now = self._clock()
        with self._session(write=False) as conn:
            rows = conn.execute(statement, {"since": now - window}).all()
        found: dict[str, dict[str, Any]] = {}
        for name, state, count, earliest, failed_recently in rows:
            counts = found.setdefault(name, {})
            counts[state] = int(count)
            if state == Status.STARTING.value:
                counts["oldest_ready_at"] = int(earliest)
            elif state == Status.FAILED.value:
                counts["failed_recently"] = int(failed_recently or 0)
        topics = tuple(TopicCounts(topic=name, **found[name]) for name in sorted(found))
        return Counts(now=now, failed_within_ms=window, topics=topics)

    def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged:
        wanted, older_than_ms, topic, limit = check_purge(statuses, older_than_ms, topic, limit)
        params: dict[str, Any] = {"cutoff": self._clock() - older_than_ms, "limit": limit}
        if topic is not None:
            params["topic"] = topic
        statement = self._purge_for(wanted, topic is not None)
        with self._session(write=True) as conn:
            deleted = conn.execute(statement, params).rowcount
        return Purged(deleted=deleted, more=deleted == limit)

    def _purge_for(self, statuses: frozenset[Status], by_topic: bool) -> Any:
        """One bounded DELETE: at most ``:limit`` rows, chosen by their ``seq`` (cached).

        The rows are picked in a subquery (oldest first, ``LIMIT``) and deleted by
        primary key (a keyset: ``seq``), so one call is one short statement
        however many rows match.
        On SQLite ``seq`` is the rowid itself (an INTEGER PRIMARY KEY); on
        PostgreSQL the subquery locks what it picks ``FOR UPDATE SKIP LOCKED``,
        so a purge never waits on, nor blocks, a requeue of the same row. The
        outer WHERE states the rule again, so a row that changed before it was
        locked is never deleted. The statuses are literals, as in every query
        here (they come from ``PURGEABLE``, never from the caller's text).
        """
        key = ("purge", *sorted(s.value for s in statuses), "topic" if by_topic else "")
        statement = self._updates.get(key)
        if statement is None:
            table = self._tasks.name
            listed = ", ".join(f"'{s}'" for s in sorted(s.value for s in statuses))
            rule = f"status IN ({listed}) AND updated_at <= :cutoff"
            if by_topic:
                rule += " AND topic = :topic"
            pick = f"SELECT seq FROM {table} WHERE {rule} ORDER BY seq LIMIT :limit"
            if self._pg:
                # ARRAY(...) runs the subquery once (an InitPlan). Written as
                # "seq IN (SELECT ... LIMIT ... SKIP LOCKED)" the planner may run it
                # again per row of a semi-join, and delete more than the limit.
                chosen = f"seq = ANY(ARRAY({pick} FOR UPDATE SKIP LOCKED))"
            else:
                chosen = f"seq IN ({pick})"
            statement = sa.text(f"DELETE FROM {table} WHERE {chosen} AND {rule}")
            self._updates[key] = statement
        return statement

    # -- pausing topics -------------------------------------------------------------

    def pause_topic(self, topic: str) -> bool:
        check_topic(topic)
        insert = postgresql.insert if self._pg else sqlite.insert
        statement = (
            insert(self._paused)
            .values(topic=topic, paused_at=self._clock())
            .on_conflict_do_nothing(index_elements=[self._paused.c.topic])
            .returning(self._paused.c.topic)  # a row back: this call paused it
        )
        with self._session(write=True) as conn:
            return conn.execute(statement).first() is not None

    def resume_topic(self, topic: str) -> bool:
        check_topic(topic)
        statement = self._paused.delete().where(self._paused.c.topic == topic)
        with self._session(write=True) as conn:
            resumed = bool(conn.execute(statement).rowcount)
            if resumed and self._pg:  # wake other processes' workers, as on commit
                conn.execute(self._pg_notify, {"topics": [topic]})
        if resumed:
            self._bells.ring([topic])
        return resumed

    def paused_topics(self) -> list[str]:
        statement = sa.select(self._paused.c.topic).order_by(self._paused.c.topic)
        with self._session(write=False) as conn:
            return [str(topic) for topic in conn.execute(statement).scalars()]

    # -- leases ---------------------------------------------------------------------

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        require_name("topic", topic)
        event = Reserve(pid=pid)
        require_limit("limit", limit, MAX_BATCH)
        params = {"topic": topic, "limit": limit}
        # One guarded UPDATE ... RETURNING claims them, its SET compiled from the
        # core's rule for Reserve (the same effects apply() writes).
        claim = {**params, "e_pid": event.pid, "now": self._clock()}
        if not self._pg:
            # SQLite has one writer lock for the whole file: look (a read, which
            # never blocks) before taking it, so idle workers polling an empty
            # queue do not keep writers waiting.
            with self._driver(write=False) as cursor:
                look = self._sqlite_look
                if cursor.execute(look.string, look.positional(params)).fetchone() is None:
                    return []
            with self._driver(write=True) as cursor:
                rows = cursor.execute(self._reserve_sql, claim).fetchall()
        else:
            with self._autocommit() as cursor:
                rows = cursor.execute(self._reserve_sql, claim).fetchall()
        return [_task(row) for row in sorted(rows, key=_SEQ)]


    def reserve_and_finish(
        self, topic: str, pid: str, limit: int, outcomes: Sequence[Finish]
    ) -> tuple[list[Task], list[Result[Task, SokkaError]]]:
        """``reserve_tasks`` then ``finish_many``, in one round trip (``ReservesAndFinishes``).

        On PostgreSQL the claim and the outcomes of one kind (a worker's usual
        batch: its terminates) are one autocommit statement: one round trip and
        one commit where the two calls take two of each. On SQLite they are one
        transaction. Outcomes the set-based UPDATE does not take (a ``Fail``, a
        refused outcome) go the general path after it, as in ``finish_many``.
        """
        require_name("topic", topic)
        event = Reserve(pid=pid)
        require_limit("limit", limit, MAX_BATCH)
        require_batch("outcomes", outcomes, Finish)
        if not outcomes:
            return self.reserve_tasks(topic, pid, limit), []
        claim = {"c_topic": topic, "c_limit": limit, "c_e_pid": event.pid}
        rows, results = self._reserve_and_apply(claim, [(o.task_id, o.event) for o in outcomes])
        return [_task(row) for row in sorted(rows, key=_SEQ)], results


_SEQ: Final = itemgetter(0)


class _DriverCursor:
    """A DBAPI cursor whose ``execute`` answers the cursor, for ``.fetchall()``
    (psycopg's does; SQLAlchemy's face of an async one answers something else)."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Any) -> Any:
        self._cursor.execute(sql, params)
        return self._cursor


class _DriverSQL:
    """A driver cursor's ``execute`` on a SQLAlchemy connection (``exec_driver_sql``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any) -> sa.CursorResult[Any]:
        return self._conn.exec_driver_sql(sql, params)


#: SQLite driver connections a store keeps idle for its hot calls (``_driver``).
_MAX_IDLE_DRIVERS: Final = 4
#: psycopg's transaction status of a connection outside any transaction
#: (``psycopg.pq.TransactionStatus.IDLE``; psycopg itself is imported only for PostgreSQL).
_PG_IDLE: Final = 0


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A Core statement compiled once for the driver: its SQL, and the order and
    defaults of its parameters (SQLite's are positional)."""

    string: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    @classmethod
    def of(cls, statement: sa.Select[Any], dialect: sa.Dialect) -> _Compiled:
        compiled = statement.compile(dialect=dialect)
        defaults = {name: bind.value for name, bind in compiled.binds.items()}
        return cls(compiled.string, tuple(compiled.positiontup or ()), defaults)

    def positional(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's parameters, in order: ``params`` over the defaults."""
        return tuple(params[n] if n in params else self.defaults[n] for n in self.names)


def _settle_group(
    rule: SetRule,
    positions: Sequence[int],
    items: Sequence[tuple[str, Event]],
    rows: Sequence[Sequence[Any]],
    results: list[Result[Task, SokkaError] | None],
    ready: set[str],
) -> None:
    """The tasks ``rule``'s UPDATE changed (``rows``) into ``results`` at their
    elements' positions; the topics of those it made ready into ``ready``."""
    changed = {row[1]: row for row in rows}
    for i in positions:
        row = changed.get(items[i][0])
        if row is not None:
            results[i] = Success(_task(row))
            if rule.to_status is Status.STARTING:
                ready.add(row[3])


def _rule(kind: type[Event]) -> SetRule:
    rule = set_rule(kind)
    if rule is None:  # pragma: no cover - the core defines one for reserve
        raise AssertionError(f"the core has no set rule for {kind.__name__}")
    return rule


def _event_fields(rule: SetRule) -> dict[str, str]:
    """The event fields ``rule`` writes, in order, each with the column it writes."""
    return {
        effect.field: _COLUMN_OF.get(field, field)
        for field, effect in rule.effects.items()
        if isinstance(effect, FromEvent)
    }


_OwnerEvent = Extend | Terminate | Snooze | Fail | Release


def _owner_event(event: Event) -> _OwnerEvent:
    if not isinstance(event, Extend | Terminate | Snooze | Fail | Release):  # pragma: no cover
        raise AssertionError(f"{type(event).__name__} is not an owner event")
    return event


def _set_groups(items: Sequence[tuple[str, Event]]) -> list[tuple[SetRule, list[int]]]:
    """The positions of the owner events that may go through one guarded UPDATE
    per kind (``set_rule``), grouped by kind; none when a task appears twice (its
    events must then be applied in order, one after another)."""
    groups: dict[type[Event], list[int]] = {}
    for i, (_, event) in enumerate(items):
        rule = set_rule(type(event))
        if rule is not None and rule.owner:
            groups.setdefault(rule.event, []).append(i)
    if not groups or len({task_id for task_id, _ in items}) != len(items):
        return []
    return [(_rule(kind), positions) for kind, positions in groups.items()]


def ready_channel(prefix: str) -> str:
    """The PostgreSQL channel a store of ``prefix`` notifies: queues that share a
    database under different prefixes do not wake each other's workers.

    >>> ready_channel("sokka_")
    'sokka_ready'
    """
    return f"{prefix}ready"


def _unreachable(error: BaseException) -> bool:
    """A driver's own exception (raised on the hot paths, below SQLAlchemy) of the
    kinds SQLAlchemy wraps as ``OperationalError`` or ``InterfaceError``: by the
    names PEP 249 gives them, which every driver's classes carry."""
    return _is_driver_error(error) and any(
        kind.__name__ in ("OperationalError", "InterfaceError") for kind in type(error).__mro__
    )


def _is_driver_error(error: BaseException) -> bool:
    module = type(error).__module__
    return module.startswith(("psycopg", "sqlite3"))


def _tables(prefix: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    metadata = sa.MetaData()
    seq_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    data_type = sa.Text().with_variant(_JsonText(), "postgresql")
    tasks = sa.Table(
        f"{prefix}tasks",
        metadata,
        # seq: creation order, the keyset of every listing and of reservation.
        sa.Column("seq", seq_type, sa.Identity(), primary_key=True),
        sa.Column("task_id", sa.String(128), nullable=False, unique=True),
        sa.Column("task_group_id", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("sub_topic", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("data", data_type, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pid", sa.String(128)),
        sa.Column("record_ver", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer),
        sa.Column("lease_time_ms", sa.BigInteger),
        sa.Column("timeout_ms", sa.BigInteger),
        sa.Column("snooze_time_ms", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.Column("errors", sa.Text, nullable=False),  # JSON list of strings
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        # Schema version 2: what ok(result) keeps on a terminated task (JSON text,
        # NULL for none). _upgrade_to_2 adds it to a version 1 table.
        sa.Column("result", data_type, nullable=True),
        # Schema version 3: the trace context the task was enqueued with (canonical
        # JSON text of at most 1 KiB, NULL for none), fixed at creation and never
        # queried: plain text on both databases.
        sa.Column("trace_context", sa.Text, nullable=True),
        sa.CheckConstraint(
            "status IN ('starting', 'running', 'snoozed', 'failed', 'terminated')",
            name=f"{prefix}tasks_status",
        ),
    )
    c = tasks.c
    # Reservation: the oldest ready tasks of a topic. Only ready rows are in it,
    # so finished tasks cost nothing however many pile up.
    sa.Index(
        f"{prefix}tasks_ready", c.topic, c.seq,
        sqlite_where=sa.text(_READY_SQL), postgresql_where=sa.text(_READY_SQL),
    )  # fmt: skip
    # Supervision: leased tasks of one topic, and of all topics, in creation order.
    sa.Index(
        f"{prefix}tasks_leased", c.topic, c.seq,
        sqlite_where=sa.text(_LEASED_SQL), postgresql_where=sa.text(_LEASED_SQL),
    )  # fmt: skip
    sa.Index(
        f"{prefix}tasks_leased_all", c.seq,
        sqlite_where=sa.text(_LEASED_SQL), postgresql_where=sa.text(_LEASED_SQL),
    )  # fmt: skip
    sa.Index(
        f"{prefix}tasks_group", c.task_group_id, c.seq,
        sqlite_where=sa.text(_GROUPED_SQL), postgresql_where=sa.text(_GROUPED_SQL),
    )  # fmt: skip
    # Listing by topic (and sub-topic, status); by creation time. On PostgreSQL
    # every status change writes a new row version with an entry in every index;
    # a BRIN index's entry is a summary of a block range (none for a range not
    # yet summarised), a B-tree's one per version. created_at grows with
    # insertion order, which is what BRIN needs; a listing by creation time is
    # for people, not for the hot path. SQLite updates only the indexes whose
    # columns change, so it keeps a B-tree.
    sa.Index(f"{prefix}tasks_created", c.created_at, postgresql_using="brin")
    sa.Index(f"{prefix}tasks_topic", c.topic, c.sub_topic, c.status, c.seq)
    versions = sa.Table(
        f"{prefix}schema_version",
        metadata,
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("applied_at", sa.BigInteger, nullable=False),
    )
    return metadata, tasks, versions


def _paused_table(metadata: sa.MetaData, prefix: str) -> sa.Table:
    """``{prefix}paused_topics`` (schema version 2): one row per paused topic."""
    return sa.Table(
        f"{prefix}paused_topics",
        metadata,
        sa.Column("topic", sa.String(128), primary_key=True),
        sa.Column("paused_at", sa.BigInteger, nullable=False),  # store clock, informational
    )


def _not_paused_sql(paused_table: str, topic: str = ":topic") -> str:
    """The reservation's pause check: the ``topic`` parameter it reserves from is not paused.

    Uncorrelated (it reads the ``:topic`` parameter, not the row), so the
    database evaluates it once per statement, as one primary-key probe,
    before it scans any ready task: a paused topic costs nothing however many
    tasks wait in it. A fragment of its own, to add to any claim statement.
    """
    return f"NOT EXISTS (SELECT 1 FROM {paused_table} WHERE topic = {topic})"


def _add_column(conn: Connection, column: sa.Column[Any]) -> None:
    """An upgrade step: add a nullable ``column`` as ``_tables`` defines it
    (``result``: 1 -> 2; ``trace_context``: 2 -> 3).

    A nullable column without a default: existing tasks read as having none,
    and neither SQLite nor PostgreSQL rewrites the table to add it.
    """
    ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {column.table.name} ADD COLUMN {ddl}"))



def _task(row: Sequence[Any]) -> Task:
    """A Task from a row of ``SQLStore._columns`` (seq first)."""
    errors = row[17]
    # The columns after seq are Task's fields in order (a test holds them to it).
    return task_from_values(
        (
            *row[1:7],
            _STATUS[row[7]],
            *row[8:17],
            () if errors == "[]" else tuple(json.loads(errors)),
            row[18],
            row[19],
            row[20],
            row[21],
        )
    )


def _page(rows: Sequence[Sequence[Any]], limit: int) -> Page:
    if len(rows) > limit:
        kept = rows[:limit]
        return Page(tuple(_task(r) for r in kept), encode_cursor(kept[-1][0]))
    return Page(tuple(_task(r) for r in rows), None)


#: The Task field each column holds, where their names differ.
_FIELD_OF: Final = {
    "data": "data_json",
    "result": "result_json",
    "trace_context": "trace_context_json",
}
#: The column of each Task field whose column has another name (the core's
#: effects name Task fields).
_COLUMN_OF: Final = {field: column for column, field in _FIELD_OF.items()}


def _column_value(task: Task, column: str) -> Any:
    value = getattr(task, _FIELD_OF.get(column, column))
    if column == "status":
        return value.value
    if column == "errors":
        return json.dumps(list(value), ensure_ascii=False)
    return value


#: (column, Task field) of every column a transition may change.
_MUTABLE_FIELDS: Final = tuple((column, _FIELD_OF.get(column, column)) for column in _MUTABLE)


def _changed_columns(old: Task, new: Task) -> dict[str, Any]:
    return {
        column: _column_value(new, column)
        for column, field in _MUTABLE_FIELDS
        if getattr(old, field) != getattr(new, field)
    }


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Driver errors become sokka's (``Unavailable``, ``Throttled``, ...)."""
    try:
        yield
    except SokkaError:
        raise
    except Exception as error:
        if isinstance(error, sa_exc.SQLAlchemyError | OSError) or _is_driver_error(error):
            raise _translate(error) from error
        raise


def _same_database(a: Engine, b: Engine) -> bool:
    """Whether two engines reach the same database: the same engine, or the same
    backend, server, user and database (a driver or password may differ; an
    SQLite file is compared by its real path, an in-memory one only by engine)."""
    if a is b:
        return True
    x, y = a.url, b.url
    if x.get_backend_name() != y.get_backend_name():
        return False
    if x.get_backend_name() == "sqlite":
        files = [u.database for u in (x, y)]
        if any(f in (None, "", ":memory:") or str(f).startswith("file:") for f in files):
            return False
        return os.path.realpath(str(files[0])) == os.path.realpath(str(files[1]))
    return (x.host or "localhost", x.port or 5432, x.username, x.database) == (
        y.host or "localhost", y.port or 5432, y.username, y.database,
    )  # fmt: skip


def _other_database(given: Engine, ours: Engine) -> ValidationError:
    return ValidationError(
        "connection",
        f"must be on the store's database {ours.url.render_as_string(hide_password=True)} "
        f"(got one on {given.url.render_as_string(hide_password=True)})",
    )


def _insert_row(task: Task) -> Mapping[str, Any]:
    row = task.as_record()
    row["errors"] = json.dumps(row["errors"], ensure_ascii=False)
    return row
