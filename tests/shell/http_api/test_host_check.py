"""The HTTP API: the Host check (DNS rebinding)."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
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
    AUTH,
    JSON_BODY,
    TOKEN,
    assert_problem,
    seeded_store,
    snapshot,
    sokka_serve,
)


@pytest.fixture(scope="module")
def open_server() -> Iterator[tuple[Starlette, str]]:
    """A server without a token that answers only loopback names."""
    app = create_app(MemoryStore(), allowed_hosts=["127.0.0.1", "localhost", "::1"])
    with serve_in_background(app) as base_url:
        yield app, base_url


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8080",
                                  "127.0.0.1.attacker.example", "",
                                  # not well formed: refused, never read as loopback
                                  "[::1].evil.example", "[::1]evil:80", "[::1", "::1",
                                  "localhost:80:80", "local host", "localhost:http",
                                  "[::1%25eth0]", "[fe80::zz]"])  # fmt: skip
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


def test_two_host_headers_are_refused_even_if_both_are_loopback(
    open_server: tuple[Starlette, str],
) -> None:
    # httpx will not send two; a raw socket does. uvicorn's h11 refuses the
    # request itself (400), and the guard would (421) behind a laxer parser.
    _, base_url = open_server
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    request = b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        status_line = sock.recv(65536).partition(b"\r\n")[0]
    assert status_line.split(b" ")[1] in (b"400", b"421"), status_line


@pytest.fixture(scope="module")
def token_server_with_names() -> Iterator[tuple[Starlette, str]]:
    """A server with a token that was also given host names (as --allow-host does)."""
    app = create_app(MemoryStore(), token=TOKEN, allowed_hosts=["queue.example.com"])
    with serve_in_background(app) as base_url:
        yield app, base_url


@pytest.mark.parametrize(
    "host",
    ["queue.example.com", "localhost:8080", "127.0.0.1", "[::1]:1", "sokka", "other.example"],
)
def test_allow_host_on_a_server_with_a_token_stops_no_host_working(
    token_server_with_names: tuple[Starlette, str], host: str
) -> None:
    _, base_url = token_server_with_names
    with httpx.Client(base_url=base_url) as client:
        response = client.post("/v1/tasks_in_group", json={"task_group_id": "g"},
                               headers={**AUTH, "Host": host})  # fmt: skip
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", ["sokka", "anything.example:8080", "[2001:db8::1]"])
def test_a_server_with_a_token_and_no_allow_host_answers_any_well_formed_host(
    server: tuple[Starlette, str], host: str
) -> None:
    _, base_url = server
    with httpx.Client(base_url=base_url) as client:
        response = client.post("/v1/tasks_in_group", json={"task_group_id": "g"},
                               headers={**AUTH, "Host": host})  # fmt: skip
        malformed = client.get("/health", headers={"Host": "[::1].evil.example"})
    assert response.status_code == 200, response.text
    assert_problem(malformed, 421, "misdirected-request")


@pytest.mark.parametrize("hosts", [["queue:8080"], ["[::1]:80"], ["a b"], ["[::1].evil.example"]])
def test_create_app_refuses_allowed_hosts_that_are_not_names(hosts: list[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        create_app(MemoryStore(), allowed_hosts=hosts)
    assert refused.value.field == "allowed_hosts"


def nginx_request(body: bytes, authorization: str | None) -> bytes:
    """A POST exactly as the docs' nginx example passes HTTPStore's on to its upstream:
    ``Host`` is the upstream's name, ``Connection`` is dropped
    (``proxy_set_header Connection ""``), the client's other headers follow."""
    lines = [
        b"POST /v1/get_task HTTP/1.1",
        b"Host: sokka",
        b"Content-Length: " + str(len(body)).encode(),
        b"accept: application/json",
        b"accept-encoding: gzip, deflate",
        b"user-agent: sokka-httpstore",
        b"content-type: application/json",
    ]
    if authorization is not None:
        lines.append(b"authorization: " + authorization.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body) off a kept-alive socket."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("options", "authorization"),
    [
        ((), f"Bearer {TOKEN}"),
        (("--allow-host", "queue.example.com"), f"Bearer {TOKEN}"),
        (("--allow-no-token", "--allow-host", "sokka"), None),
    ],
    ids=[
        "with a token, as in the docs",
        "with a token and the public name",
        "no token, behind an authenticating proxy",
    ],
)
def test_the_docs_nginx_example_is_answered(
    tmp_path: Path, options: tuple[str, ...], authorization: str | None
) -> None:
    token = TOKEN if authorization else None
    with sokka_serve(tmp_path, *options, token=token) as (server, base_url):
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        body = json.dumps({"task_id": "ghost"}).encode()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(nginx_request(body, authorization))
            answer = read_response(sock)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    # Through the Host check and the token: the store's own answer (no such task).
    assert answer.startswith(b"HTTP/1.1 404 "), answer
    assert b'"type":"/problems/not-found"' in answer
