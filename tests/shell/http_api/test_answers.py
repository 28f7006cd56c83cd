"""The HTTP API: answers bounded by bytes (issue 11), and HTTPStore's read limit."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import MAX_PAGE_SIZE, TaskFilter
from sokka.adapters.wire import task_json_text
from sokka.adapters.wire.budget import DEFAULT_MAX_ANSWER_BYTES, MAX_TASK_JSON_BYTES
from sokka.core.errors import StoreError, Unavailable, ValidationError
from sokka.core.task import (
    MAX_DATA_BYTES,
    MAX_DESCRIPTION_LENGTH,
    MAX_ERROR_HISTORY,
    MAX_ERROR_LENGTH,
    MAX_NAME_LENGTH,
    Status,
    Task,
    TaskSpec,
)
from sokka.shell.http import create_app, serve_in_background
from tests.shell.http_api.helpers import TOKEN, post

#: Data of the largest size the store takes (a JSON string of 256 KiB).
BIG_DATA = "x" * (MAX_DATA_BYTES - 2)
#: Tasks of the largest data whose answer passes the default budget (32 MiB).
MANY = DEFAULT_MAX_ANSWER_BYTES // MAX_DATA_BYTES + 40
#: A small budget: three tasks of the largest possible size.
SMALL_BUDGET = 3 * MAX_TASK_JSON_BYTES


def big_store(count: int = MANY, **spec: object) -> MemoryStore:
    store = MemoryStore()
    for i in range(count):
        store.create_task(TaskSpec(topic="big", task_id=f"b{i:04}", data=BIG_DATA, **spec))  # type: ignore[arg-type]
    return store


@pytest.fixture(scope="module")
def small_budget_server() -> Iterator[tuple[Starlette, str]]:
    app = create_app(MemoryStore(), token=TOKEN, max_answer_bytes=SMALL_BUDGET)
    with serve_in_background(app) as base_url:
        yield app, base_url


def test_the_largest_task_there_can_be_fits_max_task_json_bytes() -> None:
    # Every text field at its longest, every character a control character
    # (JSON escapes each as six bytes): the worst case the bound must hold.
    ctrl = "\x01"
    task = Task(
        task_id=ctrl * MAX_NAME_LENGTH,
        task_group_id=ctrl * MAX_NAME_LENGTH,
        topic=ctrl * MAX_NAME_LENGTH,
        sub_topic=ctrl * MAX_NAME_LENGTH,
        pid=ctrl * MAX_NAME_LENGTH,
        description=ctrl * MAX_DESCRIPTION_LENGTH,
        data_json='"' + "x" * (MAX_DATA_BYTES - 2) + '"',
        status=Status.RUNNING,
        record_ver=2**63 - 1,
        attempt=2**31 - 1,
        failures=2**31 - 1,
        max_attempts=2**31 - 1,
        lease_time_ms=2**63 - 1,
        timeout_ms=2**63 - 1,
        snooze_time_ms=2**63 - 1,
        error=ctrl * MAX_ERROR_LENGTH,
        errors=(ctrl * MAX_ERROR_LENGTH,) * MAX_ERROR_HISTORY,
        created_at=-(2**63 - 1),
        updated_at=-(2**63 - 1),
    )
    size = len(task_json_text(task).encode())
    assert size > 0.95 * MAX_TASK_JSON_BYTES  # the bound is tight, not a guess
    assert size <= MAX_TASK_JSON_BYTES


def test_a_listing_of_large_tasks_stops_at_the_budget_and_pages_on_with_its_cursor(
    server: tuple[Starlette, str], client: HTTPStore
) -> None:
    app, _ = server
    app.state.store = store = big_store()
    try:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = client.list_tasks(cursor=cursor, limit=MAX_PAGE_SIZE)
            pages += 1
            assert sum(len(task_json_text(t).encode()) for t in page.tasks) <= (
                DEFAULT_MAX_ANSWER_BYTES
            )
            seen.extend(t.task_id for t in page.tasks)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert pages >= 2
        assert seen == [f"b{i:04}" for i in range(MANY)]  # every task, once, in order
        leased = store.reserve_tasks("big", "w", 1000)
        assert len(leased) == MANY
        first = client.list_leased_tasks(limit=MAX_PAGE_SIZE)
        assert first.next_cursor is not None
        assert 0 < len(first.tasks) < MANY
        rest = client.list_leased_tasks(cursor=first.next_cursor)
        assert [t.task_id for t in (*first.tasks, *rest.tasks)] == seen
    finally:
        app.state.store = MemoryStore()


def test_reserve_never_reserves_more_than_its_answer_holds(
    server: tuple[Starlette, str], client: HTTPStore
) -> None:
    app, _ = server
    app.state.store = store = big_store()
    try:
        reserved = client.reserve_tasks("big", "w", 1000)
        assert 0 < len(reserved) < MANY
        assert sum(len(task_json_text(t).encode()) for t in reserved) <= DEFAULT_MAX_ANSWER_BYTES
        running = store.list_tasks(TaskFilter(status=Status.RUNNING), limit=MAX_PAGE_SIZE)
        # Every task the store leased reached the caller: none is leased to nobody.
        assert {t.task_id for t in running.tasks} == {t.task_id for t in reserved}
    finally:
        app.state.store = MemoryStore()


def test_tasks_in_group_is_bounded_and_answers_the_first_of_the_group(
    server: tuple[Starlette, str], client: HTTPStore
) -> None:
    app, _ = server
    app.state.store = big_store(task_group_id="g")
    try:
        group = client.tasks_in_group("g")
        assert 0 < len(group) < MANY
        assert sum(len(task_json_text(t).encode()) for t in group) <= DEFAULT_MAX_ANSWER_BYTES
        assert [t.task_id for t in group] == [f"b{i:04}" for i in range(len(group))]
    finally:
        app.state.store = MemoryStore()


def test_small_tasks_fill_a_whole_page_over_several_steps(
    small_budget_server: tuple[Starlette, str],
) -> None:
    app, base_url = small_budget_server
    app.state.store = store = MemoryStore()
    store.create_tasks([TaskSpec(topic="s", task_id=f"s{i:03}") for i in range(50)])
    with HTTPStore(base_url, token=TOKEN) as client:
        page = client.list_tasks(limit=40)
        assert [t.task_id for t in page.tasks] == [f"s{i:03}" for i in range(40)]
        assert page.next_cursor is not None
        assert len(client.tasks_in_group("s007")) == 1
        reserved = client.reserve_tasks("s", "w", 45)
        assert [t.task_id for t in reserved] == [f"s{i:03}" for i in range(45)]


class FailingSecondReserve(MemoryStore):
    """A MemoryStore whose reserve_tasks fails from its second call on."""

    def __init__(self) -> None:
        super().__init__()
        self.reserves = 0

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        self.reserves += 1
        if self.reserves > 1:
            raise Unavailable("the store went away")
        return super().reserve_tasks(topic, pid, limit)


def test_a_failure_after_the_first_step_still_answers_the_tasks_reserved(
    small_budget_server: tuple[Starlette, str],
) -> None:
    app, base_url = small_budget_server
    app.state.store = store = FailingSecondReserve()
    store.create_tasks([TaskSpec(topic="s", task_id=f"s{i:03}") for i in range(10)])
    with HTTPStore(base_url, token=TOKEN) as client:
        reserved = client.reserve_tasks("s", "w", 10)
    running = store.list_tasks(TaskFilter(status=Status.RUNNING)).tasks
    assert store.reserves == 2
    assert 0 < len(reserved) < 10
    assert [t.task_id for t in running] == [t.task_id for t in reserved]


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("tasks_in_group", {"task_group_id": "g", "limit": 0}),
        ("tasks_in_group", {"task_group_id": "g", "limit": MAX_PAGE_SIZE + 1}),
        ("list_tasks", {"limit": "5"}),
        ("list_leased_tasks", {"limit": 0}),
        ("reserve_tasks", {"topic": "s", "pid": "w", "limit": 1001}),
    ],
)
def test_a_bad_limit_is_refused_naming_it_and_changes_nothing(
    small_budget_server: tuple[Starlette, str], call: str, body: dict[str, object]
) -> None:
    app, base_url = small_budget_server
    app.state.store = store = MemoryStore()
    store.create_task(TaskSpec(topic="s", task_id="s1"))
    with httpx.Client(base_url=base_url) as http:
        response = post(http, call, body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "limit"
    assert store.get_task("s1").status is Status.STARTING


def test_create_app_refuses_a_budget_that_cannot_hold_one_task() -> None:
    with pytest.raises(ValidationError) as refused:
        create_app(MemoryStore(), max_answer_bytes=MAX_TASK_JSON_BYTES - 1)
    assert refused.value.field == "max_answer_bytes"


# -- HTTPStore reads at most max_response_bytes -----------------------------------------


def test_httpstore_refuses_an_answer_over_its_limit_with_a_store_error(
    server: tuple[Starlette, str], behind: Callable[[MemoryStore], None]
) -> None:
    store = big_store(3)
    behind(store)
    limit = MAX_DATA_BYTES + 4096  # one task, not two
    with HTTPStore(server[1], token=TOKEN, max_response_bytes=limit) as client:
        assert client.get_task("b0000").task_id == "b0000"
        with pytest.raises(StoreError, match=f"more than {limit} bytes") as refused:
            client.list_tasks()
        assert "max_response_bytes" in str(refused.value)
        assert client.get_task("b0001").task_id == "b0001"  # and the client still works


def test_httpstore_stops_reading_an_endless_answer_without_length_at_its_limit() -> None:
    # A real socket that answers with a chunked body that never ends (no
    # Content-Length to refuse up front): only the client's limit stops it.
    listener = socket.create_server(("127.0.0.1", 0))
    sent = 0

    def answer_forever() -> None:
        nonlocal sent
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"10000\r\n" + b"[" + b" " * 65535 + b"\r\n"
            try:
                while sent < 1 << 30:
                    conn.sendall(chunk)
                    sent += 65536
            except OSError:
                pass  # the client hung up

    thread = threading.Thread(target=answer_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with (
        HTTPStore(base_url, max_response_bytes=1 << 20) as client,
        pytest.raises(StoreError, match="max_response_bytes"),
    ):
        client.tasks_in_group("g")
    thread.join(timeout=30)
    listener.close()
    assert not thread.is_alive()
    assert sent < 64 << 20  # it hung up after the limit, not at the end of 1 GiB


@pytest.mark.parametrize("limit", [1023, True, "1 MiB"])
def test_httpstore_refuses_a_max_response_bytes_that_is_not_one(limit: object) -> None:
    with pytest.raises(ValidationError) as refused:
        HTTPStore("http://127.0.0.1:1", max_response_bytes=limit)  # type: ignore[arg-type]
    assert refused.value.field == "max_response_bytes"
