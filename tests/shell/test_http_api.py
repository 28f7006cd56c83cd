"""The HTTP API (``sokka.shell.http``) and ``HTTPStore`` at their edges.

Every test talks to a real uvicorn server on a loopback port
(``serve_in_background``) with ``httpx``: authentication, refusal of bad
input, the error taxonomy as RFC 9457 problems, ``HTTPStore`` mapping each
problem back to its exception, the OpenAPI document against the code, and
``/health``. A request that is refused must leave the backing store exactly
as it was: each such test compares a snapshot of every task before and after.
"""

from __future__ import annotations

import base64
import inspect
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskStore
from sokka.adapters.wire import OPERATIONS, OPERATIONS_BY_NAME, PROBLEM_JSON, PROBLEM_TYPES
from sokka.core.commands import Finish
from sokka.core.errors import (
    AlreadyExists,
    InvalidTransition,
    LeaseLost,
    NotFound,
    NotRunning,
    RetryableError,
    SchemaError,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    StoreError,
    Throttled,
    Unavailable,
    ValidationError,
    WrongOwner,
)
from sokka.core.task import Status, Task, TaskSpec
from sokka.core.transitions import Terminate
from sokka.shell.clock import ManualClock
from sokka.shell.http import MIN_TOKEN_LENGTH, create_app, serve_in_background

TOKEN = "http-api-suite-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_BODY = {"Content-Type": "application/json"}
#: The body limit of the second server (the smallest create_app allows).
SMALL_LIMIT = 1024
START_MS = 1_000_000
#: Text a store error may carry that must never reach a response.
SECRET = "SELECT secret FROM sokka_tasks -- on db-primary.internal:5432"
SECRET_PARTS = ("SELECT", "secret", "sokka_tasks", "db-primary", "5432", "Traceback")
#: The calls of the TaskStore protocol, by name.
STORE_CALLS = tuple(
    name
    for name, value in vars(TaskStore).items()
    if inspect.isfunction(value) and not name.startswith("_")
)
READ_ONLY_CALLS = frozenset({"get_task", "tasks_in_group", "list_tasks", "list_leased_tasks"})


# -- stores ---------------------------------------------------------------------------


def seeded_store() -> MemoryStore:
    """Three tasks: t-starting (starting), t-running (running, pid w1, attempt 1,
    record_ver 1) and t-failed (failed: cancelled)."""
    clock = ManualClock(start_ms=START_MS)
    store = MemoryStore(clock=clock)
    store.create_task(TaskSpec(topic="seed", task_id="t-starting", data={"n": 0}))
    clock.advance(10)
    store.create_task(TaskSpec(topic="run", task_id="t-running", data={"n": 1}))
    (running,) = store.reserve_tasks("run", "w1")
    assert (running.task_id, running.attempt, running.record_ver) == ("t-running", 1, 1)
    clock.advance(10)
    store.create_task(TaskSpec(topic="gone", task_id="t-failed"))
    assert store.cancel("t-failed", "seeded").status == Status.FAILED
    return store


def snapshot(store: TaskStore) -> list[Task]:
    """Every task of the store, in creation order (following the cursors)."""
    tasks: list[Task] = []
    cursor = None
    while True:
        page = store.list_tasks(cursor=cursor, limit=2)
        tasks.extend(page.tasks)
        if page.next_cursor is None:
            return tasks
        cursor = page.next_cursor


class RaisingStore(MemoryStore):
    """A MemoryStore whose every TaskStore call raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.calls = 0


def _raiser(name: str) -> Callable[..., Any]:
    def call(self: RaisingStore, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise self.error

    call.__name__ = name
    return call


for _name in STORE_CALLS:
    setattr(RaisingStore, _name, _raiser(_name))


class SlowStore(MemoryStore):
    """A MemoryStore that takes a second to answer ``get_task``."""

    def get_task(self, task_id: str) -> Task:
        time.sleep(1.0)
        return super().get_task(task_id)


# -- servers and clients -----------------------------------------------------------


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


@pytest.fixture
def small_backing(small_server: tuple[Starlette, str]) -> Iterator[MemoryStore]:
    app, _ = small_server
    store = seeded_store()
    app.state.store = store
    yield store
    app.state.store = MemoryStore()


@pytest.fixture
def behind(server: tuple[Starlette, str]) -> Iterator[Callable[[TaskStore], None]]:
    """Put a given store behind ``server`` (a fresh MemoryStore again afterwards)."""
    app, _ = server

    def put(store: TaskStore) -> None:
        app.state.store = store

    yield put
    app.state.store = MemoryStore()


@pytest.fixture
def client(server: tuple[Starlette, str]) -> Iterator[HTTPStore]:
    """An HTTPStore on ``server`` with the right token."""
    with HTTPStore(server[1], token=TOKEN) as store:
        yield store


def post(
    client: httpx.Client,
    call: str,
    body: object,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``POST /v1/<call>``; ``body`` as JSON unless it is bytes. With ``headers``
    given, exactly those are sent (no token, no Content-Type unless in them)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {**JSON_BODY, **AUTH} if headers is None else headers
    return client.post(f"/v1/{call}", content=content, headers=sent)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the RFC 9457 problem ``/problems/<code>`` with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "Traceback" not in response.text
    problem = response.json()
    assert problem["type"] == f"/problems/{code}"
    assert problem["title"] == PROBLEM_TYPES[code].title
    assert problem["status"] == status
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    return problem


def valid_bodies(store: MemoryStore) -> dict[str, dict[str, Any]]:
    """A body every operation carries out on the seeded store (reads read,
    writes change something)."""
    running = store.get_task("t-running")
    lease = {"task_id": "t-running", "pid": "w1", "attempt": running.attempt}
    return {
        "create_task": {"spec": {"topic": "new", "task_id": "t-new"}},
        "create_tasks": {"specs": [{"topic": "new", "task_id": "t-new"}]},
        "get_task": {"task_id": "t-starting"},
        "tasks_in_group": {"task_group_id": "t-starting"},
        "list_tasks": {"filter": {"topic": "seed"}, "limit": 10},
        "reserve_tasks": {"topic": "seed", "pid": "w2"},
        "extend_leases": {"pid": "w1", "leases": [{"task_id": "t-running", "attempt": 1}]},
        "terminate": lease,
        "snooze": {**lease, "snooze_ms": 5_000},
        "fail": {**lease, "error": "boom"},
        "finish_many": {"outcomes": [{**lease, "outcome": "release"}]},
        "revoke_lease": {"task_id": "t-running", "record_ver": running.record_ver},
        "requeue": {"task_id": "t-failed"},
        "cancel": {"task_id": "t-starting", "reason": "not needed any more"},
        "list_leased_tasks": {"topic": "run"},
    }


def test_this_suite_has_a_valid_body_for_every_operation_and_store_call() -> None:
    assert set(valid_bodies(seeded_store())) == set(OPERATIONS_BY_NAME) == set(STORE_CALLS)


# -- 1. authentication -----------------------------------------------------------------

BAD_AUTHORIZATION = {
    "missing": None,
    "wrong token": f"Bearer {'x' * len(TOKEN)}",
    "basic scheme": "Basic " + base64.b64encode(f"sokka:{TOKEN}".encode()).decode(),
    "token without scheme": TOKEN,
    "tab instead of space": f"Bearer\t{TOKEN}",
    "token with a suffix": f"Bearer {TOKEN}x",
    "token prefix": f"Bearer {TOKEN[:-1]}",
    "scheme alone": "Bearer",
}


@pytest.mark.parametrize(
    "authorization", list(BAD_AUTHORIZATION.values()), ids=list(BAD_AUTHORIZATION)
)
@pytest.mark.parametrize("call", ["create_task", "cancel"])
def test_a_write_without_the_right_token_is_refused_with_401_and_does_nothing(
    http: httpx.Client, backing: MemoryStore, call: str, authorization: str | None
) -> None:
    before = snapshot(backing)
    headers = dict(JSON_BODY)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = post(http, call, valid_bodies(backing)[call], headers=headers)
    problem = assert_problem(response, 401, "unauthorized")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'realm="sokka"' in challenge
    assert ('error="invalid_token"' in challenge) == (authorization is not None)
    assert TOKEN not in response.text
    assert set(problem) == {"type", "title", "status", "detail"}
    assert snapshot(backing) == before


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.name for op in OPERATIONS])
def test_every_v1_endpoint_refuses_a_call_without_the_token_and_carries_it_out_with_it(
    http: httpx.Client, backing: MemoryStore, operation: Any
) -> None:
    body = valid_bodies(backing)[operation.name]
    before = snapshot(backing)
    refused = post(http, operation.name, body, headers=dict(JSON_BODY))
    assert_problem(refused, 401, "unauthorized")
    assert "www-authenticate" in refused.headers
    assert snapshot(backing) == before
    accepted = post(http, operation.name, body)
    assert accepted.status_code == 200, accepted.text
    assert accepted.headers["content-type"] == "application/json"
    changed = snapshot(backing) != before
    assert changed == (operation.name not in READ_ONLY_CALLS)


def test_health_needs_no_token(http: httpx.Client, backing: MemoryStore) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/openapi.json", "/problems/not-found", "/no/such/path"])
def test_every_get_endpoint_but_health_needs_the_token(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer ")
    wrong = http.get(path, headers={"Authorization": f"Bearer {TOKEN[::-1]}"})
    assert_problem(wrong, 401, "unauthorized")
    right = http.get(path, headers=AUTH)
    assert right.status_code == (404 if path == "/no/such/path" else 200)


def test_httpstore_with_a_wrong_token_raises_store_error_naming_the_token(
    server: tuple[Starlette, str], backing: MemoryStore
) -> None:
    before = snapshot(backing)
    with (
        HTTPStore(server[1], token="not-the-server-token-000") as wrong,
        pytest.raises(StoreError) as caught,
    ):
        wrong.cancel("t-starting", "nope")
    assert type(caught.value) is StoreError
    assert "token" in str(caught.value)
    assert snapshot(backing) == before


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x" * (MIN_TOKEN_LENGTH - 1),
        "a token with spaces 0123456789",
        "tab\tseparated-0123456789",
        "newline-0123456789\n",
        "t\u00f6ken-0123456789abcdef",
        'quote"-0123456789abcdef',
    ],
)
def test_create_app_refuses_a_short_or_unsafe_token(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        create_app(MemoryStore(), token=token)
    assert caught.value.field == "token"


def test_create_app_takes_a_token_of_exactly_the_minimum_length() -> None:
    app = create_app(MemoryStore(), token="a" * MIN_TOKEN_LENGTH)
    assert app.state.openapi["security"] == [{"bearer": []}]


# -- 2. bad input ------------------------------------------------------------------------

_LEASE = {"task_id": "t-running", "pid": "w1", "attempt": 1}


def _j(value: object) -> bytes:
    return json.dumps(value).encode()


def _cursor(body: object) -> str:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_DEEP = b'{"spec": {"topic": "x", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"

#: (id, call, raw body, a part of the rule the malformed-request problem states)
MALFORMED = [
    ("truncated JSON", "create_task", b'{"spec": {"topic": "x"}', "is not JSON"),
    ("form encoding", "get_task", b"task_id=t-starting", "is not JSON"),
    ("empty body", "get_task", b"", "is not JSON"),
    ("invalid UTF-8", "create_task", b'{"spec": {"topic": "\xff\xfe"}}', "UTF-8"),
    ("UTF-8 BOM", "get_task", b'\xef\xbb\xbf{"task_id": "t-starting"}', "is not JSON"),
    (
        "duplicate top-level keys",
        "cancel",
        b'{"task_id": "t-failed", "task_id": "t-starting", "reason": "r"}',
        "twice",
    ),
    ("duplicate keys in spec", "create_task", b'{"spec": {"topic": "a", "topic": "b"}}', "twice"),
    (
        "NaN",
        "snooze",
        b'{"task_id": "t-running", "pid": "w1", "attempt": 1, "snooze_ms": NaN}',
        "NaN",
    ),
    ("Infinity", "create_task", b'{"spec": {"topic": "x", "data": Infinity}}', "Infinity"),
    ("-Infinity", "create_task", b'{"spec": {"topic": "x", "data": -Infinity}}', "Infinity"),
    ("100000 open brackets", "get_task", b"[" * 100_000, "nested too deeply"),
    ("data nested 100000 deep", "create_task", _DEEP, "nested too deeply"),
    (
        "a 5000-digit integer",
        "terminate",
        b'{"task_id": "t-running", "pid": "w1", "attempt": ' + b"1" * 5000 + b"}",
        "integer too long",
    ),
]


@pytest.mark.parametrize(
    ("call", "raw", "rule_part"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_body_that_is_not_strict_json_answers_400_and_changes_nothing(
    http: httpx.Client, backing: MemoryStore, call: str, raw: bytes, rule_part: str
) -> None:
    before = snapshot(backing)
    problem = assert_problem(post(http, call, raw), 400, "malformed-request")
    assert problem["field"] == "body"
    assert rule_part in problem["rule"]
    assert snapshot(backing) == before


#: (id, call, raw body, the field the invalid-input problem names)
INVALID = [
    ("a JSON array", "get_task", _j(["t-starting"]), "body"),
    ("a JSON number", "get_task", b"42", "body"),
    ("a JSON string", "cancel", b'"t-starting"', "body"),
    ("JSON null", "cancel", b"null", "body"),
    ("limit as a string", "list_tasks", _j({"limit": "5"}), "limit"),
    ("limit zero", "list_tasks", _j({"limit": 0}), "limit"),
    ("limit over the page size", "list_leased_tasks", _j({"limit": 1001}), "limit"),
    ("attempt as a float", "terminate", _j({**_LEASE, "attempt": 1.0}), "attempt"),
    ("attempt as a bool", "terminate", _j({**_LEASE, "attempt": True}), "attempt"),
    ("attempt 2**64", "terminate", _j({**_LEASE, "attempt": 2**64}), "attempt"),
    (
        "attempt 1e400",
        "terminate",
        b'{"task_id": "t-running", "pid": "w1", "attempt": 1e400}',
        "attempt",
    ),
    ("attempt zero", "fail", _j({**_LEASE, "attempt": 0, "error": "e"}), "attempt"),
    ("pid as a number", "terminate", _j({**_LEASE, "pid": 7}), "pid"),
    ("snooze_ms 2**63", "snooze", _j({**_LEASE, "snooze_ms": 2**63}), "snooze_ms"),
    ("snooze_ms zero", "snooze", _j({**_LEASE, "snooze_ms": 0}), "snooze_ms"),
    (
        "retry_after_ms as a string",
        "fail",
        _j({**_LEASE, "error": "e", "retry_after_ms": "1"}),
        "retry_after_ms",
    ),
    ("error as a number", "fail", _j({**_LEASE, "error": 5}), "error"),
    (
        "record_ver negative",
        "revoke_lease",
        _j({"task_id": "t-running", "record_ver": -1}),
        "record_ver",
    ),
    (
        "record_ver as a string",
        "revoke_lease",
        _j({"task_id": "t-running", "record_ver": "1"}),
        "record_ver",
    ),
    ("task_id empty", "get_task", _j({"task_id": ""}), "task_id"),
    ("task_id with a control character", "requeue", _j({"task_id": "t-failed\u0001"}), "task_id"),
    ("task_id with NUL", "cancel", _j({"task_id": "t-starting\u0000", "reason": "r"}), "task_id"),
    ("topic a lone surrogate", "create_task", b'{"spec": {"topic": "\\ud800"}}', "topic"),
    (
        "max_attempts as a float",
        "create_task",
        _j({"spec": {"topic": "x", "max_attempts": 2.0}}),
        "max_attempts",
    ),
    ("reason as a list", "cancel", _j({"task_id": "t-starting", "reason": ["r"]}), "reason"),
    (
        "unknown top-level field",
        "cancel",
        _j({"task_id": "t-starting", "reason": "r", "force": True}),
        "force",
    ),
    (
        "unknown field in spec",
        "create_task",
        _j({"spec": {"topic": "x", "priority": 1}}),
        "priority",
    ),
    (
        "data_json in spec",
        "create_task",
        _j({"spec": {"topic": "x", "data_json": "1"}}),
        "data_json",
    ),
    ("unknown field in filter", "list_tasks", _j({"filter": {"owner": "w1"}}), "owner"),
    ("unknown status in filter", "list_tasks", _j({"filter": {"status": "done"}}), "status"),
    ("filter as a list", "list_tasks", _j({"filter": ["seed"]}), "filter"),
    ("unknown field in a lease", "extend_leases", _j({"pid": "w1", "leases": [{**_LEASE}]}), "pid"),
    (
        "unknown field in an outcome",
        "finish_many",
        _j({"outcomes": [{**_LEASE, "outcome": "terminate", "snooze_ms": 5}]}),
        "snooze_ms",
    ),
    (
        "unknown outcome",
        "finish_many",
        _j({"outcomes": [{**_LEASE, "outcome": "explode"}]}),
        "outcome",
    ),
    ("outcome not an object", "finish_many", _j({"outcomes": ["t-running"]}), "outcome"),
    ("missing spec", "create_task", _j({}), "spec"),
    ("missing topic in spec", "create_task", _j({"spec": {"task_id": "t-x"}}), "topic"),
    ("missing attempt", "terminate", _j({"task_id": "t-running", "pid": "w1"}), "attempt"),
    ("missing reason", "cancel", _j({"task_id": "t-starting"}), "reason"),
    (
        "missing attempt in a lease",
        "extend_leases",
        _j({"pid": "w1", "leases": [{"task_id": "t-running"}]}),
        "attempt",
    ),
    (
        "missing snooze_ms in an outcome",
        "finish_many",
        _j({"outcomes": [{**_LEASE, "outcome": "snooze"}]}),
        "snooze_ms",
    ),
    ("spec not an object", "create_task", _j({"spec": "x"}), "spec"),
    ("specs not a list", "create_tasks", _j({"specs": {"topic": "x"}}), "specs"),
    ("leases not a list", "extend_leases", _j({"pid": "w1", "leases": "t-running"}), "leases"),
    ("cursor garbage", "list_tasks", _j({"cursor": "not-a-cursor"}), "cursor"),
    ("cursor a number", "list_tasks", _j({"cursor": 5}), "cursor"),
    ("cursor empty", "list_leased_tasks", _j({"cursor": ""}), "cursor"),
    (
        "cursor forged negative",
        "list_tasks",
        _j({"cursor": _cursor({"v": 1, "after": -1})}),
        "cursor",
    ),
    (
        "cursor forged past 64 bits",
        "list_leased_tasks",
        _j({"cursor": _cursor({"v": 1, "after": 2**63})}),
        "cursor",
    ),
    (
        "cursor of another version",
        "list_tasks",
        _j({"cursor": _cursor({"v": 2, "after": 1})}),
        "cursor",
    ),
    (
        "cursor with an extra key",
        "list_leased_tasks",
        _j({"cursor": _cursor({"v": 1, "after": 1, "x": 0})}),
        "cursor",
    ),
]


@pytest.mark.parametrize(
    ("call", "raw", "field"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_input_answers_422_naming_the_field_and_rule_and_changes_nothing(
    http: httpx.Client, backing: MemoryStore, call: str, raw: bytes, field: str
) -> None:
    before = snapshot(backing)
    problem = assert_problem(post(http, call, raw), 422, "invalid-input")
    assert problem["field"] == field
    assert isinstance(problem["rule"], str)
    assert problem["rule"]
    assert problem["detail"] == f"{field}: {problem['rule']}"
    assert snapshot(backing) == before


def test_create_tasks_fails_a_bad_spec_on_its_own_and_creates_the_good_one(
    http: httpx.Client, backing: MemoryStore
) -> None:
    body = {"specs": [{"topic": "ok", "task_id": "t-good"}, {"topic": "", "task_id": "t-bad"}]}
    response = post(http, "create_tasks", body)
    assert response.status_code == 200
    good, bad = response.json()
    assert good["task"]["task_id"] == "t-good"
    assert bad["error"]["type"] == "/problems/invalid-input"
    assert (bad["error"]["field"], bad["error"]["rule"]) == ("topic", "must not be empty")
    assert [t.task_id for t in snapshot(backing)] == [
        "t-starting",
        "t-running",
        "t-failed",
        "t-good",
    ]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""],
)
def test_a_post_that_is_not_declared_json_answers_415_and_changes_nothing(
    http: httpx.Client, backing: MemoryStore, content_type: str | None
) -> None:
    before = snapshot(backing)
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = post(http, "cancel", valid_bodies(backing)["cancel"], headers=headers)
    assert_problem(response, 415, "unsupported-media-type")
    assert snapshot(backing) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/no_such_call"), ("GET", "/nope"), ("POST", "/v2/get_task"), ("GET", "/v1")],
)
def test_an_unknown_path_answers_404_unknown_endpoint(
    http: httpx.Client, backing: MemoryStore, method: str, path: str
) -> None:
    response = http.request(method, path, content=b"{}", headers={**AUTH, **JSON_BODY})
    assert_problem(response, 404, "unknown-endpoint")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/get_task", "POST"),
        ("PUT", "/v1/create_task", "POST"),
        ("DELETE", "/v1/cancel", "POST"),
        ("POST", "/health", "GET"),
        ("POST", "/openapi.json", "GET"),
    ],
)
def test_a_wrong_method_answers_405_with_allow(
    http: httpx.Client, backing: MemoryStore, method: str, path: str, allowed: str
) -> None:
    before = snapshot(backing)
    body = _j(valid_bodies(backing)["cancel"])
    response = http.request(method, path, content=body, headers={**AUTH, **JSON_BODY})
    assert_problem(response, 405, "method-not-allowed")
    assert allowed in response.headers["allow"].split(", ")
    assert snapshot(backing) == before


def _padded_create(size: int) -> bytes:
    """A valid create_task body of exactly ``size`` bytes (JSON padded with spaces)."""
    body = _j({"spec": {"topic": "padded", "task_id": "t-padded"}})
    assert len(body) <= size
    return body + b" " * (size - len(body))


def _chunks(body: bytes, size: int = 256) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_answers_413_and_changes_nothing(
    small_http: httpx.Client, small_backing: MemoryStore, streamed: bool
) -> None:
    before = snapshot(small_backing)
    body = _padded_create(SMALL_LIMIT + 1)
    content: bytes | Iterator[bytes] = _chunks(body) if streamed else body
    response = small_http.post("/v1/create_task", content=content, headers={**AUTH, **JSON_BODY})
    sent = response.request.headers
    if streamed:
        assert "content-length" not in sent
        assert sent["transfer-encoding"] == "chunked"
    else:
        assert sent["content-length"] == str(SMALL_LIMIT + 1)
    problem = assert_problem(response, 413, "request-too-large")
    assert problem["max_bytes"] == SMALL_LIMIT
    assert snapshot(small_backing) == before


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_carried_out(
    small_http: httpx.Client, small_backing: MemoryStore, streamed: bool
) -> None:
    body = _padded_create(SMALL_LIMIT)
    content: bytes | Iterator[bytes] = _chunks(body) if streamed else body
    response = small_http.post("/v1/create_task", content=content, headers={**AUTH, **JSON_BODY})
    assert response.status_code == 200, response.text
    assert small_backing.get_task("t-padded").topic == "padded"


@pytest.mark.parametrize("declared", [SMALL_LIMIT + 1, 10_000_000_000])
def test_a_declared_content_length_over_the_limit_is_refused_before_any_body_is_sent(
    small_server: tuple[Starlette, str], small_backing: MemoryStore, declared: int
) -> None:
    """A client announcing too large a body and sending none of it gets its 413
    at once (a server that waited for the body would time out here)."""
    before = snapshot(small_backing)
    host, port = small_server[1].removeprefix("http://").split(":")
    request = (
        f"POST /v1/create_task HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=2.0) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in answer.lower()
    assert snapshot(small_backing) == before


def test_httpstore_gets_validation_error_on_body_from_a_body_over_the_limit(
    small_server: tuple[Starlette, str], small_backing: MemoryStore
) -> None:
    before = snapshot(small_backing)
    with (
        HTTPStore(small_server[1], token=TOKEN) as client,
        pytest.raises(ValidationError) as caught,
    ):
        client.create_task(TaskSpec(topic="big", data="x" * (2 * SMALL_LIMIT)))
    assert caught.value.field == "body"
    assert str(SMALL_LIMIT) in caught.value.rule
    assert snapshot(small_backing) == before


# -- 3. the error taxonomy over HTTP ---------------------------------------------------

#: Errors whose message may carry server internals: (error, status, code).
HIDDEN = [
    (Throttled(f"lock timeout: {SECRET}"), 429, "throttled"),
    (Unavailable(f"could not connect: {SECRET}"), 503, "unavailable"),
    (RetryableError(SECRET), 503, "retryable"),
    (StoreError(f"syntax error in {SECRET}"), 500, "store-error"),
    (SchemaError(f"relation missing: {SECRET}"), 500, "schema-error"),
]


@pytest.mark.parametrize(
    ("error", "status", "code"), HIDDEN, ids=[type(e).__name__ for e, _, _ in HIDDEN]
)
def test_a_store_failure_answers_its_status_with_a_fixed_detail_and_no_internals(
    http: httpx.Client,
    behind: Callable[[TaskStore], None],
    error: SokkaError,
    status: int,
    code: str,
) -> None:
    store = RaisingStore(error)
    behind(store)
    response = post(http, "get_task", {"task_id": "t-1"})
    problem = assert_problem(response, status, code)
    assert store.calls == 1
    assert problem["detail"] == PROBLEM_TYPES[code].fixed_detail
    assert set(problem) == {"type", "title", "status", "detail"}
    for part in SECRET_PARTS:
        assert part not in response.text
    if status in (429, 503):
        assert response.headers["retry-after"] == "1"
    else:
        assert "retry-after" not in response.headers


def test_an_unexpected_exception_in_the_store_answers_500_internal_error_without_its_message(
    http: httpx.Client, behind: Callable[[TaskStore], None]
) -> None:
    behind(RaisingStore(RuntimeError(f"boom {SECRET}")))
    response = post(http, "list_tasks", {})
    problem = assert_problem(response, 500, "internal-error")
    assert problem["detail"] == PROBLEM_TYPES["internal-error"].fixed_detail
    assert "boom" not in response.text
    assert "RuntimeError" not in response.text
    for part in SECRET_PARTS:
        assert part not in response.text


#: (id, call over HTTP, the same call in-process, status, code, members of the problem)
REAL_ERRORS: list[
    tuple[str, str, dict[str, Any], Callable[[MemoryStore], object], int, str, dict[str, Any]]
] = [
    (
        "not found",
        "get_task",
        {"task_id": "t-missing"},
        lambda s: s.get_task("t-missing"),
        404,
        "not-found",
        {"task_id": "t-missing"},
    ),
    (
        "already exists",
        "create_task",
        {"spec": {"topic": "other", "task_id": "t-starting"}},
        lambda s: s.create_task(TaskSpec(topic="other", task_id="t-starting")),
        409,
        "already-exists",
        {"task_id": "t-starting"},
    ),
    (
        "stale record",
        "revoke_lease",
        {"task_id": "t-running", "record_ver": 0},
        lambda s: s.revoke_lease("t-running", 0),
        409,
        "stale-record",
        {"task_id": "t-running", "expected": 0, "actual": 1},
    ),
    (
        "invalid transition: requeue",
        "requeue",
        {"task_id": "t-starting"},
        lambda s: s.requeue("t-starting"),
        409,
        "invalid-transition",
        {"task_id": "t-starting", "task_status": "starting", "event": "requeue"},
    ),
    (
        "invalid transition: cancel",
        "cancel",
        {"task_id": "t-running", "reason": "r"},
        lambda s: s.cancel("t-running", "r"),
        409,
        "invalid-transition",
        {"task_id": "t-running", "task_status": "running", "event": "cancel"},
    ),
    (
        "not running",
        "terminate",
        {"task_id": "t-failed", "pid": "w1", "attempt": 1},
        lambda s: s.terminate("t-failed", "w1", 1),
        409,
        "not-running",
        {"task_id": "t-failed"},
    ),
    (
        "stale attempt",
        "terminate",
        {"task_id": "t-running", "pid": "w1", "attempt": 2},
        lambda s: s.terminate("t-running", "w1", 2),
        403,
        "stale-attempt",
        {"task_id": "t-running"},
    ),
    (
        "wrong owner",
        "snooze",
        {"task_id": "t-running", "pid": "w2", "attempt": 1, "snooze_ms": 10},
        lambda s: s.snooze("t-running", "w2", 1, 10),
        403,
        "wrong-owner",
        {"task_id": "t-running"},
    ),
    (
        "invalid input",
        "create_task",
        {"spec": {"topic": ""}},
        lambda s: s.create_task(TaskSpec(topic="")),
        422,
        "invalid-input",
        {"field": "topic", "rule": "must not be empty"},
    ),
]


@pytest.mark.parametrize(
    ("call", "body", "in_process", "status", "code", "members"),
    [case[1:] for case in REAL_ERRORS],
    ids=[case[0] for case in REAL_ERRORS],
)
def test_a_store_error_answers_its_status_type_and_members_as_in_process(
    http: httpx.Client,
    backing: MemoryStore,
    call: str,
    body: dict[str, Any],
    in_process: Callable[[MemoryStore], object],
    status: int,
    code: str,
    members: dict[str, Any],
) -> None:
    before = snapshot(backing)
    response = post(http, call, body)
    problem = assert_problem(response, status, code)
    assert snapshot(backing) == before
    with pytest.raises(SokkaError) as caught:
        in_process(backing)
    error = caught.value
    assert error.code == code
    assert problem["detail"] == str(error)
    for name, value in members.items():
        assert problem[name] == value
    if isinstance(error, LeaseLost):
        assert problem["reason"]
        assert problem["detail"] == f"task {problem['task_id']!r}: {problem['reason']}"
    expected_keys = {"type", "title", "status", "detail", *PROBLEM_TYPES[code].members}
    assert set(problem) == expected_keys
    assert "retry-after" not in response.headers


# -- 4. HTTPStore maps every problem back ------------------------------------------------

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


# -- 5. the OpenAPI document -------------------------------------------------------------

_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@pytest.fixture(scope="module")
def openapi(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/openapi.json", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def _route_methods(app: Starlette) -> dict[str, set[str]]:
    return {
        route.path: {m.lower() for m in route.methods or () if m != "HEAD"}
        for route in app.routes
        if isinstance(route, Route)
    }


def _documented_methods(document: dict[str, Any]) -> dict[str, set[str]]:
    return {
        path: {key for key in item if key in _HTTP_METHODS}
        for path, item in document["paths"].items()
    }


def test_every_documented_path_is_a_route_with_the_documented_methods(
    server: tuple[Starlette, str], openapi: dict[str, Any]
) -> None:
    routes = _route_methods(server[0])
    for path, methods in _documented_methods(openapi).items():
        assert path in routes, path
        assert methods == routes[path], path


def test_every_route_of_the_app_is_in_the_openapi_document(
    server: tuple[Starlette, str], openapi: dict[str, Any]
) -> None:
    assert _route_methods(server[0]) == _documented_methods(openapi)


def test_the_v1_operations_are_exactly_the_calls_of_the_task_store_protocol(
    openapi: dict[str, Any],
) -> None:
    v1 = {path: item for path, item in openapi["paths"].items() if path.startswith("/v1/")}
    assert {path.removeprefix("/v1/") for path in v1} == set(STORE_CALLS)
    for path, item in v1.items():
        assert set(item) == {"post"}
        assert item["post"]["operationId"] == path.removeprefix("/v1/")


@pytest.mark.parametrize("call", STORE_CALLS)
def test_each_request_schema_lists_exactly_the_parameters_of_its_protocol_method(
    openapi: dict[str, Any], call: str
) -> None:
    parameters = [
        p
        for p in inspect.signature(getattr(TaskStore, call)).parameters.values()
        if p.name != "self"
    ]
    operation = openapi["paths"][f"/v1/{call}"]["post"]
    assert operation["requestBody"]["required"] is True
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == [p.name for p in parameters]
    assert schema["required"] == [p.name for p in parameters if p.default is p.empty]
    for p in parameters:
        if p.default is not p.empty and p.default is not None:
            assert schema["properties"][p.name]["default"] == p.default, p.name
    assert "200" in operation["responses"]
    assert "401" in operation["responses"]  # the server has a token
    assert "422" in operation["responses"]


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> object:
    assert ref.startswith("#/"), ref
    node: object = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert key in node, ref
        node = node[key]
    return node


def test_every_ref_in_the_openapi_document_resolves(openapi: dict[str, Any]) -> None:
    refs = set(_refs(openapi))
    assert len(refs) >= 8  # Task, Page, Result, Problem, TaskSpec, TaskFilter, Lease, Outcome
    for ref in refs:
        assert isinstance(_resolve(openapi, ref), dict), ref


def test_the_openapi_document_declares_bearer_security_but_not_for_health(
    openapi: dict[str, Any],
) -> None:
    assert openapi["openapi"] == "3.1.0"
    assert openapi["security"] == [{"bearer": []}]
    assert openapi["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert openapi["paths"]["/health"]["get"]["security"] == []


def test_the_openapi_document_is_valid_openapi_3_1(openapi: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validate = getattr(validator, "validate", None) or validator.validate_spec
    validate(openapi)


def test_every_problem_type_is_served_at_its_uri(http: httpx.Client) -> None:
    for code, kind in PROBLEM_TYPES.items():
        response = http.get(f"/problems/{code}", headers=AUTH)
        assert response.status_code == 200, code
        assert response.json() == {
            "type": f"/problems/{code}",
            "title": kind.title,
            "status": kind.status,
            "members": list(kind.members),
        }
    assert_problem(http.get("/problems/no-such-code", headers=AUTH), 404, "unknown-endpoint")


# -- 6. /health ----------------------------------------------------------------------------


def test_health_answers_200_ok_with_a_working_store(
    http: httpx.Client, backing: MemoryStore
) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Unavailable(f"could not connect: {SECRET}"), 503, "unavailable"),
        (Throttled(f"lock timeout: {SECRET}"), 429, "throttled"),
        (SchemaError(f"no table: {SECRET}"), 500, "schema-error"),
        (RuntimeError(f"boom {SECRET}"), 500, "internal-error"),
    ],
    ids=["Unavailable", "Throttled", "SchemaError", "RuntimeError"],
)
def test_health_answers_the_problem_of_a_failing_store_without_its_message(
    http: httpx.Client,
    behind: Callable[[TaskStore], None],
    error: Exception,
    status: int,
    code: str,
) -> None:
    store = RaisingStore(error)
    behind(store)
    response = http.get("/health")
    assert_problem(response, status, code)
    assert store.calls == 1
    for part in SECRET_PARTS:
        assert part not in response.text
    assert "boom" not in response.text
    if status in (429, 503):
        assert response.headers["retry-after"] == "1"


# -- regressions of the first review -------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}"],
    ids=["lower-case scheme", "upper-case scheme", "two spaces"],
)
def test_the_scheme_is_case_insensitive_and_may_be_followed_by_several_spaces(
    http: httpx.Client, backing: MemoryStore, authorization: str
) -> None:
    response = post(http, "get_task", {"task_id": "t-starting"},
                    headers={**JSON_BODY, "Authorization": authorization})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] == "t-starting"


def test_two_authorization_headers_are_refused_even_if_one_is_right(
    http: httpx.Client, backing: MemoryStore
) -> None:
    before = snapshot(backing)
    headers = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer wrong-token-0123456789"),
        ("Authorization", f"Bearer {TOKEN}"),
    ]
    body = json.dumps({"task_id": "t-starting", "reason": "r"}).encode()
    response = http.post("/v1/cancel", content=body, headers=headers)
    problem = assert_problem(response, 401, "unauthorized")
    assert "one Authorization header" in problem["detail"]
    assert snapshot(backing) == before


@pytest.mark.parametrize("content_type", ["application/json; charset=latin-1",
                                          'application/json; charset="utf-16"'])  # fmt: skip
def test_json_in_another_charset_than_utf8_answers_415(
    http: httpx.Client, backing: MemoryStore, content_type: str
) -> None:
    before = snapshot(backing)
    response = post(http, "cancel", {"task_id": "t-starting", "reason": "r"},
                    headers={**AUTH, "Content-Type": content_type})  # fmt: skip
    assert_problem(response, 415, "unsupported-media-type")
    assert snapshot(backing) == before


def test_json_declared_utf8_is_accepted(http: httpx.Client, backing: MemoryStore) -> None:
    utf8 = {**AUTH, "Content-Type": "application/json; charset=UTF-8"}
    response = post(http, "get_task", {"task_id": "t-starting"}, headers=utf8)
    assert response.status_code == 200, response.text


def test_a_trailing_slash_answers_404_unknown_endpoint_not_a_redirect(
    http: httpx.Client, backing: MemoryStore
) -> None:
    before = snapshot(backing)
    response = post(http, "get_task/", {"task_id": "t-starting"}, headers={**AUTH, **JSON_BODY})
    assert_problem(response, 404, "unknown-endpoint")
    assert "location" not in response.headers
    assert snapshot(backing) == before


# -- the Host check (DNS rebinding) ---------------------------------------------------------


@pytest.fixture(scope="module")
def open_server() -> Iterator[tuple[Starlette, str]]:
    """A server without a token that answers only loopback names."""
    app = create_app(MemoryStore(), allowed_hosts=["127.0.0.1", "localhost", "::1"])
    with serve_in_background(app) as base_url:
        yield app, base_url


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8080",
                                  "127.0.0.1.attacker.example", ""])  # fmt: skip
@pytest.mark.parametrize("path", ["/v1/cancel", "/health"])
def test_a_host_not_allowed_answers_421_and_changes_nothing(
    open_server: tuple[Starlette, str], host: str, path: str
) -> None:
    app, base_url = open_server
    store = seeded_store()
    app.state.store = store
    before = snapshot(store)
    body = json.dumps({"task_id": "t-starting", "reason": "r"}).encode()
    with httpx.Client(base_url=base_url) as client:
        if path == "/health":
            response = client.get(path, headers={"Host": host})
        else:
            response = client.post(path, content=body, headers={**JSON_BODY, "Host": host})
    assert_problem(response, 421, "misdirected-request")
    assert snapshot(store) == before


@pytest.mark.parametrize("host", ["localhost:8080", "LOCALHOST", "127.0.0.1:1", "[::1]:8080"])
def test_an_allowed_host_with_any_port_is_answered(
    open_server: tuple[Starlette, str], host: str
) -> None:
    app, base_url = open_server
    store = seeded_store()
    app.state.store = store
    body = json.dumps({"task_id": "t-starting", "reason": "r"}).encode()
    with httpx.Client(base_url=base_url) as client:
        response = client.post("/v1/cancel", content=body, headers={**JSON_BODY, "Host": host})
    assert response.status_code == 200, response.text
    assert store.get_task("t-starting").status is Status.FAILED


@pytest.mark.parametrize("hosts", ["localhost", [""], [7]], ids=["a string", "empty", "int"])
def test_create_app_refuses_allowed_hosts_that_are_not_a_list_of_names(hosts: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        create_app(MemoryStore(), allowed_hosts=hosts)
    assert refused.value.field == "allowed_hosts"


@pytest.mark.parametrize("name", STORE_CALLS)
def test_httpstore_and_the_server_share_one_call_table(name: str) -> None:
    """HTTPStore's method for each call takes exactly the arguments the table gives
    that call's endpoint (and sends nothing else: HTTPStore._call checks)."""
    from sokka.adapters.http import HTTPStore

    operation = OPERATIONS_BY_NAME[name]
    method = inspect.signature(getattr(HTTPStore, name))
    client_args = [p for p in method.parameters if p != "self"]
    assert client_args == [param.name for param in operation.params]
