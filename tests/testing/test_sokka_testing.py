"""sokka.testing as a user's test suite would use it: the pytest fixtures (from
the installed plugin, not imported here), the stepped worker and the strategies."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sokka.core.errors import Unavailable
from sokka.core.outcomes import ok
from sokka.core.task import Status, TaskSpec
from sokka.testing.strategies import LeaseSchedule, lease_schedules, task_specs, tasks


def test_the_fixtures_come_from_the_plugin(sokka_store, sokka_clock, sokka_worker) -> None:
    sokka_store.create_task(TaskSpec(topic="emails", task_id="t1"))
    worker = sokka_worker("emails", lambda task, ctx: ok())
    assert worker.run_until_idle() == 1
    assert sokka_store.get_task("t1").status is Status.TERMINATED
    assert worker.stats.succeeded == 1


def test_a_handler_that_outlives_its_lease_is_cancelled_and_its_task_rescued(
    sokka_store, sokka_clock, sokka_worker, sokka_supervisor
) -> None:
    sokka_store.create_task(TaskSpec(topic="emails", task_id="t1"))
    seen: list[bool] = []

    def slow(task: Any, ctx: Any) -> Any:
        sokka_supervisor.run_once()  # the supervisor sees the fresh lease
        sokka_clock.advance(31_000)  # a whole lease with no keepalive
        seen.append(ctx.cancelled)
        return ok()

    worker = sokka_worker("emails", slow)
    worker.step()
    assert seen == [True]  # past its fence: cancelled when read, no watchdog needed
    assert worker.stats.succeeded == 0
    assert worker.stats.lost == 1
    assert sokka_store.get_task("t1").status is Status.RUNNING  # it reported nothing
    report = sokka_supervisor.run_once()
    assert report.revoked == ("t1",)


class FlakyKeepalives:
    """A store whose keepalives follow a schedule: answered, late, lost or refused."""

    def __init__(self, inner: Any, schedule: LeaseSchedule) -> None:
        self.inner = inner
        self.fates = list(schedule.keepalives)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def extend_leases(self, pid: str, leases: Any) -> Any:
        fate = self.fates.pop(0)[0] if self.fates else "answered"
        if fate == "lost":
            raise Unavailable("the keepalive was lost")
        if fate == "refused":
            for lease in leases:
                task = self.inner.get_task(lease.task_id)
                if task.status is Status.RUNNING:
                    self.inner.revoke_lease(task.task_id, task.record_ver)
        return self.inner.extend_leases(pid, leases)


@settings(max_examples=50)
@given(lease_schedules())
def test_a_handler_checking_ctx_cancelled_never_writes_after_losing_its_lease(
    schedule: LeaseSchedule,
) -> None:
    """The property docs/testing.md shows: a handler that checks ``ctx.cancelled``
    before each side effect makes none once its lease is lost, whatever the
    keepalives do; and its outcome is recorded only if it kept the lease."""
    from sokka.adapters.memory import MemoryStore
    from sokka.shell.clock import ManualClock
    from sokka.testing import SteppedWorker

    clock = ManualClock()
    inner = MemoryStore(clock=clock)
    inner.create_task(TaskSpec(topic="q", task_id="t1"))
    store = FlakyKeepalives(inner, schedule)
    writes: list[tuple[Status, int, int]] = []
    worker: SteppedWorker

    def handler(task: Any, ctx: Any) -> Any:
        step = schedule.lease_time_ms // 10
        for _ in range(0, schedule.handler_ms, step):
            clock.advance(step)
            worker.keep_alive()
            if ctx.cancelled:
                return ok()  # discarded by the worker: it lost the lease
            current = inner.get_task(task.task_id)  # the side effect
            writes.append((current.status, current.attempt, task.attempt))
        return ok()

    worker = SteppedWorker(store, "q", handler, clock=clock, lease_time_ms=schedule.lease_time_ms)
    worker.step()
    # every write happened while this attempt held the lease
    for status, attempt, mine in writes:
        assert (status, attempt) == (Status.RUNNING, mine)
    final = inner.get_task("t1")
    if final.status is Status.TERMINATED:
        assert worker.stats.succeeded == 1
    else:
        assert worker.stats.succeeded == 0
        assert worker.stats.lost == 1


@given(task_specs(topic="q"), tasks())
def test_the_strategies_make_values_the_store_accepts(spec, task) -> None:
    from sokka.adapters.memory import MemoryStore

    created = MemoryStore().create_task(spec)
    assert created.topic == "q"
    assert task.status in Status
    if task.status is Status.RUNNING:
        assert task.pid is not None
        assert task.attempt >= 1


@given(st.data())
def test_lease_schedules_stay_within_their_bounds(data) -> None:
    schedule = data.draw(lease_schedules(lease_time_ms=500))
    assert 1 <= schedule.handler_ms <= 2_500
    assert all(fate in ("answered", "late", "lost", "refused") for fate, _ in schedule.keepalives)
