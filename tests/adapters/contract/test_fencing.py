"""The contract: fencing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sokka.adapters.store import (
    TaskStore,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    LeaseLost,
    NotRunning,
    StaleAttempt,
    WrongOwner,
)
from sokka.core.transitions import (
    Terminate,
)
from tests.adapters.contract.helpers import (
    OTHER_PID,
    PID,
    failure_of,
    refused,
    running,
    start,
)

OwnerCall = Callable[[TaskStore, str, str, int], object]

OWNER_CALLS: list[Any] = [
    pytest.param(
        lambda s, task_id, pid, attempt: s.terminate(task_id, pid, attempt), id="terminate"
    ),
    pytest.param(
        lambda s, task_id, pid, attempt: s.snooze(task_id, pid, attempt, 1_000), id="snooze"
    ),
    pytest.param(lambda s, task_id, pid, attempt: s.fail(task_id, pid, attempt, "x"), id="fail"),
    pytest.param(
        lambda s, task_id, pid, attempt: s.fail(task_id, pid, attempt, "x", retry_after_ms=5),
        id="fail-with-retry",
    ),
    pytest.param(
        lambda s, task_id, pid, attempt: failure_of(
            s.extend_leases(pid, [LeaseToken(task_id, attempt)])
        ),
        id="extend_leases",
    ),
    pytest.param(
        lambda s, task_id, pid, attempt: failure_of(
            s.finish_many([Finish(task_id=task_id, event=Terminate(pid=pid, attempt=attempt))])
        ),
        id="finish_many",
    ),
]


@pytest.mark.parametrize("call", OWNER_CALLS)
def test_revoked_worker_is_refused_even_with_same_pid(store: TaskStore, call: OwnerCall) -> None:
    first = running(store, "t1")
    store.revoke_lease("t1", first.record_ver)
    second = start(store, "t1", pid=PID)
    assert second.attempt == 2
    with refused(store, StaleAttempt):
        call(store, "t1", PID, 1)
    assert store.get_task("t1") == second


@pytest.mark.parametrize("call", OWNER_CALLS)
def test_worker_whose_task_went_to_another_pid_gets_stale_attempt(
    store: TaskStore, call: OwnerCall
) -> None:
    first = running(store, "t1", pid=PID)
    store.revoke_lease("t1", first.record_ver)
    start(store, "t1", pid=OTHER_PID)
    with refused(store, StaleAttempt):
        call(store, "t1", PID, 1)


@pytest.mark.parametrize("call", OWNER_CALLS)
def test_other_pid_quoting_the_current_attempt_gets_wrong_owner(
    store: TaskStore, call: OwnerCall
) -> None:
    running(store, "t1", pid=PID)
    with refused(store, WrongOwner):
        call(store, "t1", OTHER_PID, 1)


@pytest.mark.parametrize("call", OWNER_CALLS)
def test_owner_call_on_a_revoked_task_not_yet_reserved_again_gets_not_running(
    store: TaskStore, call: OwnerCall
) -> None:
    task = running(store, "t1")
    store.revoke_lease("t1", task.record_ver)
    with refused(store, NotRunning):
        call(store, "t1", PID, 1)


@pytest.mark.parametrize("call", OWNER_CALLS)
@pytest.mark.parametrize("final", ["terminated", "failed", "failed-by-lease-expiry"])
def test_owner_call_on_a_finished_task_gets_not_running(
    store: TaskStore, call: OwnerCall, final: str
) -> None:
    task = running(store, "t1", max_attempts=1)
    if final == "terminated":
        store.terminate("t1", PID, 1)
    elif final == "failed":
        store.fail("t1", PID, 1, "boom")
    else:
        store.revoke_lease("t1", task.record_ver)
    with refused(store, NotRunning):
        call(store, "t1", PID, 1)


@pytest.mark.parametrize(
    "call",
    [param for param in OWNER_CALLS if param.id in {"snooze", "extend_leases"}],
)
def test_extend_or_snooze_of_a_snoozed_task_gets_not_running(
    store: TaskStore, call: OwnerCall
) -> None:
    running(store, "t1")
    store.snooze("t1", PID, 1, 1_000)
    with refused(store, NotRunning):
        call(store, "t1", PID, 1)


def test_lease_refusals_are_lease_lost_and_name_the_task(store: TaskStore) -> None:
    running(store, "t1")
    for pid, attempt, kind in [(PID, 2, StaleAttempt), (OTHER_PID, 1, WrongOwner)]:
        with pytest.raises(kind) as raised:
            store.terminate("t1", pid, attempt)
        assert isinstance(raised.value, LeaseLost)
        assert raised.value.task_id == "t1"
