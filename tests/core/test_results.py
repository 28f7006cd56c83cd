"""Results in the core: ``ok(result)``, ``Terminate`` carrying it, the worker
core passing it through, and what a reader of a task's result is told."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

from sokka.core import holding
from sokka.core.errors import NotFinished, TaskFailed, ValidationError
from sokka.core.holding import Discarded, WorkerPolicy
from sokka.core.outcomes import OkOutcome, ok
from sokka.core.results import RESULT_POLL, next_poll_ms, result_of
from sokka.core.task import MAX_RESULT_BYTES, Status, Task, TaskSpec, encode_result
from sokka.core.transitions import Fail, Reserve, Terminate, apply
from tests.core.test_task import json_values


def running() -> Task:
    return apply(TaskSpec(topic="q").to_task("t1", 0), Reserve(pid="w1"), 1).unwrap()


# -- ok(result) and its bound ---------------------------------------------------------


@given(json_values)
def test_any_json_value_is_a_result_kept_as_canonical_text(value: object) -> None:
    outcome = ok(value)
    expected = None if value is None else json.loads(json.dumps(value))
    assert outcome.stored_result() == expected
    done = apply(running(), Terminate(pid="w1", attempt=1, result=value), 2).unwrap()
    assert done.result == expected
    assert done.result_json == encode_result(value)


def test_ok_without_a_result_keeps_none() -> None:
    assert ok() == OkOutcome() == ok(None)
    assert ok().result_json is None
    done = apply(running(), Terminate(pid="w1", attempt=1), 2).unwrap()
    assert (done.status, done.result_json, done.result) == (Status.TERMINATED, None, None)


def test_a_result_at_the_bound_is_accepted_and_one_byte_more_is_not() -> None:
    at_bound = "é" * ((MAX_RESULT_BYTES - 2) // 2)  # two bytes a character, two quotes
    assert len(ok(at_bound).result_json.encode()) == MAX_RESULT_BYTES  # type: ignore[union-attr]
    with pytest.raises(ValidationError) as raised:
        ok(at_bound + "x")
    assert raised.value.field == "result"
    assert raised.value.rule == (
        f"must be at most {MAX_RESULT_BYTES} bytes as JSON (got {MAX_RESULT_BYTES + 1})"
    )


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ({"rows": [1, {2}]}, "result['rows'][1] is a set, which is not a JSON value"),
        (float("inf"), "result is inf, which JSON cannot hold"),
        ({"k": "\x00"}, "must not contain NUL characters (U+0000)"),
        (["x" * MAX_RESULT_BYTES], f"must be at most {MAX_RESULT_BYTES} bytes as JSON"),
    ],
)
def test_a_bad_result_names_the_field_result_and_the_rule(value: object, rule: str) -> None:
    for make in (ok, lambda v: Terminate(pid="w1", attempt=1, result=v)):
        with pytest.raises(ValidationError) as raised:
            make(value)
        assert raised.value.field == "result"
        assert rule in raised.value.rule


def test_changing_the_value_after_ok_changes_nothing_stored() -> None:
    rows = {"n": 1}
    outcome = ok(rows)
    rows["n"] = 2
    rows["huge"] = "x" * (2 * MAX_RESULT_BYTES)  # not even valid any more
    assert outcome.stored_result() == {"n": 1}


def test_only_terminate_keeps_a_result() -> None:
    failed = apply(running(), Fail(pid="w1", attempt=1, error="boom"), 2).unwrap()
    assert failed.result_json is None


# -- the worker core passes the result through -----------------------------------------


def test_finished_turns_ok_with_a_result_into_a_terminate_carrying_it() -> None:
    h = holding.take(holding.holdings("w1", WorkerPolicy(lease_time_ms=1_000)), [running()], 0)
    h, _ = holding.started(h, ("t1", 1), 1)
    h, verdict = holding.finished(h, ("t1", 1), ok({"sent": 2}), 5)
    assert not isinstance(verdict, Discarded)
    event = verdict.event
    assert isinstance(event, Terminate)
    assert (event.pid, event.attempt, event.result_json) == ("w1", 1, '{"sent":2}')
    h, verdict = holding.finished(
        holding.take(holding.holdings("w1", WorkerPolicy(lease_time_ms=1_000)), [running()], 0),
        ("t1", 1),
        ok(),
        5,
    )
    assert isinstance(verdict, holding.Finish)
    assert isinstance(verdict.event, Terminate)
    assert verdict.event.result_json is None


# -- what a reader is told ----------------------------------------------------------------


def test_result_of_a_terminated_task_is_its_result() -> None:
    done = apply(running(), Terminate(pid="w1", attempt=1, result=[1, 2]), 2).unwrap()
    assert result_of(done) == Success([1, 2])


def test_result_of_a_failed_task_is_its_failure_with_its_error() -> None:
    failed = apply(running(), Fail(pid="w1", attempt=1, error="ValueError: no"), 2).unwrap()
    match result_of(failed):
        case Failure(TaskFailed() as error):
            assert (error.task_id, error.error) == ("t1", "ValueError: no")
            assert str(error) == "task 't1' failed: ValueError: no"
        case other:
            pytest.fail(f"expected TaskFailed, got {other!r}")


@pytest.mark.parametrize("status", [Status.STARTING, Status.RUNNING, Status.SNOOZED])
def test_result_of_an_unfinished_task_says_so_with_its_status(status: Status) -> None:
    task = Task(task_id="t1", task_group_id="t1", topic="q", status=status)
    match result_of(task):
        case Failure(NotFinished() as error):
            assert error.status == status.value
            assert str(error) == f"task 't1' has not finished yet (it is {status.value})"
        case other:
            pytest.fail(f"expected NotFinished, got {other!r}")


@given(
    st.integers(0, 200),
    st.floats(0, 1, exclude_max=True),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
)
def test_the_poll_never_sleeps_past_the_deadline(
    polls: int, rand: float, now: int, deadline: int
) -> None:
    pause = next_poll_ms(polls, rand, now, deadline)
    if now >= deadline:
        assert pause is None
    else:
        assert pause is not None
        assert 1 <= pause <= min(deadline - now, RESULT_POLL.cap_ms)


def test_the_poll_starts_soon_and_backs_off_to_at_most_a_second() -> None:
    pauses = [next_poll_ms(n, 0.999, 0, 60_000) for n in range(12)]
    assert pauses[0] is not None
    assert pauses[0] < 50
    assert pauses == sorted(pauses)
    assert RESULT_POLL.cap_ms // 2 <= pauses[-1] <= RESULT_POLL.cap_ms == 1_000
