"""Periodic tasks: cron lines (``CronSlots``), the ``Scheduler`` and the
``AsyncScheduler`` on real stores, and ``App.periodic``.

Two schedulers on one SQLite file or one PostgreSQL schema, each with its own
wall clock (a ``ManualClock``, skewed against the other), create every slot's
task once: two threaded ones, two asyncio ones awaited at once, and one of
each side by side. Tests on the real clock run a seconds-field line, and
check which slots got a task, never how long anything took.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Result

from sokka import App, MemoryStore, SQLStore, Task, TaskFilter, TaskSpec, ok
from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.store import TaskStore
from sokka.core.errors import SokkaError, Unavailable, ValidationError
from sokka.core.schedule import CatchUp, Every, plan, slot_task_id
from sokka.shell.aio.scheduler import AsyncScheduler
from sokka.shell.clock import ManualClock
from sokka.shell.cron import CronSlots
from sokka.shell.scheduler import Schedule, Scheduler, SchedulerReport
from tests import databases

#: 2026-12-01T22:00:00Z, a Tuesday.
T0 = 1_796_162_400_000
MINUTE = 60_000
PATIENCE_S = 30
_prefix_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'periodic.db'}", "sokka_"
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        url = databases.postgres_url()
        prefix = databases.test_prefix(f"periodic{next(_prefix_numbers)}")
    store = SQLStore(url, prefix=prefix)
    store.create_schema()
    _opened[id(store)] = (url, prefix)
    try:
        yield store
    finally:
        del _opened[id(store)]
        if request.param == "postgres":
            store.drop_schema()
        store.close()


#: The URL and prefix of each ``sql_store``, to open an async store on the same tables.
_opened: dict[int, tuple[str, str]] = {}


def on_async_stores(
    sql_store: SQLStore, count: int, body: Callable[..., Awaitable[object]]
) -> object:
    """Run ``body(*stores)`` on a fresh event loop with ``count`` async stores (a
    connection pool each) on ``sql_store``'s tables; close them afterwards."""
    url, prefix = _opened[id(sql_store)]

    async def main() -> object:
        stores = [AsyncSQLStore(url, prefix=prefix) for _ in range(count)]
        try:
            return await body(*stores)
        finally:
            for store in stores:
                await store.aclose()

    return asyncio.run(main())


def periodic_ids(store: TaskStore) -> list[str]:
    return sorted(
        t.task_id for t in store.list_tasks(TaskFilter(topic="reports"), limit=1000).tasks
    )


def schedule(cron: str = "*/5 * * * *", **catch_up: int) -> Schedule:
    return Schedule(
        name="reports", slots=CronSlots(cron), spec=TaskSpec(topic="reports", data={"k": 1}),
        cron=cron, catch_up=CatchUp(**catch_up),
    )  # fmt: skip


# -- cron lines --------------------------------------------------------------------


@given(st.integers(min_value=T0 - 400 * 86_400_000, max_value=T0 + 400 * 86_400_000))
@pytest.mark.parametrize(
    ("cron", "every"),
    [
        ("*/5 * * * *", Every(5 * MINUTE)),
        ("* * * * *", Every(MINUTE)),
        ("*/10 * * * * *", Every(10_000)),
        ("@hourly", Every(60 * MINUTE)),
        ("30 */2 * * *", Every(120 * MINUTE, 30 * MINUTE)),
    ],
)
def test_cron_slots_agree_with_arithmetic_where_a_line_is_a_fixed_period(cron, every, ms):
    slots = CronSlots(cron)
    assert slots.next_after(ms) == every.next_after(ms)
    assert slots.latest_at_or_before(ms) == every.latest_at_or_before(ms)


def test_a_line_is_read_in_its_time_zone_summer_and_winter():
    nine_in_paris = CronSlots("0 9 * * *", tz="Europe/Paris")
    winter = 1_796_162_400_000  # 2026-12-01T22:00Z
    summer = 1_782_900_000_000  # 2026-07-01T10:00Z
    assert slot_task_id("x", nine_in_paris.next_after(winter)) == "periodic:x:2026-12-02T08:00:00Z"
    assert slot_task_id("x", nine_in_paris.next_after(summer)) == "periodic:x:2026-07-02T07:00:00Z"
    assert CronSlots("0 9 * * *").next_after(winter) == T0 + 11 * 60 * MINUTE


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "the minute field '61' is not valid (minute: *, a value, a range a-b, "
         "a list a,b, or a step */n or a-b/n, within 0-59)"),
        ("0 24 * * *", "the hour field '24' is not valid"),
        ("0 0 32 * *", "the day-of-month field '32' is not valid"),
        ("0 0 * JANX *", "the month field 'JANX' is not valid"),
        ("0 0 * * 9", "the day-of-week field '9' is not valid"),
        ("*/0 * * * *", "the minute field '*/0' is not valid"),
        ("60 * * * * *", "the second field '60' is not valid"),
        ("* * *", "has 3 fields: give five (minute hour day-of-month month day-of-week) or six"),
        ("0 0 30 2 *", "'0 0 30 2 *' never fires"),
        ("", "must not be empty"),
        ("@fortnightly", "the @ forms are @yearly, @monthly, @weekly, @daily and @hourly"),
    ],
)  # fmt: skip
def test_a_bad_cron_line_is_refused_at_registration_naming_the_field_and_rule(
    tmp_path, cron, message
):
    store = SQLStore(f"sqlite:///{tmp_path / 'bad.db'}")
    store.create_schema()
    app = App(store)
    app.handler("reports")(lambda task, ctx: ok())
    with pytest.raises(ValidationError, match=r"^cron: .*" + re.escape(message)):
        app.periodic(cron, topic="reports")
    assert app.schedules == {}
    assert store.list_tasks().tasks == ()
    store.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tz": "Mars/Olympus"}, "tz: 'Mars/Olympus' is not a known time zone"),
        ({"catch_up": 0}, "catch_up: must be an int from 1 to 1000"),
        ({"catch_up_within": "soon"}, "catch_up_within: 'soon' is not a duration"),
        ({"name": "x" * 95}, "name: must be at most 94 characters"),
        ({"topic": ""}, "topic: must not be empty"),
        ({"data": {"x": float("nan")}}, "data"),
        ({"max_attempts": 0}, "max_attempts: must be a positive number"),
    ],
)
def test_other_bad_options_are_refused_at_registration_naming_the_field(options, message):
    app = App(MemoryStore())
    with pytest.raises(ValidationError, match=message):
        app.periodic("* * * * *", **{"topic": "reports", **options})
    assert app.schedules == {}


def test_two_schedules_of_one_name_are_refused_and_each_topic_needs_a_handler():
    app = App(MemoryStore())
    app.periodic("*/5 * * * *", topic="reports")
    with pytest.raises(ValidationError, match=r"^name: 'reports' already names a schedule"):
        app.periodic("0 * * * *", topic="reports")
    app.periodic("0 * * * *", topic="reports", name="hourly-reports")
    with pytest.raises(ValidationError, match=r"^topic: schedule 'reports' creates tasks of "):
        app.scheduler()
    with pytest.raises(ValidationError, match="has no periodic schedule"):
        App(MemoryStore()).scheduler()


# -- the scheduler on real stores ----------------------------------------------------


def test_two_skewed_schedulers_create_each_slot_once(sql_store):
    """Scheduler B's clock is 40 s behind A's; both wake every 20 s of their own
    clock over an hour. Every slot's task exists once, made by one of them."""
    a_clock, b_clock = ManualClock(T0 - 1_000), ManualClock(T0 - 41_000)
    a = Scheduler(sql_store, [schedule()], clock=a_clock)
    b = Scheduler(sql_store, [schedule()], clock=b_clock)
    created: list[str] = []
    existing: list[str] = []
    for _ in range(180):
        for scheduler, clock in ((a, a_clock), (b, b_clock)):
            report = scheduler.run_once()
            created += report.created
            existing += report.existing
            assert report.failed == report.retrying == ()
            clock.advance(20_000)
    ids = periodic_ids(sql_store)
    expected = [slot_task_id("reports", T0 + n * 5 * MINUTE) for n in range(-1, 12)]
    assert ids == expected  # 21:55 (the first wake-ups' catch-up) to 22:55, once each
    assert sorted(created) == ids  # each by one scheduler, once
    assert existing  # the laggard found them made
    assert set(existing) <= set(ids)
    task = sql_store.get_task(expected[1])
    assert (task.topic, task.data, task.status.value) == ("reports", {"k": 1}, "starting")


def test_after_downtime_catch_up_creates_at_most_n_of_the_missed_slots(sql_store, caplog):
    clock = ManualClock(T0 + 1_000)
    scheduler = Scheduler(sql_store, [schedule("*/5 * * * *", slots=3)], clock=clock)
    assert scheduler.run_once().created == tuple(
        slot_task_id("reports", T0 - n * 5 * MINUTE) for n in (2, 1, 0)
    )
    clock.advance(2 * 60 * MINUTE)  # down for two hours (the process slept)
    with caplog.at_level(logging.WARNING, logger="sokka.scheduler"):
        report = scheduler.run_once()
    assert report.created == tuple(
        slot_task_id("reports", T0 + n * 5 * MINUTE) for n in (22, 23, 24)
    )
    assert report.skipped == 1
    assert (
        "skipped the slots from 2026-12-01T22:05:00.000Z to 2026-12-01T23:45:00.000Z" in caplog.text
    )
    # A fresh scheduler (a restart) finds the most recent ones made already.
    again = Scheduler(sql_store, [schedule("*/5 * * * *", slots=3)], clock=clock).run_once()
    assert again.created == ()
    assert len(again.existing) == 3
    assert len(periodic_ids(sql_store)) == 6


class Flaky:
    """A store whose ``create_tasks`` is down for its first ``down`` calls (a fake
    in front of a real store, not a mock)."""

    def __init__(self, store: TaskStore, down: int) -> None:
        self.store = store
        self.down = down

    def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        if self.down > 0:
            self.down -= 1
            raise Unavailable("the database is restarting")
        return self.store.create_tasks(specs)


def test_a_slot_the_store_could_not_take_is_created_when_it_is_back(sql_store):
    clock = ManualClock(T0 + 1_000)
    scheduler = Scheduler(Flaky(sql_store, down=2), [schedule()], clock=clock)  # type: ignore[arg-type]
    first = scheduler.run_once()
    assert first.retrying == (slot_task_id("reports", T0),)
    assert first.created == ()
    assert first.wake_ms is not None
    assert first.wake_ms < T0 + 5 * MINUTE  # retries before the next slot
    clock.advance(1_000)
    assert scheduler.run_once().retrying == (slot_task_id("reports", T0),)
    clock.advance(5 * MINUTE)  # back, and the next slot came too
    assert scheduler.run_once().created == (slot_task_id("reports", T0 + 5 * MINUTE),)
    # catch_up=1: only the newest due slot; T0's is skipped (the bound applies to retries too)
    assert periodic_ids(sql_store) == [slot_task_id("reports", T0 + 5 * MINUTE)]


def test_a_retry_within_the_catch_up_bound_creates_the_slot(sql_store):
    clock = ManualClock(T0 + 1_000)
    scheduler = Scheduler(Flaky(sql_store, down=1), [schedule(slots=2)], clock=clock)  # type: ignore[arg-type]
    assert scheduler.run_once().created == ()
    clock.advance(1_000)
    assert scheduler.run_once().created == (
        slot_task_id("reports", T0 - 5 * MINUTE), slot_task_id("reports", T0),
    )  # fmt: skip


def test_two_schedulers_on_the_real_clock_create_each_second_once(sql_store):
    line = Schedule(
        name="reports", slots=CronSlots("* * * * * *"), spec=TaskSpec(topic="reports"),
        cron="* * * * * *",
    )  # fmt: skip
    schedulers = [Scheduler(sql_store, [line]) for _ in range(2)]
    for scheduler in schedulers:
        scheduler.start()
    try:
        deadline = time.monotonic() + PATIENCE_S
        while len(periodic_ids(sql_store)) < 4:
            assert time.monotonic() < deadline, "no slot task appeared"
            time.sleep(0.05)
    finally:
        for scheduler in schedulers:
            scheduler.stop()
    # One task per second, and no second between the first and the last is missing.
    slots = [_slot_ms(task_id) for task_id in periodic_ids(sql_store)]
    assert slots == list(range(slots[0], slots[-1] + 1, 1_000))


def _slot_ms(task_id: str) -> int:
    stamp = task_id.removeprefix("periodic:reports:").replace("Z", "+00:00")
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


# -- the asyncio scheduler on real stores ----------------------------------------------


def test_two_skewed_async_schedulers_awaited_at_once_create_each_slot_once(sql_store):
    """As the threaded test above, with both wake-ups of each step awaited at once,
    each scheduler on a connection pool of its own."""
    a_clock, b_clock = ManualClock(T0 - 1_000), ManualClock(T0 - 41_000)

    async def body(a_store: AsyncTaskStore, b_store: AsyncTaskStore) -> list[SchedulerReport]:
        a = AsyncScheduler(a_store, [schedule()], clock=a_clock)
        b = AsyncScheduler(b_store, [schedule()], clock=b_clock)
        reports: list[SchedulerReport] = []
        for _ in range(180):
            reports += await asyncio.gather(a.run_once(), b.run_once())
            a_clock.advance(20_000)
            b_clock.advance(20_000)
        return reports

    reports = on_async_stores(sql_store, 2, body)
    assert all(r.failed == r.retrying == () for r in reports)
    created = [task_id for r in reports for task_id in r.created]
    existing = [task_id for r in reports for task_id in r.existing]
    ids = periodic_ids(sql_store)
    assert ids == [slot_task_id("reports", T0 + n * 5 * MINUTE) for n in range(-1, 12)]
    assert sorted(created) == ids  # each by one scheduler, once
    assert existing  # the laggard found them made
    assert set(existing) <= set(ids)


def test_two_async_schedulers_racing_for_the_same_slots_create_each_once(sql_store):
    """No skew: both try every slot at the same moment, and one of them wins it."""
    clock = ManualClock(T0 + 1_000)

    async def body(a_store: AsyncTaskStore, b_store: AsyncTaskStore) -> list[SchedulerReport]:
        pair = [AsyncScheduler(s, [schedule("* * * * *")], clock=clock) for s in (a_store, b_store)]
        reports: list[SchedulerReport] = []
        for _ in range(8):
            reports += await asyncio.gather(*(one.run_once() for one in pair))
            clock.advance(MINUTE)
        return reports

    reports = on_async_stores(sql_store, 2, body)
    for a, b in zip(reports[::2], reports[1::2], strict=True):
        assert len(a.created + b.created) == 1  # one won the slot ...
        assert a.created + b.created == a.existing + b.existing  # ... the other found it made
    assert periodic_ids(sql_store) == [slot_task_id("reports", T0 + n * MINUTE) for n in range(8)]


def test_an_async_and_a_threaded_scheduler_on_one_store_create_each_slot_once(sql_store):
    threaded_clock, async_clock = ManualClock(T0 + 2_000), ManualClock(T0 - 3_000)  # 5 s of skew
    threaded = Scheduler(sql_store, [schedule("* * * * *")], clock=threaded_clock)

    async def body(store: AsyncTaskStore) -> list[tuple[SchedulerReport, SchedulerReport]]:
        aio = AsyncScheduler(store, [schedule("* * * * *")], clock=async_clock)
        reports = []
        for _ in range(20):
            # The threaded wake-up runs on a thread of its own while the async one is awaited.
            both = await asyncio.gather(asyncio.to_thread(threaded.run_once), aio.run_once())
            reports.append((both[0], both[1]))
            threaded_clock.advance(30_000)
            async_clock.advance(30_000)
        return reports

    reports = on_async_stores(sql_store, 1, body)
    by_threads = [task_id for r, _ in reports for task_id in r.created]
    by_asyncio = [task_id for _, r in reports for task_id in r.created]
    ids = periodic_ids(sql_store)
    assert ids == [slot_task_id("reports", T0 + n * MINUTE) for n in range(-1, 10)]
    assert sorted(by_threads + by_asyncio) == ids  # each slot once, by one of them
    assert by_threads  # the one ahead made most
    assert by_asyncio == [slot_task_id("reports", T0 - MINUTE)]  # its first catch-up


def test_after_downtime_an_async_scheduler_catches_up_at_most_n_of_the_missed_slots(
    sql_store, caplog
):
    clock = ManualClock(T0 + 1_000)

    async def body(store: AsyncTaskStore) -> None:
        scheduler = AsyncScheduler(store, [schedule("*/5 * * * *", slots=3)], clock=clock)
        assert (await scheduler.run_once()).created == tuple(
            slot_task_id("reports", T0 - n * 5 * MINUTE) for n in (2, 1, 0)
        )
        clock.advance(2 * 60 * MINUTE)  # down for two hours (the process slept)
        with caplog.at_level(logging.WARNING, logger="sokka.scheduler"):
            report = await scheduler.run_once()
        assert report.created == tuple(
            slot_task_id("reports", T0 + n * 5 * MINUTE) for n in (22, 23, 24)
        )
        assert report.skipped == 1
        # A fresh scheduler (a restart) finds the most recent ones made already.
        again = AsyncScheduler(store, [schedule("*/5 * * * *", slots=3)], clock=clock)
        report = await again.run_once()
        assert (report.created, len(report.existing)) == ((), 3)

    on_async_stores(sql_store, 1, body)
    assert (
        "skipped the slots from 2026-12-01T22:05:00.000Z to 2026-12-01T23:45:00.000Z" in caplog.text
    )
    assert len(periodic_ids(sql_store)) == 6


class AsyncFlaky:
    """``Flaky`` for an async store: ``create_tasks`` is down for its first ``down``
    calls (a fake in front of a real store, not a mock)."""

    def __init__(self, store: AsyncTaskStore, down: int) -> None:
        self.store = store
        self.down = down

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        if self.down > 0:
            self.down -= 1
            raise Unavailable("the database is restarting")
        return await self.store.create_tasks(specs)


def test_a_slot_the_store_could_not_take_is_created_by_the_async_scheduler_when_it_is_back(
    sql_store,
):
    clock = ManualClock(T0 + 1_000)

    async def body(store: AsyncTaskStore) -> None:
        flaky = AsyncFlaky(store, down=2)
        scheduler = AsyncScheduler(flaky, [schedule(slots=2)], clock=clock)  # type: ignore[arg-type]
        first = await scheduler.run_once()
        both = (slot_task_id("reports", T0 - 5 * MINUTE), slot_task_id("reports", T0))
        assert (first.created, first.retrying) == ((), both)
        assert first.wake_ms is not None
        assert first.wake_ms < T0 + 5 * MINUTE  # retries before the next slot
        clock.advance(1_000)
        assert (await scheduler.run_once()).retrying == both
        clock.advance(1_000)  # back: both slots are still within the catch-up bound
        again = await scheduler.run_once()
        assert (again.created, again.retrying) == (both, ())
        clock.advance(5 * MINUTE)  # gone again for three slots: only the newest two come
        flaky.down = 1
        assert (await scheduler.run_once()).created == ()
        clock.advance(10 * MINUTE)
        assert (await scheduler.run_once()).created == tuple(
            slot_task_id("reports", T0 + n * 5 * MINUTE) for n in (2, 3)
        )

    on_async_stores(sql_store, 1, body)
    assert periodic_ids(sql_store) == [
        slot_task_id("reports", T0 + n * 5 * MINUTE) for n in (-1, 0, 2, 3)
    ]


def test_async_schedulers_on_the_real_clock_create_each_second_once_and_stop(sql_store):
    line = Schedule(
        name="reports", slots=CronSlots("* * * * * *"), spec=TaskSpec(topic="reports"),
        cron="* * * * * *",
    )  # fmt: skip

    async def body(a_store: AsyncTaskStore, b_store: AsyncTaskStore) -> None:
        a, b = AsyncScheduler(a_store, [line]), AsyncScheduler(b_store, [line])
        running = [a.start(), b.start()]
        with pytest.raises(RuntimeError, match="already running"):
            a.start()
        async with asyncio.timeout(PATIENCE_S):
            while len(await asyncio.to_thread(periodic_ids, sql_store)) < 4:
                await asyncio.sleep(0.05)
        a.stop()  # on the loop
        await asyncio.to_thread(b.stop)  # from another thread
        async with asyncio.timeout(PATIENCE_S):
            await asyncio.gather(*running)  # both loops returned, neither raised
        stopped = AsyncScheduler(a_store, [line])
        stopped.stop()
        async with asyncio.timeout(PATIENCE_S):
            await stopped.run()  # a stop() that came first: it returns at once
        assert stopped.wait_ms() == 1_000  # and it never woke

    on_async_stores(sql_store, 2, body)
    slots = [_slot_ms(task_id) for task_id in periodic_ids(sql_store)]
    assert slots == list(range(slots[0], slots[-1] + 1, 1_000))
    assert len(slots) >= 4


def test_the_async_scheduler_reports_what_the_threaded_one_reports():
    """One bookkeeping: the same schedules, store contents and clock give the same
    reports, wake-up after wake-up (memory stores, a retry and a catch-up)."""
    lines = [schedule("*/5 * * * *", slots=2), Schedule(
        name="hourly", slots=CronSlots("0 * * * *"), spec=TaskSpec(topic="reports"),
        catch_up=CatchUp(slots=3, within_ms=90 * MINUTE),
    )]  # fmt: skip
    steps = [0, 1_000, 4 * MINUTE, 3 * 60 * MINUTE, 7 * MINUTE, 55 * MINUTE]

    def threaded() -> list[SchedulerReport]:
        clock = ManualClock(T0 + 1_000)
        scheduler = Scheduler(MemoryStore(), lines, clock=clock)
        return [scheduler.run_once(clock.advance(step)) for step in steps]

    async def on_asyncio() -> list[SchedulerReport]:
        clock = ManualClock(T0 + 1_000)
        scheduler = AsyncScheduler(AsyncMemoryStore(), lines, clock=clock)
        return [await scheduler.run_once(clock.advance(step)) for step in steps]

    assert asyncio.run(on_asyncio()) == threaded()


# -- the app ------------------------------------------------------------------------


def test_app_periodic_tasks_carry_the_handlers_options_and_the_registered_data(sql_store):
    app = App(sql_store)

    @app.periodic("*/5 * * * *", topic="reports", data={"kind": "daily"}, description="d")
    @app.handler("reports", lease="45s", timeout="2m", max_attempts=3)
    def report(task, ctx):
        return ok()

    app.periodic("0 * * * *", topic="reports", name="hourly", max_attempts=7, group="g")
    assert report.__name__ == "report"  # the decorator passes the function through
    clock = ManualClock(T0 + 1_000)
    created = app.scheduler(clock=clock).run_once().created
    assert set(created) == {slot_task_id("reports", T0), slot_task_id("hourly", T0)}
    five = sql_store.get_task(slot_task_id("reports", T0))
    hourly = sql_store.get_task(slot_task_id("hourly", T0))
    assert (five.data, five.description) == ({"kind": "daily"}, "d")
    assert (five.lease_time_ms, five.timeout_ms, five.max_attempts) == (45_000, 120_000, 3)
    assert (hourly.max_attempts, hourly.task_group_id, hourly.data) == (7, "g", None)


def test_plan_on_cron_slots_from_a_first_wake_up_mid_period():
    p = plan(CronSlots("0 3 * * *"), CatchUp(), None, T0)  # 22:00: today's 03:00 is past
    assert p.due == (T0 - 19 * 60 * MINUTE,)
    assert p.wake_ms == T0 + 5 * 60 * MINUTE


def test_two_schedulers_through_the_http_api_create_each_slot_once(http_server):
    app, client = http_server
    app.state.store = MemoryStore()
    clocks = [ManualClock(T0 + 2_000), ManualClock(T0 - 3_000)]  # 5 s of skew
    schedulers = [Scheduler(client, [schedule("* * * * *")], clock=c) for c in clocks]
    made: list[str] = []
    for _ in range(10):
        for scheduler, clock in zip(schedulers, clocks, strict=True):
            made += scheduler.run_once().created
            clock.advance(30_000)
    assert sorted(made) == periodic_ids(client)
    assert periodic_ids(client) == [slot_task_id("reports", T0 + n * MINUTE) for n in range(-1, 5)]


#: 2026's clock changes: Europe on 29 March and 25 October, New York on
#: 8 March and 1 November (UTC midnights of those days).
DST_DAYS_MS = [1_774_742_400_000, 1_792_886_400_000, 1_772_928_000_000, 1_793_491_200_000]


@given(
    st.sampled_from(DST_DAYS_MS),
    st.integers(min_value=-86_400_000, max_value=2 * 86_400_000),
    st.sampled_from(["30 1 * * *", "*/30 * * * *", "0 2 * * *", "15 * * * *", "0 9 * * MON-FRI"]),
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
)
def test_walking_back_and_walking_forward_find_the_same_slots_across_clock_changes(
    day, offset, cron, tz
):
    # plan() walks back with latest_at_or_before and the loop wakes with
    # next_after: if they disagreed on a slot, one would be made twice or never.
    slots = CronSlots(cron, tz)
    ms = day + offset
    before, after = slots.latest_at_or_before(ms), slots.next_after(ms)
    assert before is not None
    assert after is not None
    assert before <= ms < after
    assert slots.next_after(before) == after
    assert slots.latest_at_or_before(after) == after
    assert slots.latest_at_or_before(after - 1) == before


def test_a_daily_line_in_the_hour_that_repeats_gives_two_slots_with_two_ids():
    # New York falls back from 02:00 EDT to 01:00 EST on 1 November 2026:
    # 01:30 happens twice, and croniter fires at both.
    slots = CronSlots("30 1 * * *", tz="America/New_York")
    first = slots.next_after(1_793_491_200_000)
    second = slots.next_after(first)
    assert [slot_task_id("x", s) for s in (first, second)] == [
        "periodic:x:2026-11-01T05:30:00Z",
        "periodic:x:2026-11-01T06:30:00Z",
    ]
