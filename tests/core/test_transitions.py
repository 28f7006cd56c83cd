"""The status table, tested exhaustively: every status x every event."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

from sokka.core.errors import (
    InvalidTransition,
    NotRunning,
    StaleAttempt,
    StaleRecord,
    TaskCancelled,
    ValidationError,
    WrongOwner,
)
from sokka.core.task import MAX_ERROR_HISTORY, MAX_ERROR_LENGTH, Status, Task
from sokka.core.transitions import (
    OWNER_EVENTS,
    PLAIN_EFFECTS,
    TRANSITIONS,
    Cancel,
    Event,
    Extend,
    Fail,
    FromEvent,
    Increment,
    Release,
    Requeue,
    Reserve,
    Revoke,
    SetRule,
    Snooze,
    Terminate,
    apply,
    set_rule,
    was_cancelled,
)
from sokka.testing.strategies import tasks

S = Status
PID, ATTEMPT, VER, NOW = "w1", 3, 11, 1_000

# What DESIGN.md §3's table allows, written out independently of TRANSITIONS.
EXPECTED: dict[tuple[Status, str], Status] = {
    (S.STARTING, "reserve"): S.RUNNING,
    (S.STARTING, "cancel"): S.FAILED,
    (S.RUNNING, "extend"): S.RUNNING,
    (S.RUNNING, "revoke"): S.STARTING,
    (S.RUNNING, "snooze"): S.SNOOZED,
    (S.RUNNING, "fail"): S.FAILED,
    (S.RUNNING, "terminate"): S.TERMINATED,
    (S.RUNNING, "release"): S.STARTING,
    (S.RUNNING, "cancel"): S.FAILED,
    (S.SNOOZED, "revoke"): S.STARTING,
    (S.SNOOZED, "fail"): S.FAILED,
    (S.SNOOZED, "terminate"): S.TERMINATED,
    (S.SNOOZED, "cancel"): S.FAILED,
    (S.FAILED, "requeue"): S.STARTING,
}

EVENTS: dict[str, Event] = {
    "reserve": Reserve(pid="w2"),
    "extend": Extend(pid=PID, attempt=ATTEMPT),
    "terminate": Terminate(pid=PID, attempt=ATTEMPT),
    "snooze": Snooze(pid=PID, attempt=ATTEMPT, snooze_ms=500),
    "fail": Fail(pid=PID, attempt=ATTEMPT, error="boom"),
    "release": Release(pid=PID, attempt=ATTEMPT),
    "revoke": Revoke(record_ver=VER),
    "requeue": Requeue(),
    "cancel": Cancel(reason="no longer needed"),
}


def task_in(status: Status, **changes: object) -> Task:
    owned = status in (S.RUNNING, S.SNOOZED)
    base = Task(
        task_id="t1",
        task_group_id="g",
        topic="q",
        status=status,
        pid=PID if owned else None,
        record_ver=VER,
        attempt=ATTEMPT,
        snooze_time_ms=700 if status is S.SNOOZED else None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_table_in_code_is_the_table_in_the_design() -> None:
    assert {(s, e.name): t for (s, e), t in TRANSITIONS.items()} == EXPECTED
    assert {e.name for e in OWNER_EVENTS} == {"extend", "terminate", "snooze", "fail", "release"}


@pytest.mark.parametrize(
    ("status", "name"), list(itertools.product(list(Status), sorted(EVENTS)))
)
def test_every_status_and_event(status: Status, name: str) -> None:
    task = task_in(status)
    event = EVENTS[name]
    result = apply(task, event, NOW)
    expected = EXPECTED.get((status, name))
    if expected is None:
        error = result.failure()
        kind = NotRunning if type(event) in OWNER_EVENTS else InvalidTransition
        assert type(error) is kind, error
        assert "t1" in str(error)
        return
    new = result.unwrap()
    assert new.status is expected
    assert new.record_ver == VER + 1
    assert new.updated_at == NOW
    assert task == task_in(status)  # the input is untouched
    assert (new.task_id, new.topic, new.data_json) == (task.task_id, task.topic, task.data_json)


@pytest.mark.parametrize(
    ("status", "name"),
    [k for k in EXPECTED if k[1] in {"extend", "terminate", "snooze", "fail", "release"}],
)
def test_owner_events_need_the_pid_and_the_attempt(status: Status, name: str) -> None:
    event = EVENTS[name]
    stale = replace(event, attempt=ATTEMPT - 1)  # type: ignore[type-var]
    other = replace(event, pid="w9")  # type: ignore[type-var]
    assert isinstance(apply(task_in(status), stale, NOW).failure(), StaleAttempt)
    assert isinstance(apply(task_in(status), other, NOW).failure(), WrongOwner)
    # Revoked and reserved again by the same pid: the old attempt is fenced off.
    again = task_in(status, attempt=ATTEMPT + 1)
    assert isinstance(apply(again, event, NOW).failure(), StaleAttempt)


@pytest.mark.parametrize("status", list(Status))
def test_revoke_is_a_compare_and_set_on_record_ver(status: Status) -> None:
    for seen in (VER - 1, VER + 1):
        error = apply(task_in(status), Revoke(record_ver=seen), NOW).failure()
        assert isinstance(error, StaleRecord)
        assert (error.expected, error.actual) == (seen, VER)


def test_reserve_takes_the_lease_and_counts_the_attempt() -> None:
    new = apply(task_in(S.STARTING), Reserve(pid="w2"), NOW).unwrap()
    assert (new.pid, new.attempt, new.lease) == ("w2", ATTEMPT + 1, ("t1", ATTEMPT + 1))


def test_revoke_of_an_expired_lease_counts_a_failure_and_clears_the_owner() -> None:
    new = apply(task_in(S.RUNNING), Revoke(record_ver=VER), NOW).unwrap()
    assert (new.status, new.pid, new.failures) == (S.STARTING, None, 1)
    assert new.error == f"attempt {ATTEMPT}: lease expired"


def test_revoke_that_spends_the_last_attempt_fails_the_task() -> None:
    task = task_in(S.RUNNING, max_attempts=3, failures=2)
    new = apply(task, Revoke(record_ver=VER), NOW).unwrap()
    assert (new.status, new.pid, new.failures) == (S.FAILED, None, 3)
    assert new.error == "attempt 3 of 3: lease expired"


def test_waking_a_snoozed_task_never_fails_it() -> None:
    task = task_in(S.SNOOZED, max_attempts=1, failures=0)
    new = apply(task, Revoke(record_ver=VER), NOW).unwrap()
    assert (new.status, new.pid, new.failures, new.snooze_time_ms) == (S.STARTING, None, 0, None)


def test_snooze_is_not_a_failure() -> None:
    task = task_in(S.RUNNING, max_attempts=1)
    new = apply(task, Snooze(pid=PID, attempt=ATTEMPT, snooze_ms=250), NOW).unwrap()
    assert (new.status, new.failures, new.snooze_time_ms) == (S.SNOOZED, 0, 250)


@pytest.mark.parametrize(
    ("max_attempts", "failures", "expected"),
    [(None, 5, S.SNOOZED), (3, 0, S.SNOOZED), (3, 1, S.SNOOZED), (3, 2, S.FAILED)],
)
def test_fail_with_retry_snoozes_while_attempts_are_left(
    max_attempts: int | None, failures: int, expected: Status
) -> None:
    task = task_in(S.RUNNING, max_attempts=max_attempts, failures=failures)
    event = Fail(pid=PID, attempt=ATTEMPT, error="boom", retry_after_ms=400)
    new = apply(task, event, NOW).unwrap()
    assert new.status is expected
    assert new.failures == failures + 1
    assert new.error == "boom"
    assert new.errors[-1] == f"attempt {ATTEMPT}: boom"
    assert new.snooze_time_ms == (400 if expected is S.SNOOZED else None)


def test_fail_without_retry_fails_at_once() -> None:
    new = apply(task_in(S.RUNNING), EVENTS["fail"], NOW).unwrap()
    assert (new.status, new.failures, new.error) == (S.FAILED, 1, "boom")


def test_requeue_gives_a_fresh_failure_budget() -> None:
    task = task_in(S.FAILED, max_attempts=2, failures=2, error="x")
    new = apply(task, Requeue(), NOW).unwrap()
    assert (new.status, new.failures, new.pid, new.attempt) == (S.STARTING, 0, None, ATTEMPT)


def test_error_history_is_bounded_and_errors_are_clipped() -> None:
    task = task_in(S.RUNNING, errors=tuple(f"e{i}" for i in range(MAX_ERROR_HISTORY)))
    huge = "x" * (MAX_ERROR_LENGTH * 2)
    new = apply(task, Fail(pid=PID, attempt=ATTEMPT, error=huge), NOW).unwrap()
    assert len(new.errors) == MAX_ERROR_HISTORY
    assert new.errors[0] == "e1"
    assert new.error is not None
    assert len(new.error) == MAX_ERROR_LENGTH
    assert new.error.endswith("(clipped)")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Reserve(pid=""), "pid"),
        (lambda: Extend(pid="w", attempt=0), "attempt"),
        (lambda: Terminate(pid="w", attempt=True), "attempt"),
        (lambda: Snooze(pid="w", attempt=1, snooze_ms=0), "snooze_ms"),
        (lambda: Snooze(pid="w", attempt=1, snooze_ms=-5), "snooze_ms"),
        (lambda: Fail(pid="w", attempt=1, error=3), "error"),
        (lambda: Fail(pid="w", attempt=1, error="x", retry_after_ms=0), "retry_after_ms"),
        (lambda: Revoke(record_ver=-1), "record_ver"),
        (lambda: Revoke(record_ver="1"), "record_ver"),
        (lambda: Cancel(reason=None), "reason"),
    ],
)
def test_bad_events_are_refused_naming_the_field(make, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as raised:
        make()
    assert raised.value.field == field


def test_results_are_returns_containers() -> None:
    assert isinstance(apply(task_in(S.STARTING), Reserve(pid="w"), NOW), Success)
    assert isinstance(apply(task_in(S.TERMINATED), Reserve(pid="w"), NOW), Failure)


def test_error_text_from_arbitrary_code_is_made_storable_not_refused() -> None:
    event = Fail(pid=PID, attempt=ATTEMPT, error="bad\x00byte \ud800 here")
    assert event.error == "bad\ufffdbyte ? here"


def test_release_gives_the_task_back_without_spending_an_attempt() -> None:
    task = task_in(S.RUNNING, max_attempts=1)
    new = apply(task, Release(pid=PID, attempt=ATTEMPT), NOW).unwrap()
    assert (new.status, new.pid, new.failures, new.attempt) == (S.STARTING, None, 0, ATTEMPT)


# -- the set rules: apply as data, for the stores' set-based UPDATEs ------------------


def _by_rule(rule: SetRule, task: Task, event: Event, now_ms: int) -> Task | None:
    """What a store's guarded UPDATE compiled from ``rule`` does to ``task``."""
    if task.status not in rule.from_statuses:
        return None
    if rule.owner and (task.pid != event.pid or task.attempt != event.attempt):  # type: ignore[union-attr]
        return None
    changes: dict[str, object] = {"status": rule.to_status}
    for column, effect in rule.effects.items():
        if effect is None:
            changes[column] = None
        elif isinstance(effect, Increment):
            changes[column] = getattr(task, column) + effect.by
        else:
            assert isinstance(effect, FromEvent)
            changes[column] = getattr(event, effect.field)
    changes["record_ver"] = task.record_ver + 1
    changes["updated_at"] = now_ms
    return replace(task, **changes)  # type: ignore[arg-type]


_OWNER_KINDS = (Extend, Terminate, Snooze, Release)


@st.composite
def _rule_cases(draw: st.DrawFn) -> tuple[Task, Event]:
    task = draw(tasks(statuses=tuple(Status)))
    if task.status is S.SNOOZED and draw(st.booleans()):
        task = replace(task, pid=draw(st.sampled_from(["w1", "w2"])))  # a snooze keeps its pid
    kind = draw(st.sampled_from([Reserve, *_OWNER_KINDS]))
    if kind is Reserve:
        return task, Reserve(pid=draw(st.sampled_from(["w1", "w2"])))
    pid = draw(st.sampled_from([task.pid or "w1", "w1", "w2"]))
    attempt = draw(st.sampled_from([max(task.attempt, 1), task.attempt + 1]))
    if kind is Snooze:
        return task, Snooze(pid=pid, attempt=attempt, snooze_ms=draw(st.integers(1, 10_000)))
    return task, kind(pid=pid, attempt=attempt)


@given(_rule_cases(), st.integers(0, 2**40))
def test_a_set_rule_says_exactly_what_apply_does(case: tuple[Task, Event], now_ms: int) -> None:
    """A store compiles SetRule into one guarded UPDATE: it must change a task
    exactly when ``apply`` accepts the event, and into the same task."""
    task, event = case
    rule = set_rule(type(event))
    assert rule is not None
    expected = apply(task, event, now_ms)
    got = _by_rule(rule, task, event, now_ms)
    if isinstance(expected, Success):
        assert got == expected.unwrap()
    else:
        assert got is None


def test_set_rules_cover_the_plain_events_and_only_them() -> None:
    assert {k for k in PLAIN_EFFECTS if set_rule(k) is not None} == {
        Reserve, Extend, Terminate, Snooze, Release,
    }  # fmt: skip
    for kind in (Fail, Revoke, Requeue, Cancel):
        assert set_rule(kind) is None
    for kind, rule in ((k, set_rule(k)) for k in PLAIN_EFFECTS):
        assert rule is not None
        assert rule.owner == (kind in OWNER_EVENTS)
        assert {(s, kind) for s in rule.from_statuses} == {k for k in TRANSITIONS if k[1] is kind}
def test_an_operator_cancels_a_running_task_without_its_lease() -> None:
    task = task_in(S.RUNNING, failures=1)
    new = apply(task, Cancel(reason="customer left"), NOW).unwrap()
    assert (new.status, new.pid, new.record_ver) == (S.FAILED, None, VER + 1)
    assert new.error == "cancelled: customer left"
    assert new.errors[-1] == "cancelled: customer left"
    # not a failure of the handler: the budget is what it was; the attempt stays
    assert (new.failures, new.attempt) == (1, ATTEMPT)
    assert was_cancelled(new)


@pytest.mark.parametrize("name", ["extend", "terminate", "snooze", "fail", "release"])
def test_the_owner_of_a_cancelled_attempt_is_told_it_was_cancelled(name: str) -> None:
    cancelled = apply(task_in(S.RUNNING), Cancel(reason="stop"), NOW).unwrap()
    error = apply(cancelled, EVENTS[name], NOW + 1).failure()
    assert type(error) is TaskCancelled
    assert isinstance(error, NotRunning)  # handled wherever a lost lease is
    assert "cancelled: stop" in str(error)
    # an older attempt's owner is told what any stale owner is told
    older = replace(EVENTS[name], attempt=ATTEMPT - 1)  # type: ignore[type-var]
    assert type(apply(cancelled, older, NOW + 1).failure()) is NotRunning


def test_only_a_cancel_makes_a_failed_task_cancelled() -> None:
    """A handler's own error that reads "cancelled: ..." is still the handler's."""
    failed = apply(task_in(S.RUNNING), Fail(pid=PID, attempt=ATTEMPT, error="cancelled: x"), NOW)
    assert not was_cancelled(failed.unwrap())
    error = apply(failed.unwrap(), EVENTS["extend"], NOW).failure()
    assert type(error) is NotRunning
    expired = apply(task_in(S.RUNNING, max_attempts=1), Revoke(record_ver=VER), NOW).unwrap()
    assert expired.status is S.FAILED
    assert not was_cancelled(expired)
    requeued = apply(
        apply(task_in(S.STARTING), Cancel(reason="x"), NOW).unwrap(), Requeue(), NOW
    ).unwrap()
    assert not was_cancelled(requeued)
