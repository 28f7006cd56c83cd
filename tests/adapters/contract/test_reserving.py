"""The contract: reserving."""

from __future__ import annotations

from sokka.adapters.store import (
    MAX_BATCH,
    TaskFilter,
    TaskStore,
)
from sokka.core.task import (
    Status,
)
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS
from tests.adapters.contract.helpers import (
    OTHER_PID,
    OTHER_TOPIC,
    PID,
    TOPIC,
    create,
    ids,
    listing,
    running,
    start,
)


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
