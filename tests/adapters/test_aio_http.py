"""``AsyncHTTPStore`` beyond the contract (``http-async``): the call table, the
options and the errors it shares with ``HTTPStore``."""

from __future__ import annotations

import asyncio
import inspect
import socket

import httpx
import pytest

from sokka.adapters.aio.http import AsyncHTTPStore
from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskStore
from sokka.adapters.wire import OPERATIONS_BY_NAME
from sokka.core.errors import NotFound, StoreError, Unavailable, ValidationError
from sokka.core.task import TaskSpec
from sokka.shell.http import create_app

TOKEN = "aio-http-token-0123456789"


@pytest.mark.parametrize("name", sorted(OPERATIONS_BY_NAME))
def test_asynchttpstore_takes_each_calls_arguments_from_the_table(name: str) -> None:
    method = getattr(AsyncHTTPStore, name)
    assert inspect.iscoroutinefunction(method)
    arguments = [p for p in inspect.signature(method).parameters if p != "self"]
    table = OPERATIONS_BY_NAME[name].params
    # The port's arguments, then the HTTP call's own (reserve_tasks's wait_ms).
    assert arguments == [param.name for param in table if not param.wire_only] + [
        param.name for param in table if param.wire_only
    ]
    parameters = inspect.signature(method).parameters
    assert parameters == inspect.signature(getattr(HTTPStore, name)).parameters
    port = inspect.signature(getattr(TaskStore, name)).parameters
    assert list(parameters.values())[: len(port)] == list(port.values())


@pytest.mark.parametrize(
    ("base_url", "token"), [("ftp://x", None), ("", None), ("http://x", ""), ("http://x", 5)]
)
def test_bad_options_are_refused_as_httpstore_refuses_them(base_url: str, token: object) -> None:
    with pytest.raises(ValidationError) as sync_error:
        HTTPStore(base_url, token=token)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as async_error:
        AsyncHTTPStore(base_url, token=token)  # type: ignore[arg-type]
    assert str(async_error.value) == str(sync_error.value)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_server_that_cannot_be_reached_is_unavailable() -> None:
    async def main() -> None:
        async with AsyncHTTPStore(f"http://127.0.0.1:{_closed_port()}", timeout=2) as store:
            with pytest.raises(Unavailable, match="cannot reach"):
                await store.get_task("t-1")

    asyncio.run(main())


def test_through_an_asgi_transport_answers_and_errors_come_back_as_in_process() -> None:
    app = create_app(MemoryStore(), token=TOKEN)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncHTTPStore("http://sokka", token=TOKEN, transport=transport) as store:
            created = await store.create_task(TaskSpec(topic="q", task_id="t-1"))
            assert await store.get_task("t-1") == created
            with pytest.raises(NotFound):
                await store.get_task("ghost")
        wrong = httpx.ASGITransport(app=app)
        async with AsyncHTTPStore("http://sokka", token="not-" + TOKEN, transport=wrong) as store:
            with pytest.raises(StoreError, match="refused the token"):
                await store.get_task("t-1")

    asyncio.run(main())
