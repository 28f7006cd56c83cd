"""What only the asyncio runtime has: coroutine handlers cancelled at their next
await, ``AsyncContext``, signals on the loop, a natively async store.

The scenarios both runtimes share are in ``test_worker.py`` and
``test_supervisor.py``; these run the asyncio ``Worker`` and ``Supervisor`` on
``asyncio.run`` in the test's own thread, against an ``AsyncMemoryStore``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.memory import MemoryStore
from sokka.asyncio import AsyncContext, Supervisor, Worker, ok
from sokka.core.backoff import Backoff, Jitter
from sokka.core.commands import LeaseToken
from sokka.core.errors import Unavailable, ValidationError
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.clock import ManualClock
from sokka.shell.worker import Cancelled

TOPIC = "jobs"


class FaultyStore(AsyncMemoryStore):
    """An ``AsyncMemoryStore`` whose reserves or keepalives fail on demand (a fake:
    the failures are the store's own retryable error)."""

    def __init__(self) -> None:
        super().__init__()
        self.reserves_fail = False
        self.keepalives_fail = False
        self.reserve_calls = 0

    async def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        self.reserve_calls += 1
        if self.reserves_fail:
            raise Unavailable("the database cannot be reached (simulated)")
        return await super().reserve_tasks(topic, pid, limit)

    async def extend_leases(self, pid: str, leases: Sequence[LeaseToken]) -> Any:
        if self.keepalives_fail:
            raise Unavailable("the network is down (simulated)")
        return await super().extend_leases(pid, leases)


def add(store: AsyncMemoryStore, n: int, **spec: Any) -> list[str]:
    ids = [f"t{i:03d}" for i in range(n)]
    for task_id in ids:
        store.sync.create_task(TaskSpec(topic=TOPIC, task_id=task_id, **spec))
    return ids


def status(store: AsyncMemoryStore, task_id: str = "t000") -> Status:
    return store.sync.get_task(task_id).status


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def run_with(worker: Worker, scenario: Callable[[], Awaitable[None]]) -> Any:
    """Run ``worker`` and ``scenario`` together; stop the worker when it is done."""

    async def main() -> Any:
        running = asyncio.create_task(worker.run())
        try:
            await scenario()
        finally:
            worker.stop()
            stats = await asyncio.wait_for(running, 10)
        return stats

    return asyncio.run(main())


def worker(store: AsyncMemoryStore, handler: Any, **options: Any) -> Worker:
    options.setdefault("lease_time_ms", 1_000)
    options.setdefault("retry_backoff", Backoff(base_ms=10, cap_ms=20, jitter=Jitter.NONE))
    return Worker(store, TOPIC, handler, **options)


# -- cancellation is asyncio cancellation ----------------------------------------


def test_a_timeout_cancels_a_coroutine_at_its_next_await_and_discards_what_it_returns() -> None:
    store = AsyncMemoryStore()
    add(store, 1, timeout_ms=100, max_attempts=1)
    seen: list[Any] = []

    async def stuck(task: Task, ctx: AsyncContext) -> Any:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.extend([ctx.cancelled, ctx.reason])
        return ok()  # too late: discarded (it swallowed the cancellation, too)

    w = worker(store, stuck)

    async def scenario() -> None:
        await until(lambda: status(store) is Status.FAILED)
        await until(lambda: bool(seen))

    stats = run_with(w, scenario)
    assert store.sync.get_task("t000").error == "timed out after 100 ms"
    assert seen == [True, "timed out after 100 ms"]
    assert (stats.timed_out, stats.succeeded, stats.failed) == (1, 0, 1)


def test_the_fence_cancels_a_coroutine_and_nothing_is_reported() -> None:
    store = FaultyStore()
    add(store, 1)
    cancelled: list[str | None] = []

    async def long(task: Task, ctx: AsyncContext) -> Any:
        store.keepalives_fail = True  # from now on no keepalive succeeds
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(ctx.reason)
            raise
        return ok()

    w = worker(store, long, lease_time_ms=300)

    async def scenario() -> None:
        await until(lambda: bool(cancelled))
        await until(lambda: w.stats().fenced == 1)

    stats = run_with(w, scenario)
    (reason,) = cancelled
    assert reason is not None
    assert "lease given up" in reason
    assert (stats.lost, stats.fenced, stats.succeeded) == (1, 1, 0)
    assert status(store) is Status.RUNNING  # it reported nothing; a supervisor will revoke


def test_a_refused_keepalive_cancels_a_coroutine_at_its_next_await() -> None:
    store = AsyncMemoryStore()
    add(store, 1)
    cancelled = []
    awaits_after = []

    async def long(task: Task, ctx: AsyncContext) -> Any:
        if task.attempt > 1:
            return ok()  # reserved again after the revoke: this attempt runs through
        # a supervisor takes the lease back while the handler runs
        store.sync.revoke_lease(task.task_id, store.sync.get_task(task.task_id).record_ver)
        try:
            await asyncio.sleep(10)
            awaits_after.append("slept")
        except asyncio.CancelledError:
            cancelled.append(ctx.cancelled)
            raise
        return ok()

    w = worker(store, long, lease_time_ms=300)

    async def scenario() -> None:
        await until(lambda: w.stats().fenced == 1 and w.stats().succeeded == 1)

    stats = run_with(w, scenario)
    assert (cancelled, awaits_after) == ([True], [])
    assert (stats.lost, stats.fenced, stats.succeeded) == (1, 1, 1)
    task = store.sync.get_task("t000")
    # the first attempt's ok() was never sent: only the second attempt's outcome is
    assert (task.status, task.attempt, task.record_ver) == (Status.TERMINATED, 2, 4)


def test_a_timeout_cancels_only_its_own_handler_among_those_running() -> None:
    """Handlers share ``concurrency`` runners: cancelling one cancels its runner's
    current await, and the handler beside it runs on to its outcome."""
    store = AsyncMemoryStore()
    store.sync.create_task(TaskSpec(topic=TOPIC, task_id="slow", timeout_ms=100, max_attempts=1))
    store.sync.create_task(TaskSpec(topic=TOPIC, task_id="steady"))
    finished: list[str] = []

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        await asyncio.sleep(5 if task.task_id == "slow" else 0.4)
        finished.append(task.task_id)
        return ok()

    w = worker(store, handler, concurrency=2, batch_size=2)

    async def scenario() -> None:
        await until(lambda: status(store, "slow") is Status.FAILED)
        await until(lambda: status(store, "steady") is Status.TERMINATED)

    stats = run_with(w, scenario)
    assert finished == ["steady"]
    assert (stats.timed_out, stats.succeeded, stats.failed) == (1, 1, 1)


def test_a_handler_after_one_that_swallowed_its_cancel_starts_uncancelled() -> None:
    """One runner runs both handlers in turn: the first swallows the worker's
    cancel; the second must not inherit it (its own ``asyncio.timeout`` and
    task groups read the task's cancel count)."""
    store = AsyncMemoryStore()
    store.sync.create_task(TaskSpec(topic=TOPIC, task_id="t000", timeout_ms=50, max_attempts=1))
    store.sync.create_task(TaskSpec(topic=TOPIC, task_id="t001"))
    seen: dict[str, Any] = {}

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        current = asyncio.current_task()
        assert current is not None
        if task.task_id == "t000":
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                seen["swallowed"] = ctx.reason
            return ok()  # discarded: the attempt timed out
        seen["cancelling"] = current.cancelling()
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            seen["own timeout"] = True
        await asyncio.sleep(0.05)  # no stray cancel arrives here
        return ok()

    w = worker(store, handler, concurrency=1, batch_size=2)

    async def scenario() -> None:
        await until(lambda: status(store, "t001") is Status.TERMINATED)

    stats = run_with(w, scenario)
    assert seen == {"swallowed": "timed out after 50 ms", "cancelling": 0, "own timeout": True}
    assert status(store, "t000") is Status.FAILED
    assert (stats.timed_out, stats.succeeded, stats.failed) == (1, 1, 1)


def test_ctx_cancelled_is_exact_without_an_await() -> None:
    """Read twice with no await between (the scheduler cannot have run): the second
    read, past the fence, is already True; ``sleep`` then returns True at once,
    and ``raise_if_cancelled`` raises ``Cancelled``, which reports nothing."""
    store = AsyncMemoryStore()
    add(store, 1)
    clock = ManualClock(start_ms=10_000)
    seen: list[Any] = []

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        before = ctx.cancelled
        clock.advance(901)  # past the fence of a 1000 ms lease: 0.9 of it
        seen.extend([before, ctx.cancelled, await ctx.sleep(5)])
        try:
            ctx.raise_if_cancelled()
        except Cancelled:
            seen.append("raised")
            raise
        return ok()

    w = worker(store, handler, clock=clock)

    async def scenario() -> None:
        await until(lambda: len(seen) == 4)
        await until(lambda: w.stats().fenced == 1)

    stats = run_with(w, scenario)
    assert seen == [False, True, True, "raised"]
    assert (stats.succeeded, stats.lost, stats.failed) == (0, 1, 0)
    assert status(store) is Status.RUNNING  # it reported nothing


def test_ctx_sleep_returns_false_when_it_was_not_cancelled() -> None:
    store = AsyncMemoryStore()
    add(store, 1)
    slept: list[bool] = []

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        slept.append(await ctx.sleep(0.01))
        return ok()

    w = worker(store, handler)
    stats = run_with(w, lambda: until(lambda: status(store) is Status.TERMINATED))
    assert (slept, stats.succeeded) == ([False], 1)


# -- a store with one writer at a time -------------------------------------------------


class OneWriterStore(AsyncMemoryStore):
    """Says it has one writer at a time (as SQLite does), and notes when a reserve
    and a recording of outcomes were under way at once: each call awaits a
    little, as a real database's would."""

    single_writer = True

    def __init__(self) -> None:
        super().__init__()
        self.writing = 0
        self.overlaps = 0

    async def _write(self, call: Callable[[], Any]) -> Any:
        self.writing += 1
        self.overlaps += self.writing > 1
        try:
            await asyncio.sleep(0.002)
            return call()
        finally:
            self.writing -= 1

    async def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        tasks: list[Task] = await self._write(lambda: self.sync.reserve_tasks(topic, pid, limit))
        return tasks

    async def finish_many(self, outcomes: Sequence[Any]) -> Any:
        return await self._write(lambda: self.sync.finish_many(outcomes))


def test_on_a_single_writer_store_reserves_and_recordings_take_turns() -> None:
    store = OneWriterStore()
    add(store, 200)

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        await asyncio.sleep(0)
        return ok()

    w = worker(store, handler, concurrency=4, batch_size=10)
    stats = run_with(w, lambda: until(lambda: w.stats().succeeded == 200))
    assert stats.succeeded == 200
    assert store.overlaps == 0


# -- plain handlers run in a bounded thread pool -------------------------------------


def test_plain_handlers_run_in_a_pool_of_concurrency_threads() -> None:
    store = AsyncMemoryStore()
    add(store, 6)
    lock = threading.Lock()
    now_running = [0]
    most = [0]
    names: set[str] = set()
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def handler(task: Task, ctx: Any) -> Any:
        with lock:
            now_running[0] += 1
            most[0] = max(most[0], now_running[0])
            names.add(threading.current_thread().name)
            threads.add(threading.get_ident())
        ctx.sleep(0.05)  # the threaded Context: blocks this thread, not the loop
        with lock:
            now_running[0] -= 1
        return ok()

    w = worker(store, handler, concurrency=2)
    stats = run_with(w, lambda: until(lambda: w.stats().succeeded == 6))
    assert stats.succeeded == 6
    assert most[0] == 2
    assert loop_thread not in threads
    assert len(names) <= 2
    assert all(n.startswith("sokka-handler") for n in names)


def test_a_stop_while_plain_handlers_start_never_runs_a_released_lease() -> None:
    """The handler threads start leases while the drain releases those that wait:
    every lease either ran (and its outcome is recorded) or was released unstarted,
    never both, whatever the interleaving."""
    store = AsyncMemoryStore()
    ids = add(store, 300)
    ran: list[str] = []
    lock = threading.Lock()

    def handler(task: Task, ctx: Any) -> Any:
        with lock:
            ran.append(task.task_id)
        time.sleep(0.002)  # 300 of them take longer than the stop takes to come
        return ok()

    w = worker(store, handler, concurrency=4, batch_size=300)
    stats = run_with(w, lambda: until(lambda: len(ran) >= 20, timeout=10))
    done = {t for t in ids if status(store, t) is Status.TERMINATED}
    waiting = {t for t in ids if status(store, t) is Status.STARTING}
    assert len(ran) == len(set(ran)) == stats.succeeded
    assert set(ran) == done
    assert done | waiting == set(ids)  # the rest was released, to run elsewhere
    assert stats.released == len(waiting)
    assert stats.reserved == 300


def test_a_plain_function_that_returns_a_coroutine_is_a_failure_that_says_so() -> None:
    store = AsyncMemoryStore()
    add(store, 1, max_attempts=1)

    async def real(task: Task, ctx: Any) -> Any:
        return ok()

    w = worker(store, lambda task, ctx: real(task, ctx))
    run_with(w, lambda: until(lambda: status(store) is Status.FAILED))
    assert "declare it async def" in (store.sync.get_task("t000").error or "")


# -- a store that fails, natively async ------------------------------------------------


def test_a_failing_store_backs_off_and_is_logged_once(caplog) -> None:
    store = FaultyStore()
    store.reserves_fail = True
    caplog.set_level(logging.INFO, logger="sokka.worker")
    w = worker(store, lambda task, ctx: ok(), poll_backoff=Backoff(base_ms=20, cap_ms=200))
    calls: list[int] = []

    async def scenario() -> None:
        await asyncio.sleep(1.0)
        calls.append(store.reserve_calls)
        store.reserves_fail = False
        add(store, 1)
        await until(lambda: status(store) is Status.TERMINATED)

    run_with(w, scenario)
    assert 2 <= calls[0] < 25  # 20, 40, 80, 160, 200, ... ms: about 8 in a second
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [m.split(": ", 1)[1] for m in warnings] == [
        "reserve failed, will retry: the database cannot be reached (simulated)"
    ]
    assert len([r for r in caplog.records if "works again" in r.getMessage()]) == 1


# -- stopping --------------------------------------------------------------------------


def test_sigterm_stops_taking_work_drains_and_releases_what_is_left() -> None:
    """With ``install_signal_handlers=True`` a SIGTERM is a ``stop()``: the handler
    that finishes within the grace period is recorded, the one still running after
    it is cancelled and released, and the task that waited is released at once."""
    store = AsyncMemoryStore()
    add(store, 3)
    began: dict[str, asyncio.Event] = {"t000": asyncio.Event(), "t001": asyncio.Event()}
    released_early: list[bool] = []

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        began[task.task_id].set()
        if task.task_id == "t000":
            await asyncio.sleep(0.1)  # within the grace period
            return ok()
        await asyncio.sleep(30)  # still running when the grace period ends: cancelled
        return ok()

    w = worker(store, handler, concurrency=2, batch_size=3, grace_ms=1_500)
    previous = signal.getsignal(signal.SIGTERM)

    async def main() -> Any:
        running = asyncio.create_task(w.run(install_signal_handlers=True))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in began.values())), 10)
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: status(store, "t002") is Status.STARTING, timeout=1.0)
        released_early.append(status(store, "t001") is Status.RUNNING)  # still in grace
        return await asyncio.wait_for(running, 10)

    stats = asyncio.run(main())
    by_id = {t: store.sync.get_task(t) for t in ("t000", "t001", "t002")}
    assert by_id["t000"].status is Status.TERMINATED
    assert [(by_id[t].status, by_id[t].attempt, by_id[t].failures) for t in ("t001", "t002")] == [
        (Status.STARTING, 1, 0)
    ] * 2
    assert released_early == [True]
    assert (stats.succeeded, stats.released) == (1, 2)
    assert signal.getsignal(signal.SIGTERM) == previous  # handed back


def test_stop_before_run_returns_at_once_and_holds_nothing() -> None:
    store = AsyncMemoryStore()
    add(store, 1)
    w = worker(store, lambda task, ctx: ok())
    w.stop()
    stats = asyncio.run(asyncio.wait_for(w.run(), 10))
    assert (stats.reserved, status(store)) == (0, Status.STARTING)


# -- the constructor --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "options", "field"),
    [
        ((MemoryStore(), TOPIC), {}, "store"),
        ((AsyncMemoryStore(), ""), {}, "topic"),
        ((AsyncMemoryStore(), TOPIC), {"concurrency": 0}, "concurrency"),
        ((AsyncMemoryStore(), TOPIC), {"grace_ms": -1}, "grace_ms"),
        ((AsyncMemoryStore(), TOPIC), {"keepalive_ratio": 0.95}, "keepalive_ratio"),
        ((AsyncMemoryStore(), TOPIC), {"linger_ms": -5}, "linger_ms"),
        ((AsyncMemoryStore(), TOPIC), {"fetch_ahead_ms": -1}, "fetch_ahead_ms"),
    ],
)
def test_bad_options_name_the_field(args, options, field) -> None:
    with pytest.raises(ValidationError) as caught:
        Worker(*args, lambda task, ctx: ok(), **options)
    assert caught.value.field == field


def test_a_handler_must_be_callable() -> None:
    with pytest.raises(ValidationError, match="handler"):
        Worker(AsyncMemoryStore(), TOPIC, "not a function")  # type: ignore[arg-type]


# -- the supervisor's loop -------------------------------------------------------------


def test_the_supervisor_loop_revokes_a_dead_workers_lease_and_stops() -> None:
    store = AsyncMemoryStore()
    add(store, 1)
    store.sync.reserve_tasks(TOPIC, "dead-worker")
    sup = Supervisor(store, TOPIC, LeasePolicy(lease_time_ms=100, default_snooze_ms=100))

    async def main() -> None:
        running = asyncio.create_task(sup.run())
        await until(lambda: status(store) is Status.STARTING)
        sup.stop()
        await asyncio.wait_for(running, 5)

    asyncio.run(main())
    assert sup.last_report is not None
    task = store.sync.get_task("t000")
    assert (task.status, task.pid, task.attempt) == (Status.STARTING, None, 1)


# -- waking: the idle worker waits for the store's hint, or long-polls over HTTP -------


def test_an_idle_worker_wakes_on_its_stores_hint_and_unsubscribes_when_it_stops() -> None:
    store = AsyncMemoryStore()
    seen: list[str] = []
    backoff = Backoff(base_ms=60_000, cap_ms=60_000, jitter=Jitter.NONE)

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        seen.append(task.task_id)
        return ok()

    w = worker(store, handler, poll_backoff=backoff)
    subscribed: list[bool] = []

    async def scenario() -> None:
        await asyncio.sleep(0.1)  # it polled, found nothing, and waits: blind, a minute
        subscribed.append(store.sync._bells.active)
        # From another thread, as a producer in the same process would.
        await asyncio.to_thread(store.sync.create_task, TaskSpec(topic=TOPIC, task_id="t1"))
        await until(lambda: seen == ["t1"])
        await asyncio.sleep(0.05)
        await store.create_task(TaskSpec(topic=TOPIC, task_id="t2"))  # from the loop itself
        await until(lambda: seen == ["t1", "t2"])

    stats = run_with(w, scenario)
    assert stats.succeeded == 2
    assert subscribed == [True]
    assert not store.sync._bells.active  # the stop unsubscribed it


def test_an_idle_worker_on_sqlite_wakes_for_another_connections_task(tmp_path) -> None:
    from sokka.adapters.aio.sql import AsyncSQLStore
    from sokka.adapters.sql import SQLStore

    url = f"sqlite:///{tmp_path / 'q.db'}"
    seen: list[str] = []
    backoff = Backoff(base_ms=60_000, cap_ms=60_000, jitter=Jitter.NONE)

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        seen.append(task.task_id)
        return ok()

    async def main() -> None:
        async with AsyncSQLStore(url) as store:
            await store.create_schema()
            other = SQLStore(url)  # another connection: only the store's watcher hears it
            w = Worker(store, TOPIC, handler, poll_backoff=backoff)
            running = asyncio.create_task(w.run())
            try:
                await asyncio.sleep(0.2)
                await asyncio.to_thread(other.create_task, TaskSpec(topic=TOPIC, task_id="t1"))
                await until(lambda: seen == ["t1"])
            finally:
                w.stop()
                await asyncio.wait_for(running, 10)
                other.close()

    asyncio.run(main())


class WaitsSent:
    """An ``AsyncHTTPStore`` that notes the ``wait_ms`` of each reserve it sends."""

    def __init__(self, base_url: str) -> None:
        from sokka.adapters.aio.http import AsyncHTTPStore

        class Noting(AsyncHTTPStore):
            async def reserve_tasks(
                inner, topic: str, pid: str, limit: int = 1, wait_ms: int = 0
            ) -> list[Task]:
                self.waits.append(wait_ms)
                return await super().reserve_tasks(topic, pid, limit, wait_ms)

        self.waits: list[int] = []
        self.store = Noting(base_url)


@pytest.mark.parametrize(("lease_time_ms", "longest"), [(300_000, 15_000), (2_000, 200)])
def test_over_http_the_idle_worker_long_polls_at_most_a_tenth_of_its_lease(
    lease_time_ms: int, longest: int
) -> None:
    # The lease counts from when the reserve was sent: a held reserve shortens it by
    # its wait, so the wait is capped at a tenth of the lease (and at half the
    # client's 30 s timeout: 15 s).
    from sokka.shell.http import create_app, serve_in_background

    inner = MemoryStore()
    seen: list[str] = []
    backoff = Backoff(base_ms=60_000, cap_ms=60_000, jitter=Jitter.NONE)

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        seen.append(task.task_id)
        return ok()

    with serve_in_background(create_app(inner)) as base_url:
        noted = WaitsSent(base_url)

        async def main() -> None:
            w = Worker(noted.store, TOPIC, handler, poll_backoff=backoff,
                       lease_time_ms=lease_time_ms)  # fmt: skip
            running = asyncio.create_task(w.run())
            try:
                await asyncio.sleep(0.3)  # polled, found nothing, its next reserve is held
                await asyncio.to_thread(inner.create_task, TaskSpec(topic=TOPIC, task_id="t1"))
                await until(lambda: seen == ["t1"])
            finally:
                w.stop()
                # A stopping worker stops when its held reserve returns: a task answers it.
                inner.create_task(TaskSpec(topic=TOPIC, task_id="t2"))
                await asyncio.wait_for(running, 10)
                await noted.store.aclose()

        asyncio.run(main())
    assert noted.waits[0] == 0  # the first reserve is a plain one
    assert max(noted.waits) == longest
    assert inner.get_task("t1").status is Status.TERMINATED
