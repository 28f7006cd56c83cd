"""The contract: a task's trace context (the carrier its attempts are traced under).

Set at creation, kept through every transition, never read by a lease
decision. What a store keeps is the canonical text (keys sorted), so a context
reads back the same from every store.
"""

from __future__ import annotations

from sokka.adapters.store import TaskStore
from sokka.core.task import MAX_TRACE_CONTEXT_BYTES, Status, TaskSpec
from tests.adapters.contract.helpers import PID, listing, success

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CONTEXT = {"tracestate": "vendor=opaque,other=ü", "traceparent": TRACEPARENT}


def test_a_trace_context_round_trips_through_every_read(store: TaskStore) -> None:
    created = store.create_task(TaskSpec(topic="q", task_id="t1", trace_context=CONTEXT))
    assert created.trace_context == CONTEXT
    # Canonical: compact JSON, keys sorted, non-ASCII kept as it is.
    expected = (
        '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",'
        '"tracestate":"vendor=opaque,other=ü"}'
    )
    assert created.trace_context_json == expected
    assert store.get_task("t1").trace_context_json == expected
    assert [t.trace_context for t in listing(store)] == [CONTEXT]
    assert [t.trace_context for t in store.tasks_in_group("t1")] == [CONTEXT]
    (reserved,) = store.reserve_tasks("q", PID)
    assert reserved.trace_context == CONTEXT
    assert [t.trace_context for t in listing(store)] == [CONTEXT]


def test_the_trace_context_is_kept_through_retries_and_the_end(store: TaskStore) -> None:
    store.create_task(TaskSpec(topic="q", task_id="t1", max_attempts=3, trace_context=CONTEXT))
    store.reserve_tasks("q", PID)
    snoozed = store.fail("t1", PID, 1, "boom", retry_after_ms=1)
    assert snoozed.trace_context == CONTEXT
    woken = store.revoke_lease("t1", snoozed.record_ver)
    assert woken.trace_context == CONTEXT
    (again,) = store.reserve_tasks("q", PID)
    assert (again.attempt, again.trace_context) == (2, CONTEXT)
    done = store.terminate("t1", PID, 2, {"ok": True})
    assert (done.status, done.trace_context) == (Status.TERMINATED, CONTEXT)
    assert store.get_task("t1").trace_context == CONTEXT


def test_a_task_without_a_trace_context_has_none(store: TaskStore) -> None:
    for spec in (
        TaskSpec(topic="q", task_id="plain"),
        TaskSpec(topic="q", task_id="empty", trace_context={}),  # an empty carrier: none
    ):
        created = store.create_task(spec)
        assert (created.trace_context, created.trace_context_json) == (None, None)
        assert store.get_task(spec.task_id or "").trace_context is None


def test_create_tasks_keeps_each_spec_s_own_context(store: TaskStore) -> None:
    other = {"traceparent": TRACEPARENT.replace("01", "00")}
    results = store.create_tasks(
        [
            TaskSpec(topic="q", task_id="a", trace_context=CONTEXT),
            TaskSpec(topic="q", task_id="b"),
            TaskSpec(topic="q", task_id="c", trace_context=other),
        ]
    )
    assert [success(r).trace_context for r in results] == [CONTEXT, None, other]
    assert {t.task_id: t.trace_context for t in listing(store)} == {
        "a": CONTEXT, "b": None, "c": other,
    }  # fmt: skip


def test_a_trace_context_at_the_bound_is_kept(store: TaskStore) -> None:
    # {"k":"..."}: 8 bytes around the value.
    biggest = {"k": "x" * (MAX_TRACE_CONTEXT_BYTES - 8)}
    created = store.create_task(TaskSpec(topic="q", task_id="t1", trace_context=biggest))
    assert len((created.trace_context_json or "").encode()) == MAX_TRACE_CONTEXT_BYTES
    assert store.get_task("t1").trace_context == biggest
