"""The contract: retention (``purge``) deletes old finished tasks, and only those."""

from __future__ import annotations

from typing import Any

import pytest

from sokka.adapters.store import MAX_BATCH, Purged, TaskFilter, TaskStore
from sokka.core.errors import NotFound, ValidationError
from sokka.core.task import MAX_INT, Status
from sokka.shell.clock import ManualClock
from tests.adapters.contract.helpers import (
    LONG,
    OTHER_TOPIC,
    PID,
    TOPIC,
    create,
    ids,
    listing,
    refused,
    running,
    start,
)

FINAL = [Status.TERMINATED, Status.FAILED]
DAY_MS = 86_400_000


def _terminated(store: TaskStore, task_id: str, topic: str = TOPIC, **fields: Any) -> None:
    running(store, task_id, topic, **fields)
    store.terminate(task_id, PID, 1)


def _failed(store: TaskStore, task_id: str, topic: str = TOPIC) -> None:
    running(store, task_id, topic, max_attempts=1)
    store.fail(task_id, PID, 1, "boom")


def _every_kind(store: TaskStore) -> None:
    """One task of every status in TOPIC, all last changed at the same instant."""
    _terminated(store, "done")
    _failed(store, "broken")
    running(store, "busy")
    running(store, "sleeping")
    store.snooze("sleeping", PID, 1, 60_000)
    create(store, "waiting")


def test_purges_old_finished_tasks_and_leaves_every_other_status(
    store: TaskStore, clock: ManualClock
) -> None:
    _every_kind(store)
    clock.advance(DAY_MS)
    purged = store.purge(FINAL, older_than_ms=DAY_MS)
    assert purged == Purged(deleted=2, more=False)
    assert sorted(ids(listing(store))) == ["busy", "sleeping", "waiting"]
    for task_id in ("done", "broken"):
        with pytest.raises(NotFound):
            store.get_task(task_id)
    # A second call finds nothing more.
    assert store.purge(FINAL, older_than_ms=0) == Purged(deleted=0, more=False)


def test_a_leased_or_starting_task_is_never_purged_however_old(
    store: TaskStore, clock: ManualClock
) -> None:
    running(store, "busy")
    running(store, "sleeping")
    store.snooze("sleeping", PID, 1, 60_000)
    create(store, "waiting")
    clock.advance(365 * DAY_MS)
    assert store.purge(FINAL, older_than_ms=0).deleted == 0
    assert sorted(ids(listing(store))) == ["busy", "sleeping", "waiting"]


@pytest.mark.parametrize("status", ["running", "snoozed", "starting"])
def test_asking_for_a_leased_or_starting_status_is_refused(
    store: TaskStore, clock: ManualClock, status: str
) -> None:
    _every_kind(store)
    clock.advance(DAY_MS)
    with refused(store, ValidationError, "statuses"):
        store.purge([Status.TERMINATED, Status(status)], older_than_ms=0)


def test_only_the_statuses_asked_for_are_purged(store: TaskStore, clock: ManualClock) -> None:
    _every_kind(store)
    assert store.purge([Status.FAILED], older_than_ms=0) == Purged(deleted=1, more=False)
    assert "done" in ids(listing(store))
    # A status given by name purges the same.
    names: Any = ["terminated"]
    assert store.purge(names, older_than_ms=0).deleted == 1
    assert sorted(ids(listing(store))) == ["busy", "sleeping", "waiting"]


def test_the_age_is_since_the_last_change_on_the_store_clock(
    store: TaskStore, clock: ManualClock
) -> None:
    create(store, "old")
    clock.advance(5_000)
    start(store, "old")
    store.terminate("old", PID, 1)  # last changed at START_MS + 5 s
    clock.advance(10_000)
    _terminated(store, "young")  # last changed at START_MS + 15 s
    clock.advance(DAY_MS - 1)
    # "old" is a day and 9 999 ms old, "young" a day less 1 ms.
    assert store.purge(FINAL, older_than_ms=DAY_MS).deleted == 1
    assert ids(listing(store)) == ["young"]
    clock.advance(1)
    # Exactly older_than_ms old: purged (the boundary is inclusive).
    assert store.purge(FINAL, older_than_ms=DAY_MS).deleted == 1
    assert listing(store) == []


def test_a_purge_stops_at_its_limit_oldest_first(store: TaskStore, clock: ManualClock) -> None:
    for n in range(5):
        _terminated(store, f"t{n}")
    assert store.purge(FINAL, older_than_ms=0, limit=2) == Purged(deleted=2, more=True)
    assert ids(listing(store)) == ["t2", "t3", "t4"]
    assert store.purge(FINAL, older_than_ms=0, limit=2) == Purged(deleted=2, more=True)
    # Exactly the limit left: "more" says call again, and the next call finds none.
    assert store.purge(FINAL, older_than_ms=0, limit=1) == Purged(deleted=1, more=True)
    assert store.purge(FINAL, older_than_ms=0, limit=1) == Purged(deleted=0, more=False)


def test_the_topic_filter(store: TaskStore, clock: ManualClock) -> None:
    _terminated(store, "mail")
    _terminated(store, "report", topic=OTHER_TOPIC)
    _failed(store, "report-failed", topic=OTHER_TOPIC)
    assert store.purge(FINAL, older_than_ms=0, topic=OTHER_TOPIC).deleted == 2
    assert ids(listing(store)) == ["mail"]
    assert store.purge(FINAL, older_than_ms=0, topic="nobody").deleted == 0


def test_a_group_may_be_purged_in_part(store: TaskStore, clock: ManualClock) -> None:
    _terminated(store, "g1", task_group_id="g")
    running(store, "g2", task_group_id="g")
    _terminated(store, "g3", task_group_id="g")
    create(store, "g4", task_group_id="g")
    assert store.purge(FINAL, older_than_ms=0).deleted == 2
    assert ids(store.tasks_in_group("g")) == ["g2", "g4"]
    assert ids(listing(store, TaskFilter(task_group_id="g"))) == ["g2", "g4"]
    # The group goes on working: its tasks finish, and are purged in their turn.
    store.terminate("g2", PID, 1)
    assert store.purge(FINAL, older_than_ms=0).deleted == 1
    assert ids(store.tasks_in_group("g")) == ["g4"]


def test_the_store_works_on_after_a_purge(store: TaskStore, clock: ManualClock) -> None:
    """Listings page over the gap, reservation still goes oldest first, and a purged
    id may be used again (as a new task, last in creation order)."""
    _terminated(store, "a")
    create(store, "b")
    _terminated(store, "x", topic=OTHER_TOPIC)
    create(store, "c")
    assert store.purge(FINAL, older_than_ms=0).deleted == 2
    assert ids(listing(store, limit=1)) == ["b", "c"]
    create(store, "a")
    assert ids(listing(store, limit=1)) == ["b", "c", "a"]
    assert ids(store.reserve_tasks(TOPIC, PID, limit=3)) == ["b", "c", "a"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"statuses": []}, "statuses"),
        ({"statuses": "failed"}, "statuses"),
        ({"statuses": ["done"]}, "statuses"),
        ({"statuses": [3]}, "statuses"),
        ({"statuses": None}, "statuses"),
        ({"older_than_ms": -1}, "older_than_ms"),
        ({"older_than_ms": MAX_INT + 1}, "older_than_ms"),
        ({"older_than_ms": 1.5}, "older_than_ms"),
        ({"older_than_ms": True}, "older_than_ms"),
        ({"topic": ""}, "topic"),
        ({"topic": LONG}, "topic"),
        ({"limit": 0}, "limit"),
        ({"limit": MAX_BATCH + 1}, "limit"),
        ({"limit": "10"}, "limit"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_purge_arguments_name_the_field_and_delete_nothing(
    store: TaskStore, clock: ManualClock, arguments: dict[str, Any], field: str
) -> None:
    _every_kind(store)
    clock.advance(DAY_MS)
    given: dict[str, Any] = {"statuses": FINAL, "older_than_ms": 0, **arguments}
    with refused(store, ValidationError, field):
        store.purge(**given)
