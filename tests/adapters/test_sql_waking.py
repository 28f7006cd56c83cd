"""The SQL store wakes waiters for changes made on other connections, as by
other processes: PostgreSQL by LISTEN/NOTIFY on a channel of the prefix,
SQLite by watching ``PRAGMA data_version``.

Each test has two stores on one database, each with its own engine (its own
connections, its own waiters): the waiter's store never sees the change
itself, so only its listener can wake it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sokka.adapters.ready import ReadySignal
from sokka.adapters.sql import SQLStore
from sokka.core.task import TaskSpec
from tests.databases import postgres_engine, postgres_url, test_prefix

PATIENCE_MS = 10_000
TOPIC = "jobs"


@pytest.fixture(params=["sqlite", "postgres"])
def url_and_prefix(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'q.db'}", "sokka_"
        return
    postgres_engine()  # skip (or fail under SOKKA_REQUIRE_POSTGRES) when unreachable
    yield postgres_url(), test_prefix("waking")


@pytest.fixture
def pair(url_and_prefix: tuple[str, str]) -> Iterator[tuple[SQLStore, SQLStore]]:
    url, prefix = url_and_prefix
    waiting, writing = SQLStore(url, prefix=prefix), SQLStore(url, prefix=prefix)
    waiting.create_schema()
    try:
        yield waiting, writing
    finally:
        writing.close()
        waiting.drop_schema()
        waiting.close()


def woken_by(signal: ReadySignal, change: object) -> bool:
    answer: list[bool] = []
    waiting = threading.Thread(target=lambda: answer.append(signal.wait(PATIENCE_MS)))
    waiting.start()
    assert callable(change)
    change()
    waiting.join()
    return answer[0]


def test_a_task_created_on_another_connection_wakes_the_waiter(
    pair: tuple[SQLStore, SQLStore],
) -> None:
    waiting, writing = pair
    signal = waiting.ready_signal(TOPIC)
    try:
        assert signal.wait(50) is False
        assert woken_by(signal, lambda: writing.create_task(TaskSpec(topic=TOPIC)))
        assert [t.topic for t in waiting.reserve_tasks(TOPIC, "w")] == [TOPIC]
    finally:
        signal.close()


def test_a_lease_revoked_on_another_connection_wakes_the_waiter(
    pair: tuple[SQLStore, SQLStore],
) -> None:
    waiting, writing = pair
    writing.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
    (task,) = writing.reserve_tasks(TOPIC, "dead-worker")
    signal = waiting.ready_signal(TOPIC)
    try:
        assert woken_by(signal, lambda: writing.revoke_lease("t1", task.record_ver))
    finally:
        signal.close()


def test_a_task_created_by_another_process_wakes_the_waiter(
    pair: tuple[SQLStore, SQLStore], url_and_prefix: tuple[str, str]
) -> None:
    waiting, _ = pair
    url, prefix = url_and_prefix
    script = (
        "import sys; from sokka.adapters.sql import SQLStore; from sokka.core.task import TaskSpec;"
        "SQLStore(sys.argv[1], prefix=sys.argv[2]).create_task(TaskSpec(topic=sys.argv[3]))"
    )
    signal = waiting.ready_signal(TOPIC)
    try:
        assert woken_by(
            signal,
            lambda: subprocess.run([sys.executable, "-c", script, url, prefix, TOPIC], check=True),
        )
    finally:
        signal.close()


def test_postgres_queues_under_other_prefixes_do_not_wake_each_other() -> None:
    postgres_engine()
    url = postgres_url()
    mine = SQLStore(url, prefix=test_prefix("wake_mine"))
    theirs = SQLStore(url, prefix=test_prefix("wake_theirs"))
    mine.create_schema()
    theirs.create_schema()
    signal = mine.ready_signal(TOPIC)
    try:
        theirs.create_task(TaskSpec(topic=TOPIC))
        assert signal.wait(300) is False  # their notification is on their channel
        other = SQLStore(url, prefix=test_prefix("wake_mine"))
        try:
            other.create_task(TaskSpec(topic=TOPIC))
        finally:
            other.close()
        assert signal.wait(PATIENCE_MS) is True
    finally:
        signal.close()
        for store in (mine, theirs):
            store.drop_schema()
            store.close()


def test_the_listener_runs_only_while_someone_waits(pair: tuple[SQLStore, SQLStore]) -> None:
    waiting, _ = pair

    def listeners() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if t.name.startswith("sokka-") and t.daemon and t.name.endswith(("listener", "watcher"))
        ]

    before = len(listeners())
    signal = waiting.ready_signal(TOPIC)
    assert len(listeners()) == before + 1
    signal.close()
    deadline = time.monotonic() + 10
    while len(listeners()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(listeners()) == before
    again = waiting.ready_signal(TOPIC)  # and starts again for the next waiter
    try:
        assert len(listeners()) == before + 1
    finally:
        again.close()


def test_a_delayed_task_notifies_no_waiter_on_postgres(
    pair: tuple[SQLStore, SQLStore], url_and_prefix: tuple[str, str]
) -> None:
    """A task created snoozed (``delay_ms``) is not ready: neither the writer's own
    doorbell nor the NOTIFY rings for it; the supervisor's wake will. (SQLite's
    watcher sees every commit, ``PRAGMA data_version`` has no topic: not tested.)"""
    if url_and_prefix[0].startswith("sqlite"):
        pytest.skip("SQLite's data_version watcher rings for every commit of another connection")
    waiting, writing = pair
    there, here = waiting.ready_signal(TOPIC), writing.ready_signal(TOPIC)
    try:
        writing.create_task(TaskSpec(topic=TOPIC, task_id="later", delay_ms=60_000))
        assert there.wait(300) is False
        assert here.wait(1) is False  # a hint given before a wait is kept: none was
        writing.create_task(TaskSpec(topic=TOPIC, task_id="now"))
        assert there.wait(PATIENCE_MS)
        assert here.wait(PATIENCE_MS)
    finally:
        there.close()
        here.close()
