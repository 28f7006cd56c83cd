"""The servers and clients every section uses: one real server per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskStore
from sokka.shell.http import create_app, serve_in_background
from sokka.shell.tokens import WrongTokens
from tests.shell.http_api.helpers import (
    SMALL_LIMIT,
    TOKEN,
    seeded_store,
)


def forget_wrong_tokens(app: Starlette) -> None:
    """The tests of one module share a server (and its client address): the wrong
    tokens one test sends must not lock the next one out."""
    app.state.throttle.rule = WrongTokens()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Starlette, str]]:
    """A server with a token and the default body limit: (app, base URL)."""
    app = create_app(MemoryStore(), token=TOKEN)
    with serve_in_background(app) as base_url:
        yield app, base_url


@pytest.fixture(scope="module")
def small_server() -> Iterator[tuple[Starlette, str]]:
    """A server with a token and a body limit of ``SMALL_LIMIT`` bytes."""
    app = create_app(MemoryStore(), token=TOKEN, max_body_bytes=SMALL_LIMIT)
    with serve_in_background(app) as base_url:
        yield app, base_url


@pytest.fixture(scope="module")
def http(server: tuple[Starlette, str]) -> Iterator[httpx.Client]:
    """A plain client of ``server`` (no token unless a request passes one)."""
    with httpx.Client(base_url=server[1], timeout=10.0) as client:
        yield client


@pytest.fixture(scope="module")
def small_http(small_server: tuple[Starlette, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_server[1], timeout=10.0) as client:
        yield client


@pytest.fixture
def backing(server: tuple[Starlette, str]) -> Iterator[MemoryStore]:
    """A fresh seeded store behind ``server`` for this test."""
    app, _ = server
    store = seeded_store()
    app.state.store = store
    yield store
    app.state.store = MemoryStore()
    forget_wrong_tokens(app)


@pytest.fixture
def small_backing(small_server: tuple[Starlette, str]) -> Iterator[MemoryStore]:
    app, _ = small_server
    store = seeded_store()
    app.state.store = store
    yield store
    app.state.store = MemoryStore()
    forget_wrong_tokens(app)


@pytest.fixture
def behind(server: tuple[Starlette, str]) -> Iterator[Callable[[TaskStore], None]]:
    """Put a given store behind ``server`` (a fresh MemoryStore again afterwards)."""
    app, _ = server

    def put(store: TaskStore) -> None:
        app.state.store = store

    yield put
    app.state.store = MemoryStore()
    forget_wrong_tokens(app)


@pytest.fixture
def client(server: tuple[Starlette, str]) -> Iterator[HTTPStore]:
    """An HTTPStore on ``server`` with the right token."""
    with HTTPStore(server[1], token=TOKEN) as store:
        yield store
