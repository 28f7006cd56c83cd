"""The contract: bad input: every refusal names the field and leaves the store as it was."""

from __future__ import annotations

from typing import Any

import pytest

from sokka.adapters.store import (
    MAX_BATCH,
    MAX_PAGE_SIZE,
    TaskFilter,
    TaskStore,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    AlreadyExists,
    InvalidTransition,
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
    MAX_INT,
    TaskSpec,
)
from tests.adapters.contract.helpers import (
    DONE,
    HUGE,
    LONG,
    OTHER_PID,
    PID,
    TOKEN,
    TOPIC,
    Call,
    build_world,
    nested,
    refused,
    short_id,
    spec,
)


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
    bad(lambda s: s.tasks_in_group(None), V, "task_group_id", id="tasks_in_group-None"),
    bad(lambda s: s.tasks_in_group("r1", 0), V, "limit", id="tasks_in_group-limit-0"),
    bad(lambda s: s.tasks_in_group("r1", 1001), V, "limit", id="tasks_in_group-limit-big"),
    bad(lambda s: s.tasks_in_group("r1", "5"), V, "limit", id="tasks_in_group-limit-str"),
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
    bad(lambda s: s.cancel("f1", "x"), InvalidTransition, id="cancel-failed"),
    bad(lambda s: s.cancel("t1", "x"), InvalidTransition, id="cancel-terminated"),
    # pause / resume a topic
    bad(lambda s: s.pause_topic(""), V, "topic", id="pause-topic-empty"),
    bad(lambda s: s.pause_topic(None), V, "topic", id="pause-topic-None"),
    bad(lambda s: s.resume_topic(5), V, "topic", id="resume-topic-int"),
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
