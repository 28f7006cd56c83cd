"""The contract: counting tasks per topic and status (``count_tasks``)."""

from __future__ import annotations

from typing import Any

import pytest

from sokka.adapters.store import DEFAULT_FAILED_WITHIN_MS, Counts, TaskStore, TopicCounts
from sokka.core.errors import ValidationError
from sokka.core.task import MAX_INT, Status
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS
from tests.adapters.contract.helpers import (
    LONG,
    OTHER_TOPIC,
    PID,
    TOPIC,
    create,
    refused,
    running,
    start,
)


def _world(store: TaskStore, clock: ManualClock) -> None:
    """emails: 2 starting, 1 running, 1 snoozed, 2 failed (one long ago), 1 terminated;
    reports: 1 starting. The clock ends at START_MS + 2 h + 30 s."""
    create(store, "old-failure", max_attempts=1)
    start(store, "old-failure")
    store.fail("old-failure", PID, 1, "boom")  # failed at START_MS
    clock.advance(2 * 3_600_000)
    running(store, "fresh-failure", max_attempts=1)
    store.fail("fresh-failure", PID, 1, "boom")  # failed at START_MS + 2 h
    running(store, "done")
    store.terminate("done", PID, 1)
    running(store, "sleeping")
    store.snooze("sleeping", PID, 1, 60_000)
    running(store, "busy")
    clock.advance(10_000)
    create(store, "waiting-1")  # ready since START_MS + 2 h + 10 s
    clock.advance(10_000)
    create(store, "waiting-2")
    create(store, "report", topic=OTHER_TOPIC)
    clock.advance(10_000)


def test_counts_every_status_per_topic_in_topic_order(
    store: TaskStore, clock: ManualClock
) -> None:
    _world(store, clock)
    counts = store.count_tasks()
    assert isinstance(counts, Counts)
    assert counts.now == START_MS + 2 * 3_600_000 + 30_000
    assert counts.failed_within_ms == DEFAULT_FAILED_WITHIN_MS
    ready_since = START_MS + 2 * 3_600_000 + 10_000
    assert counts.topics == (
        TopicCounts(
            topic=TOPIC,
            starting=2,
            running=1,
            snoozed=1,
            failed=2,
            terminated=1,
            oldest_ready_at=ready_since,
            failed_recently=1,
        ),
        TopicCounts(
            topic=OTHER_TOPIC,
            starting=1,
            oldest_ready_at=START_MS + 2 * 3_600_000 + 20_000,
        ),
    )
    emails = counts.topics[0]
    assert emails.leased == 2
    assert emails.total == 7
    assert counts.oldest_ready_age_ms(emails) == 20_000


def test_counts_one_topic_or_one_status(store: TaskStore, clock: ManualClock) -> None:
    _world(store, clock)
    (reports,) = store.count_tasks(topic=OTHER_TOPIC).topics
    assert (reports.topic, reports.starting, reports.total) == (OTHER_TOPIC, 1, 1)
    failed = store.count_tasks(status=Status.FAILED)
    assert failed.topics == (TopicCounts(topic=TOPIC, failed=2, failed_recently=1),)
    # A status given by name counts the same.
    assert store.count_tasks(TOPIC, "failed").topics == failed.topics  # type: ignore[arg-type]
    assert store.count_tasks(topic="nobody").topics == ()


def test_the_failure_window_is_on_the_store_clock(store: TaskStore, clock: ManualClock) -> None:
    _world(store, clock)
    # Both failures are within 3 h of the store's now; neither within 10 s.
    wide = store.count_tasks(TOPIC, failed_within_ms=3 * 3_600_000)
    assert wide.topics[0].failed_recently == 2
    narrow = store.count_tasks(TOPIC, failed_within_ms=10_000)
    assert narrow.topics[0].failed_recently == 0
    assert narrow.failed_within_ms == 10_000


def test_a_topic_with_nothing_ready_has_no_oldest_ready_age(
    store: TaskStore, clock: ManualClock
) -> None:
    running(store, "busy")
    counts = store.count_tasks()
    (emails,) = counts.topics
    assert emails.oldest_ready_at is None
    assert counts.oldest_ready_age_ms(emails) is None
    assert store.count_tasks(status=Status.STARTING).topics == ()


def test_a_requeued_task_counts_as_ready_since_its_requeue(
    store: TaskStore, clock: ManualClock
) -> None:
    running(store, "t1", max_attempts=1)
    store.fail("t1", PID, 1, "boom")
    clock.advance(5_000)
    store.requeue("t1")
    (emails,) = store.count_tasks().topics
    assert (emails.starting, emails.failed) == (1, 0)
    assert emails.oldest_ready_at == START_MS + 5_000


def test_an_empty_store_counts_nothing(store: TaskStore, clock: ManualClock) -> None:
    counts = store.count_tasks()
    assert counts.topics == ()
    assert counts.now == START_MS


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": 3}, "status"),
        ({"topic": ""}, "topic"),
        ({"topic": LONG}, "topic"),
        ({"topic": 7}, "topic"),
        ({"failed_within_ms": 0}, "failed_within_ms"),
        ({"failed_within_ms": -1}, "failed_within_ms"),
        ({"failed_within_ms": MAX_INT + 1}, "failed_within_ms"),
        ({"failed_within_ms": True}, "failed_within_ms"),
        ({"failed_within_ms": 1.5}, "failed_within_ms"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_count_arguments_name_the_field(
    store: TaskStore, arguments: dict[str, Any], field: str
) -> None:
    create(store, "t1")
    with refused(store, ValidationError, field):
        store.count_tasks(**arguments)
