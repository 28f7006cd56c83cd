"""The HTTP API: 2. bad input."""

from __future__ import annotations

import base64
import copy
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.wire import PROBLEM_JSON
from sokka.core.errors import (
    ValidationError,
)
from sokka.core.task import TaskSpec
from tests.shell.http_api.helpers import (
    AUTH,
    JSON_BODY,
    SMALL_LIMIT,
    TOKEN,
    _j,
    assert_problem,
    post,
    snapshot,
    valid_bodies,
)

_LEASE = {"task_id": "t-running", "pid": "w1", "attempt": 1}


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
    # A lone surrogate as a key is named by its escape (the field as UTF-8 can carry it).
    ("a lone surrogate as a top-level key", "get_task", b'{"\\ud800": 1}', "\\ud800"),
    ("a lone surrogate as a key of spec", "create_task", b'{"spec": {"\\udfff": 1}}', "\\udfff"),
    (
        "a lone surrogate in a key of filter",
        "list_tasks",
        b'{"filter": {"a\\ud800": 1}}',
        "a\\ud800",
    ),
    (
        "a lone surrogate as a key of a lease",
        "extend_leases",
        b'{"pid": "w1", "leases": [{"task_id": "t-running", "attempt": 1, "\\ud800": 0}]}',
        "\\ud800",
    ),
    (
        "a lone surrogate as a key of an outcome",
        "finish_many",
        b'{"outcomes": [{"task_id": "t-running", "pid": "w1", "attempt": 1, '
        b'"outcome": "terminate", "\\ud800": 0}]}',
        "\\ud800",
    ),
    (
        "a lone surrogate as a nested key of data",
        "create_task",
        b'{"spec": {"topic": "x", "data": {"a": [{"\\udc00": 1}]}}}',
        "data",
    ),
    (
        "a lone surrogate in a value of data",
        "create_task",
        b'{"spec": {"topic": "x", "data": {"a": ["ok", "\\ud800"]}}}',
        "data",
    ),
    ("a lone surrogate in a status", "list_tasks", b'{"filter": {"status": "\\ud800"}}', "status"),
    ("a lone surrogate in a cursor", "list_tasks", b'{"cursor": "\\ud800"}', "cursor"),
    ("a lone surrogate in a pid", "terminate", _j({**_LEASE, "pid": "\ud800"}), "pid"),
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


def test_a_batch_element_with_a_lone_surrogate_key_fails_on_its_own(
    http: httpx.Client, backing: MemoryStore
) -> None:
    """Its per-element problem quotes the key: the answer used to fail to encode (500)."""
    raw = b'{"specs": [{"topic": "ok", "task_id": "t-good"}, {"topic": "x", "\\ud800": 1}]}'
    response = post(http, "create_tasks", raw)
    assert response.status_code == 200, response.text
    good, bad = json.loads(response.content.decode("utf-8"))
    assert good["task"]["task_id"] == "t-good"
    assert bad["error"]["type"] == "/problems/invalid-input"
    assert bad["error"]["field"] == "\\ud800"


def _surrogate_text() -> st.SearchStrategy[str]:
    """A short text holding at least one lone surrogate, anywhere in it."""
    return st.builds(
        lambda before, code, after: before + chr(code) + after,
        st.text(max_size=3),
        st.integers(0xD800, 0xDFFF),
        st.text(max_size=3),
    )


def _slots(value: object, path: tuple[object, ...] = ()) -> list[tuple[tuple[object, ...], str]]:
    """Where a surrogate can go in a JSON value: ("key", into this object) or ("value",
    replacing this string)."""
    found: list[tuple[tuple[object, ...], str]] = []
    if isinstance(value, dict):
        found.append((path, "key"))
        for key, item in value.items():
            found.extend(_slots(item, (*path, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_slots(item, (*path, i)))
    elif isinstance(value, str):
        found.append((path, "value"))
    return found


def _with_surrogate(body: Any, path: tuple[object, ...], where: str, text: str) -> Any:
    """A copy of ``body`` with ``text`` put at ``path``: as a new key or as the value."""
    body = copy.deepcopy(body)
    steps = path if where == "key" else path[:-1]
    holder = body
    for step in steps:
        holder = holder[step]
    if where == "key":
        holder[text] = 1
    else:
        holder[path[-1]] = text
    return body


@given(data=st.data())
@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the server is module-wide
)
def test_a_lone_surrogate_anywhere_in_a_body_never_answers_a_server_error(
    http: httpx.Client, backing: MemoryStore, data: st.DataObject
) -> None:
    """Every call, with a lone surrogate (sent escaped, as JSON allows) put in any key
    or string value of a valid body, a data value among them: the answer is a
    problem or a 200, always UTF-8 JSON, never a 5xx (which HTTPStore would retry)."""
    call = data.draw(st.sampled_from(sorted(valid_bodies(backing))), label="call")
    body = valid_bodies(backing)[call]
    if call == "create_task":
        body["spec"]["data"] = {"a": ["b", {"c": "d"}]}
    path, where = data.draw(st.sampled_from(_slots(body)), label="slot")
    text = data.draw(_surrogate_text(), label="text")
    raw = json.dumps(_with_surrogate(body, path, where, text)).encode("ascii")
    response = post(http, call, raw)
    assert response.status_code < 500, response.text
    answer = json.loads(response.content.decode("utf-8"))
    if response.status_code != 200:
        assert response.headers["content-type"] == PROBLEM_JSON
        assert answer["status"] == response.status_code


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
