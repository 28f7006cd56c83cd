"""The contract: reading."""

from __future__ import annotations

import pytest

from sokka.adapters.store import (
    MAX_PAGE_SIZE,
    TaskStore,
)
from sokka.core.errors import (
    NotFound,
)
from sokka.core.task import (
    Status,
)
from tests.adapters.contract.helpers import (
    OTHER_TOPIC,
    PID,
    create,
    ids,
    start,
)


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


def test_tasks_in_group_answers_at_most_limit_tasks_the_first_created(store: TaskStore) -> None:
    for name in ("g3", "g1", "g2"):
        create(store, name, task_group_id="g")
    assert ids(store.tasks_in_group("g", limit=2)) == ["g3", "g1"]
    assert ids(store.tasks_in_group("g", 1)) == ["g3"]
    assert ids(store.tasks_in_group("g", MAX_PAGE_SIZE)) == ["g3", "g1", "g2"]


def test_tasks_in_group_shows_the_current_state(store: TaskStore) -> None:
    create(store, "a", task_group_id="g")
    create(store, "b", task_group_id="g")
    reserved = start(store, "a")
    assert store.tasks_in_group("g") == [reserved, store.get_task("b")]
    assert [t.status for t in store.tasks_in_group("g")] == [Status.RUNNING, Status.STARTING]
