"""The contract: delayed tasks (``TaskSpec(delay_ms=...)``).

A delayed task is created snoozed, its ``snooze_time_ms`` the delay: no worker
reserves it until a supervisor wakes it, and the supervisor counts the delay
on its own clock from the moment it first sees the task, as it does for any
snooze. The tests give the supervisor a ``ManualClock`` of its own, far from
the store's, to show that no timestamp the store wrote takes part.
"""

from __future__ import annotations

from typing import Any

import pytest

from sokka.adapters.store import TaskStore
from sokka.core.errors import ValidationError
from sokka.core.supervision import LeasePolicy
from sokka.core.task import MAX_INT, Status, TaskSpec
from sokka.shell.clock import ManualClock
from sokka.shell.supervisor import Supervisor
from tests.adapters.contract.helpers import (
    OTHER_TOPIC,
    PID,
    TOPIC,
    build_world,
    create,
    refused,
    spec,
    success,
)

DELAY_MS = 60_000
#: The supervisor's default snooze and lease, deliberately unlike the delay:
#: the wake-up must follow the task's delay, not the policy.
POLICY = LeasePolicy(lease_time_ms=5_000, default_snooze_ms=1_000)


def supervisor_of(store: TaskStore) -> tuple[Supervisor, ManualClock]:
    # Its clock starts at 0, the store's at 1,000,000: they share nothing.
    clock = ManualClock(start_ms=0)
    return Supervisor(store, TOPIC, POLICY, clock, sleep=lambda _s: None), clock


def reserved_ids(store: TaskStore, topic: str = TOPIC) -> list[str]:
    return [t.task_id for t in store.reserve_tasks(topic, PID, limit=10)]


def test_a_delayed_task_is_created_snoozed_for_its_delay(store: TaskStore) -> None:
    task = create(store, "d1", delay_ms=DELAY_MS)
    assert (task.status, task.snooze_time_ms, task.pid, task.attempt) == (
        Status.SNOOZED, DELAY_MS, None, 0,
    )  # fmt: skip
    stored = store.get_task("d1")
    assert (stored.status, stored.snooze_time_ms) == (Status.SNOOZED, DELAY_MS)


def test_a_delayed_task_is_not_reserved_however_far_the_store_clock_moves(
    store: TaskStore, clock: ManualClock
) -> None:
    create(store, "d1", delay_ms=DELAY_MS)
    assert reserved_ids(store) == []
    clock.advance(10 * DELAY_MS)  # the store never wakes it: only a supervisor does
    assert reserved_ids(store) == []
    assert store.get_task("d1").status is Status.SNOOZED


def test_a_supervisor_wakes_a_delayed_task_after_the_delay_on_its_own_clock(
    store: TaskStore, clock: ManualClock
) -> None:
    create(store, "d1", delay_ms=DELAY_MS)
    supervisor, own_clock = supervisor_of(store)
    first = supervisor.run_once()
    assert (first.listed, first.woken) == (1, ())
    # The store's clock running far ahead changes nothing.
    clock.advance(100 * DELAY_MS)
    own_clock.advance(DELAY_MS)
    assert supervisor.run_once().woken == ()
    assert reserved_ids(store) == []
    own_clock.advance(1)
    assert supervisor.run_once().woken == ("d1",)
    (task,) = store.reserve_tasks(TOPIC, PID)
    assert (task.task_id, task.status, task.attempt, task.snooze_time_ms) == (
        "d1", Status.RUNNING, 1, None,
    )  # fmt: skip


@pytest.mark.parametrize("delay_ms", [None, 0])
def test_no_delay_makes_an_ordinary_task(store: TaskStore, delay_ms: int | None) -> None:
    task = create(store, "t1", delay_ms=delay_ms)
    assert (task.status, task.snooze_time_ms) == (Status.STARTING, None)
    (batch,) = store.create_tasks([spec("t2", delay_ms=delay_ms)])
    assert success(batch).status is Status.STARTING
    assert reserved_ids(store) == ["t1", "t2"]


def test_a_batch_may_mix_delayed_and_ordinary_tasks(store: TaskStore) -> None:
    # More than one spec: PostgreSQL's batch insert (arrays through unnest) is used.
    results = store.create_tasks(
        [
            spec("d1", delay_ms=DELAY_MS),
            spec("t1"),
            spec("d2", delay_ms=1),
            spec("t2", topic=OTHER_TOPIC, delay_ms=0),
        ]
    )
    statuses = {t.task_id: (t.status, t.snooze_time_ms) for t in map(success, results)}
    assert statuses == {
        "d1": (Status.SNOOZED, DELAY_MS),
        "t1": (Status.STARTING, None),
        "d2": (Status.SNOOZED, 1),
        "t2": (Status.STARTING, None),
    }
    for task_id, expected in statuses.items():
        stored = store.get_task(task_id)
        assert (stored.status, stored.snooze_time_ms) == expected
    assert reserved_ids(store) == ["t1"]
    assert reserved_ids(store, OTHER_TOPIC) == ["t2"]


@pytest.mark.parametrize(
    "delay_ms",
    [-1, -DELAY_MS, True, 1.5, "10", MAX_INT + 1, 10**5000],
    ids=["minus-1", "negative", "bool", "float", "str", "over-64-bits", "huge"],
)
def test_a_bad_delay_is_refused_naming_delay_ms(store: TaskStore, delay_ms: Any) -> None:
    build_world(store)
    with refused(store, ValidationError, "delay_ms"):
        store.create_task(TaskSpec(topic=TOPIC, delay_ms=delay_ms))
    with refused(store, ValidationError, "delay_ms"):
        store.create_tasks([TaskSpec(topic=TOPIC, delay_ms=delay_ms)])
