"""``sokka.connect(url)``: the store each URL names, with the async twin's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import sokka
from sokka.adapters.aio.connect import connect as connect_async
from sokka.core.errors import ValidationError
from sokka.core.task import TaskSpec
from sokka.shell.clock import ManualClock
from tests.databases import postgres_url


def test_memory_url_is_a_memory_store_with_the_options_given() -> None:
    store = sokka.connect("memory://", clock=ManualClock(start_ms=5_000))
    assert isinstance(store, sokka.MemoryStore)
    assert isinstance(store, sokka.TaskStore)
    assert store.create_task(TaskSpec(topic="q")).created_at == 5_000


def test_a_sqlite_url_is_a_sql_store_on_that_file_and_prefix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'connect.db'}"
    with sokka.connect(url, prefix="app_") as store:  # type: ignore[attr-defined]
        assert isinstance(store, sokka.SQLStore)
        store.create_schema()
        store.create_task(TaskSpec(topic="q", task_id="t-1"))
    with sokka.SQLStore(url, prefix="app_") as again:
        assert again.get_task("t-1").topic == "q"


def test_a_postgresql_url_is_a_sql_store_on_postgresql() -> None:
    store = sokka.connect(postgres_url())
    assert isinstance(store, sokka.SQLStore)
    assert store.engine.dialect.name == "postgresql"
    store.close()


def test_an_http_url_is_an_http_store_exported_from_sokka() -> None:
    store = sokka.connect("https://queue.internal/", token="connect-token-0123456789")
    assert isinstance(store, sokka.HTTPStore)
    assert store.base_url == "https://queue.internal"
    store.close()


@pytest.mark.parametrize("url", ["", "mysql://u@h/db", "sqlite:///:memory:", "memory://shared", 42])
def test_a_bad_url_is_refused_as_the_async_connect_refuses_it(url: Any) -> None:
    with pytest.raises(ValidationError) as sync_error:
        sokka.connect(url)
    with pytest.raises(ValidationError) as async_error:
        connect_async(url)
    assert str(sync_error.value) == str(async_error.value)
    assert sync_error.value.field == "url"


@pytest.mark.parametrize(
    ("url", "option", "store"),
    [("memory://", "prefix", "MemoryStore"), ("sqlite:///x.db", "token", "SQLStore")],
)
def test_an_option_the_store_does_not_take_is_refused_naming_it(
    url: str, option: str, store: str, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError) as refused:
        sokka.connect(url, **{option: "x"})
    assert refused.value.field == option
    assert f"is not an option of {store}" in str(refused.value)
    assert not (tmp_path / "x.db").exists()
