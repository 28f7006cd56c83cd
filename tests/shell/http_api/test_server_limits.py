"""The HTTP API: what one client can hold of the server (issue 11), on real sockets.

Request heads and bodies have deadlines, requests served at once have a
limit, a stop is bounded and a second signal forces it, and a client that
hangs up is no error. The deadlines here are short on purpose; each test
waits for the event itself (a socket closing, a process exiting) with a
generous bound, so a slow machine cannot fail it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sokka.adapters.memory import MemoryStore
from sokka.core.task import Task, TaskSpec
from sokka.shell.http import create_app, serve_in_background
from tests.shell.http_api.helpers import AUTH, JSON_BODY, TOKEN, assert_problem, sokka_serve

#: What a test waits at most for an event due after a deadline of under a second.
PATIENCE_S = 10.0


def head(path: str = "/v1/get_task", length: int = 100) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(PATIENCE_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (``socket.timeout`` if it never does)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


# -- deadlines ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_server() -> Iterator[str]:
    """A server whose head and body deadlines are half a second."""
    app = create_app(MemoryStore(), token=TOKEN, body_timeout_s=0.5)
    with serve_in_background(app, header_timeout_s=0.5) as base_url:
        yield base_url


def test_a_stalled_upload_is_answered_408_and_cut_after_the_body_timeout(
    quick_server: str,
) -> None:
    with connect(quick_server) as sock:
        sock.sendall(head(length=100) + b'{"task_id"')  # 10 of 100 bytes, then nothing
        answer = read_until_closed(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout"
    problem = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert problem["type"] == "/problems/request-timeout"
    assert "0.5 seconds" in problem["detail"]


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/get_task HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
    ids=["nothing", "half a head"],
)
def test_a_connection_that_does_not_finish_its_head_is_hung_up_on(
    quick_server: str, sent: bytes
) -> None:
    with connect(quick_server) as sock:
        sock.sendall(sent)
        assert read_until_closed(sock) == b""


def test_a_head_sent_slowly_is_cut_at_its_deadline_not_by_each_byte(quick_server: str) -> None:
    # A byte every 0.1 s: no single wait reaches the 0.5 s deadline, the whole head does.
    with connect(quick_server) as sock:
        sock.sendall(b"POST /v1/get_task HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        sock.settimeout(0.1)
        started = time.monotonic()
        closed = False
        while not closed and time.monotonic() - started < PATIENCE_S:
            try:
                sock.send(b"a")
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue  # nothing to read: still open
            except OSError:
                closed = True  # the send found it closed
        assert closed


def test_a_kept_alive_connection_in_use_is_not_cut_by_the_deadlines(quick_server: str) -> None:
    # Requests on one connection for longer than both deadlines: each head and
    # body arrives at once, so none is refused.
    with httpx.Client(base_url=quick_server, timeout=PATIENCE_S) as client:
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < 1.5:
            response = client.post("/v1/tasks_in_group", json={"task_group_id": "g"},
                                   headers=AUTH)  # fmt: skip
            assert response.status_code == 200, response.text
            answered += 1
            time.sleep(0.2)
        assert answered >= 5


class SlowGet(MemoryStore):
    """A MemoryStore that takes a second to answer ``get_task``."""

    def get_task(self, task_id: str) -> Task:
        time.sleep(1.0)
        return super().get_task(task_id)


def test_a_slow_store_call_is_not_cut_by_the_head_or_body_deadline() -> None:
    store = SlowGet()
    store.create_task(TaskSpec(topic="t", task_id="t1"))
    app = create_app(store, token=TOKEN, body_timeout_s=0.3)
    with serve_in_background(app, header_timeout_s=0.3) as base_url:
        response = httpx.post(f"{base_url}/v1/get_task", json={"task_id": "t1"},
                              headers=AUTH, timeout=PATIENCE_S)  # fmt: skip
    assert response.status_code == 200, response.text


# -- requests at once ----------------------------------------------------------------------


class Gate(MemoryStore):
    """A MemoryStore whose ``get_task`` waits until the gate opens."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Semaphore(0)
        self.gate = threading.Event()

    def get_task(self, task_id: str) -> Task:
        self.inside.release()
        assert self.gate.wait(PATIENCE_S)
        return super().get_task(task_id)


def test_requests_over_the_concurrency_limit_get_503_with_retry_after() -> None:
    store = Gate()
    store.create_task(TaskSpec(topic="t", task_id="t1"))
    app = create_app(store, token=TOKEN, max_concurrency=2)
    with serve_in_background(app) as base_url:
        answers: list[httpx.Response] = []

        def call() -> None:
            answers.append(httpx.post(f"{base_url}/v1/get_task", json={"task_id": "t1"},
                                      headers=AUTH, timeout=PATIENCE_S))  # fmt: skip

        held = [threading.Thread(target=call) for _ in range(2)]
        for thread in held:
            thread.start()
        for _ in held:
            assert store.inside.acquire(timeout=PATIENCE_S)  # both are in the store
        refused = httpx.post(f"{base_url}/v1/get_task", json={"task_id": "t1"},
                             headers=AUTH, timeout=PATIENCE_S)  # fmt: skip
        health = httpx.get(f"{base_url}/health", timeout=PATIENCE_S)
        store.gate.set()
        for thread in held:
            thread.join(PATIENCE_S)
        after = httpx.post(f"{base_url}/v1/get_task", json={"task_id": "t1"},
                           headers=AUTH, timeout=PATIENCE_S)  # fmt: skip
    problem = assert_problem(refused, 503, "server-busy")
    assert refused.headers["Retry-After"] == "1"
    assert "2 requests" in problem["detail"]
    assert health.status_code == 200  # a health check is never refused for load
    assert [a.status_code for a in answers] == [200, 200]
    assert after.status_code == 200  # the slots were given back


@pytest.mark.parametrize(
    ("argument", "value"),
    [("body_timeout_s", 0), ("body_timeout_s", "5"), ("max_concurrency", 0),
     ("max_concurrency", 2.5)],
)  # fmt: skip
def test_create_app_refuses_limits_that_are_not_ones(argument: str, value: object) -> None:
    from sokka.core.errors import ValidationError

    with pytest.raises(ValidationError) as refused:
        create_app(MemoryStore(), **{argument: value})  # type: ignore[arg-type]
    assert refused.value.field == argument


# -- sokka serve: stopping, and clients that hang up ---------------------------------------


def stall_an_upload(base_url: str) -> socket.socket:
    """A request whose body stops after 10 of 100 bytes; the server is reading it."""
    sock = connect(base_url)
    sock.sendall(head(length=100) + b'{"task_id"')
    time.sleep(0.3)  # the request reaches the application, which waits for the rest
    return sock


def test_sokka_serve_stops_within_its_shutdown_timeout_despite_a_stalled_upload(
    tmp_path: Path,
) -> None:
    # The body deadline (30 s) is far off: only the bounded shutdown can stop it.
    with sokka_serve(tmp_path, "--shutdown-timeout", "1") as (server, base_url):
        stalled = stall_an_upload(base_url)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=PATIENCE_S) == 0
        stalled.close()
    assert "Shutting down" in (tmp_path / "serve.log").read_text()


def test_a_second_sigterm_stops_sokka_serve_at_once(tmp_path: Path) -> None:
    with sokka_serve(tmp_path, "--shutdown-timeout", "600") as (server, base_url):
        stalled = stall_an_upload(base_url)
        server.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            server.wait(timeout=0.5)  # the first one waits for the upload
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=PATIENCE_S) == 0
        stalled.close()


def test_a_client_that_hangs_up_mid_upload_is_no_error_in_the_log(tmp_path: Path) -> None:
    with sokka_serve(tmp_path, "--log-level", "debug") as (server, base_url):
        stall_an_upload(base_url).close()
        # A request after it is answered, so the server has moved on.
        time.sleep(0.3)
        response = httpx.post(f"{base_url}/v1/tasks_in_group", json={"task_group_id": "g"},
                              headers={**AUTH, **JSON_BODY}, timeout=PATIENCE_S)  # fmt: skip
        assert response.status_code == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=PATIENCE_S) == 0
    log = (tmp_path / "serve.log").read_text()
    assert " ERROR " not in log, log
    assert "Traceback" not in log, log
    assert "DEBUG sokka.http: /v1/get_task: the client went away" in log
