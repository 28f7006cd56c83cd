"""The contract: leased listing."""

from __future__ import annotations

import math

import pytest

from sokka.adapters.store import (
    TaskStore,
)
from tests.adapters.contract.helpers import (
    OTHER_TOPIC,
    PID,
    TOPIC,
    create,
    every_page,
    ids,
    leased,
    listing,
    running,
)


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
