"""The HTTP API: 1. authentication."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.wire import OPERATIONS
from sokka.core.errors import (
    StoreError,
    ValidationError,
)
from sokka.shell.http import MIN_TOKEN_LENGTH, create_app
from tests.shell.http_api.helpers import (
    AUTH,
    JSON_BODY,
    READ_ONLY_CALLS,
    TOKEN,
    assert_problem,
    post,
    snapshot,
    valid_bodies,
)

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
    before = (snapshot(backing), backing.paused_topics())
    refused = post(http, operation.name, body, headers=dict(JSON_BODY))
    assert_problem(refused, 401, "unauthorized")
    assert "www-authenticate" in refused.headers
    assert (snapshot(backing), backing.paused_topics()) == before
    accepted = post(http, operation.name, body)
    assert accepted.status_code == 200, accepted.text
    assert accepted.headers["content-type"] == "application/json"
    changed = (snapshot(backing), backing.paused_topics()) != before
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
