"""``sokka.asyncio.App``: ``sokka.App``'s surface on an event loop.

``async def`` handlers (and plain ones, on handler threads), ``await
app.enqueue(...)`` (in the caller's ``AsyncConnection`` too), ``await
app.run_worker()``: one asyncio worker for every topic; ``@app.periodic``
schedules, ``app.scheduler()`` (an ``AsyncScheduler``) and ``await
app.run_scheduler()``. The registration and its checks are ``AppCore``'s,
shared with the threaded ``App``: the same bad input gets the same error from
both. The stores are real: SQLite and
PostgreSQL where the store matters, the memory store elsewhere. The tests
wait for what they need (bounded by ``PATIENCE_S``) and never assert how long
anything took.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import sokka
import sokka.asyncio
from sokka import MemoryStore, SQLStore, Status, Task, TaskFilter, ok
from sokka.asyncio import AsyncContext, AsyncMemoryStore, AsyncSQLStore, WorkerStats
from sokka.core.errors import ValidationError
from sokka.core.schedule import slot_task_id
from sokka.shell.aio.app import App
from sokka.shell.aio.scheduler import AsyncScheduler
from sokka.shell.clock import ManualClock
from tests import databases
from tests.shell.test_app import BAD_HANDLER_OPTIONS

PATIENCE_S = 30
_prefix_numbers = itertools.count()


async def done(task: Task, ctx: AsyncContext) -> Any:
    return ok()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, SQLStore]]:
    """An initialised database: its URL, a table prefix, and a sync store to look with."""
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'app.db'}", "sokka_"
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        url = databases.postgres_url()
        prefix = databases.test_prefix(f"aapp{next(_prefix_numbers)}")
    look = SQLStore(url, prefix=prefix)
    look.create_schema()
    try:
        yield url, prefix, look
    finally:
        if request.param == "postgres":
            look.drop_schema()
        look.close()


def on_app(db: tuple[str, str, SQLStore], body: Callable[[App], Awaitable[Any]]) -> Any:
    """Run ``body(app)`` on a fresh event loop with an app on ``db``; close its store."""
    url, prefix, _look = db

    async def main() -> Any:
        store = AsyncSQLStore(url, prefix=prefix)
        try:
            return await body(App(store))
        finally:
            await store.aclose()

    return asyncio.run(main())


def statuses(look: SQLStore, topic: str) -> list[Status]:
    return [t.status for t in look.list_tasks(TaskFilter(topic=topic), limit=1000).tasks]


async def until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(PATIENCE_S):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


# -- the surface ---------------------------------------------------------------------


def test_the_asyncio_app_is_exported_from_sokka_asyncio() -> None:
    assert sokka.asyncio.App is App
    assert "App" in sokka.asyncio.__all__
    assert sokka.App is not App  # the threaded one stays sokka.App


def test_an_asyncio_app_connects_from_a_url(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'u.db'}", prefix="u_")
    assert isinstance(app.store, AsyncSQLStore)
    asyncio.run(app.store.aclose())
    assert isinstance(App("memory://").store, AsyncMemoryStore)
    with pytest.raises(ValidationError) as raised:
        App(AsyncMemoryStore(), prefix="u_")
    assert raised.value.field == "prefix"


def test_async_and_plain_handlers_are_registered_with_the_same_options() -> None:
    app = App(AsyncMemoryStore())

    @app.handler("emails", concurrency=4, lease="30s", timeout="5m", max_attempts=5)
    async def send(task: Task, ctx: AsyncContext) -> Any:
        return ok()

    @app.handler("reports", lease=2_500)
    def report(task: Task, ctx: Any) -> Any:  # a plain one: it runs on a handler thread
        return ok()

    emails, reports = app.handlers["emails"], app.handlers["reports"]
    assert emails.handler is send
    assert (emails.concurrency, emails.lease_time_ms, emails.timeout_ms, emails.max_attempts) == (
        4, 30_000, 300_000, 5,
    )  # fmt: skip
    assert (reports.handler, reports.lease_time_ms) == (report, 2_500)
    with pytest.raises(ValidationError, match="already has a handler") as raised:
        app.handler("emails")(done)
    assert raised.value.field == "topic"


@pytest.mark.parametrize(("options", "field"), BAD_HANDLER_OPTIONS)
def test_bad_handler_options_get_the_threaded_apps_very_error(
    options: dict[str, Any], field: str
) -> None:
    """One place checks the options of both apps: the same input, the same error."""
    errors = []
    for app in (App(AsyncMemoryStore()), sokka.App(MemoryStore())):
        with pytest.raises(ValidationError) as raised:
            app.handler(**{"topic": "emails", **options})(lambda task, ctx: ok())
        errors.append((raised.value.field, str(raised.value)))
        assert app.handlers == {}
    assert errors[0] == errors[1]
    assert errors[0][0] == field


# -- enqueueing ------------------------------------------------------------------------


def test_enqueue_is_awaited_and_writes_the_handlers_defaults(db: Any) -> None:
    async def body(app: App) -> Task:
        app.handler("emails", lease="45s", timeout="5m", max_attempts=5)(done)
        task = await app.enqueue("emails", {"to": "ann"}, task_id="t1", group="welcome")
        delayed = await app.enqueue("emails", task_id="t2", delay="10m")
        assert (delayed.status, delayed.snooze_time_ms) == (Status.SNOOZED, 600_000)
        return task

    task = on_app(db, body)
    stored = db[2].get_task("t1")
    assert stored == task
    assert (stored.data, stored.task_group_id, stored.status) == (
        {"to": "ann"}, "welcome", Status.STARTING,
    )  # fmt: skip
    assert (stored.max_attempts, stored.lease_time_ms, stored.timeout_ms) == (5, 45_000, 300_000)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"topic": "nope"}, "topic"),
        ({"topic": "emails", "delay": "-1s"}, "delay"),
        ({"topic": "emails", "data": {1: "x"}}, "data"),
        ({"topic": "emails", "connection": "sqlite:///x.db"}, "connection"),
    ],
)
def test_bad_enqueue_is_refused_naming_the_field_and_creates_nothing(
    db: Any, kwargs: dict[str, Any], field: str
) -> None:
    async def body(app: App) -> None:
        app.handler("emails")(done)
        with pytest.raises(ValidationError) as raised:
            await app.enqueue(**kwargs)
        assert raised.value.field == field

    on_app(db, body)
    assert list(db[2].list_tasks().tasks) == []


def test_enqueue_in_the_callers_async_transaction(db: Any) -> None:
    url, _prefix, look = db
    async_url = url.replace("sqlite://", "sqlite+aiosqlite://")

    async def body(app: App) -> None:
        app.handler("emails")(done)
        engine = create_async_engine(async_url)
        try:
            async with engine.connect() as conn:
                transaction = await conn.begin()
                await app.enqueue("emails", task_id="gone", connection=conn)
                await transaction.rollback()
            async with engine.begin() as conn:
                await app.enqueue("emails", task_id="kept", connection=conn)
                assert look.list_tasks().tasks == ()  # not before the commit
        finally:
            await engine.dispose()

    on_app(db, body)
    assert [t.task_id for t in look.list_tasks().tasks] == ["kept"]


def test_a_connection_needs_an_sql_store(tmp_path: Path) -> None:
    async def body() -> None:
        app = App(AsyncMemoryStore())
        app.handler("emails")(done)
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
        try:
            async with engine.connect() as conn:
                with pytest.raises(ValidationError, match="AsyncMemoryStore") as raised:
                    await app.enqueue("emails", connection=conn)
        finally:
            await engine.dispose()
        assert raised.value.field == "connection"
        assert (await app.store.list_tasks()).tasks == ()

    asyncio.run(body())


# -- running ----------------------------------------------------------------------------


def test_run_worker_serves_every_topic_in_one_worker(db: Any) -> None:
    look = db[2]
    seen: dict[str, set[str]] = {"emails": set(), "reports": set()}
    running = {"emails": 0, "most": 0}

    async def body(app: App) -> WorkerStats:
        all_three = asyncio.Event()

        @app.handler("emails", concurrency=3)
        async def send(task: Task, ctx: AsyncContext) -> Any:
            # Three must run at once for the event to be set: a concurrency of 3 is real.
            running["emails"] += 1
            running["most"] = max(running["most"], running["emails"])
            if running["emails"] == 3:
                all_three.set()
            await asyncio.wait_for(all_three.wait(), PATIENCE_S)
            running["emails"] -= 1
            seen["emails"].add(task.topic)
            return ok()

        @app.handler("reports")
        def report(task: Task, ctx: Any) -> Any:
            seen["reports"].add(threading.current_thread().name)
            return ok()

        for n in range(6):
            await app.enqueue("emails", {"n": n})
        for n in range(4):
            await app.enqueue("reports", {"n": n})
        worker = asyncio.create_task(app.run_worker(install_signal_handlers=False))
        await until(lambda: statuses(look, "emails") == [Status.TERMINATED] * 6, "emails")
        await until(lambda: statuses(look, "reports") == [Status.TERMINATED] * 4, "reports")
        app.stop()
        return await worker

    stats = on_app(db, body)
    assert isinstance(stats, WorkerStats)
    assert stats.succeeded == 10
    assert running["most"] == 3
    assert seen["emails"] == {"emails"}
    assert len(seen["reports"]) == 1  # one handler thread: the topic's concurrency


def test_result_is_awaited_until_the_handler_kept_it(db: Any) -> None:
    """``await app.result(task_id, wait=...)``: what an async handler kept with
    ok(result), read while the worker runs; a failed task raises TaskFailed."""

    async def body(app: App) -> tuple[Any, str]:
        @app.handler("sums", max_attempts=1)
        async def add(task: Task, ctx: AsyncContext) -> Any:
            if task.data["a"] < 0:
                return sokka.failed("negative")
            return ok({"sum": task.data["a"] + task.data["b"]})

        good = await app.enqueue("sums", {"a": 2, "b": 3})
        bad = await app.enqueue("sums", {"a": -1, "b": 0})
        with pytest.raises(sokka.NotFinished):
            await app.result(good.task_id)  # no wait: at once
        worker = asyncio.create_task(app.run_worker(install_signal_handlers=False))
        try:
            value = await app.result(good.task_id, wait=f"{PATIENCE_S}s")
            with pytest.raises(sokka.TaskFailed) as failed:
                await app.result(bad.task_id, wait=f"{PATIENCE_S}s")
        finally:
            app.stop()
            await worker
        return value, str(failed.value)

    value, failure = on_app(db, body)
    assert value == {"sum": 5}
    assert "negative" in failure


def test_run_worker_refuses_topics_without_a_handler_and_a_second_run() -> None:
    async def body() -> None:
        app = App(AsyncMemoryStore())
        app.handler("emails")(done)
        with pytest.raises(ValidationError, match="has no handler") as raised:
            await app.run_worker(["nope"])
        assert raised.value.field == "topics"
        first = asyncio.create_task(app.run_worker(install_signal_handlers=False))
        await asyncio.sleep(0.05)
        with pytest.raises(ValidationError, match="already running"):
            await app.run_worker(install_signal_handlers=False)
        app.stop()
        assert isinstance(await first, WorkerStats)

    asyncio.run(body())


def test_the_embedded_supervisor_revokes_a_lost_lease(db: Any) -> None:
    look = db[2]

    async def body(app: App) -> None:
        app.handler("emails", lease="300ms")(done)
        app.handler("reports", lease="300ms")(done)
        await app.enqueue("emails", task_id="lost")
        # A worker that died holding "lost": only a supervisor gives it back.
        assert [t.task_id for t in await app.store.reserve_tasks("emails", "dead")] == ["lost"]
        worker = asyncio.create_task(app.run_worker(supervise=True, install_signal_handlers=False))
        await until(lambda: statuses(look, "emails") == [Status.TERMINATED], "revoked and done")
        app.stop()
        await worker

    on_app(db, body)
    lost = look.get_task("lost")
    assert (lost.attempt, lost.errors) == (2, ("attempt 1: lease expired",))


# -- periodic schedules -------------------------------------------------------------------

#: 2026-12-01T22:00:00Z.
T0 = 1_796_162_400_000


def test_periodic_tasks_carry_the_handlers_options_and_the_registered_data(db: Any) -> None:
    look = db[2]

    async def body(app: App) -> tuple[str, ...]:
        @app.periodic("*/5 * * * *", topic="reports", data={"kind": "daily"}, description="d")
        @app.handler("reports", lease="45s", timeout="2m", max_attempts=3)
        async def report(task: Task, ctx: AsyncContext) -> Any:
            return ok()

        app.periodic("0 * * * *", topic="reports", name="hourly", max_attempts=7, group="g")
        assert report.__name__ == "report"  # the decorator passes the function through
        assert sorted(app.schedules) == ["hourly", "reports"]
        scheduler = app.scheduler(clock=ManualClock(T0 + 1_000))
        assert isinstance(scheduler, AsyncScheduler)
        return (await scheduler.run_once()).created

    created = on_app(db, body)
    assert set(created) == {slot_task_id("reports", T0), slot_task_id("hourly", T0)}
    five = look.get_task(slot_task_id("reports", T0))
    hourly = look.get_task(slot_task_id("hourly", T0))
    assert (five.data, five.description) == ({"kind": "daily"}, "d")
    assert (five.lease_time_ms, five.timeout_ms, five.max_attempts) == (45_000, 120_000, 3)
    assert (hourly.max_attempts, hourly.task_group_id, hourly.data) == (7, "g", None)


BAD_SCHEDULES = [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "0 0 30 2 *"}, "cron"),
    ({"cron": "* * *"}, "cron"),
    ({"cron": "@fortnightly"}, "cron"),
    ({"tz": "Mars/Olympus"}, "tz"),
    ({"catch_up": 0}, "catch_up"),
    ({"catch_up_within": "soon"}, "catch_up_within"),
    ({"name": "x" * 95}, "name"),
    ({"topic": ""}, "topic"),
    ({"data": {"x": float("nan")}}, "data"),
    ({"max_attempts": 0}, "max_attempts"),
]


@pytest.mark.parametrize(("options", "field"), BAD_SCHEDULES)
def test_bad_schedules_get_the_threaded_apps_very_error_and_write_nothing(
    db: Any, options: dict[str, Any], field: str
) -> None:
    look = db[2]
    errors = []
    for app in (App(AsyncMemoryStore()), sokka.App(look)):
        app.handler("reports")(lambda task, ctx: ok())
        with pytest.raises(ValidationError) as raised:
            app.periodic(**{"cron": "* * * * *", "topic": "reports", **options})
        errors.append((raised.value.field, str(raised.value)))
        assert app.schedules == {}
    assert errors[0] == errors[1]
    assert errors[0][0] == field
    assert look.list_tasks().tasks == ()


def test_a_schedule_without_a_handler_or_no_schedule_gets_the_threaded_apps_error(
    db: Any,
) -> None:
    look = db[2]

    async def body(app: App) -> None:
        errors = []
        for one in (app, sokka.App(look)):
            one.handler("reports")(lambda task, ctx: ok())
            with pytest.raises(ValidationError) as none:
                one.scheduler()
            one.periodic("*/5 * * * *", topic="reports")
            with pytest.raises(ValidationError) as twice:
                one.periodic("0 * * * *", topic="reports")
            one.periodic("* * * * *", topic="emails", name="mails")
            with pytest.raises(ValidationError) as orphan:
                one.scheduler()
            errors.append([(e.value.field, str(e.value)) for e in (none, twice, orphan)])
        assert errors[0] == errors[1]
        assert [field for field, _ in errors[0]] == ["schedules", "name", "topic"]
        assert errors[0][2][1] == (
            "topic: schedule 'mails' creates tasks of 'emails', which has no handler in this "
            "app (its topics: 'reports')"
        )
        with pytest.raises(ValidationError, match="which has no handler in this app"):
            await app.run_scheduler(install_signal_handlers=False)  # refused before it runs

    on_app(db, body)
    assert look.list_tasks().tasks == ()


def test_run_scheduler_creates_each_slot_until_sigterm(db: Any) -> None:
    look = db[2]

    async def body(app: App) -> None:
        app.handler("ticks")(done)
        app.periodic("* * * * * *", topic="ticks")
        running = asyncio.create_task(app.run_scheduler())  # handlers on the loop
        await until(lambda: len(statuses(look, "ticks")) >= 3, "three slots' tasks")
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(PATIENCE_S):
            await running  # stopped, not killed

    on_app(db, body)
    assert set(statuses(look, "ticks")) == {Status.STARTING}


def test_the_scheduler_runs_beside_the_worker(db: Any) -> None:
    look = db[2]

    async def body(app: App) -> WorkerStats:
        app.periodic("* * * * * *", topic="ticks", catch_up=2)(app.handler("ticks")(done))
        scheduler = app.scheduler()
        scheduling = scheduler.start()
        worker = asyncio.create_task(app.run_worker(install_signal_handlers=False))
        await until(lambda: statuses(look, "ticks").count(Status.TERMINATED) >= 3, "three ran")
        app.stop()
        scheduler.stop()
        async with asyncio.timeout(PATIENCE_S):
            await scheduling
            return await worker

    stats = on_app(db, body)
    assert stats.succeeded >= 3


def test_app_stop_ends_run_scheduler_from_any_thread_and_one_runs_at_a_time(db: Any) -> None:
    look = db[2]

    async def body(app: App) -> None:
        app.handler("ticks")(done)
        app.periodic("* * * * * *", topic="ticks")
        running = asyncio.create_task(app.run_scheduler(install_signal_handlers=False))
        await until(lambda: len(statuses(look, "ticks")) >= 2, "two slots' tasks")
        with pytest.raises(ValidationError, match="run_scheduler: this app's scheduler is alre"):
            await app.run_scheduler(install_signal_handlers=False)
        await asyncio.to_thread(app.stop)  # from another thread
        async with asyncio.timeout(PATIENCE_S):
            await running  # returned, not cancelled

    on_app(db, body)
    assert set(statuses(look, "ticks")) == {Status.STARTING}


def test_run_worker_refuses_a_bad_fetch_ahead_naming_it_as_the_threaded_app() -> None:
    app = App(AsyncMemoryStore())

    @app.handler("emails")
    async def send(task: Task, ctx: AsyncContext) -> Any:
        return ok()

    with pytest.raises(ValidationError) as raised:
        asyncio.run(app.run_worker(fetch_ahead="soon"))
    assert (raised.value.field, raised.value.rule) == (
        "fetch_ahead", "'soon' is not a duration like 500ms, 30s, 5m or 1h"
    )  # fmt: skip
