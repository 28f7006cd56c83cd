"""The contract: revoking and the failure budget."""

from __future__ import annotations

import pytest

from sokka.adapters.store import (
    TaskStore,
    execute,
)
from sokka.core.commands import LeaseToken, RevokeLease
from sokka.core.errors import (
    InvalidTransition,
    NotFound,
    StaleRecord,
)
from sokka.core.task import (
    Status,
)
from tests.adapters.contract.helpers import (
    OTHER_PID,
    PID,
    TOPIC,
    create,
    failure,
    leased,
    refused,
    running,
    start,
    success,
)


def test_revoke_with_the_current_record_ver_returns_a_running_task_to_starting(
    store: TaskStore,
) -> None:
    task = running(store, "t1")
    revoked = store.revoke_lease("t1", task.record_ver)
    assert revoked.status is Status.STARTING
    assert revoked.pid is None
    assert revoked.attempt == 1
    assert revoked.failures == 1
    assert revoked.error is not None
    assert "lease expired" in revoked.error
    assert revoked.record_ver == task.record_ver + 1
    assert store.get_task("t1") == revoked
    assert leased(store) == []


def test_revoke_with_a_stale_record_ver_raises_stale_record_and_keeps_the_task(
    store: TaskStore,
) -> None:
    observed = running(store, "t1")
    [extended] = store.extend_leases(PID, [LeaseToken("t1", 1)])
    current = success(extended)
    with refused(store, StaleRecord):
        store.revoke_lease("t1", observed.record_ver)
    with pytest.raises(StaleRecord) as raised:
        store.revoke_lease("t1", observed.record_ver)
    assert (raised.value.task_id, raised.value.expected, raised.value.actual) == (
        "t1",
        observed.record_ver,
        current.record_ver,
    )
    assert store.get_task("t1") == current


@pytest.mark.parametrize("state", ["starting", "failed", "terminated"])
def test_revoke_of_a_task_neither_running_nor_snoozed_raises_invalid_transition(
    store: TaskStore, state: str
) -> None:
    create(store, "t1")
    if state != "starting":
        start(store, "t1")
        if state == "failed":
            store.fail("t1", PID, 1, "boom")
        else:
            store.terminate("t1", PID, 1)
    with refused(store, InvalidTransition):
        store.revoke_lease("t1", store.get_task("t1").record_ver)


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_expired_lease_on_the_last_attempt_fails_the_task(
    store: TaskStore, max_attempts: int
) -> None:
    create(store, "t1", max_attempts=max_attempts)
    for attempt in range(1, max_attempts + 1):
        task = start(store, "t1")
        assert task.attempt == attempt
        after = store.revoke_lease("t1", task.record_ver)
        expected = Status.FAILED if attempt == max_attempts else Status.STARTING
        assert after.status is expected
    failed = store.get_task("t1")
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert "lease expired" in failed.error
    assert failed.failures == max_attempts
    assert failed.pid is None
    assert leased(store) == []
    assert store.reserve_tasks(TOPIC, PID) == []


def test_snooze_the_handler_asks_for_does_not_count_as_a_failure(store: TaskStore) -> None:
    create(store, "t1", max_attempts=1)
    for attempt in range(1, 4):
        task = start(store, "t1")
        assert task.attempt == attempt
        slept = store.snooze("t1", PID, attempt, 10)
        woken = store.revoke_lease("t1", slept.record_ver)
        assert woken.status is Status.STARTING
        assert woken.failures == 0
    start(store, "t1")
    assert store.terminate("t1", PID, 4).status is Status.TERMINATED


@pytest.mark.parametrize("how", ["snooze", "fail-with-retry"])
def test_revoke_of_a_snoozed_task_wakes_it_to_starting_and_never_fails_it(
    store: TaskStore, how: str
) -> None:
    # With max_attempts=2, a failure then an expiry would fail the task; a wake-up must not.
    running(store, "t1", max_attempts=2)
    if how == "snooze":
        slept = store.snooze("t1", PID, 1, 1_000)
    else:
        slept = store.fail("t1", PID, 1, "flaky", retry_after_ms=1_000)
    assert slept.status is Status.SNOOZED
    woken = store.revoke_lease("t1", slept.record_ver)
    assert woken.status is Status.STARTING
    assert woken.pid is None
    assert woken.snooze_time_ms is None
    assert woken.failures == slept.failures
    assert woken.record_ver == slept.record_ver + 1
    assert start(store, "t1", pid=OTHER_PID).attempt == 2


def test_revoke_of_a_snoozed_task_with_a_stale_record_ver_raises_stale_record(
    store: TaskStore,
) -> None:
    task = running(store, "t1")
    store.snooze("t1", PID, 1, 1_000)
    with refused(store, StaleRecord):
        store.revoke_lease("t1", task.record_ver)


def test_execute_carries_out_a_revoke_command(store: TaskStore) -> None:
    task = running(store, "t1")

    def command(task_id: str, record_ver: int) -> RevokeLease:
        return RevokeLease(
            task_id=task_id, record_ver=record_ver, status=Status.RUNNING, overdue_ms=5
        )

    done = execute(store, command("t1", task.record_ver))
    assert success(done).status is Status.STARTING
    assert store.get_task("t1") == done.unwrap()
    assert isinstance(failure(execute(store, command("t1", task.record_ver))), StaleRecord)
    assert isinstance(failure(execute(store, command("ghost", 0))), NotFound)
    assert store.get_task("t1") == done.unwrap()
