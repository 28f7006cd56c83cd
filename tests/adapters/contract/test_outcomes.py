"""The contract: owner outcomes."""

from __future__ import annotations

import pytest

from sokka.adapters.store import (
    TaskStore,
)
from sokka.core.commands import Finish
from sokka.core.errors import (
    NotFound,
    NotRunning,
    StaleAttempt,
)
from sokka.core.task import (
    MAX_ERROR_LENGTH,
    Status,
)
from sokka.core.transitions import (
    Fail,
    Snooze,
    Terminate,
)
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS
from tests.adapters.contract.helpers import (
    PID,
    TOPIC,
    create,
    failure,
    leased,
    listing,
    running,
    start,
    success,
)


def test_terminate_finishes_the_task_for_good(store: TaskStore, clock: ManualClock) -> None:
    task = running(store, "t1")
    clock.advance(3)
    done = store.terminate("t1", PID, 1)
    assert done.status is Status.TERMINATED
    assert done.record_ver == task.record_ver + 1
    assert done.updated_at == START_MS + 3
    assert done.error is None
    assert store.get_task("t1") == done
    assert leased(store) == []
    assert store.reserve_tasks(TOPIC, PID) == []


def test_snooze_puts_the_task_to_sleep_keeping_the_lease_and_the_budget(
    store: TaskStore,
) -> None:
    task = running(store, "t1", max_attempts=1)
    slept = store.snooze("t1", PID, 1, 30_000)
    assert slept.status is Status.SNOOZED
    assert slept.snooze_time_ms == 30_000
    assert (slept.pid, slept.attempt) == (PID, 1)
    assert slept.failures == 0
    assert slept.error is None
    assert slept.record_ver == task.record_ver + 1
    assert leased(store) == [slept]
    assert store.reserve_tasks(TOPIC, PID) == []


@pytest.mark.parametrize("max_attempts", [None, 5])
def test_fail_without_retry_fails_the_task_even_with_attempts_left(
    store: TaskStore, max_attempts: int | None
) -> None:
    task = running(store, "t1", max_attempts=max_attempts)
    failed = store.fail("t1", PID, 1, "boom")
    assert failed.status is Status.FAILED
    assert failed.error == "boom"
    assert failed.failures == 1
    assert any("boom" in e for e in failed.errors)
    assert failed.record_ver == task.record_ver + 1
    assert store.get_task("t1") == failed
    assert leased(store) == []
    assert store.reserve_tasks(TOPIC, PID) == []


@pytest.mark.parametrize("max_attempts", [None, 2, 3])
def test_fail_with_retry_and_attempts_left_snoozes_the_task(
    store: TaskStore, max_attempts: int | None
) -> None:
    task = running(store, "t1", max_attempts=max_attempts)
    retried = store.fail("t1", PID, 1, "flaky", retry_after_ms=2_500)
    assert retried.status is Status.SNOOZED
    assert retried.snooze_time_ms == 2_500
    assert retried.failures == 1
    assert retried.error == "flaky"
    assert retried.record_ver == task.record_ver + 1
    assert leased(store) == [retried]
    woken = store.revoke_lease("t1", retried.record_ver)
    assert woken.status is Status.STARTING
    assert start(store, "t1").attempt == 2


def test_fail_on_the_last_attempt_fails_even_when_a_retry_is_asked(store: TaskStore) -> None:
    running(store, "t1", max_attempts=2)
    retried = store.fail("t1", PID, 1, "first", retry_after_ms=10)
    assert retried.status is Status.SNOOZED
    store.revoke_lease("t1", retried.record_ver)
    start(store, "t1")
    failed = store.fail("t1", PID, 2, "second", retry_after_ms=10)
    assert failed.status is Status.FAILED
    assert failed.failures == 2
    assert failed.error == "second"
    assert [("first" in e, "second" in e) for e in failed.errors] == [(True, False), (False, True)]
    assert store.reserve_tasks(TOPIC, PID) == []


def test_an_over_long_error_is_stored_clipped(store: TaskStore) -> None:
    running(store, "t1")
    failed = store.fail("t1", PID, 1, "x" * (MAX_ERROR_LENGTH * 3))
    assert failed.error is not None
    assert len(failed.error) <= MAX_ERROR_LENGTH
    assert failed.error.startswith("xxxx")
    assert store.get_task("t1").error == failed.error


def test_an_error_larger_than_a_request_is_stored_clipped(store: TaskStore) -> None:
    """10 MB, over the HTTP server's 8 MiB body limit: HTTPStore clips it as every
    store does before sending it (the server used to refuse the request)."""
    running(store, "t1")
    failed = store.fail("t1", PID, 1, "y" * 10_000_000)
    assert failed.error is not None
    assert len(failed.error) == MAX_ERROR_LENGTH
    assert failed.error.startswith("yyyy")
    assert failed.error.endswith(" ... (clipped)")
    create(store, "t2")
    cancelled = store.cancel("t2", "z" * 10_000_000)
    assert cancelled.error == f"cancelled: {'z' * (MAX_ERROR_LENGTH - 14)} ... (clipped)"


def test_finish_many_applies_each_outcome_on_its_own(store: TaskStore) -> None:
    for task_id in ["done", "sleepy", "retry", "broken", "stale"]:
        running(store, task_id)
    create(store, "idle")
    before = {t.task_id: t for t in listing(store)}

    results = store.finish_many(
        [
            Finish(task_id="done", event=Terminate(pid=PID, attempt=1)),
            Finish(task_id="sleepy", event=Snooze(pid=PID, attempt=1, snooze_ms=500)),
            Finish(task_id="retry", event=Fail(pid=PID, attempt=1, error="e", retry_after_ms=9)),
            Finish(task_id="stale", event=Terminate(pid=PID, attempt=2)),
            Finish(task_id="ghost", event=Terminate(pid=PID, attempt=1)),
            Finish(task_id="idle", event=Terminate(pid=PID, attempt=1)),
            Finish(task_id="broken", event=Fail(pid=PID, attempt=1, error="bad")),
        ]
    )

    assert len(results) == 7
    assert [success(results[i]).status for i in (0, 1, 2, 6)] == [
        Status.TERMINATED,
        Status.SNOOZED,
        Status.SNOOZED,
        Status.FAILED,
    ]
    assert [type(failure(results[i])) for i in (3, 4, 5)] == [StaleAttempt, NotFound, NotRunning]
    after = {t.task_id: t for t in listing(store)}
    assert after["sleepy"].snooze_time_ms == 500
    assert after["retry"].snooze_time_ms == 9
    assert after["broken"].error == "bad"
    for task_id in ["done", "sleepy", "retry", "broken"]:
        assert after[task_id].record_ver == before[task_id].record_ver + 1
    assert after["stale"] == before["stale"]
    assert after["idle"] == before["idle"]
