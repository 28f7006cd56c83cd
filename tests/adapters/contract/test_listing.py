"""The contract: listing and paging."""

from __future__ import annotations

from typing import Any, cast

import pytest

from sokka.adapters.store import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Page,
    TaskFilter,
    TaskStore,
)
from sokka.core.errors import (
    ValidationError,
)
from sokka.core.task import (
    Status,
)
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS
from tests.adapters.contract.helpers import (
    OTHER_TOPIC,
    PID,
    TOPIC,
    b64json,
    create,
    every_page,
    filter_id,
    ids,
    listing,
    refused,
    running,
    short_id,
    spec,
    start,
)


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
