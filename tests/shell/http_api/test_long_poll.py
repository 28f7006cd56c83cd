"""``reserve_tasks`` with ``wait_ms``: the server holds an empty answer until a task
of the topic becomes ready (from any client, or another process's change to the
store behind it) or the wait passes; the wait holds no thread, and a store
that cannot hint answers at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from sokka.adapters.wire import MAX_WAIT_MS
from sokka.core.errors import ValidationError
from sokka.core.task import Status, TaskSpec
from tests.shell.http_api.helpers import TOKEN, assert_problem, post

TOPIC = "jobs"


@pytest.fixture
def client(server: tuple[Starlette, str]) -> HTTPStore:
    with HTTPStore(server[1], token=TOKEN) as made:
        yield made


def reserved_while(client: HTTPStore, wait_ms: int, change: Callable[[], object]) -> list[str]:
    """Long-poll reserve on a thread, make ``change`` once it is waiting; the ids it got."""
    got: list[str] = []
    call = threading.Thread(
        target=lambda: got.extend(t.task_id for t in client.reserve_tasks(TOPIC, "w", 1, wait_ms))
    )
    call.start()
    time.sleep(0.2)  # the call is held at the server by now (it found nothing)
    change()
    call.join()
    return got


def test_a_held_reserve_answers_with_a_task_created_while_it_waits(
    client: HTTPStore, behind: Callable[[TaskStore], None]
) -> None:
    store = MemoryStore()
    behind(store)
    got = reserved_while(
        client, 10_000, lambda: store.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
    )
    assert got == ["t1"]
    assert store.get_task("t1").status is Status.RUNNING


def test_a_held_reserve_wakes_for_a_change_made_on_another_connection(
    client: HTTPStore, behind: Callable[[TaskStore], None], tmp_path
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    served, other = SQLStore(url), SQLStore(url)
    served.create_schema()
    behind(served)
    try:
        got = reserved_while(
            client, 10_000, lambda: other.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
        )
        assert got == ["t1"]
    finally:
        other.close()
        served.close()


def test_a_held_reserve_ignores_other_topics_and_answers_empty_when_the_wait_passes(
    client: HTTPStore, behind: Callable[[TaskStore], None]
) -> None:
    store = MemoryStore()
    behind(store)
    got = reserved_while(
        client, 500, lambda: store.create_task(TaskSpec(topic="other", task_id="t1"))
    )
    assert got == []
    assert store.get_task("t1").status is Status.STARTING


def test_a_held_reserve_on_a_paused_topic_answers_when_the_topic_is_resumed(
    client: HTTPStore, behind: Callable[[TaskStore], None], tmp_path
) -> None:
    """A ready task of a paused topic is not handed out; a resume made on another
    connection wakes the held reserve, as a new task would."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    served, other = SQLStore(url), SQLStore(url)
    served.create_schema()
    served.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
    served.pause_topic(TOPIC)
    behind(served)
    try:
        assert reserved_while(client, 300, lambda: None) == []
        got = reserved_while(client, 10_000, lambda: other.resume_topic(TOPIC))
        assert got == ["t1"]
    finally:
        other.close()
        served.close()


def test_many_held_reserves_hand_out_each_task_once(
    client: HTTPStore, behind: Callable[[TaskStore], None]
) -> None:
    store = MemoryStore()
    behind(store)
    got: list[str] = []
    lock = threading.Lock()

    def reserve() -> None:
        tasks = client.reserve_tasks(TOPIC, "w", 1, 3_000)
        with lock:
            got.extend(t.task_id for t in tasks)

    calls = [threading.Thread(target=reserve) for _ in range(5)]
    for call in calls:
        call.start()
    time.sleep(0.2)
    store.create_tasks([TaskSpec(topic=TOPIC, task_id=f"t{i}") for i in range(3)])
    for call in calls:
        call.join()
    assert sorted(got) == ["t0", "t1", "t2"]


def test_a_bad_wait_is_refused_naming_the_field(
    http: httpx.Client, behind: Callable[[TaskStore], None]
) -> None:
    store = MemoryStore()
    behind(store)
    store.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
    for bad in (-1, MAX_WAIT_MS + 1, "100", 1.5, True):
        body = {"topic": TOPIC, "pid": "w", "wait_ms": bad}
        problem = assert_problem(post(http, "reserve_tasks", body), 422, "invalid-input")
        assert problem["field"] == "wait_ms"
    assert store.get_task("t1").status is Status.STARTING  # nothing reserved


def test_the_client_refuses_a_wait_its_timeout_could_not_hold(server) -> None:
    with HTTPStore(server[1], token=TOKEN, timeout=2.0) as short:
        assert short.max_wait_ms == 1_000
        with pytest.raises(ValidationError) as refused:
            short.reserve_tasks(TOPIC, "w", 1, 1_001)
    assert refused.value.field == "wait_ms"


def test_held_reserves_hold_no_thread_of_the_server(
    server: tuple[Starlette, str], behind: Callable[[TaskStore], None]
) -> None:
    # More held calls than the server's thread pool has threads (40): if each held
    # one, the plain call below would queue behind them until their waits end.
    store = MemoryStore()
    behind(store)
    store.create_task(TaskSpec(topic="other", task_id="t1"))
    held = 45
    returned: list[float] = []

    def reserve(client: HTTPStore) -> None:
        client.reserve_tasks(TOPIC, "w", 1, 5_000)
        returned.append(time.monotonic())

    clients = [HTTPStore(server[1], token=TOKEN) for _ in range(held)]
    calls = [threading.Thread(target=reserve, args=(c,)) for c in clients]
    try:
        for call in calls:
            call.start()
        time.sleep(0.5)
        with HTTPStore(server[1], token=TOKEN) as plain:
            assert plain.get_task("t1").task_id == "t1"
        answered = time.monotonic()
        for call in calls:
            call.join()
        assert len(returned) == held
        assert answered < min(returned)  # answered while every long poll was still held
    finally:
        for c in clients:
            c.close()


# -- AsyncHTTPStore: the same long poll, awaited -----------------------------------


def test_an_async_clients_held_reserve_answers_with_a_task_created_while_it_waits(
    server: tuple[Starlette, str], behind: Callable[[TaskStore], None]
) -> None:
    from sokka.adapters.aio.http import AsyncHTTPStore

    store = MemoryStore()
    behind(store)

    async def main() -> tuple[list[str], bool]:
        async with AsyncHTTPStore(server[1], token=TOKEN) as client:
            held = asyncio.create_task(client.reserve_tasks(TOPIC, "w", 1, wait_ms=10_000))
            await asyncio.sleep(0.2)  # held at the server by now (it found nothing)
            was_held = not held.done()
            await asyncio.to_thread(store.create_task, TaskSpec(topic=TOPIC, task_id="t1"))
            return [t.task_id for t in await held], was_held

    got, was_held = asyncio.run(main())
    assert was_held
    assert got == ["t1"]
    assert store.get_task("t1").status is Status.RUNNING


def test_an_async_clients_held_reserve_answers_empty_when_the_wait_passes(
    server: tuple[Starlette, str], behind: Callable[[TaskStore], None]
) -> None:
    from sokka.adapters.aio.http import AsyncHTTPStore

    store = MemoryStore()
    behind(store)
    store.create_task(TaskSpec(topic="other", task_id="t1"))

    async def main() -> list[object]:
        async with AsyncHTTPStore(server[1], token=TOKEN) as client:
            return list(await client.reserve_tasks(TOPIC, "w", 1, wait_ms=100))

    assert asyncio.run(main()) == []
    assert store.get_task("t1").status is Status.STARTING


@pytest.mark.parametrize("wait_ms", [1_001, -1, True, 1.5, "10"])
def test_the_async_client_refuses_a_wait_as_the_sync_client_does(server, wait_ms) -> None:
    from sokka.adapters.aio.http import AsyncHTTPStore

    async def refusals() -> tuple[str, str]:
        async with AsyncHTTPStore(server[1], token=TOKEN, timeout=2.0) as short:
            assert short.max_wait_ms == 1_000
            with pytest.raises(ValidationError) as refused:
                await short.reserve_tasks(TOPIC, "w", 1, wait_ms)
        with (
            HTTPStore(server[1], token=TOKEN, timeout=2.0) as sync,
            pytest.raises(ValidationError) as sync_refused,
        ):
            sync.reserve_tasks(TOPIC, "w", 1, wait_ms)
        return str(refused.value), str(sync_refused.value)

    refused, sync_refused = asyncio.run(refusals())
    assert refused == sync_refused
    assert "wait_ms" in refused
