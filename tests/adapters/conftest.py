"""Fixtures of the adapter contract suite: one ``store`` per store kind.

Every test that asks for ``store`` runs once per entry of ``STORE_FACTORIES``.
To put a new store under the contract, add one factory to that dict: a
function that takes a ``StoreEnv`` and returns a context manager yielding a
fresh, empty store whose ``created_at``/``updated_at`` come from
``env.clock`` (so tests can move time). Whatever the context manager does on
exit is the store's teardown (dispose an engine, stop a server, ...).
An async store (``AsyncTaskStore``) runs the same suite behind a
``BlockingStore`` (``tests/adapters/blocking.py``): its calls, run on one
event loop on a thread of its own, awaited one by one.

A factory whose store cannot be reached (no PostgreSQL URL, server down)
calls ``pytest.skip("why")``: the reason is printed in the run summary
(``-ra``), so a store is never skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette

from sokka.adapters.aio.http import AsyncHTTPStore
from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from sokka.shell.clock import ManualClock
from sokka.shell.http import create_app, serve_in_background
from tests.adapters.blocking import BlockingStore, LoopThread
from tests.databases import postgres_engine, test_prefix

#: Where the store clock starts in every test (milliseconds).
START_MS = 1_000_000


@dataclass(frozen=True)
class StoreEnv:
    """What a factory may use to build its store."""

    clock: ManualClock  #: the store's clock (ManualClock is callable: ``clock()`` -> ms)
    tmp_path: Path  #: a fresh directory for files (an SQLite database, logs)


StoreFactory = Callable[[StoreEnv], AbstractContextManager[TaskStore]]


@contextmanager
def memory_store(env: StoreEnv) -> Iterator[TaskStore]:
    yield MemoryStore(clock=env.clock)


@contextmanager
def sqlite_store(env: StoreEnv) -> Iterator[TaskStore]:
    store = SQLStore(f"sqlite:///{env.tmp_path / 'contract.db'}", clock=env.clock)
    store.create_schema()
    try:
        yield store
    finally:
        store.close()


_PG_PREFIX = test_prefix("contract")
_pg_schema_made = False


@contextmanager
def postgres_store(env: StoreEnv) -> Iterator[TaskStore]:
    # One schema (a prefix of its own) for the whole run, emptied before each test:
    # creating tables and indexes for every test would cost more than the tests.
    global _pg_schema_made
    engine = postgres_engine()
    store = SQLStore(engine, prefix=_PG_PREFIX, clock=env.clock)
    if not _pg_schema_made:
        store.drop_schema()
        store.create_schema()
        _pg_schema_made = True
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"TRUNCATE {_PG_PREFIX}tasks, {_PG_PREFIX}paused_topics RESTART IDENTITY"
        )
    yield store


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_contract_schema() -> Iterator[None]:
    yield
    if _pg_schema_made:
        SQLStore(postgres_engine(), prefix=_PG_PREFIX).drop_schema()


_http: tuple[Starlette, HTTPStore] | None = None
_http_server: ExitStack = ExitStack()


def _http_app() -> tuple[Starlette, HTTPStore]:
    """One uvicorn server on a loopback port, and one client, for the whole run;
    each test puts its own store behind the server (``app.state.store``), since
    starting a server (or a client: httpx loads its CA bundle) per test would
    cost more than the tests."""
    global _http
    if _http is None:
        app = create_app(MemoryStore(), token=HTTP_TOKEN)
        base_url = _http_server.enter_context(serve_in_background(app))
        client = _http_server.enter_context(HTTPStore(base_url, token=HTTP_TOKEN))
        _http = (app, client)
    return _http


@pytest.fixture(scope="session", autouse=True)
def _stop_http_server() -> Iterator[None]:
    yield
    _http_server.close()


HTTP_TOKEN = "contract-suite-token-0123456789"


def http_store(backing: StoreFactory) -> StoreFactory:
    """A factory for ``HTTPStore`` on a real server fronting the ``backing`` store."""

    @contextmanager
    def factory(env: StoreEnv) -> Iterator[TaskStore]:
        app, client = _http_app()
        with backing(env) as store:
            app.state.store = store
            yield client

    return factory


# -- the async stores (sokka.adapters.aio), each behind a BlockingStore -------------

_loop: LoopThread | None = None


def async_loop() -> LoopThread:
    """One event loop on a thread for the whole run: every async store of the suite
    lives on it (a pool's connections belong to the loop that opened them)."""
    global _loop
    if _loop is None:
        _loop = LoopThread()
    return _loop


_async_http: AsyncHTTPStore | None = None


@contextmanager
def memory_async_store(env: StoreEnv) -> Iterator[TaskStore]:
    yield BlockingStore(AsyncMemoryStore(clock=env.clock), async_loop())


@contextmanager
def sqlite_async_store(env: StoreEnv) -> Iterator[TaskStore]:
    loop = async_loop()
    store = AsyncSQLStore(f"sqlite:///{env.tmp_path / 'contract-async.db'}", clock=env.clock)
    try:
        loop.run(store.create_schema())
        yield BlockingStore(store, loop)
    finally:
        loop.run(store.aclose())


_PG_ASYNC_PREFIX = test_prefix("contract_async")
_pg_async_engine: AsyncEngine | None = None


@contextmanager
def postgres_async_store(env: StoreEnv) -> Iterator[TaskStore]:
    # As postgres_store: one schema and one engine for the run, emptied before each test.
    global _pg_async_engine
    engine = postgres_engine()
    if _pg_async_engine is None:
        SQLStore(engine, prefix=_PG_ASYNC_PREFIX).drop_schema()
        SQLStore(engine, prefix=_PG_ASYNC_PREFIX).create_schema()
        _pg_async_engine = create_async_engine(engine.url, pool_size=12, max_overflow=12)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"TRUNCATE {_PG_ASYNC_PREFIX}tasks, {_PG_ASYNC_PREFIX}paused_topics RESTART IDENTITY"
        )
    store = AsyncSQLStore(_pg_async_engine, prefix=_PG_ASYNC_PREFIX, clock=env.clock)
    yield BlockingStore(store, async_loop())


@pytest.fixture(scope="session", autouse=True)
def _stop_async_stores() -> Iterator[None]:
    yield
    if _loop is None:
        return
    if _async_http is not None:
        _loop.run(_async_http.aclose())
    if _pg_async_engine is not None:
        _loop.run(_pg_async_engine.dispose())
        SQLStore(postgres_engine(), prefix=_PG_ASYNC_PREFIX).drop_schema()
    _loop.close()


_async_http_app: Starlette | None = None


def http_async_store(backing: StoreFactory) -> StoreFactory:
    """A factory for ``AsyncHTTPStore`` on a server of its own fronting ``backing``
    (its own, so that an ``HTTPStore`` and an ``AsyncHTTPStore`` can be used side
    by side, each on its own backing store, as the agreement test does)."""

    @contextmanager
    def factory(env: StoreEnv) -> Iterator[TaskStore]:
        global _async_http, _async_http_app
        if _async_http_app is None or _async_http is None:
            _async_http_app = create_app(MemoryStore(), token=HTTP_TOKEN)
            base_url = _http_server.enter_context(serve_in_background(_async_http_app))
            _async_http = AsyncHTTPStore(base_url, token=HTTP_TOKEN)
        with backing(env) as store:
            _async_http_app.state.store = store
            yield BlockingStore(_async_http, async_loop())

    return factory


#: name -> factory.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "postgres": postgres_store,
    "http-memory": http_store(memory_store),
    "http-sqlite": http_store(sqlite_store),
    "memory-async": memory_async_store,
    "sqlite-async": sqlite_async_store,
    "postgres-async": postgres_async_store,
    "http-async": http_async_store(memory_store),
}


@pytest.fixture
def clock() -> ManualClock:
    """The clock the store under test stamps ``created_at``/``updated_at`` with."""
    return ManualClock(start_ms=START_MS)


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> Iterator[TaskStore]:
    """A fresh, empty store of each kind in ``STORE_FACTORIES``."""
    factory = STORE_FACTORIES[request.param]
    with factory(StoreEnv(clock=clock, tmp_path=tmp_path)) as made:
        yield made
