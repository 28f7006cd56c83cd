"""The contract: a claim and a batch of outcomes in one call (``reserve_and_finish``).

The SQL stores answer it themselves (``ReservesAndFinishes``: one statement on
PostgreSQL, one transaction on SQLite); every other store through
``sokka.adapters.store.reserve_and_finish``, which makes the two calls. On
every store it must answer as ``reserve_tasks`` then ``finish_many`` would.
"""

from __future__ import annotations

from typing import Any

import pytest

from sokka.adapters.sql import SQLStore
from sokka.adapters.store import MAX_BATCH, ReservesAndFinishes, TaskStore, reserve_and_finish
from sokka.core.commands import Finish
from sokka.core.errors import NotFound, StaleAttempt, ValidationError, WrongOwner
from sokka.core.task import Status
from sokka.core.transitions import Fail, Release, Snooze, Terminate
from tests.adapters.contract.helpers import (
    DONE,
    OTHER_PID,
    PID,
    TOPIC,
    create,
    failure,
    ids,
    refused,
    running,
    success,
)


def test_the_sql_stores_answer_it_themselves(store: TaskStore) -> None:
    """Only where it saves a round trip: a worker on another store keeps its two calls
    apart (and overlapping)."""
    assert isinstance(store, ReservesAndFinishes) == isinstance(store, SQLStore)


def test_it_claims_the_next_tasks_and_records_the_outcomes(store: TaskStore) -> None:
    running(store, "t1")
    create(store, "t2")
    create(store, "t3")
    done = Finish(task_id="t1", event=Terminate(pid=PID, attempt=1, result={"n": 1}))
    tasks, results = reserve_and_finish(store, TOPIC, PID, 1, [done])
    assert [(t.task_id, t.status, t.pid, t.attempt) for t in tasks] == [
        ("t2", Status.RUNNING, PID, 1)
    ]
    finished = success(results[0])
    assert (finished.task_id, finished.status) == ("t1", Status.TERMINATED)
    assert finished.result == {"n": 1}
    assert store.get_task("t1") == finished
    assert store.get_task("t2") == tasks[0]
    assert store.get_task("t3").status is Status.STARTING


def test_the_claim_sees_the_queue_as_it_was_before_the_outcomes(store: TaskStore) -> None:
    """A task released by the same call is not claimed back by it: the claim comes
    first, as if ``reserve_tasks`` ran before ``finish_many``. Another worker (or
    this one's next call) takes it."""
    running(store, "t1")
    create(store, "t2")
    released = Finish(task_id="t1", event=Release(pid=PID, attempt=1))
    tasks, results = reserve_and_finish(store, TOPIC, PID, 2, [released])
    assert ids(tasks) == ["t2"]
    assert success(results[0]).status is Status.STARTING
    again, none = reserve_and_finish(store, TOPIC, OTHER_PID, 2, [])
    assert (ids(again), again[0].attempt, none) == (["t1"], 2, [])


def test_each_outcome_is_answered_on_its_own_and_the_claim_holds(store: TaskStore) -> None:
    """Outcomes of several kinds, and refused ones, get what ``finish_many`` gives
    them; a refusal never costs the caller the tasks it claimed."""
    for task_id in ("a", "b", "c", "d"):
        create(store, task_id)
    held = store.reserve_tasks(TOPIC, PID, 4)
    create(store, "next")
    outcomes = [
        Finish(task_id="a", event=Terminate(pid=PID, attempt=1)),
        Finish(task_id="b", event=Snooze(pid=PID, attempt=1, snooze_ms=500)),
        Finish(task_id="c", event=Fail(pid=PID, attempt=1, error="boom", retry_after_ms=100)),
        Finish(task_id="d", event=Terminate(pid=OTHER_PID, attempt=1)),  # not its owner
        DONE,  # a task that does not exist
    ]
    tasks, results = reserve_and_finish(store, TOPIC, PID, 3, outcomes)
    assert ids(tasks) == ["next"]
    # b's snooze and c's retry wait (100 ms, 500 ms) for a supervisor to wake them.
    assert [success(r).status for r in results[:3]] == [
        Status.TERMINATED, Status.SNOOZED, Status.SNOOZED,
    ]  # fmt: skip
    assert isinstance(failure(results[3]), WrongOwner)
    assert isinstance(failure(results[4]), NotFound)
    assert store.get_task("d") == held[3]  # refused: unchanged
    assert len(results) == len(outcomes)


def test_a_stale_attempt_is_refused_even_when_the_claim_takes_its_task_again(
    store: TaskStore,
) -> None:
    """The outcome of attempt 1 of a task that was revoked and is now claimed again
    (attempt 2) by the same call is refused: it names an attempt that is over."""
    first = running(store, "t1")
    store.revoke_lease("t1", first.record_ver)
    late = Finish(task_id="t1", event=Terminate(pid=PID, attempt=1))
    tasks, results = reserve_and_finish(store, TOPIC, PID, 1, [late])
    assert [(t.task_id, t.attempt) for t in tasks] == [("t1", 2)]
    assert isinstance(failure(results[0]), StaleAttempt)
    assert store.get_task("t1").status is Status.RUNNING


def test_without_outcomes_it_is_a_reservation(store: TaskStore) -> None:
    create(store, "t1")
    tasks, results = reserve_and_finish(store, TOPIC, PID, 5, [])
    assert (ids(tasks), results) == (["t1"], [])


def test_with_nothing_ready_it_still_records_the_outcomes(store: TaskStore) -> None:
    running(store, "t1")
    done = Finish(task_id="t1", event=Terminate(pid=PID, attempt=1))
    tasks, results = reserve_and_finish(store, TOPIC, PID, 1, [done])
    assert tasks == []
    assert success(results[0]).status is Status.TERMINATED


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"topic": ""}, "topic"),
        ({"topic": 7}, "topic"),
        ({"pid": ""}, "pid"),
        ({"limit": 0}, "limit"),
        ({"limit": MAX_BATCH + 1}, "limit"),
        ({"limit": True}, "limit"),
        ({"outcomes": "t1"}, "outcomes"),
        ({"outcomes": [("t1", 1)]}, "outcomes"),
        ({"outcomes": [DONE] * (MAX_BATCH + 1)}, "outcomes"),
    ],
    ids=lambda value: str(value)[:24] if isinstance(value, dict) else str(value),
)
def test_bad_input_is_refused_before_anything_is_written(
    store: TaskStore, arguments: dict[str, Any], field: str
) -> None:
    running(store, "t1")
    create(store, "t2")
    call: dict[str, Any] = {
        "topic": TOPIC, "pid": PID, "limit": 1,
        "outcomes": [Finish(task_id="t1", event=Terminate(pid=PID, attempt=1))],
    }  # fmt: skip
    call.update(arguments)
    with refused(store, ValidationError, field):
        reserve_and_finish(store, **call)
