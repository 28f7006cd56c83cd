"""Prometheus metrics: real workers and supervisors on real stores, scraped over HTTP.

Each scenario runs a worker and a supervisor (threads, or asyncio with a
coroutine handler or a plain one) on SQLite or PostgreSQL, on tasks that end
every way a task can: done, failed, snoozed then woken, timed out, fenced (its
lease revoked under the running handler), and rescued from a worker that
vanished. Then it scrapes the metrics endpoint and checks every count by topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from returns.result import Failure, Success

from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.core.commands import RevokeLease, RevokeOutcome
from sokka.core.errors import NotFound, StaleRecord, Throttled, Unavailable
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.aio import supervisor as aio_supervisor
from sokka.shell.aio import worker as aio_worker
from sokka.shell.jsonlog import JSONFormatter
from sokka.shell.metrics import (
    SupervisorMetrics,
    WorkerMetrics,
    new_registry,
    revoke_outcome,
    serve_metrics,
)
from sokka.shell.supervisor import Supervisor
from sokka.shell.worker import Context, Route, Worker, WorkerStats, failed, ok, snoozed
from tests.databases import postgres_engine, postgres_url, test_prefix
from tests.shell.runtimes import Awaited

TOPIC = "mail"
LEASE_MS = 2_000
POLICY = LeasePolicy(lease_time_ms=LEASE_MS, default_snooze_ms=LEASE_MS)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> Samples:
    """Every sample the endpoint serves, by name and labels."""
    answer = httpx.get(url, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return samples_of(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A store's URL and prefix, its schema made, dropped afterwards."""
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'q.db'}", "sokka_"
    else:
        postgres_engine()  # skip (or fail under SOKKA_REQUIRE_POSTGRES) when unreachable
        url, prefix = postgres_url(), test_prefix(f"metrics{time.monotonic_ns() % 10**6}")
    with SQLStore(url, prefix=prefix) as store:
        store.create_schema()
    try:
        yield url, prefix
    finally:
        if request.param == "postgres":
            with SQLStore(url, prefix=prefix) as store:
                store.drop_schema()


def make_tasks(store: SQLStore) -> None:
    """One task for each way a task can end; ``gone`` is held by a worker that vanished."""
    store.create_task(TaskSpec(topic=TOPIC, task_id="gone", data={"do": "ok"}))
    assert [t.task_id for t in store.reserve_tasks(TOPIC, "vanished", 1)] == ["gone"]
    store.create_tasks(
        [
            TaskSpec(topic=TOPIC, task_id="ok", data={"do": "ok"}),
            TaskSpec(topic=TOPIC, task_id="fail", data={"do": "fail"}, max_attempts=1),
            TaskSpec(topic=TOPIC, task_id="snooze", data={"do": "snooze"}),
            TaskSpec(
                topic=TOPIC, task_id="slow", data={"do": "slow"}, timeout_ms=300, max_attempts=1
            ),
            TaskSpec(topic=TOPIC, task_id="fence", data={"do": "fence"}),
        ]
    )


def all_ended(store: SQLStore) -> bool:
    statuses = {t: store.get_task(t).status for t in ("gone", "ok", "snooze", "fence")}
    failures = {t: store.get_task(t).status for t in ("fail", "slow")}
    return set(statuses.values()) == {Status.TERMINATED} and set(failures.values()) == {
        Status.FAILED
    }


def revoke_under_me(store: SQLStore, task: Task) -> None:
    """Revoke the lease of ``task`` while its handler runs (as a supervisor or an
    operator could): the worker's next keepalive is refused."""
    store.revoke_lease(task.task_id, store.get_task(task.task_id).record_ver)


def plain_handler(store: SQLStore) -> Callable[[Task, Context], Any]:
    def handle(task: Task, ctx: Context) -> Any:
        match task.data["do"], task.attempt:
            case "fail", _:
                return failed("no such mailbox")
            case "snooze", 1:
                return snoozed(300)
            case "slow", _:
                ctx.sleep(30)  # until the timeout cancels it
                return ok()
            case "fence", 1:
                revoke_under_me(store, task)
                ctx.sleep(30)  # until the refused keepalive cancels it
                return ok()  # discarded: the lease is lost
        return ok()

    return handle


def coroutine_handler(store: SQLStore) -> Callable[..., Any]:
    async def handle(task: Task, ctx: aio_worker.AsyncContext) -> Any:
        match task.data["do"], task.attempt:
            case "fail", _:
                return failed("no such mailbox")
            case "snooze", 1:
                return snoozed(300)
            case "slow", _:
                await asyncio.sleep(30)  # cancelled at the timeout
            case "fence", 1:
                await asyncio.to_thread(revoke_under_me, store, task)
                await asyncio.sleep(30)  # cancelled when the keepalive is refused
        return ok()

    return handle


def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def run_threads(url: str, prefix: str, check: SQLStore) -> Samples:
    registry = new_registry()
    with SQLStore(url, prefix=prefix) as store:
        worker = Worker(store, TOPIC, plain_handler(check), concurrency=4, lease_time_ms=LEASE_MS)
        supervisor = Supervisor(store, TOPIC, POLICY, interval_ms=100)
        WorkerMetrics(registry).watch(worker)
        SupervisorMetrics(registry).watch(supervisor)
        server = serve_metrics(registry, "127.0.0.1", 0)
        try:
            supervisor.start()
            worker.start()
            until(lambda: all_ended(check))
            worker.stop()
            assert worker.wait_stopped(30)
            supervisor.stop()
            supervisor.run_once()  # one cycle after the last task ended: nothing leased
            return scrape(server.url)
        finally:
            server.stop()


def run_asyncio(url: str, prefix: str, check: SQLStore, *, coroutines: bool) -> Samples:
    registry = new_registry()

    async def main() -> Samples:
        async with AsyncSQLStore(url, prefix=prefix) as store:
            handler = coroutine_handler(check) if coroutines else plain_handler(check)
            worker = aio_worker.Worker(
                store, TOPIC, handler, concurrency=4, lease_time_ms=LEASE_MS
            )
            supervisor = aio_supervisor.Supervisor(store, TOPIC, POLICY, interval_ms=100)
            WorkerMetrics(registry).watch(worker)
            SupervisorMetrics(registry).watch(supervisor)
            server = serve_metrics(registry, "127.0.0.1", 0)
            try:
                supervising = asyncio.create_task(supervisor.run())
                working = asyncio.create_task(worker.run())
                deadline = time.monotonic() + 60
                while not await asyncio.to_thread(all_ended, check):
                    assert time.monotonic() < deadline, "timed out"
                    await asyncio.sleep(0.05)
                worker.stop()
                await working
                supervisor.stop()
                await supervising
                await supervisor.run_once()  # one cycle after the last task ended
                return await asyncio.to_thread(scrape, server.url)
            finally:
                server.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("runtime", ["threads", "asyncio", "asyncio-plain"])
def test_a_worker_and_a_supervisor_count_every_way_a_task_ends(
    database: tuple[str, str], runtime: str
) -> None:
    url, prefix = database
    with SQLStore(url, prefix=prefix) as check:
        make_tasks(check)
        if runtime == "threads":
            samples = run_threads(url, prefix, check)
        else:
            samples = run_asyncio(url, prefix, check, coroutines=runtime == "asyncio")
        assert all_ended(check)

    def worker(name: str, **labels: str) -> float:
        return value(samples, f"sokka_worker_{name}", topic=TOPIC, **labels)

    # Started: snooze and fence ran twice, gone once (after its rescue).
    assert worker("tasks_started_total") == 8
    assert worker("outcomes_total", outcome="succeeded") == 4  # ok, snooze, fence, gone
    assert worker("outcomes_total", outcome="failed") == 2  # fail, slow (its timeout)
    assert worker("outcomes_total", outcome="snoozed") == 1
    assert worker("outcomes_total", outcome="released") == 0
    assert worker("timeouts_total") == 1
    assert worker("fenced_total") == 1
    assert worker("leases_lost_total") == 1
    durations = {
        result: worker("handler_duration_seconds_count", result=result)
        for result in ("ok", "failed", "snoozed", "cancelled")
    }
    assert durations == {"ok": 4, "failed": 1, "snoozed": 1, "cancelled": 2}
    # The slow handler ran at least its timeout.
    assert worker("handler_duration_seconds_sum", result="cancelled") >= 0.3
    assert value(samples, "sokka_worker_keepalive_round_trip_seconds_count") >= 1
    assert worker("leases_held") == 0  # the worker has stopped
    assert value(samples, "sokka_worker_store_errors_total", call="reserve_tasks") == 0

    def supervisor(name: str, **labels: str) -> float:
        return value(samples, f"sokka_supervisor_{name}", **labels)

    assert supervisor("revocations_total", outcome="revoked") == 1  # the vanished worker's
    assert supervisor("revocations_total", outcome="failed") == 0
    assert supervisor("wakes_total", outcome="woken") == 1  # the snoozed task
    assert supervisor("cycle_duration_seconds_count") >= 2
    assert supervisor("monitored_leases") == 0
    assert supervisor("listed_leases") == 0


class DownAtFirst(MemoryStore):
    """A store whose first reservations fail as if the database were down (a fake)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1, **wait: Any) -> list[Task]:
        if self.failures:
            self.failures -= 1
            raise Unavailable("the database is down")
        return super().reserve_tasks(topic, pid, limit)


@pytest.mark.parametrize("runtime", ["threads", "asyncio"])
def test_store_errors_are_counted_by_call_and_leases_held_read_live(runtime: str) -> None:
    store = DownAtFirst(failures=2)
    store.create_tasks([TaskSpec(topic=TOPIC, task_id=f"t{i}") for i in range(2)])
    registry = new_registry()
    server = serve_metrics(registry, "127.0.0.1", 0)
    metrics = WorkerMetrics(registry)
    try:
        assert value(scrape(server.url), "sokka_worker_leases_held", topic=TOPIC) == 0
        holding_on = threading.Event()

        def hold(task: Task, ctx: Any) -> Any:
            holding_on.wait(30)
            return ok()

        if runtime == "threads":
            worker: Any = Worker(store, TOPIC, hold, concurrency=2, lease_time_ms=LEASE_MS)
            metrics.watch(worker)
            worker.start()
        else:
            loop_worker = aio_worker.Worker(
                Awaited(store), TOPIC, hold, concurrency=2, lease_time_ms=LEASE_MS
            )
            metrics.watch(loop_worker)
            runner = threading.Thread(
                target=asyncio.run, args=(loop_worker.run(),), daemon=True
            )
            runner.start()
            worker = loop_worker
        until(lambda: value(scrape(server.url), "sokka_worker_leases_held", topic=TOPIC) == 2)
        samples = scrape(server.url)
        assert value(samples, "sokka_worker_store_errors_total", call="reserve_tasks") == 2
        assert value(samples, "sokka_worker_keepalive_lag_seconds", topic=TOPIC) < LEASE_MS / 1000
        holding_on.set()
        until(lambda: all(t.status is Status.TERMINATED for t in store.list_tasks().tasks))
        worker.stop()
        if runtime == "threads":
            assert worker.wait_stopped(30)
        else:
            runner.join(30)
        samples = scrape(server.url)
        assert value(samples, "sokka_worker_leases_held", topic=TOPIC) == 0
        assert value(samples, "sokka_worker_outcomes_total", topic=TOPIC,
                     outcome="succeeded") == 2  # fmt: skip
    finally:
        server.stop()


def test_two_registries_in_one_process_keep_their_counts_apart() -> None:
    """A registry per process piece, never prometheus-client's global one."""
    counts = []
    for n in (1, 3):
        store = MemoryStore()
        store.create_tasks([TaskSpec(topic=TOPIC) for _ in range(n)])
        registry = new_registry()
        worker = Worker(store, TOPIC, lambda task, ctx: ok(), lease_time_ms=LEASE_MS)
        WorkerMetrics(registry).watch(worker)
        worker.start()
        until(lambda s=store: all(t.status is Status.TERMINATED for t in s.list_tasks().tasks))
        worker.stop()
        assert worker.wait_stopped(30)
        server = serve_metrics(registry, "127.0.0.1", 0)
        try:
            counts.append(value(scrape(server.url), "sokka_worker_tasks_started_total",
                                topic=TOPIC))  # fmt: skip
        finally:
            server.stop()
    assert counts == [1, 3]


def _revoke(status: Status, result: Any) -> RevokeOutcome:
    command = RevokeLease(task_id="t1", record_ver=3, status=status, overdue_ms=5)
    return RevokeOutcome(command=command, result=result)


def _task(status: Status) -> Task:
    return Task(task_id="t1", task_group_id="t1", topic=TOPIC, status=status, attempt=1)


@pytest.mark.parametrize(
    ("seen", "result", "labelled"),
    [
        (Status.RUNNING, Success(_task(Status.STARTING)), ("revoke", "revoked")),
        (Status.RUNNING, Success(_task(Status.FAILED)), ("revoke", "failed")),
        (Status.RUNNING, Failure(StaleRecord("t1", 3, 4)), ("revoke", "conflict")),
        (Status.RUNNING, Failure(NotFound("t1")), ("revoke", "not_found")),
        (Status.RUNNING, Failure(Unavailable("down")), ("revoke", "error")),
        (Status.SNOOZED, Success(_task(Status.STARTING)), ("wake", "woken")),
        (Status.SNOOZED, Failure(StaleRecord("t1", 3, 4)), ("wake", "conflict")),
        (Status.SNOOZED, Failure(Throttled("slow down")), ("wake", "error")),
    ],
)
def test_each_revoke_outcome_has_its_label(
    seen: Status, result: Any, labelled: tuple[str, str]
) -> None:
    assert revoke_outcome(_revoke(seen, result)) == labelled


def test_json_log_lines_carry_the_records_fields_and_its_traceback() -> None:
    formatter = JSONFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("sokka.worker").makeRecord(
            "sokka.worker", logging.WARNING, __file__, 1, "task %s failed", ("t1",),
            sys.exc_info(), extra={"task_id": "t1", "topic": TOPIC, "at": object()},
        )  # fmt: skip
    line = json.loads(formatter.format(record))
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING", "sokka.worker", "task t1 failed"
    )  # fmt: skip
    assert (line["task_id"], line["topic"]) == ("t1", TOPIC)
    assert line["at"].startswith("<object object at ")  # not JSON: its str
    assert line["exception"].endswith("ValueError: boom")
    assert not {"args", "msg", "levelno"} & set(line)  # a record's own attributes stay out


# -- a worker of several topics labels each lost lease with its task's topic ------------------


def routed_handler(store: SQLStore) -> Callable[[Task, Context], Any]:
    """``fence``: its lease is revoked under it; ``cancel``: an operator cancels it;
    both then wait until the worker cancels them, and anything else is done."""

    def handle(task: Task, ctx: Context) -> Any:
        if task.attempt == 1 and task.data.get("do") == "fence":
            revoke_under_me(store, task)
            ctx.sleep(30)  # until the refused keepalive cancels it
        elif task.data.get("do") == "cancel":
            store.cancel(task.task_id, "not wanted any more")
            ctx.sleep(30)  # until the refused keepalive cancels it
        return ok()

    return handle


def routed_coroutine(store: SQLStore) -> Callable[..., Any]:
    async def handle(task: Task, ctx: aio_worker.AsyncContext) -> Any:
        if task.attempt == 1 and task.data.get("do") == "fence":
            await asyncio.to_thread(revoke_under_me, store, task)
            await asyncio.sleep(30)
        elif task.data.get("do") == "cancel":
            await asyncio.to_thread(store.cancel, task.task_id, "not wanted any more")
            await asyncio.sleep(30)
        return ok()

    return handle


@pytest.mark.parametrize("runtime", ["threads", "asyncio"])
def test_a_worker_of_two_topics_labels_lost_and_cancelled_leases_with_the_tasks_topic(
    database: tuple[str, str], runtime: str
) -> None:
    url, prefix = database
    registry = new_registry()
    server = serve_metrics(registry, "127.0.0.1", 0)
    with SQLStore(url, prefix=prefix) as check:
        check.create_tasks([
            TaskSpec(topic="emails", task_id="fenced", data={"do": "fence"}),
            TaskSpec(topic="reports", task_id="cancelled", data={"do": "cancel"}),
            TaskSpec(topic="reports", task_id="done", data={"do": "ok"}),
        ])  # fmt: skip

        def ended() -> bool:
            return [check.get_task(t).status for t in ("fenced", "cancelled", "done")] == [
                Status.TERMINATED, Status.FAILED, Status.TERMINATED,
            ]  # fmt: skip

        def counted_by(stats: WorkerStats) -> bool:
            return (stats.lost, stats.cancelled) == (1, 1)

        try:
            if runtime == "threads":
                with SQLStore(url, prefix=prefix) as store:
                    handler = routed_handler(check)
                    worker = Worker(store, routes=[
                        Route(topic="emails", handler=handler),
                        Route(topic="reports", handler=handler),
                    ], lease_time_ms=LEASE_MS)  # fmt: skip
                    WorkerMetrics(registry).watch(worker)
                    worker.start()
                    # the revoked task runs again (attempt 2) once a supervisor would
                    # have woken it: here the revoke put it back to starting at once.
                    # The store shows the cancel before the worker's next keepalive
                    # hears of it: wait for the worker's count too.
                    until(lambda: ended() and counted_by(worker.stats()))
                    worker.stop()
                    assert worker.wait_stopped(30)
            else:

                async def main() -> None:
                    async with AsyncSQLStore(url, prefix=prefix) as store:
                        handler = routed_coroutine(check)
                        worker = aio_worker.Worker(store, routes=[
                            Route(topic="emails", handler=handler),
                            Route(topic="reports", handler=handler),
                        ], lease_time_ms=LEASE_MS)  # fmt: skip
                        WorkerMetrics(registry).watch(worker)
                        working = asyncio.create_task(worker.run())
                        deadline = time.monotonic() + 60
                        while not (
                            await asyncio.to_thread(ended) and counted_by(worker.stats())
                        ):
                            assert time.monotonic() < deadline, "timed out"
                            await asyncio.sleep(0.05)
                        worker.stop()
                        await working

                asyncio.run(main())
            samples = scrape(server.url)
        finally:
            server.stop()

    def counted(name: str, topic: str) -> float:
        return value(samples, f"sokka_worker_{name}_total", topic=topic)

    assert (counted("leases_lost", "emails"), counted("fenced", "emails")) == (1, 1)
    assert counted("operator_cancels", "reports") == 1
    assert (counted("leases_lost", "reports"), counted("operator_cancels", "emails")) == (0, 0)
    # No sample of any worker counter lost its topic.
    blank = [key for key in samples if key[0].startswith("sokka_worker")
             and ("topic", "") in key[1]]  # fmt: skip
    assert blank == []
