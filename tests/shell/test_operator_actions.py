"""Operator actions against a real worker on real databases (SQLite, PostgreSQL),
on both runtimes: cancelling a running task, and pausing its topic.

Cancelling a running task needs no lease: the store fails it at once, and the
worker learns it from the refusal of its next keepalive (``TaskCancelled``).
Its core then cancels the handler (``ctx.cancelled``; an ``async def`` handler
is cancelled outright), drops whatever it returns, and counts and logs a
cancel, not a lost lease. A plain handler on a thread cannot be killed: it
runs on, and its outcome is dropped when it returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sokka.adapters.sql import SQLStore
from sokka.core.outcomes import ok
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.worker import Context
from tests.databases import postgres_engine, postgres_url, test_prefix
from tests.shell.runtimes import RUNTIMES, worker_class

TOPIC = "ops"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    if request.param == "sqlite":
        store = SQLStore(f"sqlite:///{tmp_path / 'ops.db'}")
    else:
        postgres_engine()  # skip (or fail under SOKKA_REQUIRE_POSTGRES) when unreachable
        store = SQLStore(postgres_url(), prefix=test_prefix("ops"))
    store.create_schema()
    try:
        yield store
    finally:
        if request.param == "postgres":
            store.drop_schema()
        store.close()


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_worker(runtime: str) -> Iterator[Callable[..., Any]]:
    started: list[tuple[Any, threading.Thread]] = []

    def start(store: SQLStore, handler: Any, **options: Any) -> Any:
        # A lease long enough that a loaded machine's slow keepalive does not fence
        # the worker first (a keepalive every 1.4 s): where a cancel is tested, the
        # cancel must be what the worker hears. A 400 ms lease fenced it in CI.
        options.setdefault("lease_time_ms", 2_000)
        worker = worker_class(runtime)(store, TOPIC, handler, **options)
        started.append((worker, worker.start()))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def cancelled_by_an_operator(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cancelled by an operator" in r.getMessage()]


def test_cancelling_a_running_task_stops_its_handler_and_nothing_is_reported(
    db: SQLStore, runtime: str, start_worker: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sokka.worker")
    db.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
    started, stopped = threading.Event(), threading.Event()
    reasons: list[str | None] = []
    handler: Any
    if runtime == "asyncio":

        async def handler(task: Task, ctx: Any) -> Any:  # cancelled outright
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                reasons.append(ctx.cancel_reason)
                stopped.set()
                raise
            return ok()

    else:

        def handler(task: Task, ctx: Context) -> Any:  # told, through ctx
            started.set()
            if ctx.sleep(30):
                reasons.append(ctx.cancel_reason)
                stopped.set()
            return ok()  # dropped: the task was cancelled

    worker = start_worker(db, handler)
    assert started.wait(10)
    cancelled = db.cancel("t1", "the customer left")
    assert stopped.wait(10)  # at the next keepalive, well before the 30 s
    assert reasons[0] is not None
    assert "cancelled" in reasons[0]
    wait_for(lambda: not worker.holdings.outrun)  # the handler's return is folded in
    worker.stop()
    stats = worker.stats()
    assert (stats.cancelled, stats.succeeded, stats.failed, stats.lost) == (1, 0, 0, 0)
    assert db.get_task("t1") == cancelled  # nothing was written after the cancel
    assert cancelled.status is Status.FAILED
    assert cancelled.error == "cancelled: the customer left"
    assert len(cancelled_by_an_operator(caplog)) == 1


def test_a_thread_handler_that_ignores_the_cancel_runs_on_and_its_outcome_is_dropped(
    db: SQLStore, start_worker: Callable[..., Any]
) -> None:
    """A thread cannot be killed: the handler runs to its end (on both runtimes, a
    plain handler runs on a thread), and what it returns is never recorded."""
    db.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
    started, finish, finished = threading.Event(), threading.Event(), threading.Event()

    def stubborn(task: Task, ctx: Context) -> Any:
        started.set()
        finish.wait(30)  # never looks at ctx
        finished.set()
        return ok()

    worker = start_worker(db, stubborn)
    assert started.wait(10)
    cancelled = db.cancel("t1", "stop it")
    wait_for(lambda: worker.stats().cancelled == 1)  # the keepalive was refused
    assert not finished.is_set()  # it runs on
    finish.set()
    assert finished.wait(10)
    wait_for(lambda: not worker.holdings.outrun)
    worker.stop()
    assert worker.stats().succeeded == 0
    assert db.get_task("t1") == cancelled


def test_an_outcome_that_beats_the_keepalive_is_refused_and_counted_as_a_cancel(
    db: SQLStore, start_worker: Callable[..., Any]
) -> None:
    """The handler returns before any keepalive: the outcome itself is refused
    (TaskCancelled), and the worker counts a cancel, not a lost lease."""
    db.create_task(TaskSpec(topic=TOPIC, task_id="t1"))
    started, go = threading.Event(), threading.Event()

    def quick(task: Task, ctx: Context) -> Any:
        started.set()
        go.wait(30)
        return ok()

    worker = start_worker(db, quick, lease_time_ms=60_000)  # no keepalive for 42 s
    assert started.wait(10)
    cancelled = db.cancel("t1", "too late")
    go.set()
    wait_for(lambda: worker.stats().cancelled == 1)
    stats = worker.stats()
    assert (stats.succeeded, stats.lost, stats.fenced) == (0, 0, 0)
    assert db.get_task("t1") == cancelled


def test_a_paused_topic_is_not_reserved_from_until_it_is_resumed(
    db: SQLStore, start_worker: Callable[..., Any]
) -> None:
    """Leases held when the topic is paused run on to their end; new tasks wait,
    and a resume wakes the idle worker at once (not after its poll backoff)."""
    from sokka.core.backoff import Backoff

    db.create_task(TaskSpec(topic=TOPIC, task_id="held"))
    started, go = threading.Event(), threading.Event()
    ran: list[str] = []

    def handler(task: Task, ctx: Context) -> Any:
        ran.append(task.task_id)
        if task.task_id == "held":
            started.set()
            go.wait(30)
        return ok()

    # A long poll backoff: only the store's wake-up hint can make it reserve quickly.
    worker = start_worker(db, handler, poll_backoff=Backoff(base_ms=20_000, cap_ms=20_000))
    assert started.wait(10)
    db.pause_topic(TOPIC)
    db.create_task(TaskSpec(topic=TOPIC, task_id="waits"))
    go.set()
    wait_for(lambda: db.get_task("held").status is Status.TERMINATED)
    time.sleep(0.3)  # the worker, idle, tries the paused topic
    assert db.get_task("waits").status is Status.STARTING
    assert ran == ["held"]
    db.resume_topic(TOPIC)
    wait_for(lambda: db.get_task("waits").status is Status.TERMINATED, timeout=5)
    wait_for(lambda: worker.stats().succeeded == 2)  # counted once the answer is in
