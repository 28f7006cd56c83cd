"""The contract: extending."""

from __future__ import annotations

from dataclasses import replace

from returns.result import Success

from sokka.adapters.store import (
    MAX_BATCH,
    TaskStore,
)
from sokka.core.commands import LeaseToken
from sokka.core.errors import (
    NotFound,
    NotRunning,
    StaleAttempt,
    WrongOwner,
)
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS
from tests.adapters.contract.helpers import (
    OTHER_PID,
    PID,
    failure,
    ids,
    listing,
    running,
    start,
    success,
)


def test_extend_bumps_record_ver_and_changes_nothing_else(
    store: TaskStore, clock: ManualClock
) -> None:
    task = running(store, "t1")
    clock.advance(100)
    [result] = store.extend_leases(PID, [LeaseToken("t1", 1)])
    extended = success(result)
    assert extended == replace(task, record_ver=task.record_ver + 1, updated_at=START_MS + 100)
    assert store.get_task("t1") == extended


def test_extend_leases_answers_each_lease_on_its_own(store: TaskStore) -> None:
    running(store, "mine")
    stale = running(store, "stale")
    store.revoke_lease("stale", stale.record_ver)
    start(store, "stale")  # attempt 2, same pid
    running(store, "theirs", pid=OTHER_PID)
    store.terminate(running(store, "done").task_id, PID, 1)
    running(store, "mine2")
    before = {t.task_id: t for t in listing(store)}

    results = store.extend_leases(
        PID,
        [
            LeaseToken("mine", 1),
            LeaseToken("ghost", 1),
            LeaseToken("stale", 1),
            LeaseToken("theirs", 1),
            LeaseToken("done", 1),
            LeaseToken("mine2", 1),
        ],
    )

    assert len(results) == 6
    assert [type(failure(r)) for r in results[1:5]] == [
        NotFound,
        StaleAttempt,
        WrongOwner,
        NotRunning,
    ]
    assert ids([success(results[0]), success(results[5])]) == ["mine", "mine2"]
    after = {t.task_id: t for t in listing(store)}
    for task_id in ["mine", "mine2"]:
        assert after[task_id].record_ver == before[task_id].record_ver + 1
    for task_id in ["stale", "theirs", "done"]:
        assert after[task_id] == before[task_id]


def test_extend_leases_up_to_the_batch_limit_is_accepted(store: TaskStore) -> None:
    running(store, "t1")
    results = store.extend_leases(PID, [LeaseToken("t1", 1)] * MAX_BATCH)
    assert all(isinstance(r, Success) for r in results)
    assert store.get_task("t1").record_ver == 1 + MAX_BATCH
