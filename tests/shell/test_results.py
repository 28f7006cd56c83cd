"""Task results from the shell: ``App.result`` and the wait behind it.

The waiting loop runs on a ``ManualClock`` whose ``sleep`` advances it (no
test measures wall-clock time); the end-to-end tests run a real App worker on
SQLite and PostgreSQL and wait for what they need.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sokka import App, MemoryStore, SQLStore, Status, Task, TaskSpec, failed, ok
from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.store import TaskStore
from sokka.asyncio import AsyncContext
from sokka.asyncio import Worker as AsyncWorker
from sokka.core.errors import (
    NotFinished,
    NotFound,
    ResultTimeout,
    TaskFailed,
    Unavailable,
    ValidationError,
)
from sokka.core.task import MAX_RESULT_BYTES
from sokka.shell.clock import ManualClock
from sokka.shell.results import async_wait_for_result, wait_for_result
from sokka.shell.worker import Context
from tests.shell.test_app import Running, sql_store, wait_until
from tests.shell.test_cli import sokka

__all__ = ["sql_store"]  # the fixture, shared with test_app

PID = "w1"


def running(store: TaskStore, task_id: str = "t1") -> Task:
    store.create_task(TaskSpec(topic="q", task_id=task_id))
    (task,) = store.reserve_tasks("q", PID)
    return task


class Sleeper:
    """``sleep(seconds)`` that advances a ManualClock, and does ``then()`` on the
    ``after``-th call (another process finishing the task meanwhile)."""

    def __init__(self, clock: ManualClock, after: int = -1, then: Callable[[], object] = list):
        self.clock = clock
        self.after = after
        self.then = then
        self.slept_ms: list[int] = []

    def __call__(self, seconds: float) -> None:
        ms = round(seconds * 1000)
        self.slept_ms.append(ms)
        self.clock.advance(ms)
        if len(self.slept_ms) == self.after:
            self.then()


def test_the_result_of_a_terminated_task_is_read_at_once() -> None:
    store = MemoryStore()
    running(store)
    store.terminate("t1", PID, 1, {"sent": 3})
    sleep = Sleeper(ManualClock())
    assert wait_for_result(store, "t1", sleep=sleep) == {"sent": 3}
    assert wait_for_result(store, "t1", "30s", sleep=sleep) == {"sent": 3}
    assert sleep.slept_ms == []


def test_a_task_that_kept_no_result_reads_as_none() -> None:
    store = MemoryStore()
    running(store)
    store.terminate("t1", PID, 1)
    assert wait_for_result(store, "t1") is None


def test_without_wait_an_unfinished_task_is_not_finished_at_once() -> None:
    store = MemoryStore()
    store.create_task(TaskSpec(topic="q", task_id="t1"))
    sleep = Sleeper(ManualClock())
    with pytest.raises(NotFinished) as raised:
        wait_for_result(store, "t1", sleep=sleep)
    assert type(raised.value) is NotFinished
    assert str(raised.value) == "task 't1' has not finished yet (it is starting)"
    assert sleep.slept_ms == []


def test_with_wait_the_result_comes_once_the_task_finishes() -> None:
    store = MemoryStore()
    running(store)
    clock = ManualClock()
    sleep = Sleeper(clock, after=4, then=lambda: store.terminate("t1", PID, 1, [1, 2]))
    assert wait_for_result(store, "t1", 30_000, clock=clock, sleep=sleep, rand=lambda: 0.5) == [
        1, 2,
    ]  # fmt: skip
    assert len(sleep.slept_ms) == 4  # read again after each sleep, found it after the 4th
    assert sleep.slept_ms == sorted(sleep.slept_ms)  # backing off
    assert sleep.slept_ms[0] < 50  # soon at first


def test_the_wait_runs_out_with_a_timeout_naming_the_task_and_its_status() -> None:
    store = MemoryStore()
    running(store)
    clock = ManualClock()
    sleep = Sleeper(clock)
    with pytest.raises(ResultTimeout) as raised:
        wait_for_result(store, "t1", "5s", clock=clock, sleep=sleep, rand=lambda: 0.99)
    assert str(raised.value) == "task 't1' did not finish within 5000 ms (it is running)"
    assert isinstance(raised.value, TimeoutError)
    assert isinstance(raised.value, NotFinished)
    assert sum(sleep.slept_ms) == 5_000  # the last read falls on the deadline, not past it
    assert max(sleep.slept_ms) <= 1_000  # a modest backoff: at least a read a second


def test_a_failed_task_raises_its_error_with_or_without_wait() -> None:
    store = MemoryStore()
    running(store)
    store.fail("t1", PID, 1, "ValueError: no such user")
    for wait in (None, "10s"):
        with pytest.raises(TaskFailed) as raised:
            wait_for_result(store, "t1", wait, sleep=Sleeper(ManualClock()))
        assert raised.value.error == "ValueError: no such user"
        assert str(raised.value) == "task 't1' failed: ValueError: no such user"


def test_a_task_that_fails_while_waited_for_raises_its_error() -> None:
    store = MemoryStore()
    running(store)
    clock = ManualClock()
    sleep = Sleeper(clock, after=2, then=lambda: store.fail("t1", PID, 1, "boom"))
    with pytest.raises(TaskFailed, match="boom"):
        wait_for_result(store, "t1", "1m", clock=clock, sleep=sleep)


def test_an_unknown_task_is_not_found() -> None:
    with pytest.raises(NotFound):
        wait_for_result(MemoryStore(), "ghost", "1s", sleep=Sleeper(ManualClock()))


@pytest.mark.parametrize(
    ("task_id", "wait", "field"),
    [("", None, "task_id"), ("t1", -1, "wait"), ("t1", "soon", "wait"), ("t1", 1.5, "wait")],
)
def test_bad_arguments_name_their_field(task_id: str, wait: Any, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        wait_for_result(MemoryStore(), task_id, wait)
    assert raised.value.field == field


class Flaky:
    """A store whose first ``failures`` reads are refused as unreachable."""

    def __init__(self, store: TaskStore, failures: int) -> None:
        self.store = store
        self.failures = failures

    def get_task(self, task_id: str) -> Task:
        if self.failures:
            self.failures -= 1
            raise Unavailable("the store cannot be reached")
        return self.store.get_task(task_id)


def test_a_retryable_store_error_is_ridden_out_while_the_wait_lasts() -> None:
    store = MemoryStore()
    running(store)
    store.terminate("t1", PID, 1, "done")
    clock = ManualClock()
    flaky: Any = Flaky(store, failures=2)
    assert wait_for_result(flaky, "t1", "10s", clock=clock, sleep=Sleeper(clock)) == "done"
    # ... and raised once the wait is over, or at once without a wait.
    with pytest.raises(Unavailable):
        wait_for_result(Flaky(store, 1), "t1")  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        wait_for_result(Flaky(store, 10**6), "t1", "2s", clock=clock, sleep=Sleeper(clock))  # type: ignore[arg-type]


def test_the_async_wait_reads_the_same_way() -> None:
    async def scenario() -> tuple[Any, str]:
        store = AsyncMemoryStore()
        await store.create_task(TaskSpec(topic="q", task_id="t1"))
        await store.reserve_tasks("q", PID)
        clock = ManualClock()

        async def finish_later() -> None:
            await asyncio.sleep(0.05)
            await store.terminate("t1", PID, 1, {"n": 1})

        finishing = asyncio.create_task(finish_later())
        value = await async_wait_for_result(store, "t1", "30s")
        await finishing
        await store.create_task(TaskSpec(topic="q", task_id="t2"))
        with pytest.raises(NotFinished):
            await async_wait_for_result(store, "t2")
        with pytest.raises(ResultTimeout) as raised:
            await async_wait_for_result(store, "t2", 0, clock=clock)
        return value, str(raised.value)

    value, timeout = asyncio.run(scenario())
    assert value == {"n": 1}
    assert timeout == "task 't2' did not finish within 0 ms (it is starting)"


# -- end to end: an App worker keeps results, app.result reads them -------------------


def test_app_result_waits_for_what_the_handler_kept(sql_store: SQLStore) -> None:
    app = App(sql_store)

    @app.handler("emails", concurrency=2, lease="10s")
    def send(task: Task, ctx: Context) -> Any:
        return ok({"sent_to": task.data["to"], "attempt": task.attempt})

    @app.handler("quiet", lease="10s")
    def quiet(task: Task, ctx: Context) -> Any:
        return ok()

    with pytest.raises(NotFinished):
        app.result(app.enqueue("emails", {"to": "early@example.com"}).task_id)
    running_worker = Running(app)
    try:
        tasks = [app.enqueue("emails", {"to": f"u{i}@example.com"}) for i in range(5)]
        plain = app.enqueue("quiet")
        for i, task in enumerate(tasks):
            assert app.result(task.task_id, wait="30s") == {
                "sent_to": f"u{i}@example.com", "attempt": 1,
            }  # fmt: skip
        assert app.result(plain.task_id, wait=30_000) is None
    finally:
        running_worker.stop()
    stored = sql_store.get_task(tasks[0].task_id)
    assert stored.status is Status.TERMINATED
    assert stored.result_json == '{"sent_to":"u0@example.com","attempt":1}'
    with pytest.raises(NotFound):
        app.result("no-such-task")


def test_a_handler_returning_a_result_too_large_fails_its_attempt_and_stores_nothing(
    sql_store: SQLStore,
) -> None:
    app = App(sql_store)

    @app.handler("reports", lease="10s", max_attempts=1)
    def report(task: Task, ctx: Context) -> Any:
        return ok("x" * MAX_RESULT_BYTES)

    @app.handler("checks", lease="10s")
    def check(task: Task, ctx: Context) -> Any:
        return failed("the check found 2 problems", retry=False)

    too_big = app.enqueue("reports")
    refused = app.enqueue("checks")
    running_worker = Running(app)
    try:
        wait_until(
            lambda: sql_store.get_task(too_big.task_id).status is Status.FAILED,
            "the report's attempt to fail",
        )
        with pytest.raises(TaskFailed) as raised:
            app.result(refused.task_id, wait="30s")
    finally:
        running_worker.stop()
    assert raised.value.error == "the check found 2 problems"
    task = sql_store.get_task(too_big.task_id)
    assert task.result_json is None
    assert task.error is not None
    assert task.error.startswith(
        f"ValidationError: result: must be at most {MAX_RESULT_BYTES} bytes as JSON"
    )
    with pytest.raises(TaskFailed, match="result: must be at most"):
        app.result(too_big.task_id)


# -- the command line --------------------------------------------------------------------


def test_sokka_task_get_shows_the_result(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with SQLStore(url) as store:
        store.create_schema()
        running(store, "kept")
        store.terminate("kept", PID, 1, {"sent": 3, "to": "ann"})
        running(store, "plain")
        store.terminate("plain", PID, 1)
    env = {"SOKKA_DB": url}
    got = sokka("task", "get", "kept", env=env)
    assert got.returncode == 0, got.stderr
    assert 'result: {"sent":3,"to":"ann"}' in got.stdout.splitlines()
    as_json = sokka("task", "get", "kept", "--json", env=env)
    assert json.loads(as_json.stdout)["result"] == {"sent": 3, "to": "ann"}
    plain = sokka("task", "get", "plain", env=env)
    assert "result:" not in plain.stdout
    assert json.loads(sokka("task", "get", "plain", "--json", env=env).stdout)["result"] is None
    listed = sokka("task", "list", "--json", env=env)
    assert [t["result"] for t in json.loads(listed.stdout)["tasks"]] == [
        {"sent": 3, "to": "ann"}, None,
    ]  # fmt: skip


def test_sokka_task_get_wait_shows_the_task_once_it_ends_or_says_it_has_not(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    env = {"SOKKA_DB": url}
    with SQLStore(url) as store:
        store.create_schema()
        running(store, "slow")
        store.create_task(TaskSpec(topic="q", task_id="doomed", max_attempts=1))
        store.reserve_tasks("q", PID)
        store.fail("doomed", PID, 1, "ValueError: no such user")
        store.create_task(TaskSpec(topic="q", task_id="idle"))
        # Another process (a thread here) finishes "slow" while the command waits.
        finisher = threading.Timer(1.0, store.terminate, ("slow", PID, 1, {"sent": 1}))
        finisher.start()
        try:
            waited = sokka("task", "get", "slow", "--wait", "60s", env=env)
        finally:
            finisher.join()
    assert waited.returncode == 0, waited.stderr
    assert "terminated" in waited.stdout.splitlines()[1]
    assert 'result: {"sent":1}' in waited.stdout.splitlines()
    # a failed task has ended too: shown with its error, exit status 0
    failed_one = sokka("task", "get", "doomed", "--wait", "5s", env=env)
    assert failed_one.returncode == 0, failed_one.stderr
    assert "error: attempt 1: ValueError: no such user" in failed_one.stdout.splitlines()
    # a task that does not end within the wait: one line on stderr, nothing shown
    never = sokka("task", "get", "idle", "--wait", "1s", env=env)
    assert (never.returncode, never.stdout) == (1, "")
    assert "task 'idle' did not finish within 1000 ms (it is starting)" in never.stderr
    bad = sokka("task", "get", "idle", "--wait", "soon", env=env)
    assert bad.returncode == 2
    assert "--wait" in bad.stderr


# -- the asyncio runtime keeps results the same way ---------------------------------------


def test_an_async_handler_keeps_its_result_and_a_too_large_one_fails_its_attempt() -> None:
    store = AsyncMemoryStore()
    store.sync.create_task(TaskSpec(topic="q", task_id="small", data=3))
    store.sync.create_task(TaskSpec(topic="q", task_id="huge", data=10**5, max_attempts=1))

    async def handler(task: Task, ctx: AsyncContext) -> Any:
        await asyncio.sleep(0)
        return ok(list(range(task.data)))

    async def main() -> list[Any]:
        worker = AsyncWorker(store, "q", handler, lease_time_ms=5_000)
        running_worker = asyncio.create_task(worker.run())
        try:
            small = await async_wait_for_result(store, "small", "30s")
            with pytest.raises(TaskFailed) as raised:
                await async_wait_for_result(store, "huge", "30s")
        finally:
            worker.stop()
            await asyncio.wait_for(running_worker, 30)
        return [small, raised.value.error.splitlines()[0]]

    small, error = asyncio.run(main())
    assert small == [0, 1, 2]
    assert error.startswith(f"ValidationError: result: must be at most {MAX_RESULT_BYTES} bytes")
    assert store.sync.get_task("huge").result_json is None
