"""Fixtures shared by the shell tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.shell.http import create_app, serve_in_background


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[Starlette, HTTPStore]]:
    """A real server and a client of it, for a module: each test puts its own store
    behind the server (``app.state.store = ...``) and calls it through the client."""
    app = create_app(MemoryStore())
    with serve_in_background(app) as base_url, HTTPStore(base_url) as client:
        yield app, client
