"""The contract: waking a waiting worker (optional: stores that are ``Wakeable``).

A signal from ``ready_signal(topic)`` wakes (``wait`` returns True) when a
task of the topic becomes ready: created, revoked, woken from a snooze,
requeued, or released. Each test sets its tasks up first and only then opens
the signal, so a hint from the set-up cannot be taken for the one under test;
the change is made on another thread while the waiter is blocked. A wait with
nothing happening times out with False. A store without the call is skipped
with the reason shown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from sokka.adapters.ready import ReadySignal, Wakeable
from sokka.adapters.store import TaskStore
from sokka.core.commands import Finish
from sokka.core.transitions import Release
from tests.adapters.contract.helpers import PID, TOPIC, create, running

#: Long enough never to pass on a loaded machine; the tests wait it only on failure.
PATIENCE_MS = 10_000


def signal_of(store: TaskStore, topic: str = TOPIC) -> ReadySignal:
    if not isinstance(store, Wakeable):
        pytest.skip(
            f"{type(getattr(store, 'store', store)).__name__} has no ready_signal: a worker "
            "on an HTTPStore or an AsyncHTTPStore long-polls instead "
            "(tests/shell/http_api/test_long_poll.py)"
        )
    return store.ready_signal(topic)


def woken_by(signal: ReadySignal, change: Callable[[], object]) -> bool:
    """Block on ``signal`` while another thread makes ``change``; whether it woke."""
    answer: list[bool] = []
    waiting = threading.Thread(target=lambda: answer.append(signal.wait(PATIENCE_MS)))
    waiting.start()
    change()
    waiting.join()
    return answer[0]


def test_a_wait_with_nothing_happening_times_out(store: TaskStore) -> None:
    signal = signal_of(store)
    try:
        assert signal.wait(50) is False
    finally:
        signal.close()


def test_a_waiter_wakes_when_a_task_of_its_topic_is_created(store: TaskStore) -> None:
    signal = signal_of(store)
    try:
        assert woken_by(signal, lambda: create(store, "t1"))
    finally:
        signal.close()


def test_a_waiter_wakes_when_a_lease_is_revoked(store: TaskStore) -> None:
    task = running(store, "t1")
    signal = signal_of(store)
    try:
        assert woken_by(signal, lambda: store.revoke_lease("t1", task.record_ver))
    finally:
        signal.close()
    assert [t.task_id for t in store.reserve_tasks(TOPIC, PID)] == ["t1"]


def test_a_waiter_wakes_when_a_snoozed_task_is_woken(store: TaskStore) -> None:
    task = running(store, "t1")
    snoozed = store.snooze("t1", PID, task.attempt, 60_000)
    signal = signal_of(store)
    try:
        assert woken_by(signal, lambda: store.revoke_lease("t1", snoozed.record_ver))
    finally:
        signal.close()


def test_a_waiter_wakes_when_a_failed_task_is_requeued(store: TaskStore) -> None:
    task = running(store, "t1", max_attempts=1)
    store.fail("t1", PID, task.attempt, "boom")
    signal = signal_of(store)
    try:
        assert woken_by(signal, lambda: store.requeue("t1"))
    finally:
        signal.close()


def test_a_waiter_wakes_when_a_lease_is_released(store: TaskStore) -> None:
    task = running(store, "t1")
    release = Finish(task_id="t1", event=Release(pid=PID, attempt=task.attempt))
    signal = signal_of(store)
    try:
        assert woken_by(signal, lambda: store.finish_many([release]))
    finally:
        signal.close()


def test_a_waiter_wakes_when_its_paused_topic_is_resumed(store: TaskStore) -> None:
    create(store, "t1")
    store.pause_topic(TOPIC)
    signal = signal_of(store)
    try:
        assert woken_by(signal, lambda: store.resume_topic(TOPIC))
    finally:
        signal.close()
    assert [t.task_id for t in store.reserve_tasks(TOPIC, PID)] == ["t1"]


def test_a_hint_that_came_before_the_wait_is_kept(store: TaskStore) -> None:
    signal = signal_of(store)
    try:
        create(store, "t1")
        assert signal.wait(PATIENCE_MS) is True
    finally:
        signal.close()


def test_a_closed_signal_is_not_woken(store: TaskStore) -> None:
    signal = signal_of(store)
    signal.close()
    create(store, "t1")
    assert signal.wait(50) is False


def test_wake_gives_the_waiter_a_hint_from_outside(store: TaskStore) -> None:
    signal = signal_of(store)
    try:
        assert woken_by(signal, signal.wake)
    finally:
        signal.close()
