"""The HTTP API: the Host check (DNS rebinding)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from sokka.adapters.memory import MemoryStore
from sokka.core.errors import (
    ValidationError,
)
from sokka.core.task import Status
from sokka.shell.http import create_app, serve_in_background
from tests.shell.http_api.helpers import (
    JSON_BODY,
    assert_problem,
    seeded_store,
    snapshot,
)


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
