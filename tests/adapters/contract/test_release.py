"""The contract: release (a graceful shutdown gives leases back)."""

from __future__ import annotations

from sokka.adapters.store import (
    TaskStore,
)
from sokka.core.commands import Finish
from sokka.core.errors import (
    StaleAttempt,
)
from sokka.core.task import (
    Status,
)
from sokka.core.transitions import (
    Release,
)
from tests.adapters.contract.helpers import (
    OTHER_PID,
    PID,
    TOPIC,
    failure,
    running,
    snapshot,
    start,
)


def test_release_makes_the_task_ready_at_once_without_spending_an_attempt(
    store: TaskStore,
) -> None:
    task = running(store, "t1", max_attempts=1)
    [result] = store.finish_many([Finish(task_id="t1", event=Release(pid=PID, attempt=1))])
    released = result.unwrap()
    assert (released.status, released.pid, released.failures) == (Status.STARTING, None, 0)
    assert released.record_ver == task.record_ver + 1
    [again] = store.reserve_tasks(TOPIC, OTHER_PID)
    assert (again.task_id, again.attempt, again.pid) == ("t1", 2, OTHER_PID)


def test_release_of_a_lost_lease_is_refused(store: TaskStore) -> None:
    running(store, "t1")
    store.revoke_lease("t1", 1)
    start(store, "t1", TOPIC, PID)  # the same pid again: attempt 2
    before = snapshot(store)
    [result] = store.finish_many([Finish(task_id="t1", event=Release(pid=PID, attempt=1))])
    assert isinstance(failure(result), StaleAttempt)
    assert snapshot(store) == before
