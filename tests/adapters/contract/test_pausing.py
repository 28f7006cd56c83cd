"""The contract: pausing and resuming a topic (an operator's switch).

``pause_topic(topic)``: ``reserve_tasks`` on it returns nothing until
``resume_topic(topic)``; leases already held run on (keepalives and outcomes
work), other topics are not touched, and both calls are idempotent (their
answer says whether they changed anything). ``paused_topics()`` lists them.
"""

from __future__ import annotations

import pytest

from sokka.adapters.store import TaskStore
from sokka.core.commands import LeaseToken
from sokka.core.errors import ValidationError
from sokka.core.task import Status
from tests.adapters.contract.helpers import (
    OTHER_TOPIC,
    PID,
    TOPIC,
    create,
    ids,
    running,
    success,
)


def test_a_paused_topic_reserves_nothing_until_it_is_resumed(store: TaskStore) -> None:
    create(store, "t1")
    create(store, "t2", topic=OTHER_TOPIC)
    assert store.paused_topics() == []
    assert store.pause_topic(TOPIC) is True
    assert store.paused_topics() == [TOPIC]
    assert store.reserve_tasks(TOPIC, PID, 10) == []
    assert store.get_task("t1").status is Status.STARTING  # untouched, waiting
    assert ids(store.reserve_tasks(OTHER_TOPIC, PID)) == ["t2"]  # other topics go on
    assert store.resume_topic(TOPIC) is True
    assert store.paused_topics() == []
    assert ids(store.reserve_tasks(TOPIC, PID)) == ["t1"]


def test_pausing_and_resuming_are_idempotent(store: TaskStore) -> None:
    assert store.resume_topic(TOPIC) is False  # was not paused: nothing changes
    assert store.pause_topic(TOPIC) is True
    assert store.pause_topic(TOPIC) is False
    assert store.pause_topic(OTHER_TOPIC) is True
    assert store.paused_topics() == sorted([TOPIC, OTHER_TOPIC])
    assert store.resume_topic(TOPIC) is True
    assert store.resume_topic(TOPIC) is False
    assert store.paused_topics() == [OTHER_TOPIC]


def test_leases_held_when_a_topic_is_paused_run_on(store: TaskStore) -> None:
    task = running(store, "t1")
    snoozing = running(store, "t2")
    store.pause_topic(TOPIC)
    (kept,) = store.extend_leases(PID, [LeaseToken("t1", task.attempt)])
    assert success(kept).status is Status.RUNNING
    assert store.terminate("t1", PID, task.attempt).status is Status.TERMINATED
    # a supervisor still wakes a snoozed task: it waits, starting, for the resume
    snoozed = store.snooze("t2", PID, snoozing.attempt, 100)
    assert store.revoke_lease("t2", snoozed.record_ver).status is Status.STARTING
    assert store.reserve_tasks(TOPIC, PID) == []
    store.resume_topic(TOPIC)
    assert ids(store.reserve_tasks(TOPIC, PID)) == ["t2"]


def test_a_topic_without_tasks_may_be_paused_before_any_arrive(store: TaskStore) -> None:
    store.pause_topic("later")
    create(store, "t1", topic="later")
    assert store.reserve_tasks("later", PID) == []
    store.resume_topic("later")
    assert ids(store.reserve_tasks("later", PID)) == ["t1"]


@pytest.mark.parametrize("call", ["pause_topic", "resume_topic"])
@pytest.mark.parametrize("topic", ["", "x" * 1000, 7, None])
def test_a_bad_topic_is_refused_naming_the_field(
    store: TaskStore, call: str, topic: object
) -> None:
    with pytest.raises(ValidationError) as raised:
        getattr(store, call)(topic)
    assert raised.value.field == "topic"
    assert store.paused_topics() == []
