"""The contract: record_ver and timestamps."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sokka.adapters.store import (
    TaskStore,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    InvalidTransition,
    NotRunning,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    WrongOwner,
)
from sokka.core.task import (
    Task,
)
from sokka.core.transitions import (
    Terminate,
)
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import START_MS
from tests.adapters.contract.helpers import (
    OTHER_PID,
    PID,
    create,
    failure_of,
    start,
    success,
)


def test_record_ver_bumps_by_exactly_one_on_every_write_and_never_on_a_refusal(
    store: TaskStore,
) -> None:
    create(store, "a", max_attempts=5)
    create(store, "bystander")
    bystander = store.get_task("bystander")
    version = 0

    def write(call: Callable[[], Task]) -> None:
        nonlocal version
        assert call().record_ver == version + 1
        version += 1
        assert store.get_task("a").record_ver == version

    def refuse(call: Callable[[], object], error: type[SokkaError]) -> None:
        with pytest.raises(error):
            call()
        assert store.get_task("a").record_ver == version

    assert store.get_task("a").record_ver == 0
    write(lambda: start(store, "a"))
    refuse(lambda: store.revoke_lease("a", version - 1), StaleRecord)
    write(lambda: success(store.extend_leases(PID, [LeaseToken("a", 1)])[0]))
    refuse(lambda: store.terminate("a", OTHER_PID, 1), WrongOwner)
    refuse(lambda: store.terminate("a", PID, 2), StaleAttempt)
    refuse(lambda: store.requeue("a"), InvalidTransition)
    write(lambda: store.snooze("a", PID, 1, 100))
    refuse(lambda: failure_of(store.extend_leases(PID, [LeaseToken("a", 1)])), NotRunning)
    write(lambda: store.revoke_lease("a", version))  # wake up
    write(lambda: start(store, "a"))
    write(lambda: store.fail("a", PID, 2, "boom", retry_after_ms=50))
    write(lambda: store.revoke_lease("a", version))  # wake up
    write(lambda: start(store, "a"))
    write(lambda: store.revoke_lease("a", version))  # lease expired
    refuse(lambda: store.terminate("a", PID, 3), NotRunning)
    write(lambda: store.cancel("a", "stop"))
    refuse(lambda: store.cancel("a", "again"), InvalidTransition)
    write(lambda: store.requeue("a"))
    write(lambda: start(store, "a"))
    write(
        lambda: success(
            store.finish_many([Finish(task_id="a", event=Terminate(pid=PID, attempt=4))])[0]
        )
    )
    refuse(lambda: store.requeue("a"), InvalidTransition)
    assert version == 13
    assert store.get_task("bystander") == bystander


def test_writes_stamp_updated_at_with_the_store_clock_and_keep_created_at(
    store: TaskStore, clock: ManualClock
) -> None:
    created = create(store, "t1")
    stamps = []
    steps: list[Callable[[], Task]] = [
        lambda: start(store, "t1"),
        lambda: success(store.extend_leases(PID, [LeaseToken("t1", 1)])[0]),
        lambda: store.terminate("t1", PID, 1),
    ]
    for step in steps:
        clock.advance(1_000)
        task = step()
        assert task.created_at == created.created_at == START_MS
        stamps.append(task.updated_at)
    assert stamps == [START_MS + 1_000, START_MS + 2_000, START_MS + 3_000]
