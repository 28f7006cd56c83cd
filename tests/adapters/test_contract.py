"""The ``TaskStore`` contract: every store must pass every test in this file.

The ``store`` fixture (``conftest.py``) runs each test once per store kind.
Tests only use the public protocol (and ``execute``), never a store's
internals, so a new store is put under the contract by adding its factory to
``STORE_FACTORIES``.

Sections: creating, reading, listing and paging, reserving, extending, owner
outcomes, fencing, revoking and the failure budget, administration, leased
listing, record_ver, bad input (every refusal leaves the store as it was),
regressions, concurrency.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

import pytest
from returns.result import Failure, Result, Success

from sokka.adapters.store import (
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Page,
    TaskFilter,
    TaskStore,
    execute,
)
from sokka.core.commands import Finish, LeaseToken, RevokeLease
from sokka.core.errors import (
    AlreadyExists,
    InvalidTransition,
    LeaseLost,
    NotFound,
    NotRunning,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    ValidationError,
    WrongOwner,
)
from sokka.core.task import (
    MAX_ATTEMPTS,
    MAX_DATA_BYTES,
    MAX_DATA_DEPTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_ERROR_LENGTH,
    MAX_INT,
    MAX_NAME_LENGTH,
    Status,
    Task,
    TaskSpec,
)
from sokka.core.transitions import (
    Cancel,
    Fail,
    Release,
    Requeue,
    Reserve,
    Revoke,
    Snooze,
    Terminate,
)
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS

TOPIC = "emails"
OTHER_TOPIC = "reports"
PID = "worker-1"
OTHER_PID = "worker-2"

# -- helpers ------------------------------------------------------------------


def spec(task_id: str | None = None, topic: str = TOPIC, **fields: Any) -> TaskSpec:
    return TaskSpec(topic=topic, task_id=task_id, **fields)


def create(store: TaskStore, task_id: str, topic: str = TOPIC, **fields: Any) -> Task:
    return store.create_task(spec(task_id, topic, **fields))


def start(store: TaskStore, task_id: str, topic: str = TOPIC, pid: str = PID) -> Task:
    """Reserve ``task_id``, which must be the oldest starting task of ``topic``."""
    reserved = store.reserve_tasks(topic, pid)
    assert [t.task_id for t in reserved] == [task_id]
    return reserved[0]


def running(
    store: TaskStore, task_id: str, topic: str = TOPIC, pid: str = PID, **fields: Any
) -> Task:
    """Create ``task_id`` and reserve it (no other task of ``topic`` may be starting)."""
    create(store, task_id, topic, **fields)
    return start(store, task_id, topic, pid)


def ids(tasks: Sequence[Task]) -> list[str]:
    return [t.task_id for t in tasks]


def every_page(list_page: Callable[[str | None], Page]) -> list[Page]:
    """Follow ``next_cursor`` until it is ``None``."""
    pages: list[Page] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    while True:
        page = list_page(cursor)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        assert isinstance(page.next_cursor, str)
        assert page.next_cursor
        assert page.next_cursor not in seen_cursors, "a cursor came back twice: endless paging"
        seen_cursors.add(page.next_cursor)
        cursor = page.next_cursor


def listing(
    store: TaskStore, filter: TaskFilter | None = None, limit: int = MAX_PAGE_SIZE
) -> list[Task]:
    pages = every_page(lambda cursor: store.list_tasks(filter, cursor, limit))
    return [t for page in pages for t in page.tasks]


def leased(store: TaskStore, topic: str | None = None, limit: int = MAX_PAGE_SIZE) -> list[Task]:
    pages = every_page(lambda cursor: store.list_leased_tasks(topic, cursor, limit))
    return [t for page in pages for t in page.tasks]


def snapshot(store: TaskStore) -> tuple[tuple[Task, ...], tuple[Task, ...]]:
    """Everything a caller can see: every task, and the leased listing."""
    return tuple(listing(store)), tuple(leased(store))


@contextmanager
def refused(store: TaskStore, error: type[SokkaError], field: str | None = None) -> Iterator[None]:
    """The block must raise exactly ``error`` (naming ``field``) and change nothing."""
    before = snapshot(store)
    with pytest.raises(error) as raised:
        yield
    assert type(raised.value) is error
    if field is not None:
        assert isinstance(raised.value, ValidationError)
        assert raised.value.field == field
    assert snapshot(store) == before


def failure(result: Result[Task, SokkaError]) -> SokkaError:
    assert isinstance(result, Failure), f"expected a Failure, got {result!r}"
    error = result.failure()
    assert isinstance(error, SokkaError)
    return error


def success(result: Result[Task, SokkaError]) -> Task:
    assert isinstance(result, Success), f"expected a Success, got {result!r}"
    task = result.unwrap()
    assert isinstance(task, Task)
    return task


def short_id(value: object) -> str:
    """A readable test id for a parameter, however long its value."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for Python to print
        return "huge-int"
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"


def filter_id(wanted: TaskFilter) -> str:
    fields = ("topic", "sub_topic", "status", "task_group_id", "created_from", "created_before")
    given = [
        f"{name}={getattr(wanted, name)}" for name in fields if getattr(wanted, name) is not None
    ]
    return ",".join(given) or "no-filter"


def nested(depth: int) -> object:
    """A JSON list nested ``depth`` levels deep."""
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def b64json(value: object) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_store_satisfies_the_task_store_protocol(store: TaskStore) -> None:
    assert isinstance(store, TaskStore)
    assert listing(store) == []
    assert leased(store) == []


# -- creating -----------------------------------------------------------------


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


# -- reading ------------------------------------------------------------------


def test_get_task_of_an_unknown_id_raises_not_found_naming_it(store: TaskStore) -> None:
    create(store, "t1")
    with pytest.raises(NotFound) as raised:
        store.get_task("ghost")
    assert raised.value.task_id == "ghost"


def test_get_task_returns_the_latest_version(store: TaskStore) -> None:
    create(store, "t1")
    reserved = start(store, "t1")
    assert store.get_task("t1") == reserved
    done = store.terminate("t1", PID, 1)
    assert store.get_task("t1") == done
    assert done.status is Status.TERMINATED


def test_tasks_in_group_lists_the_group_in_creation_order(store: TaskStore) -> None:
    create(store, "x2", task_group_id="g")
    create(store, "other")
    create(store, "g")  # its group defaults to its own id, "g"
    create(store, "x1", topic=OTHER_TOPIC, task_group_id="g")
    assert ids(store.tasks_in_group("g")) == ["x2", "g", "x1"]
    assert ids(store.tasks_in_group("other")) == ["other"]
    assert store.tasks_in_group("nobody") == []


def test_tasks_in_group_shows_the_current_state(store: TaskStore) -> None:
    create(store, "a", task_group_id="g")
    create(store, "b", task_group_id="g")
    reserved = start(store, "a")
    assert store.tasks_in_group("g") == [reserved, store.get_task("b")]
    assert [t.status for t in store.tasks_in_group("g")] == [Status.RUNNING, Status.STARTING]


# -- listing and paging ---------------------------------------------------------


def test_list_tasks_without_filter_lists_everything_in_creation_order(
    store: TaskStore,
) -> None:
    for task_id in ["c", "a", "b"]:
        create(store, task_id, topic=OTHER_TOPIC if task_id == "a" else TOPIC)
    page = store.list_tasks()
    assert ids(page.tasks) == ["c", "a", "b"]
    assert page.next_cursor is None


@pytest.fixture
def filter_world(store: TaskStore, clock: ManualClock) -> TaskStore:
    """Five tasks 10 ms apart (e1 at START_MS ... r2 at START_MS + 40).

    e1 running, e2 starting, r1 terminated, e3 failed, r2 starting.
    """
    rows = [
        ("e1", TOPIC, "welcome", "batch-1"),
        ("e2", TOPIC, "digest", "batch-1"),
        ("r1", OTHER_TOPIC, "welcome", None),
        ("e3", TOPIC, "default", "batch-2"),
        ("r2", OTHER_TOPIC, "digest", "batch-1"),
    ]
    for i, (task_id, topic, sub_topic, group) in enumerate(rows):
        if i:
            clock.advance(10)
        create(store, task_id, topic, sub_topic=sub_topic, task_group_id=group)
    start(store, "e1", TOPIC)
    start(store, "r1", OTHER_TOPIC)
    store.terminate("r1", PID, 1)
    store.cancel("e3", "not needed")
    return store


FILTER_CASES: list[tuple[TaskFilter, list[str]]] = [
    (TaskFilter(), ["e1", "e2", "r1", "e3", "r2"]),
    (TaskFilter(topic=TOPIC), ["e1", "e2", "e3"]),
    (TaskFilter(topic="nothing"), []),
    (TaskFilter(sub_topic="digest"), ["e2", "r2"]),
    (TaskFilter(status=Status.RUNNING), ["e1"]),
    (TaskFilter(status=Status.STARTING), ["e2", "r2"]),
    (TaskFilter(status=cast(Any, "starting")), ["e2", "r2"]),
    (TaskFilter(status=Status.TERMINATED), ["r1"]),
    (TaskFilter(status=Status.FAILED), ["e3"]),
    (TaskFilter(status=Status.SNOOZED), []),
    (TaskFilter(task_group_id="batch-1"), ["e1", "e2", "r2"]),
    (TaskFilter(task_group_id="r1"), ["r1"]),
    (TaskFilter(created_from=START_MS + 20), ["r1", "e3", "r2"]),
    (TaskFilter(created_before=START_MS + 20), ["e1", "e2"]),
    (TaskFilter(created_from=START_MS + 10, created_before=START_MS + 40), ["e2", "r1", "e3"]),
    (TaskFilter(created_from=START_MS + 11, created_before=START_MS + 20), []),
    (TaskFilter(topic=TOPIC, task_group_id="batch-1"), ["e1", "e2"]),
    (TaskFilter(topic=TOPIC, status=Status.STARTING), ["e2"]),
    (TaskFilter(sub_topic="welcome", created_from=START_MS + 1), ["r1"]),
]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [pytest.param(f, expected, id=filter_id(f)) for f, expected in FILTER_CASES],
)
def test_list_tasks_returns_exactly_the_tasks_matching_every_filter_field(
    filter_world: TaskStore, filter: TaskFilter, expected: list[str]
) -> None:
    assert ids(listing(filter_world, filter)) == expected
    assert ids(listing(filter_world, filter, limit=1)) == expected


def test_list_tasks_with_no_match_is_one_empty_page(store: TaskStore) -> None:
    create(store, "t1")
    assert store.list_tasks(TaskFilter(topic="nothing")) == Page((), None)
    assert store.list_tasks() != Page((), None)


@pytest.mark.parametrize("limit", [1, 5, 6, 8, 23, 24, 25, MAX_PAGE_SIZE])
def test_following_next_cursor_visits_every_task_once_in_creation_order(
    store: TaskStore, limit: int
) -> None:
    created = [f"task-{(i * 7) % 24:02}" for i in range(24)]  # not in id order
    for task_id in created:
        create(store, task_id)
    pages = every_page(lambda cursor: store.list_tasks(None, cursor, limit))
    assert [ids(p.tasks) for p in pages] == [
        created[i : i + limit] for i in range(0, len(created), limit)
    ]


def test_page_ending_exactly_at_the_last_task_has_no_next_cursor(store: TaskStore) -> None:
    for i in range(6):
        create(store, f"t{i}")
    first = store.list_tasks(limit=3)
    assert ids(first.tasks) == ["t0", "t1", "t2"]
    assert first.next_cursor is not None
    second = store.list_tasks(cursor=first.next_cursor, limit=3)
    assert ids(second.tasks) == ["t3", "t4", "t5"]
    assert second.next_cursor is None


def test_paging_with_a_filter_visits_only_matching_tasks_once(store: TaskStore) -> None:
    for i in range(30):
        create(store, f"t{i:02}", topic=TOPIC if i % 3 else OTHER_TOPIC)
    pages = every_page(lambda cursor: store.list_tasks(TaskFilter(topic=TOPIC), cursor, 4))
    assert all(1 <= len(p.tasks) <= 4 for p in pages)
    assert ids([t for p in pages for t in p.tasks]) == [f"t{i:02}" for i in range(30) if i % 3]


def test_paging_is_stable_while_tasks_change_and_new_ones_arrive(store: TaskStore) -> None:
    originals = [f"t{i:02}" for i in range(12)]
    for task_id in originals:
        create(store, task_id)
    seen: list[str] = []
    cursor: str | None = None
    rounds = 0
    while True:
        page = store.list_tasks(cursor=cursor, limit=5)
        seen += ids(page.tasks)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        rounds += 1
        # Between pages: the oldest starting task is reserved and finished, and
        # a new task arrives. Neither may make the listing skip or repeat.
        [task] = store.reserve_tasks(TOPIC, PID)
        store.terminate(task.task_id, PID, task.attempt)
        create(store, f"new{rounds}")
    assert seen[:12] == originals
    assert len(seen) == len(set(seen))
    assert all(s.startswith("new") for s in seen[12:])
    assert set(seen) <= set(ids(listing(store)))


def test_default_page_size_bounds_a_listing(store: TaskStore) -> None:
    store.create_tasks([spec() for _ in range(DEFAULT_PAGE_SIZE + 1)])
    page = store.list_tasks()
    assert len(page.tasks) == DEFAULT_PAGE_SIZE
    assert page.next_cursor is not None
    rest = store.list_tasks(cursor=page.next_cursor)
    assert len(rest.tasks) == 1
    assert rest.next_cursor is None


MALFORMED_CURSORS: list[object] = [
    "",
    "abc",
    "!!!!",
    "not a cursor",
    "é",
    "x" * 300,
    b64json({"after": 1}),
    b64json({"v": 1}),
    b64json([1, 2]),
    b64json(42),
    b64json("text"),
    b64json(None),
    b64json({"v": 1, "after": -1}),
    b64json({"v": 1, "after": "3"}),
    b64json({"v": 1, "after": 1.5}),
    b64json({"v": 1, "after": True}),
    b64json({"v": 99, "after": 1}),
    b64json({"v": 1, "after": 1, "extra": 0}),
    42,
    1.5,
    b"bytes",
    ["x"],
    *(
        pytest.param(
            b64json({"v": version, "after": 0}),
            id=f"version-{version!r}",
        )
        for version in (True, 1.0)
    ),
]


@pytest.mark.parametrize("cursor", MALFORMED_CURSORS, ids=short_id)
def test_malformed_cursor_is_refused_naming_the_cursor(store: TaskStore, cursor: Any) -> None:
    for i in range(3):
        running(store, f"t{i}")
    with refused(store, ValidationError, "cursor"):
        store.list_tasks(cursor=cursor)
    with refused(store, ValidationError, "cursor"):
        store.list_leased_tasks(cursor=cursor)
    with refused(store, ValidationError, "cursor"):
        store.list_leased_tasks(TOPIC, cursor=cursor)


# -- reserving ------------------------------------------------------------------


def test_reserve_hands_out_the_oldest_task_first(store: TaskStore, clock: ManualClock) -> None:
    for task_id in ["z", "m", "a"]:
        create(store, task_id)
        clock.advance(1)
    assert [ids(store.reserve_tasks(TOPIC, PID)) for _ in range(4)] == [["z"], ["m"], ["a"], []]


def test_reserved_task_is_running_owned_by_the_pid_with_attempt_one(
    store: TaskStore, clock: ManualClock
) -> None:
    created = create(store, "t1", data={"k": "v"})
    clock.advance(7)
    [task] = store.reserve_tasks(TOPIC, PID)
    assert task.status is Status.RUNNING
    assert task.pid == PID
    assert task.attempt == 1
    assert task.record_ver == 1
    assert task.lease == ("t1", 1)
    assert task.updated_at == START_MS + 7
    assert task.created_at == created.created_at
    assert task.data == {"k": "v"}
    assert store.get_task("t1") == task


def test_reserve_respects_the_limit_and_takes_the_oldest(store: TaskStore) -> None:
    for i in range(10):
        create(store, f"t{i}")
    assert ids(store.reserve_tasks(TOPIC, PID, limit=3)) == ["t0", "t1", "t2"]
    assert ids(store.reserve_tasks(TOPIC, PID, limit=MAX_BATCH)) == [f"t{i}" for i in range(3, 10)]
    assert store.reserve_tasks(TOPIC, PID, limit=MAX_BATCH) == []


def test_reserve_never_hands_out_the_same_task_twice(store: TaskStore) -> None:
    for i in range(6):
        create(store, f"t{i}")
    first = store.reserve_tasks(TOPIC, PID, limit=4)
    second = store.reserve_tasks(TOPIC, OTHER_PID, limit=4)
    third = store.reserve_tasks(TOPIC, PID, limit=4)
    assert ids(first) == ["t0", "t1", "t2", "t3"]
    assert ids(second) == ["t4", "t5"]
    assert third == []
    assert {t.pid for t in second} == {OTHER_PID}
    assert [t.pid for t in listing(store)] == [PID] * 4 + [OTHER_PID] * 2


def test_reserve_only_takes_tasks_of_the_given_topic(store: TaskStore) -> None:
    for i in range(6):
        create(store, f"t{i}", topic=TOPIC if i % 2 else OTHER_TOPIC)
    assert ids(store.reserve_tasks(TOPIC, PID, limit=10)) == ["t1", "t3", "t5"]
    others = listing(store, TaskFilter(topic=OTHER_TOPIC))
    assert [t.status for t in others] == [Status.STARTING] * 3
    assert store.reserve_tasks("unknown-topic", PID, limit=10) == []


def test_reserve_with_nothing_ready_returns_an_empty_list(store: TaskStore) -> None:
    assert store.reserve_tasks(TOPIC, PID, limit=5) == []
    assert listing(store) == []


def test_reserve_skips_running_snoozed_failed_and_terminated_tasks(store: TaskStore) -> None:
    running(store, "r")
    store.snooze(running(store, "z").task_id, PID, 1, 1_000)
    store.fail(running(store, "f").task_id, PID, 1, "boom")
    store.terminate(running(store, "t").task_id, PID, 1)
    create(store, "s")
    before = {t.task_id: t for t in listing(store)}
    assert ids(store.reserve_tasks(TOPIC, OTHER_PID, limit=10)) == ["s"]
    after = {t.task_id: t for t in listing(store)}
    assert {k: v for k, v in after.items() if k != "s"} == {
        k: v for k, v in before.items() if k != "s"
    }


def test_revoked_task_is_reservable_again_with_the_next_attempt(store: TaskStore) -> None:
    task = running(store, "t1")
    revoked = store.revoke_lease("t1", task.record_ver)
    assert revoked.status is Status.STARTING
    assert revoked.pid is None
    assert revoked.attempt == 1
    [again] = store.reserve_tasks(TOPIC, OTHER_PID)
    assert again.task_id == "t1"
    assert again.attempt == 2
    assert again.pid == OTHER_PID
    assert again.record_ver == revoked.record_ver + 1


def test_revoked_older_task_is_reserved_before_newer_ones(store: TaskStore) -> None:
    create(store, "old")
    create(store, "new")
    task = start(store, "old")
    store.revoke_lease("old", task.record_ver)
    assert ids(store.reserve_tasks(TOPIC, PID)) == ["old"]
    assert ids(store.reserve_tasks(TOPIC, PID)) == ["new"]


def test_cancelled_then_requeued_task_is_handed_out_once(store: TaskStore) -> None:
    create(store, "t1")
    store.cancel("t1", "wrong data")
    store.requeue("t1")
    [task] = store.reserve_tasks(TOPIC, PID, limit=10)
    assert task.task_id == "t1"
    assert task.attempt == 1
    assert store.reserve_tasks(TOPIC, OTHER_PID, limit=10) == []


# -- extending ------------------------------------------------------------------


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


# -- owner outcomes ---------------------------------------------------------------


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


# -- fencing --------------------------------------------------------------------

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


def failure_of(results: list[Result[Task, SokkaError]]) -> object:
    """Raise the error of a one-element batch, so batch and single calls test alike."""
    [result] = results
    if isinstance(result, Failure):
        raise result.failure()
    return result.unwrap()


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


# -- revoking and the failure budget --------------------------------------------


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


# -- administration -------------------------------------------------------------


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


@pytest.mark.parametrize("state", ["running", "failed", "terminated"])
def test_cancel_of_a_running_or_finished_task_raises_invalid_transition(
    store: TaskStore, state: str
) -> None:
    running(store, "t1")
    if state == "failed":
        store.fail("t1", PID, 1, "boom")
    elif state == "terminated":
        store.terminate("t1", PID, 1)
    with refused(store, InvalidTransition):
        store.cancel("t1", "stop")


# -- leased listing ---------------------------------------------------------------


def test_list_leased_tasks_lists_running_and_snoozed_tasks_in_creation_order(
    store: TaskStore,
) -> None:
    running(store, "e-run")
    running(store, "r-snooze", topic=OTHER_TOPIC)
    store.snooze("r-snooze", PID, 1, 100)
    running(store, "e-done")
    store.terminate("e-done", PID, 1)
    running(store, "e-failed")
    store.fail("e-failed", PID, 1, "boom")
    create(store, "e-idle")
    running(store, "r-run", topic=OTHER_TOPIC)
    everything = {t.task_id: t for t in listing(store)}

    assert ids(leased(store)) == ["e-run", "r-snooze", "r-run"]
    assert ids(leased(store, TOPIC)) == ["e-run"]
    assert ids(leased(store, OTHER_TOPIC)) == ["r-snooze", "r-run"]
    assert leased(store, "nothing") == []
    assert leased(store) == [everything[i] for i in ["e-run", "r-snooze", "r-run"]]


@pytest.mark.parametrize("topic", [None, TOPIC])
@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_list_leased_tasks_pages_visit_each_leased_task_once(
    store: TaskStore, topic: str | None, limit: int
) -> None:
    expected: list[str] = []
    for i in range(14):
        task_topic = TOPIC if i % 2 else OTHER_TOPIC
        task_id = f"t{i:02}"
        if i % 5 == 4:
            create(store, task_id, topic=task_topic)  # starting: not leased
            store.cancel(task_id, "skip")
            continue
        running(store, task_id, topic=task_topic)
        if i % 3 == 0:
            store.snooze(task_id, PID, 1, 100)
        if topic is None or task_topic == topic:
            expected.append(task_id)
    pages = every_page(lambda cursor: store.list_leased_tasks(topic, cursor, limit))
    assert all(len(p.tasks) <= limit for p in pages)
    assert ids([t for p in pages for t in p.tasks]) == expected
    assert len(pages) == max(1, math.ceil(len(expected) / limit))


# -- record_ver and timestamps ----------------------------------------------------


def test_record_ver_bumps_by_exactly_one_on_every_write_and_never_on_a_refusal(
    store: TaskStore,
) -> None:
    create(store, "a", max_attempts=5)
    create(store, "bystander")
    bystander = store.get_task("bystander")
    version = 0

    def write(call: Callable[[], Task]) -> None:
        nonlocal version
        assert call().record_ver == version + 1
        version += 1
        assert store.get_task("a").record_ver == version

    def refuse(call: Callable[[], object], error: type[SokkaError]) -> None:
        with pytest.raises(error):
            call()
        assert store.get_task("a").record_ver == version

    assert store.get_task("a").record_ver == 0
    write(lambda: start(store, "a"))
    refuse(lambda: store.revoke_lease("a", version - 1), StaleRecord)
    write(lambda: success(store.extend_leases(PID, [LeaseToken("a", 1)])[0]))
    refuse(lambda: store.terminate("a", OTHER_PID, 1), WrongOwner)
    refuse(lambda: store.terminate("a", PID, 2), StaleAttempt)
    refuse(lambda: store.cancel("a", "no"), InvalidTransition)
    write(lambda: store.snooze("a", PID, 1, 100))
    refuse(lambda: failure_of(store.extend_leases(PID, [LeaseToken("a", 1)])), NotRunning)
    write(lambda: store.revoke_lease("a", version))  # wake up
    write(lambda: start(store, "a"))
    write(lambda: store.fail("a", PID, 2, "boom", retry_after_ms=50))
    write(lambda: store.revoke_lease("a", version))  # wake up
    write(lambda: start(store, "a"))
    write(lambda: store.revoke_lease("a", version))  # lease expired
    refuse(lambda: store.terminate("a", PID, 3), NotRunning)
    write(lambda: store.cancel("a", "stop"))
    refuse(lambda: store.cancel("a", "again"), InvalidTransition)
    write(lambda: store.requeue("a"))
    write(lambda: start(store, "a"))
    write(
        lambda: success(
            store.finish_many([Finish(task_id="a", event=Terminate(pid=PID, attempt=4))])[0]
        )
    )
    refuse(lambda: store.requeue("a"), InvalidTransition)
    assert version == 13
    assert store.get_task("bystander") == bystander


def test_writes_stamp_updated_at_with_the_store_clock_and_keep_created_at(
    store: TaskStore, clock: ManualClock
) -> None:
    created = create(store, "t1")
    stamps = []
    steps: list[Callable[[], Task]] = [
        lambda: start(store, "t1"),
        lambda: success(store.extend_leases(PID, [LeaseToken("t1", 1)])[0]),
        lambda: store.terminate("t1", PID, 1),
    ]
    for step in steps:
        clock.advance(1_000)
        task = step()
        assert task.created_at == created.created_at == START_MS
        stamps.append(task.updated_at)
    assert stamps == [START_MS + 1_000, START_MS + 2_000, START_MS + 3_000]


# -- bad input: every refusal names the field and leaves the store as it was -----


def build_world(store: TaskStore) -> None:
    """r1 running (PID, attempt 1, record_ver 1), z1 snoozed (record_ver 2), f1 failed,
    t1 terminated, s1 starting (all in TOPIC); g1 starting in OTHER_TOPIC, group "grp"."""
    running(store, "r1")
    running(store, "z1")
    store.snooze("z1", PID, 1, 5_000)
    running(store, "f1")
    store.fail("f1", PID, 1, "boom")
    running(store, "t1")
    store.terminate("t1", PID, 1)
    create(store, "s1")
    create(store, "g1", topic=OTHER_TOPIC, task_group_id="grp")


TOKEN = LeaseToken("r1", 1)
DONE = Finish(task_id="r1", event=Terminate(pid=PID, attempt=1))
LONG = "x" * (MAX_NAME_LENGTH + 1)
HUGE = 10**5000  # more digits than Python will print

Call = Callable[[Any], object]


def bad(call: Call, error: type[SokkaError], field: str | None = None, *, id: str) -> Any:
    return pytest.param(call, error, field, id=id)


V = ValidationError
REFUSALS: list[Any] = [
    # create_task / create_tasks
    bad(lambda s: s.create_task("emails"), V, "spec", id="create_task-str"),
    bad(lambda s: s.create_task(None), V, "spec", id="create_task-None"),
    bad(lambda s: s.create_task({"topic": TOPIC}), V, "spec", id="create_task-dict"),
    bad(lambda s: s.create_tasks([spec()] * (MAX_BATCH + 1)), V, "specs", id="create_tasks-big"),
    bad(lambda s: s.create_task(spec("r1")), AlreadyExists, id="create_task-existing"),
    # get_task / tasks_in_group
    bad(lambda s: s.get_task(""), V, "task_id", id="get_task-empty"),
    bad(lambda s: s.get_task(LONG), V, "task_id", id="get_task-long"),
    bad(lambda s: s.get_task("r\n1"), V, "task_id", id="get_task-control-char"),
    bad(lambda s: s.get_task(None), V, "task_id", id="get_task-None"),
    bad(lambda s: s.get_task(7), V, "task_id", id="get_task-int"),
    bad(lambda s: s.get_task("ghost"), NotFound, id="get_task-unknown"),
    bad(lambda s: s.tasks_in_group(""), V, "task_group_id", id="tasks_in_group-empty"),
    bad(lambda s: s.tasks_in_group(LONG), V, "task_group_id", id="tasks_in_group-long"),
    bad(lambda s: s.tasks_in_group(3), V, "task_group_id", id="tasks_in_group-int"),
    # list_tasks / list_leased_tasks
    bad(lambda s: s.list_tasks(limit=0), V, "limit", id="list_tasks-limit-0"),
    bad(lambda s: s.list_tasks(limit=-1), V, "limit", id="list_tasks-limit-negative"),
    bad(lambda s: s.list_tasks(limit=MAX_PAGE_SIZE + 1), V, "limit", id="list_tasks-limit-big"),
    bad(lambda s: s.list_tasks(limit="10"), V, "limit", id="list_tasks-limit-str"),
    bad(lambda s: s.list_tasks(limit=2.0), V, "limit", id="list_tasks-limit-float"),
    bad(lambda s: s.list_tasks(limit=True), V, "limit", id="list_tasks-limit-bool"),
    bad(lambda s: s.list_tasks(limit=None), V, "limit", id="list_tasks-limit-None"),
    bad(lambda s: s.list_tasks(limit=HUGE), V, "limit", id="list_tasks-limit-huge"),
    bad(lambda s: s.list_tasks("emails"), V, "filter", id="list_tasks-filter-str"),
    bad(lambda s: s.list_tasks({"topic": TOPIC}), V, "filter", id="list_tasks-filter-dict"),
    bad(lambda s: s.list_tasks(cursor="abc"), V, "cursor", id="list_tasks-cursor"),
    bad(lambda s: s.list_leased_tasks(""), V, "topic", id="list_leased-topic-empty"),
    bad(lambda s: s.list_leased_tasks(LONG), V, "topic", id="list_leased-topic-long"),
    bad(lambda s: s.list_leased_tasks(5), V, "topic", id="list_leased-topic-int"),
    bad(lambda s: s.list_leased_tasks(limit=0), V, "limit", id="list_leased-limit-0"),
    bad(
        lambda s: s.list_leased_tasks(limit=MAX_PAGE_SIZE + 1),
        V,
        "limit",
        id="list_leased-limit-big",
    ),
    bad(lambda s: s.list_leased_tasks(limit="1"), V, "limit", id="list_leased-limit-str"),
    # reserve_tasks: a refusal must not reserve s1
    bad(lambda s: s.reserve_tasks("", PID), V, "topic", id="reserve-topic-empty"),
    bad(lambda s: s.reserve_tasks(LONG, PID), V, "topic", id="reserve-topic-long"),
    bad(lambda s: s.reserve_tasks("em\x7fails", PID), V, "topic", id="reserve-topic-control"),
    bad(lambda s: s.reserve_tasks(None, PID), V, "topic", id="reserve-topic-None"),
    bad(lambda s: s.reserve_tasks(TOPIC, ""), V, "pid", id="reserve-pid-empty"),
    bad(lambda s: s.reserve_tasks(TOPIC, LONG), V, "pid", id="reserve-pid-long"),
    bad(lambda s: s.reserve_tasks(TOPIC, "w\x00"), V, "pid", id="reserve-pid-control"),
    bad(lambda s: s.reserve_tasks(TOPIC, None), V, "pid", id="reserve-pid-None"),
    bad(lambda s: s.reserve_tasks(TOPIC, 12), V, "pid", id="reserve-pid-int"),
    bad(lambda s: s.reserve_tasks(TOPIC, PID, 0), V, "limit", id="reserve-limit-0"),
    bad(lambda s: s.reserve_tasks(TOPIC, PID, -3), V, "limit", id="reserve-limit-negative"),
    bad(lambda s: s.reserve_tasks(TOPIC, PID, MAX_BATCH + 1), V, "limit", id="reserve-limit-big"),
    bad(lambda s: s.reserve_tasks(TOPIC, PID, "2"), V, "limit", id="reserve-limit-str"),
    bad(lambda s: s.reserve_tasks(TOPIC, PID, 1.0), V, "limit", id="reserve-limit-float"),
    # extend_leases: a refusal must not extend r1
    bad(lambda s: s.extend_leases("", [TOKEN]), V, "pid", id="extend-pid-empty"),
    bad(lambda s: s.extend_leases(None, [TOKEN]), V, "pid", id="extend-pid-None"),
    bad(lambda s: s.extend_leases(LONG, [TOKEN]), V, "pid", id="extend-pid-long"),
    bad(lambda s: s.extend_leases(PID, [TOKEN, ("r1", 1)]), V, "leases", id="extend-tuple"),
    bad(lambda s: s.extend_leases(PID, [TOKEN, "r1"]), V, "leases", id="extend-str-element"),
    bad(lambda s: s.extend_leases(PID, [TOKEN] * (MAX_BATCH + 1)), V, "leases", id="extend-big"),
    bad(lambda s: s.extend_leases(PID, [LeaseToken("r1", 0)]), V, "attempt", id="token-att-0"),
    bad(lambda s: s.extend_leases(PID, [LeaseToken("", 1)]), V, "task_id", id="token-id-empty"),
    # terminate / snooze / fail
    bad(lambda s: s.terminate("r1", PID, 0), V, "attempt", id="terminate-attempt-0"),
    bad(lambda s: s.terminate("r1", PID, -1), V, "attempt", id="terminate-attempt-negative"),
    bad(lambda s: s.terminate("r1", PID, "1"), V, "attempt", id="terminate-attempt-str"),
    bad(lambda s: s.terminate("r1", PID, True), V, "attempt", id="terminate-attempt-bool"),
    bad(lambda s: s.terminate("r1", PID, None), V, "attempt", id="terminate-attempt-None"),
    bad(lambda s: s.terminate("r1", PID, 1.0), V, "attempt", id="terminate-attempt-float"),
    bad(lambda s: s.terminate("r1", PID, 2**31), V, "attempt", id="terminate-attempt-over-32-bit"),
    bad(lambda s: s.terminate("r1", PID, -HUGE), V, "attempt", id="terminate-attempt-huge"),
    bad(lambda s: s.terminate("r1", "", 1), V, "pid", id="terminate-pid-empty"),
    bad(lambda s: s.terminate("r1", LONG, 1), V, "pid", id="terminate-pid-long"),
    bad(lambda s: s.terminate("", PID, 1), V, "task_id", id="terminate-task_id-empty"),
    bad(lambda s: s.terminate(None, PID, 1), V, "task_id", id="terminate-task_id-None"),
    bad(lambda s: s.terminate("ghost", PID, 1), NotFound, id="terminate-unknown"),
    bad(lambda s: s.terminate("s1", PID, 1), NotRunning, id="terminate-starting"),
    bad(lambda s: s.terminate("t1", PID, 1), NotRunning, id="terminate-terminated"),
    bad(lambda s: s.terminate("f1", PID, 1), NotRunning, id="terminate-failed"),
    bad(lambda s: s.terminate("r1", PID, 2), StaleAttempt, id="terminate-stale-attempt"),
    bad(lambda s: s.terminate("r1", OTHER_PID, 1), WrongOwner, id="terminate-wrong-owner"),
    bad(lambda s: s.snooze("r1", PID, 1, 0), V, "snooze_ms", id="snooze-0"),
    bad(lambda s: s.snooze("r1", PID, 1, -1_000), V, "snooze_ms", id="snooze-negative"),
    bad(lambda s: s.snooze("r1", PID, 1, "1000"), V, "snooze_ms", id="snooze-str"),
    bad(lambda s: s.snooze("r1", PID, 1, 1.5), V, "snooze_ms", id="snooze-float"),
    bad(lambda s: s.snooze("r1", PID, 1, None), V, "snooze_ms", id="snooze-None"),
    bad(lambda s: s.snooze("r1", PID, 1, True), V, "snooze_ms", id="snooze-bool"),
    bad(lambda s: s.snooze("r1", PID, 1, MAX_INT + 1), V, "snooze_ms", id="snooze-over-64-bit"),
    bad(lambda s: s.snooze("r1", PID, 1, -HUGE), V, "snooze_ms", id="snooze-huge-negative"),
    bad(lambda s: s.snooze("ghost", PID, 1, 10), NotFound, id="snooze-unknown"),
    bad(lambda s: s.snooze("z1", PID, 1, 10), NotRunning, id="snooze-snoozed"),
    bad(lambda s: s.snooze("r1", PID, 3, 10), StaleAttempt, id="snooze-stale-attempt"),
    bad(lambda s: s.snooze("r1", OTHER_PID, 1, 10), WrongOwner, id="snooze-wrong-owner"),
    bad(lambda s: s.fail("r1", PID, 1, None), V, "error", id="fail-error-None"),
    bad(lambda s: s.fail("r1", PID, 1, 42), V, "error", id="fail-error-int"),
    bad(lambda s: s.fail("r1", PID, 1, "e", 0), V, "retry_after_ms", id="fail-retry-0"),
    bad(lambda s: s.fail("r1", PID, 1, "e", -5), V, "retry_after_ms", id="fail-retry-negative"),
    bad(lambda s: s.fail("r1", PID, 1, "e", "5"), V, "retry_after_ms", id="fail-retry-str"),
    bad(lambda s: s.fail("r1", PID, 0, "e"), V, "attempt", id="fail-attempt-0"),
    bad(lambda s: s.fail("ghost", PID, 1, "e"), NotFound, id="fail-unknown"),
    bad(lambda s: s.fail("f1", PID, 1, "e"), NotRunning, id="fail-failed"),
    bad(lambda s: s.fail("r1", OTHER_PID, 1, "e"), WrongOwner, id="fail-wrong-owner"),
    bad(lambda s: s.fail("r1", PID, 9, "e", 5), StaleAttempt, id="fail-stale-attempt"),
    # finish_many: a refusal must not finish r1
    bad(lambda s: s.finish_many([DONE, "terminate"]), V, "outcomes", id="finish-str-element"),
    bad(lambda s: s.finish_many([DONE, TOKEN]), V, "outcomes", id="finish-token-element"),
    bad(lambda s: s.finish_many([DONE] * (MAX_BATCH + 1)), V, "outcomes", id="finish-big"),
    bad(
        lambda s: s.finish_many([Finish(task_id="", event=DONE.event)]),
        V,
        "task_id",
        id="finish-task_id-empty",
    ),
    # revoke_lease
    bad(lambda s: s.revoke_lease("r1", -1), V, "record_ver", id="revoke-negative"),
    bad(lambda s: s.revoke_lease("r1", "1"), V, "record_ver", id="revoke-str"),
    bad(lambda s: s.revoke_lease("r1", True), V, "record_ver", id="revoke-bool"),
    bad(lambda s: s.revoke_lease("r1", 1.0), V, "record_ver", id="revoke-float"),
    bad(lambda s: s.revoke_lease("r1", None), V, "record_ver", id="revoke-None"),
    bad(lambda s: s.revoke_lease("r1", 2**64), V, "record_ver", id="revoke-over-64-bit"),
    bad(lambda s: s.revoke_lease("r1", -HUGE), V, "record_ver", id="revoke-huge-negative"),
    bad(lambda s: s.revoke_lease("", 1), V, "task_id", id="revoke-task_id-empty"),
    bad(lambda s: s.revoke_lease("ghost", 0), NotFound, id="revoke-unknown"),
    bad(lambda s: s.revoke_lease("r1", 0), StaleRecord, id="revoke-running-stale"),
    bad(lambda s: s.revoke_lease("r1", 2), StaleRecord, id="revoke-running-future"),
    bad(lambda s: s.revoke_lease("z1", 1), StaleRecord, id="revoke-snoozed-stale"),
    bad(lambda s: s.revoke_lease("s1", 0), InvalidTransition, id="revoke-starting"),
    bad(
        lambda s: s.revoke_lease("f1", s.get_task("f1").record_ver),
        InvalidTransition,
        id="revoke-failed",
    ),
    bad(
        lambda s: s.revoke_lease("t1", s.get_task("t1").record_ver),
        InvalidTransition,
        id="revoke-terminated",
    ),
    # requeue / cancel
    bad(lambda s: s.requeue(""), V, "task_id", id="requeue-empty"),
    bad(lambda s: s.requeue(None), V, "task_id", id="requeue-None"),
    bad(lambda s: s.requeue("ghost"), NotFound, id="requeue-unknown"),
    bad(lambda s: s.requeue("s1"), InvalidTransition, id="requeue-starting"),
    bad(lambda s: s.requeue("r1"), InvalidTransition, id="requeue-running"),
    bad(lambda s: s.requeue("z1"), InvalidTransition, id="requeue-snoozed"),
    bad(lambda s: s.requeue("t1"), InvalidTransition, id="requeue-terminated"),
    bad(lambda s: s.cancel("s1", None), V, "reason", id="cancel-reason-None"),
    bad(lambda s: s.cancel("s1", 5), V, "reason", id="cancel-reason-int"),
    bad(lambda s: s.cancel("", "x"), V, "task_id", id="cancel-task_id-empty"),
    bad(lambda s: s.cancel("ghost", "x"), NotFound, id="cancel-unknown"),
    bad(lambda s: s.cancel("r1", "x"), InvalidTransition, id="cancel-running"),
    bad(lambda s: s.cancel("f1", "x"), InvalidTransition, id="cancel-failed"),
    bad(lambda s: s.cancel("t1", "x"), InvalidTransition, id="cancel-terminated"),
]


@pytest.mark.parametrize(("call", "error", "field"), REFUSALS)
def test_rejected_call_raises_its_error_and_leaves_the_store_as_it_was(
    store: TaskStore, call: Call, error: type[SokkaError], field: str | None
) -> None:
    build_world(store)
    with refused(store, error, field):
        call(store)


def test_refusal_table_covers_every_error_a_store_can_raise() -> None:
    raised = {param.values[1] for param in REFUSALS}
    assert raised == {
        ValidationError,
        NotFound,
        AlreadyExists,
        StaleRecord,
        InvalidTransition,
        NotRunning,
        StaleAttempt,
        WrongOwner,
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"topic": ""}, "topic"),
        ({"topic": LONG}, "topic"),
        ({"topic": "a\tb"}, "topic"),
        ({"topic": None}, "topic"),
        ({"topic": 5}, "topic"),
        ({"sub_topic": ""}, "sub_topic"),
        ({"sub_topic": LONG}, "sub_topic"),
        ({"task_id": ""}, "task_id"),
        ({"task_id": LONG}, "task_id"),
        ({"task_id": 5}, "task_id"),
        ({"task_group_id": ""}, "task_group_id"),
        ({"task_group_id": LONG}, "task_group_id"),
        ({"description": "d" * (MAX_DESCRIPTION_LENGTH + 1)}, "description"),
        ({"description": None}, "description"),
        ({"data": {1, 2}}, "data"),
        ({"data": object()}, "data"),
        ({"data": b"bytes"}, "data"),
        ({"data": float("nan")}, "data"),
        ({"data": {"x": [float("inf")]}}, "data"),
        ({"data": {1: "int key"}}, "data"),
        ({"data": "x" * (MAX_DATA_BYTES - 1)}, "data"),
        ({"data": "é" * (MAX_DATA_BYTES // 2)}, "data"),
        ({"data": nested(MAX_DATA_DEPTH + 2)}, "data"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"lease_time_ms": 0}, "lease_time_ms"),
        ({"lease_time_ms": -30_000}, "lease_time_ms"),
        ({"lease_time_ms": 1.5}, "lease_time_ms"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"timeout_ms": -1}, "timeout_ms"),
        ({"max_attempts": MAX_ATTEMPTS + 1}, "max_attempts"),
        ({"lease_time_ms": 2**70}, "lease_time_ms"),
        ({"lease_time_ms": -HUGE}, "lease_time_ms"),
        ({"data": {"n": HUGE}}, "data"),
    ],
    ids=short_id,
)
def test_bad_task_spec_is_refused_naming_the_field(
    store: TaskStore, fields: dict[str, Any], field: str
) -> None:
    build_world(store)
    with refused(store, ValidationError, field):
        store.create_task(TaskSpec(**{"topic": TOPIC, **fields}))
    with refused(store, ValidationError, field):
        store.create_tasks([TaskSpec(**{"topic": TOPIC, **fields})])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "RUNNING"}, "status"),
        ({"status": 3}, "status"),
        ({"topic": ""}, "topic"),
        ({"topic": LONG}, "topic"),
        ({"sub_topic": ""}, "sub_topic"),
        ({"task_group_id": ""}, "task_group_id"),
        ({"task_group_id": 9}, "task_group_id"),
        ({"created_from": "5"}, "created_from"),
        ({"created_from": 1.5}, "created_from"),
        ({"created_before": True}, "created_before"),
        ({"created_from": 2**64}, "created_from"),
        ({"created_before": -(2**64)}, "created_before"),
    ],
    ids=short_id,
)
def test_bad_task_filter_is_refused_naming_the_field(
    store: TaskStore, fields: dict[str, Any], field: str
) -> None:
    build_world(store)
    with refused(store, ValidationError, field):
        store.list_tasks(TaskFilter(**fields))


# -- bugs the first run of this suite found, kept as regressions ---------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda s: s.create_tasks(None), "specs", id="create_tasks-None"),
        pytest.param(lambda s: s.create_tasks(spec("x")), "specs", id="create_tasks-one-spec"),
        pytest.param(lambda s: s.extend_leases(PID, None), "leases", id="extend-None"),
        pytest.param(lambda s: s.extend_leases(PID, TOKEN), "leases", id="extend-one-token"),
        pytest.param(lambda s: s.finish_many(None), "outcomes", id="finish-None"),
        pytest.param(lambda s: s.finish_many(DONE), "outcomes", id="finish-one-outcome"),
    ],
)
def test_a_batch_call_given_a_non_sequence_is_refused_naming_the_field(
    store: TaskStore, call: Call, field: str
) -> None:
    build_world(store)
    with refused(store, ValidationError, field):
        call(store)


@pytest.mark.parametrize(
    ("task_id", "event"),
    [
        pytest.param("r1", "terminate", id="str"),
        pytest.param("r1", Revoke(record_ver=1), id="revoke"),
        pytest.param("s1", Reserve(pid=OTHER_PID), id="reserve"),
        pytest.param("s1", Cancel(reason="x"), id="cancel"),
        pytest.param("f1", Requeue(), id="requeue"),
    ],
)
def test_finish_many_refuses_an_event_that_is_not_an_owner_outcome(
    store: TaskStore, task_id: str, event: Any
) -> None:
    # Accepted answers: the whole call refused, or that element failed; never applied.
    build_world(store)
    before = snapshot(store)
    try:
        [result] = store.finish_many([Finish(task_id=task_id, event=event)])
    except ValidationError:
        pass
    else:
        assert isinstance(failure(result), ValidationError)
    assert snapshot(store) == before


@pytest.mark.parametrize("filter", [{}, "", 0, []], ids=short_id)
def test_list_tasks_refuses_a_falsy_filter_that_is_not_a_task_filter(
    store: TaskStore, filter: Any
) -> None:
    build_world(store)
    with refused(store, ValidationError, "filter"):
        store.list_tasks(filter)


# -- concurrency ----------------------------------------------------------------


def test_concurrent_reservers_reserve_each_task_exactly_once(store: TaskStore) -> None:
    expected = [f"t{i:03}" for i in range(500)]
    results = store.create_tasks([spec(task_id) for task_id in expected])
    assert all(isinstance(r, Success) for r in results)
    threads = 8
    barrier = threading.Barrier(threads, timeout=10)

    def reserve_all(n: int) -> list[Task]:
        pid = f"w{n}"
        got: list[Task] = []
        barrier.wait()
        while batch := store.reserve_tasks(TOPIC, pid, limit=1 + n % 4):
            got.extend(batch)
        return got

    with ThreadPoolExecutor(max_workers=threads) as pool:
        per_thread = list(pool.map(reserve_all, range(threads)))

    reserved = [t.task_id for got in per_thread for t in got]
    assert len(reserved) == len(expected)
    assert sorted(reserved) == expected
    owner = {t.task_id: f"w{n}" for n, got in enumerate(per_thread) for t in got}
    for got in per_thread:
        assert all(t.attempt == 1 for t in got)
    stored = listing(store)
    assert all(t.status is Status.RUNNING for t in stored)
    assert {t.task_id: t.pid for t in stored} == owner
    assert all(t.record_ver == 1 for t in stored)


def test_concurrent_revokes_of_one_observation_succeed_exactly_once(store: TaskStore) -> None:
    task = running(store, "t1")
    threads = 8
    barrier = threading.Barrier(threads, timeout=10)

    def revoke(_: int) -> Result[Task, SokkaError]:
        barrier.wait()
        return execute(
            store,
            RevokeLease(
                task_id="t1", record_ver=task.record_ver, status=Status.RUNNING, overdue_ms=1
            ),
        )

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(revoke, range(threads)))

    assert sum(isinstance(o, Success) for o in outcomes) == 1
    assert all(isinstance(failure(o), StaleRecord) for o in outcomes if isinstance(o, Failure))
    after = store.get_task("t1")
    assert after.record_ver == task.record_ver + 1
    assert after.failures == 1


# -- release (a graceful shutdown gives leases back) ------------------------------


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
