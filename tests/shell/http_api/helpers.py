"""What the sections share: the token, stores that fail on purpose, helpers for
requests and problem answers, and ``sokka serve`` as a process."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskStore
from sokka.adapters.wire import PROBLEM_JSON, PROBLEM_TYPES
from sokka.core.errors import RetryableError, SchemaError, StoreError, Throttled, Unavailable
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.clock import ManualClock

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
READ_ONLY_CALLS = frozenset(
    {
        "get_task",
        "tasks_in_group",
        "list_tasks",
        "list_leased_tasks",
        "count_tasks",
        "paused_topics",
    }
)


# -- stores ---------------------------------------------------------------------------


def seeded_store() -> MemoryStore:
    """Three tasks: t-starting (starting), t-running (running, pid w1, attempt 1,
    record_ver 1) and t-failed (failed: cancelled); the topic "held" is paused."""
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
    assert store.pause_topic("held")
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
        "pause_topic": {"topic": "seed"},
        "resume_topic": {"topic": "held"},
        "paused_topics": {},
        "list_leased_tasks": {"topic": "run"},
        "count_tasks": {"topic": "run", "status": "running", "failed_within_ms": 60000},
        "purge": {"statuses": ["failed"], "older_than_ms": 0, "topic": "gone", "limit": 10},
    }


def _j(value: object) -> bytes:
    return json.dumps(value).encode()


HIDDEN = [
    (Throttled(f"lock timeout: {SECRET}"), 429, "throttled"),
    (Unavailable(f"could not connect: {SECRET}"), 503, "unavailable"),
    (RetryableError(SECRET), 503, "retryable"),
    (StoreError(f"syntax error in {SECRET}"), 500, "store-error"),
    (SchemaError(f"relation missing: {SECRET}"), 500, "schema-error"),
]


# -- sokka serve as a process ----------------------------------------------------------


@contextmanager
def sokka_serve(
    tmp_path: Path, *options: str, token: str | None = TOKEN
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``sokka serve`` on a free port with ``token`` in a ``--token-file`` (none:
    no token), its output to ``serve.log``; killed if a test leaves it running."""
    db = f"sqlite:///{tmp_path / 'q.db'}"
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    subprocess.run([*command, "init", "--db", db], check=True, capture_output=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if token is not None:
        (tmp_path / "token").write_text(token + "\n")
        options = ("--token-file", str(tmp_path / "token"), *options)
    log = (tmp_path / "serve.log").open("w")
    env = {name: value for name, value in os.environ.items() if name != "SOKKA_TOKEN"}
    env["SOKKA_LIBRARY_LOG_LEVEL"] = "info"  # uvicorn's own lines in the log, for the tests
    server = subprocess.Popen(
        [*command, "serve", "--db", db, "--port", str(port), *options],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)
        yield server, base_url
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
