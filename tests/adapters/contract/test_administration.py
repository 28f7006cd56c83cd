"""The contract: administration."""

from __future__ import annotations

import pytest

from sokka.adapters.store import (
    TaskStore,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    InvalidTransition,
    StaleAttempt,
    TaskCancelled,
)
from sokka.core.task import (
    Status,
)
from sokka.core.transitions import Terminate
from tests.adapters.contract.helpers import (
    PID,
    TOPIC,
    create,
    failure,
    leased,
    refused,
    running,
    start,
)


def test_requeue_of_a_failed_task_resets_the_failure_budget(store: TaskStore) -> None:
    create(store, "t1", max_attempts=2)
    for _ in range(2):
        task = start(store, "t1")
        store.revoke_lease("t1", task.record_ver)
    failed = store.get_task("t1")
    assert failed.status is Status.FAILED
    requeued = store.requeue("t1")
    assert requeued.status is Status.STARTING
    assert requeued.failures == 0
    assert requeued.pid is None
    assert requeued.record_ver == failed.record_ver + 1
    # A fresh budget: one more expiry is survivable, the second is not.
    task = start(store, "t1")
    assert store.revoke_lease("t1", task.record_ver).status is Status.STARTING
    task = start(store, "t1")
    assert store.revoke_lease("t1", task.record_ver).status is Status.FAILED


def test_requeue_keeps_counting_attempts_so_old_workers_stay_fenced(store: TaskStore) -> None:
    running(store, "t1")
    store.fail("t1", PID, 1, "boom")
    store.requeue("t1")
    again = start(store, "t1", pid=PID)
    assert again.attempt == 2
    with refused(store, StaleAttempt):
        store.terminate("t1", PID, 1)
    assert store.terminate("t1", PID, 2).status is Status.TERMINATED


@pytest.mark.parametrize("state", ["starting", "running", "snoozed", "terminated"])
def test_requeue_of_a_task_that_is_not_failed_raises_invalid_transition(
    store: TaskStore, state: str
) -> None:
    create(store, "t1")
    if state != "starting":
        start(store, "t1")
    if state == "snoozed":
        store.snooze("t1", PID, 1, 100)
    elif state == "terminated":
        store.terminate("t1", PID, 1)
    with refused(store, InvalidTransition):
        store.requeue("t1")


@pytest.mark.parametrize("state", ["starting", "snoozed"])
def test_cancel_fails_a_task_nobody_is_running(store: TaskStore, state: str) -> None:
    create(store, "t1")
    if state == "snoozed":
        start(store, "t1")
        store.snooze("t1", PID, 1, 100)
    before = store.get_task("t1")
    cancelled = store.cancel("t1", "customer left")
    assert cancelled.status is Status.FAILED
    assert cancelled.error is not None
    assert "customer left" in cancelled.error
    assert cancelled.pid is None
    assert cancelled.record_ver == before.record_ver + 1
    assert store.get_task("t1") == cancelled
    assert leased(store) == []
    assert store.reserve_tasks(TOPIC, PID) == []


@pytest.mark.parametrize("state", ["failed", "terminated"])
def test_cancel_of_a_finished_task_raises_invalid_transition(store: TaskStore, state: str) -> None:
    running(store, "t1")
    if state == "failed":
        store.fail("t1", PID, 1, "boom")
    elif state == "terminated":
        store.terminate("t1", PID, 1)
    with refused(store, InvalidTransition):
        store.cancel("t1", "stop")


def test_cancel_of_a_running_task_fails_it_and_fences_its_owner(store: TaskStore) -> None:
    """No lease is needed: the task fails at once and its record_ver moves, so the
    owner's keepalive and outcome are refused with TaskCancelled, and nothing changes."""
    task = running(store, "t1")
    cancelled = store.cancel("t1", "customer left")
    assert cancelled.status is Status.FAILED
    assert cancelled.error == "cancelled: customer left"
    assert cancelled.pid is None
    assert cancelled.record_ver == task.record_ver + 1
    assert leased(store) == []
    (kept,) = store.extend_leases(PID, [LeaseToken("t1", task.attempt)])
    assert isinstance(failure(kept), TaskCancelled)
    with refused(store, TaskCancelled):
        store.terminate("t1", PID, task.attempt)
    (outcome,) = store.finish_many(
        [Finish(task_id="t1", event=Terminate(pid=PID, attempt=task.attempt))]
    )
    assert isinstance(failure(outcome), TaskCancelled)
    assert store.get_task("t1") == cancelled
    # an operator may give it another go; the old owner stays fenced
    store.requeue("t1")
    again = start(store, "t1")
    assert again.attempt == task.attempt + 1
    with refused(store, StaleAttempt):
        store.terminate("t1", PID, task.attempt)
