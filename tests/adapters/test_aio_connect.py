"""``connect(url)``: the async store each URL names, and the same refusals as the
sync side gives the same URLs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sokka.adapters.aio.connect import connect
from sokka.adapters.aio.http import AsyncHTTPStore
from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.sql import SQLStore
from sokka.core.errors import ValidationError
from sokka.core.task import TaskSpec
from sokka.shell.clock import ManualClock


def test_memory_url_is_an_async_memory_store_with_the_options_given() -> None:
    clock = ManualClock(start_ms=5_000)
    store = connect("memory://", clock=clock)
    assert isinstance(store, AsyncMemoryStore)
    assert isinstance(store, AsyncTaskStore)
    task = asyncio.run(store.create_task(TaskSpec(topic="q")))
    assert task.created_at == 5_000


def test_a_sqlite_url_is_an_async_sql_store_on_that_file_and_prefix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'connect.db'}"

    async def main() -> None:
        store = connect(url, prefix="app_")
        assert isinstance(store, AsyncSQLStore)
        assert isinstance(store, AsyncTaskStore)
        try:
            await store.create_schema()
            await store.create_task(TaskSpec(topic="q", task_id="t-1"))
        finally:
            await store.aclose()

    asyncio.run(main())
    with SQLStore(url, prefix="app_") as sync:
        assert sync.get_task("t-1").topic == "q"


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgresql+psycopg://u@h/db"])
def test_a_postgresql_url_is_an_async_sql_store_on_psycopg(url: str) -> None:
    store = connect(url)
    assert isinstance(store, AsyncSQLStore)
    assert store.engine.dialect.driver == "psycopg"
    assert store.engine.dialect.is_async
    asyncio.run(store.aclose())


@pytest.mark.parametrize("url", ["http://queue.internal:8080/", "https://queue.internal"])
def test_an_http_url_is_an_async_http_store(url: str) -> None:
    store = connect(url, token="connect-token-0123456789")
    assert isinstance(store, AsyncHTTPStore)
    assert isinstance(store, AsyncTaskStore)
    assert store.base_url == url.rstrip("/")
    asyncio.run(store.aclose())


@pytest.mark.parametrize(
    "url", ["", "mysql://u@h/db", "sqlite://", "sqlite:///:memory:", "postgresql://u@h", 42]
)
def test_a_bad_url_is_refused_as_the_sync_side_refuses_it(url: Any) -> None:
    with pytest.raises(ValidationError) as sync_error:
        SQLStore(url)
    with pytest.raises(ValidationError) as async_error:
        connect(url)
    assert str(async_error.value) == str(sync_error.value)
    assert async_error.value.field == "url"


def test_a_memory_url_with_a_name_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^url: memory:// takes nothing after it"):
        connect("memory://shared")


@pytest.mark.parametrize(
    ("url", "option"),
    [("memory://", "prefix"), ("sqlite:///x.db", "token"), ("http://h", "prefix")],
)
def test_an_option_the_store_does_not_take_is_refused_naming_it(url: str, option: str) -> None:
    with pytest.raises(ValidationError, match=rf"^{option}: is not an option of Async"):
        connect(url, **{option: "x"})
