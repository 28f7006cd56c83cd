"""The HTTP API: 4. HTTPStore maps every problem back."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskStore
from sokka.adapters.wire import PROBLEM_JSON, PROBLEM_TYPES
from sokka.core.commands import Finish
from sokka.core.errors import (
    AlreadyExists,
    InvalidTransition,
    LeaseLost,
    NotFound,
    NotRunning,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    StoreError,
    Throttled,
    Unavailable,
    ValidationError,
    WrongOwner,
)
from sokka.core.task import TaskSpec
from sokka.core.transitions import Terminate
from tests.shell.http_api.helpers import (
    HIDDEN,
    SECRET,
    SECRET_PARTS,
    TOKEN,
    RaisingStore,
    SlowStore,
    _j,
)

_ATTRIBUTES = ("field", "rule", "task_id", "expected", "actual", "status", "event")

MAPPED = [
    ValidationError("topic", "must not be empty"),
    NotFound("t-1"),
    AlreadyExists("t-1"),
    StaleRecord("t-1", 3, 4),
    InvalidTransition("t-1", "failed", "cancel"),
    LeaseLost("t-1", "the lease is gone"),
    NotRunning("t-1", "cannot terminate: the task is starting, so the caller's lease is gone"),
    StaleAttempt("t-1", "attempt 1 is stale: the task is on attempt 2"),
    WrongOwner("t-1", "leased by 'w2', not 'w1'"),
]


@pytest.mark.parametrize("error", MAPPED, ids=[type(e).__name__ for e in MAPPED])
def test_httpstore_raises_the_store_error_with_equal_attributes_and_message(
    client: HTTPStore, behind: Callable[[TaskStore], None], error: SokkaError
) -> None:
    behind(RaisingStore(error))
    with pytest.raises(SokkaError) as caught:
        client.get_task("t-1")
    got = caught.value
    assert type(got) is type(error)
    for name in _ATTRIBUTES:
        assert getattr(got, name, None) == getattr(error, name, None), name
    assert str(got) == str(error)


@pytest.mark.parametrize(
    ("error", "status", "code"), HIDDEN, ids=[type(e).__name__ for e, _, _ in HIDDEN]
)
def test_httpstore_raises_the_same_class_for_a_store_failure_without_its_internals(
    client: HTTPStore,
    behind: Callable[[TaskStore], None],
    error: SokkaError,
    status: int,
    code: str,
) -> None:
    behind(RaisingStore(error))
    with pytest.raises(SokkaError) as caught:
        client.list_leased_tasks()
    assert type(caught.value) is type(error)
    assert str(caught.value) == PROBLEM_TYPES[code].fixed_detail
    for part in SECRET_PARTS:
        assert part not in str(caught.value)


def test_httpstore_raises_unavailable_for_an_internal_error_of_the_server(
    client: HTTPStore, behind: Callable[[TaskStore], None]
) -> None:
    behind(RaisingStore(RuntimeError(f"boom {SECRET}")))
    with pytest.raises(Unavailable) as caught:
        client.get_task("t-1")
    assert "500" in str(caught.value)
    assert "boom" not in str(caught.value)


def test_httpstore_batch_failures_come_back_as_the_errors_of_the_store(
    client: HTTPStore, backing: MemoryStore
) -> None:
    outcomes = [
        Finish(task_id="t-running", event=Terminate(pid="w2", attempt=1)),
        Finish(task_id="t-missing", event=Terminate(pid="w1", attempt=1)),
        Finish(task_id="t-failed", event=Terminate(pid="w1", attempt=1)),
    ]
    results = client.finish_many(outcomes)
    errors = [r.failure() for r in results]
    assert [type(e) for e in errors] == [WrongOwner, NotFound, NotRunning]
    in_process = [r.failure() for r in backing.finish_many(outcomes)]
    assert [str(e) for e in errors] == [str(e) for e in in_process]
    assert [e.task_id for e in errors] == ["t-running", "t-missing", "t-failed"]


def test_httpstore_raises_unavailable_when_nothing_listens_on_the_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        HTTPStore(f"http://127.0.0.1:{port}", token=TOKEN, timeout=2.0) as client,
        pytest.raises(Unavailable),
    ):
        client.get_task("t-1")


def test_httpstore_raises_unavailable_when_the_server_answers_too_slowly(
    server: tuple[Starlette, str], behind: Callable[[TaskStore], None]
) -> None:
    slow = SlowStore()
    slow.create_task(TaskSpec(topic="x", task_id="t-1"))
    behind(slow)
    with HTTPStore(server[1], token=TOKEN, timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            client.get_task("t-1")
        elapsed = time.monotonic() - started
    assert elapsed < 0.9
    assert "in time" in str(caught.value)


def _answering(status: int, content: bytes, content_type: str) -> HTTPStore:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"Content-Type": content_type})

    return HTTPStore("http://sokka.test", token=TOKEN, transport=httpx.MockTransport(handler))


def _problem(code: str, **members: Any) -> bytes:
    kind = PROBLEM_TYPES[code]
    return _j(
        {
            "type": f"/problems/{code}",
            "title": kind.title,
            "status": kind.status,
            "detail": "from the server",
            **members,
        }
    )


@pytest.mark.parametrize(
    ("status", "content", "content_type", "expected"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", "text/html", Unavailable),
        (503, b"upstream connect error", "text/plain", Unavailable),
        (504, b"", "text/html", Unavailable),
        (500, b"{not json", PROBLEM_JSON, Unavailable),
        (429, b"slow down", "text/plain", Throttled),
        (429, _problem("throttled"), PROBLEM_JSON, Throttled),
        (401, _problem("unauthorized"), PROBLEM_JSON, StoreError),
        (401, b"", "text/html", StoreError),
        (403, b"<html>Forbidden</html>", "text/html", StoreError),
        (404, _problem("not-found"), PROBLEM_JSON, StoreError),  # no task_id: not rebuildable
        (413, _problem("request-too-large", max_bytes=1024), PROBLEM_JSON, ValidationError),
        (200, b"<html>a captive portal</html>", "text/html", StoreError),
    ],
    ids=[
        "502 html",
        "503 text",
        "504 empty",
        "500 broken problem",
        "429 text",
        "429 throttled problem",
        "401 problem",
        "401 html",
        "403 html",
        "404 problem without members",
        "413 problem",
        "200 not json",
    ],
)
def test_httpstore_maps_every_answer_to_an_error_of_the_taxonomy(
    status: int, content: bytes, content_type: str, expected: type[SokkaError]
) -> None:
    with _answering(status, content, content_type) as client, pytest.raises(SokkaError) as caught:
        client.get_task("t-1")
    assert type(caught.value) is expected
    if status == 401:
        assert "token" in str(caught.value)
    if status == 413:
        assert isinstance(caught.value, ValidationError)
        assert caught.value.field == "body"
        assert "1024" in caught.value.rule


def test_httpstore_refuses_an_integer_too_long_for_json_like_an_in_process_store(
    client: HTTPStore, backing: MemoryStore
) -> None:
    huge = 10**5000
    with pytest.raises(ValidationError) as in_process:
        backing.terminate("t-running", "w1", huge)
    with pytest.raises(ValidationError) as over_http:
        client.terminate("t-running", "w1", huge)
    assert over_http.value.field == in_process.value.field == "attempt"
