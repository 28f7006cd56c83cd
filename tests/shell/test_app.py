"""``sokka.App``: registering handlers, enqueueing, and one worker for every topic.

The stores are real: SQLite and PostgreSQL (each test on both where the store
matters), the memory store for what does not depend on one. ``run_worker``
runs on a thread of the test, with real Workers on real threads; the tests
wait for the outcomes they need (bounded by ``PATIENCE_S``, reached only on
failure) and never assert how long anything took.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import sokka
from sokka import App, MemoryStore, SQLStore, Status, Task, TaskFilter, TaskSpec, ok
from sokka.adapters.store import TaskStore
from sokka.core.errors import ValidationError
from sokka.shell.worker import Context, WorkerStats
from tests import databases

PATIENCE_S = 30
_prefix_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    if request.param == "sqlite":
        store = SQLStore(f"sqlite:///{tmp_path / 'app.db'}")
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        prefix = databases.test_prefix(f"app{next(_prefix_numbers)}")
        store = SQLStore(databases.postgres_url(), prefix=prefix)
    store.create_schema()
    try:
        yield store
    finally:
        if request.param == "postgres":
            store.drop_schema()
        store.close()


def done(task: Task, ctx: Context) -> Any:
    return ok()


def all_tasks(store: TaskStore, topic: str | None = None) -> list[Task]:
    return list(store.list_tasks(TaskFilter(topic=topic), limit=1000).tasks)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


class Running:
    """``app.run_worker(...)`` on a thread; ``stop()`` returns its stats."""

    def __init__(self, app: App, **options: Any) -> None:
        self.app = app
        self.result: WorkerStats | BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=options, daemon=True)
        self.thread.start()

    def _run(self, **options: Any) -> None:
        try:
            self.result = self.app.run_worker(**options)
        except BaseException as error:
            self.result = error

    def stop(self) -> WorkerStats:
        self.app.stop()
        self.thread.join(PATIENCE_S)
        assert not self.thread.is_alive(), "run_worker did not return after stop()"
        assert isinstance(self.result, WorkerStats), self.result
        return self.result


def terminated(store: TaskStore, topic: str, n: int) -> Callable[[], bool]:
    return lambda: sum(t.status is Status.TERMINATED for t in all_tasks(store, topic)) == n


# -- the App is public -------------------------------------------------------------


def test_app_is_exported_from_sokka() -> None:
    assert sokka.App is App
    assert "App" in sokka.__all__


def test_an_app_connects_from_a_url(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'u.db'}", prefix="u_")
    assert isinstance(app.store, SQLStore)
    with pytest.raises(ValidationError) as raised:
        App(MemoryStore(), prefix="u_")
    assert raised.value.field == "prefix"


# -- registering ---------------------------------------------------------------------


def test_a_handler_is_registered_with_its_options_as_milliseconds() -> None:
    app = App(MemoryStore())

    @app.handler("emails", concurrency=4, lease="30s", timeout="5m", max_attempts=5)
    def send(task: Task, ctx: Context) -> Any:
        return ok()

    @app.handler("reports", lease=2_500)
    def report(task: Task, ctx: Context) -> Any:
        return ok()

    emails, reports = app.handlers["emails"], app.handlers["reports"]
    assert emails.handler is send  # the decorator gives the function back unchanged
    assert (emails.concurrency, emails.lease_time_ms, emails.timeout_ms, emails.max_attempts) == (
        4, 30_000, 300_000, 5,
    )  # fmt: skip
    assert (reports.concurrency, reports.lease_time_ms, reports.timeout_ms) == (1, 2_500, None)


#: Bad options of ``@app.handler`` and the field each error names (both apps).
BAD_HANDLER_OPTIONS = [
    ({"lease": "30"}, "lease"),
    ({"lease": "soon"}, "lease"),
    ({"lease": 0}, "lease"),
    ({"lease": 1.5}, "lease"),
    ({"timeout": "-5m"}, "timeout"),
    ({"timeout": -1}, "timeout"),
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 2000}, "concurrency"),
    ({"concurrency": True}, "concurrency"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"topic": ""}, "topic"),
]


@pytest.mark.parametrize(("options", "field"), BAD_HANDLER_OPTIONS)
def test_bad_handler_options_are_refused_naming_the_option(
    options: dict[str, Any], field: str
) -> None:
    app = App(MemoryStore())
    with pytest.raises(ValidationError) as raised:
        app.handler(**{"topic": "emails", **options})(done)
    assert raised.value.field == field
    assert app.handlers == {}


def test_a_topic_has_one_handler_and_async_ones_are_refused() -> None:
    app = App(MemoryStore())
    app.handler("emails")(done)
    with pytest.raises(ValidationError, match="already has a handler") as raised:
        app.handler("emails")(lambda task, ctx: ok())
    assert raised.value.field == "topic"

    async def later(task: Task, ctx: Any) -> Any:
        return ok()

    with pytest.raises(ValidationError, match="coroutine function") as raised:
        app.handler("reports")(later)
    assert raised.value.field == "handler"
    assert list(app.handlers) == ["emails"]


# -- enqueueing ------------------------------------------------------------------------


def test_enqueue_writes_the_handlers_defaults_on_the_task(sql_store: SQLStore) -> None:
    app = App(sql_store)
    app.handler("emails", lease="45s", timeout="5m", max_attempts=5)(done)
    task = app.enqueue("emails", {"to": "ann"}, task_id="t1", group="welcome", description="hi")
    stored = sql_store.get_task("t1")
    assert stored == task
    assert (stored.data, stored.task_group_id, stored.description, stored.status) == (
        {"to": "ann"}, "welcome", "hi", Status.STARTING,
    )  # fmt: skip
    assert (stored.max_attempts, stored.lease_time_ms, stored.timeout_ms) == (5, 45_000, 300_000)
    assert app.enqueue("emails", max_attempts=2).max_attempts == 2


@pytest.mark.parametrize(("delay", "ms"), [("10m", 600_000), (1_500, 1_500), ("1.5s", 1_500)])
def test_enqueue_with_a_delay_creates_a_delayed_task(
    sql_store: SQLStore, delay: int | str, ms: int
) -> None:
    app = App(sql_store)
    app.handler("emails")(done)
    task = app.enqueue("emails", delay=delay)
    assert (task.status, task.snooze_time_ms) == (Status.SNOOZED, ms)
    assert sql_store.reserve_tasks("emails", "w1") == []
    assert app.enqueue("emails", delay=0).status is Status.STARTING


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda app: app.enqueue("nope", {}), "topic"),
        (lambda app: app.enqueue("", {}), "topic"),
        (lambda app: app.enqueue("emails", delay=-1), "delay"),
        (lambda app: app.enqueue("emails", delay="-1s"), "delay"),
        (lambda app: app.enqueue("emails", delay="10"), "delay"),
        (lambda app: app.enqueue("emails", {1: "x"}), "data"),
        (lambda app: app.enqueue("emails", group=""), "task_group_id"),
        (lambda app: app.enqueue("emails", max_attempts=-2), "max_attempts"),
    ],
    ids=["unknown-topic", "empty-topic", "negative-delay", "negative-delay-text",
         "delay-without-unit", "data", "group", "max-attempts"],
)  # fmt: skip
def test_bad_enqueue_is_refused_naming_the_field_and_creates_nothing(
    sql_store: SQLStore, call: Callable[[App], object], field: str
) -> None:
    app = App(sql_store)
    app.handler("emails")(done)
    app.enqueue("emails", task_id="before")
    with pytest.raises(ValidationError) as raised:
        call(app)
    assert raised.value.field == field
    assert [t.task_id for t in all_tasks(sql_store)] == ["before"]


def test_an_unknown_topic_error_names_the_topics_there_are() -> None:
    app = App(MemoryStore())
    app.handler("emails")(done)
    with pytest.raises(ValidationError, match=r"'nope' has no handler.*'emails'"):
        app.enqueue("nope")


def test_enqueue_in_the_callers_transaction(sql_store: SQLStore) -> None:
    app = App(sql_store)
    app.handler("emails")(done)
    engine = sa.create_engine(sql_store.engine.url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            app.enqueue("emails", task_id="gone", connection=conn)
            transaction.rollback()
        with engine.begin() as conn:
            app.enqueue("emails", task_id="kept", connection=conn)
    finally:
        engine.dispose()
    assert [t.task_id for t in all_tasks(sql_store)] == ["kept"]


def test_a_connection_needs_an_sql_store(tmp_path: Path) -> None:
    store = MemoryStore()
    app = App(store)
    app.handler("emails")(done)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with engine.connect() as conn, pytest.raises(ValidationError) as raised:
            app.enqueue("emails", connection=conn)
    finally:
        engine.dispose()
    assert raised.value.field == "connection"
    assert "MemoryStore" in str(raised.value)
    assert all_tasks(store) == []


# -- running ----------------------------------------------------------------------------


def test_run_worker_serves_every_topic_each_with_its_concurrency(sql_store: SQLStore) -> None:
    app = App(sql_store)
    # Three emails must run at once to pass the barrier: a concurrency of 3 is real.
    barrier = threading.Barrier(3, timeout=PATIENCE_S)
    seen: dict[str, set[str]] = {"emails": set(), "reports": set()}

    @app.handler("emails", concurrency=3)
    def send(task: Task, ctx: Context) -> Any:
        barrier.wait()
        seen["emails"].add(threading.current_thread().name)
        return ok()

    @app.handler("reports")
    def report(task: Task, ctx: Context) -> Any:
        seen["reports"].add(threading.current_thread().name)
        return ok()

    for n in range(6):
        app.enqueue("emails", {"n": n})
    for n in range(4):
        app.enqueue("reports", {"n": n})
    running = Running(app)
    wait_until(terminated(sql_store, "emails", 6), "6 emails done")
    wait_until(terminated(sql_store, "reports", 4), "4 reports done")
    stats = running.stop()
    assert stats.succeeded == 10
    assert len(seen["emails"]) == 3
    assert len(seen["reports"]) == 1


def test_run_worker_serves_only_the_topics_asked_for(sql_store: SQLStore) -> None:
    app = App(sql_store)
    app.handler("emails")(done)
    app.handler("reports")(done)
    app.enqueue("emails", task_id="e1")
    app.enqueue("reports", task_id="r1")
    running = Running(app, topics=["reports"])
    wait_until(terminated(sql_store, "reports", 1), "the report done")
    assert running.stop().succeeded == 1
    assert sql_store.get_task("e1").status is Status.STARTING


@pytest.mark.parametrize(("options", "ahead"), [({}, True), ({"fetch_ahead": 0}, False)])
def test_run_worker_fetches_short_tasks_ahead_unless_told_not_to(
    sql_store: SQLStore, options: dict[str, Any], ahead: bool
) -> None:
    """By default a topic of quick handlers is reserved in batches (fetched ahead
    by time); ``fetch_ahead=0`` reserves one task per free handler."""
    limits: list[int] = []
    reserve = sql_store.reserve_tasks

    def counted(topic: str, pid: str, limit: int = 1) -> list[Task]:
        limits.append(limit)
        return reserve(topic, pid, limit)

    fused = sql_store.reserve_and_finish

    def counted_with(topic: str, pid: str, limit: int, outcomes: Any) -> Any:
        limits.append(limit)  # a claim that carries the last outcomes
        return fused(topic, pid, limit, outcomes)

    sql_store.reserve_tasks = counted  # type: ignore[method-assign]
    sql_store.reserve_and_finish = counted_with  # type: ignore[method-assign]
    app = App(sql_store)
    app.handler("emails")(done)
    sql_store.create_tasks([TaskSpec(topic="emails") for _ in range(200)])
    running = Running(app, **options)
    wait_until(terminated(sql_store, "emails", 200), "200 emails done")
    assert running.stop().succeeded == 200
    assert (max(limits) > 1) is ahead


def test_run_worker_refuses_a_bad_fetch_ahead_naming_it() -> None:
    app = App(MemoryStore())
    app.handler("emails")(done)
    with pytest.raises(ValidationError) as raised:
        app.run_worker(fetch_ahead="soon")
    assert raised.value.field == "fetch_ahead"


@pytest.mark.parametrize(("topics", "rule"), [(["nope"], "has no handler"), ([], "no handler")])
def test_run_worker_refuses_topics_without_a_handler(topics: list[str], rule: str) -> None:
    app = App(MemoryStore())
    app.handler("emails")(done)
    with pytest.raises(ValidationError, match=rule) as raised:
        app.run_worker(topics)
    assert raised.value.field == "topics"


def test_the_embedded_supervisor_revokes_lost_leases_and_wakes_delayed_tasks(
    sql_store: SQLStore,
) -> None:
    app = App(sql_store)
    app.handler("emails", lease="300ms")(done)
    app.handler("reports", lease="300ms")(done)
    app.enqueue("emails", task_id="lost")
    # A worker that died holding "lost": only a supervisor gives it back.
    assert [t.task_id for t in sql_store.reserve_tasks("emails", "dead-worker")] == ["lost"]
    app.enqueue("reports", task_id="later", delay=200)
    running = Running(app, supervise=True)
    wait_until(terminated(sql_store, "emails", 1), "the lost task revoked and done")
    wait_until(terminated(sql_store, "reports", 1), "the delayed task woken and done")
    running.stop()
    lost = sql_store.get_task("lost")
    assert (lost.attempt, lost.errors) == (2, ("attempt 1: lease expired",))
    assert sql_store.get_task("later").attempt == 1


def test_without_supervise_a_delayed_task_waits(sql_store: SQLStore) -> None:
    app = App(sql_store)
    app.handler("emails")(done)
    app.enqueue("emails", task_id="later", delay=1)
    app.enqueue("emails", task_id="now")
    running = Running(app)
    wait_until(terminated(sql_store, "emails", 1), "the ready task done")
    running.stop()
    assert sql_store.get_task("later").status is Status.SNOOZED


def test_app_stop_ends_run_scheduler_and_one_runs_at_a_time(sql_store: SQLStore) -> None:
    """``app.stop()`` reaches a running ``run_scheduler`` (as it reaches
    ``run_worker``), from any thread; a second ``run_scheduler`` while one runs
    is refused naming it."""
    app = App(sql_store)
    app.handler("ticks")(done)
    app.periodic("* * * * * *", topic="ticks")
    ended = threading.Event()

    def run() -> None:
        app.run_scheduler(install_signal_handlers=False)
        ended.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: len(all_tasks(sql_store, "ticks")) >= 2, "two slots' tasks")
    with pytest.raises(ValidationError, match="run_scheduler: this app's scheduler is already"):
        app.run_scheduler(install_signal_handlers=False)
    app.stop()
    assert ended.wait(PATIENCE_S), "run_scheduler did not return after app.stop()"
    thread.join(PATIENCE_S)
    # The app may run its scheduler again once the first has returned.
    again = threading.Thread(target=app.run_scheduler, kwargs={"install_signal_handlers": False})
    again.start()
    count = len(all_tasks(sql_store, "ticks"))
    wait_until(lambda: len(all_tasks(sql_store, "ticks")) > count, "a slot after the restart")
    app.stop()
    again.join(PATIENCE_S)
    assert not again.is_alive()
