"""The contract: creating."""

from __future__ import annotations

from typing import Any

import pytest
from returns.result import Failure, Success

from sokka.adapters.store import (
    MAX_BATCH,
    TaskFilter,
    TaskStore,
)
from sokka.core.errors import (
    AlreadyExists,
    ValidationError,
)
from sokka.core.task import (
    MAX_ATTEMPTS,
    MAX_DATA_BYTES,
    MAX_INT,
    MAX_NAME_LENGTH,
    Status,
)
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS
from tests.adapters.contract.helpers import (
    OTHER_TOPIC,
    PID,
    TOPIC,
    create,
    failure,
    ids,
    leased,
    listing,
    refused,
    running,
    snapshot,
    spec,
    success,
)


def test_store_satisfies_the_task_store_protocol(store: TaskStore) -> None:
    assert isinstance(store, TaskStore)
    assert listing(store) == []
    assert leased(store) == []


def test_created_task_is_starting_with_zero_versions_and_store_clock(
    store: TaskStore, clock: ManualClock
) -> None:
    clock.advance(5)
    task = create(store, "t1", data={"to": "ann"})
    assert task.task_id == "t1"
    assert task.topic == TOPIC
    assert task.status is Status.STARTING
    assert (task.record_ver, task.attempt, task.failures) == (0, 0, 0)
    assert task.pid is None
    assert task.task_group_id == "t1"
    assert task.sub_topic == "default"
    assert task.error is None
    assert task.errors == ()
    assert task.snooze_time_ms is None
    assert task.created_at == task.updated_at == START_MS + 5
    assert task.data == {"to": "ann"}
    assert store.get_task("t1") == task


def test_spec_fields_are_stored_as_given(store: TaskStore) -> None:
    task = create(
        store,
        "t1",
        topic=OTHER_TOPIC,
        sub_topic="monthly",
        task_group_id="batch-7",
        description="the monthly report",
        max_attempts=3,
        lease_time_ms=60_000,
        timeout_ms=120_000,
    )
    stored = store.get_task("t1")
    assert stored == task
    assert stored.topic == OTHER_TOPIC
    assert stored.sub_topic == "monthly"
    assert stored.task_group_id == "batch-7"
    assert stored.description == "the monthly report"
    assert stored.max_attempts == 3
    assert stored.lease_time_ms == 60_000
    assert stored.timeout_ms == 120_000


def test_store_makes_a_unique_id_when_the_spec_has_none(store: TaskStore) -> None:
    made = [store.create_task(spec()) for _ in range(50)]
    made_ids = ids(made)
    assert all(isinstance(i, str) and i for i in made_ids)
    assert len(set(made_ids)) == 50
    assert [store.get_task(i) for i in made_ids] == made


def test_data_round_trips_as_json(store: TaskStore) -> None:
    data = {
        "text": "naïve ☃ 日本",
        "n": [1, -2, 2.5, 1e300, None, True, False],
        "tuple": (1, "two"),
        "nested": {"a": {"b": [{"c": ""}]}},
        "empty": {},
    }
    create(store, "t1", data=data)
    expected = {**data, "tuple": [1, "two"]}
    assert store.get_task("t1").data == expected
    assert listing(store)[0].data == expected


@pytest.mark.parametrize("data", [None, 0, "", "text", [], False, 3.25])
def test_scalar_and_empty_data_round_trip(store: TaskStore, data: object) -> None:
    create(store, "t1", data=data)
    assert store.get_task("t1").data == data


def test_mutating_returned_data_does_not_change_the_stored_task(store: TaskStore) -> None:
    task = create(store, "t1", data={"items": [1, 2]})
    task.data["items"].append(3)
    got = store.get_task("t1").data
    got["items"].append(4)
    assert store.get_task("t1").data == {"items": [1, 2]}


def test_data_of_exactly_the_size_limit_is_accepted(store: TaskStore) -> None:
    text = "x" * (MAX_DATA_BYTES - 2)  # plus two quotes: exactly the limit
    create(store, "t1", data=text)
    assert store.get_task("t1").data == text


def test_integers_up_to_64_bits_are_accepted(store: TaskStore) -> None:
    created = create(
        store, "big", max_attempts=MAX_ATTEMPTS, lease_time_ms=MAX_INT, timeout_ms=MAX_INT
    )
    assert store.get_task("big") == created
    assert (created.lease_time_ms, created.timeout_ms) == (MAX_INT, MAX_INT)
    store.reserve_tasks(TOPIC, PID)
    snoozed = store.snooze("big", PID, 1, MAX_INT)
    assert store.get_task("big") == snoozed
    assert snoozed.snooze_time_ms == MAX_INT
    window = TaskFilter(created_from=-MAX_INT, created_before=MAX_INT)
    assert ids(store.list_tasks(window).tasks) == ["big"]


def test_names_of_exactly_the_length_limit_are_accepted(store: TaskStore) -> None:
    name = "n" * MAX_NAME_LENGTH
    create(store, name, topic=name, sub_topic=name, task_group_id=name)
    assert store.get_task(name).topic == name
    assert ids(store.tasks_in_group(name)) == [name]
    assert ids(store.reserve_tasks(name, name)) == [name]


def test_create_with_an_existing_id_raises_already_exists_and_keeps_the_stored_task(
    store: TaskStore,
) -> None:
    original = running(store, "t1", data=1)
    with refused(store, AlreadyExists):
        create(store, "t1", topic=OTHER_TOPIC, data=2)
    assert store.get_task("t1") == original


def test_already_exists_names_the_task(store: TaskStore) -> None:
    create(store, "t1")
    with pytest.raises(AlreadyExists) as raised:
        create(store, "t1")
    assert raised.value.task_id == "t1"


def test_create_tasks_returns_one_result_per_spec_in_order(store: TaskStore) -> None:
    results = store.create_tasks([spec("c", data=1), spec("a", data=2), spec(None, data=3)])
    made = [success(r) for r in results]
    assert made[:2] == [store.get_task("c"), store.get_task("a")]
    assert [t.data for t in made] == [1, 2, 3]
    assert ids(listing(store)) == ids(made)
    assert all(t.status is Status.STARTING for t in made)


def test_create_tasks_with_a_repeated_id_fails_only_the_later_occurrence(
    store: TaskStore,
) -> None:
    results = store.create_tasks(
        [spec("a", data="first"), spec("b"), spec("a", data="second"), spec("c")]
    )
    assert [type(r) for r in results] == [Success, Success, Failure, Success]
    error = failure(results[2])
    assert isinstance(error, AlreadyExists)
    assert error.task_id == "a"
    assert store.get_task("a").data == "first"
    assert ids(listing(store)) == ["a", "b", "c"]


def test_create_tasks_with_an_existing_id_fails_only_that_element(store: TaskStore) -> None:
    original = running(store, "a")
    results = store.create_tasks([spec("x"), spec("a", data="new"), spec("y")])
    assert isinstance(failure(results[1]), AlreadyExists)
    assert ids([success(results[0]), success(results[2])]) == ["x", "y"]
    assert store.get_task("a") == original


def test_create_tasks_bad_element_does_not_affect_the_others(store: TaskStore) -> None:
    bad: Any = {"topic": TOPIC}  # not a TaskSpec
    results = store.create_tasks([spec("x"), bad, spec("y")])
    error = failure(results[1])
    assert isinstance(error, ValidationError)
    assert error.field == "spec"
    assert ids([success(results[0]), success(results[2])]) == ["x", "y"]
    assert ids(listing(store)) == ["x", "y"]


def test_create_tasks_up_to_the_batch_limit_is_accepted(store: TaskStore) -> None:
    results = store.create_tasks([spec() for _ in range(MAX_BATCH)])
    assert all(isinstance(r, Success) for r in results)
    assert len(listing(store)) == MAX_BATCH


def test_create_tasks_over_the_batch_limit_is_refused_as_a_whole(store: TaskStore) -> None:
    create(store, "before")
    with refused(store, ValidationError, "specs"):
        store.create_tasks([spec() for _ in range(MAX_BATCH + 1)])


def test_empty_batches_do_nothing(store: TaskStore) -> None:
    # A worker holding no leases may send an empty keepalive: it is not an error.
    create(store, "before")
    before = snapshot(store)
    assert store.create_tasks([]) == []
    assert store.extend_leases(PID, []) == []
    assert store.finish_many([]) == []
    assert snapshot(store) == before
