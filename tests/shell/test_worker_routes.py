"""One worker serving several topics (``routes=``), on both runtimes, on SQLite
and PostgreSQL: each topic with its own handler, concurrency, lease and
timeout; one keepalive call for the leases of every topic; no topic starved.

The asyncio runtime runs behind the threaded surface (``tests/shell/runtimes``),
its plain handlers on its handler threads. The tests wait for what they need
(bounded by ``PATIENCE_S``, reached only on failure) and never assert how long
anything took.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sokka import SQLStore, Status, Task, TaskFilter, TaskSpec, ok
from sokka.core.errors import ValidationError
from sokka.shell.worker import Context, Route, Worker
from tests import databases
from tests.shell.runtimes import RUNTIMES, worker_class

PATIENCE_S = 30
_prefix_numbers = itertools.count()


class Watched:
    """An ``SQLStore`` whose keepalive calls are recorded (which topics each held),
    and its reserves (the topic and limit of each) and outcome batches (sizes), a
    claim that carries outcomes (``reserve_and_finish``) counted as both."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self.topic_of: dict[str, str] = {}
        self.extends: list[set[str]] = []  #: per extend_leases call: the topics of its leases
        self.limits: list[tuple[str, int]] = []  #: per reserve_tasks call: (topic, limit)
        self.recorded: list[int] = []  #: per finish_many call: how many outcomes
        self.carried = 0  #: outcomes sent with a claim (reserve_and_finish)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        self.limits.append((topic, limit))
        tasks = self.store.reserve_tasks(topic, pid, limit)
        for task in tasks:
            self.topic_of[task.task_id] = task.topic
        return tasks

    def extend_leases(self, pid: str, leases: Any) -> Any:
        self.extends.append({self.topic_of.get(lease.task_id, "?") for lease in leases})
        return self.store.extend_leases(pid, leases)

    def finish_many(self, outcomes: Any) -> Any:
        self.recorded.append(len(outcomes))
        return self.store.finish_many(outcomes)

    def reserve_and_finish(self, topic: str, pid: str, limit: int, outcomes: Any) -> Any:
        """A claim that carries outcomes: counted as both."""
        self.recorded.append(len(outcomes))
        self.carried += len(outcomes)
        tasks, results = self.store.reserve_and_finish(topic, pid, limit, outcomes)
        self.limits.append((topic, limit))
        for task in tasks:
            self.topic_of[task.task_id] = task.topic
        return tasks, results


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Watched]:
    if request.param == "sqlite":
        sql = SQLStore(f"sqlite:///{tmp_path / 'routes.db'}")
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        prefix = databases.test_prefix(f"routes{next(_prefix_numbers)}")
        sql = SQLStore(databases.postgres_url(), prefix=prefix)
    sql.create_schema()
    try:
        yield Watched(sql)
    finally:
        if request.param == "postgres":
            sql.drop_schema()
        sql.close()


@pytest.fixture(params=RUNTIMES)
def running(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start a worker of the runtime asked for on ``routes``; stop them all after."""
    started: list[Any] = []

    def start(store: Watched, routes: list[Route], **options: Any) -> Any:
        worker = worker_class(request.param)(store, routes=routes, **options)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        assert worker.wait_stopped(PATIENCE_S)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def statuses(store: Watched, topic: str) -> list[Status]:
    return [t.status for t in store.list_tasks(TaskFilter(topic=topic), limit=1000).tasks]


def all_done(store: Watched, topic: str, n: int) -> Callable[[], bool]:
    return lambda: statuses(store, topic) == [Status.TERMINATED] * n


class Gauge:
    """How many handlers of a topic run at once, and the most seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.topics: set[str] = set()

    def __enter__(self) -> Gauge:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def test_one_worker_serves_two_topics_each_with_its_handler_and_concurrency(
    store: Watched, running: Callable[..., Any]
) -> None:
    # Three "emails" must run at once to pass the barrier: a concurrency of 3 is real.
    barrier = threading.Barrier(3, timeout=PATIENCE_S)
    gauges = {"emails": Gauge(), "reports": Gauge()}

    def send(task: Task, ctx: Context) -> Any:
        with gauges["emails"] as gauge:
            gauge.topics.add(task.topic)
            barrier.wait()
        return ok()

    def report(task: Task, ctx: Context) -> Any:
        with gauges["reports"] as gauge:
            gauge.topics.add(task.topic)
            time.sleep(0.01)
        return ok()

    for n in range(9):
        store.create_task(TaskSpec(topic="emails", data={"n": n}))
    for n in range(4):
        store.create_task(TaskSpec(topic="reports", data={"n": n}))
    worker = running(
        store,
        [
            Route(topic="emails", handler=send, concurrency=3),
            Route(topic="reports", handler=report, concurrency=1),
        ],
    )
    wait_until(all_done(store, "emails", 9), "9 emails done")
    wait_until(all_done(store, "reports", 4), "4 reports done")
    assert (gauges["emails"].most, gauges["reports"].most) == (3, 1)
    assert (gauges["emails"].topics, gauges["reports"].topics) == ({"emails"}, {"reports"})
    wait_until(lambda: worker.stats().succeeded == 13, "13 outcomes recorded")


def test_one_keepalive_call_extends_the_leases_of_both_topics(
    store: Watched, running: Callable[..., Any]
) -> None:
    release = threading.Event()

    def hold(task: Task, ctx: Context) -> Any:
        release.wait(PATIENCE_S)
        return ok()

    store.create_task(TaskSpec(topic="emails", task_id="e1"))
    store.create_task(TaskSpec(topic="reports", task_id="r1"))
    worker = running(
        store,
        [Route(topic="emails", handler=hold), Route(topic="reports", handler=hold)],
        # Long enough that a loaded machine's late keepalive does not fence the
        # worker (its task would then never be done: no supervisor runs here).
        lease_time_ms=3_000,
    )
    try:
        wait_until(lambda: len(worker.holdings) == 2, "both tasks held")
        wait_until(lambda: len(store.extends) >= 3, "three keepalive rounds")
    finally:
        release.set()
    wait_until(all_done(store, "emails", 1), "the email done")
    wait_until(all_done(store, "reports", 1), "the report done")
    # Both leases went out together, in one call per round, not one call per topic.
    assert {"emails", "reports"} in store.extends[:3]
    assert worker.stats().lost == 0


def test_a_busy_topic_does_not_starve_another(
    store: Watched, running: Callable[..., Any]
) -> None:
    def slow(task: Task, ctx: Context) -> Any:
        time.sleep(0.005)
        return ok()

    store.create_tasks([TaskSpec(topic="flood", data={"n": n}) for n in range(200)])
    running(
        store,
        [
            Route(topic="flood", handler=slow, concurrency=1),
            Route(topic="rare", handler=slow, concurrency=1),
        ],
    )
    wait_until(lambda: Status.TERMINATED in statuses(store, "flood"), "the flood under way")
    store.create_task(TaskSpec(topic="rare", task_id="rare"))
    wait_until(all_done(store, "rare", 1), "the rare task done")
    assert Status.STARTING in statuses(store, "flood")  # done while the flood still waits


def test_a_topics_own_lease_and_timeout_apply_to_its_tasks(
    store: Watched, running: Callable[..., Any]
) -> None:
    workers: list[Any] = []
    leases: list[int] = []

    def dawdle(task: Task, ctx: Context) -> Any:
        held = workers[0].holdings.get((task.task_id, task.attempt))
        leases.append(held.lease_ms)
        ctx.sleep(PATIENCE_S)  # until cancelled by the topic's timeout
        return ok()

    store.create_task(TaskSpec(topic="slow", task_id="s1"))  # no lease or timeout of its own
    store.create_task(TaskSpec(topic="fast", task_id="f1"))
    workers.append(
        running(
            store,
            [
                Route(topic="fast", handler=dawdle, timeout_ms=200),
                Route(topic="slow", handler=dawdle, lease_time_ms=7_000, timeout_ms=300),
            ],
            lease_time_ms=30_000,
        )
    )
    for task_id in ("s1", "f1"):
        wait_until(lambda t=task_id: store.get_task(t).attempt == 1 and store.get_task(t).status
                   is not Status.RUNNING, f"the timeout of {task_id}")  # fmt: skip
    assert store.get_task("s1").errors == ("attempt 1: timed out after 300 ms",)
    assert store.get_task("f1").errors == ("attempt 1: timed out after 200 ms",)
    assert sorted(leases) == [7_000, 30_000]  # the topic's own, and the worker's
    wait_until(lambda: workers[0].stats().timed_out == 2, "two timeouts counted")


def test_at_its_defaults_a_worker_fetches_short_tasks_ahead_and_slow_ones_not(
    store: Watched, running: Callable[..., Any]
) -> None:
    """Without a batch size, a topic whose handlers return at once is reserved
    and recorded in batches (fetched ahead by time, at most 100 leases), while
    a topic whose handlers take longer than the 50 ms budget is reserved one
    task per free handler, as before: its waiting tasks stay where another
    worker can take them."""

    def quick(task: Task, ctx: Context) -> Any:
        return ok()

    def slow(task: Task, ctx: Context) -> Any:
        ctx.sleep(0.3)
        return ok()

    store.create_tasks([TaskSpec(topic="slow", task_id=f"s{n}") for n in range(3)])
    store.create_tasks([TaskSpec(topic="quick", task_id=f"q{n}") for n in range(400)])
    running(store, [Route(topic="quick", handler=quick), Route(topic="slow", handler=slow)])
    wait_until(all_done(store, "quick", 400), "the quick tasks done")
    wait_until(all_done(store, "slow", 3), "the slow tasks done")
    quick_limits = [limit for topic, limit in store.limits if topic == "quick"]
    slow_limits = [limit for topic, limit in store.limits if topic == "slow"]
    assert quick_limits[0] == 1  # no handler had returned: one per handler
    assert 1 < max(quick_limits) <= 100  # then fetched ahead, within the bound
    assert set(slow_limits) == {1}  # 300 ms a run: never ahead
    assert max(store.recorded) > 1  # the quick outcomes recorded in batches


def test_one_task_at_a_time_the_next_claim_carries_the_last_outcome(
    store: Watched, running: Callable[..., Any]
) -> None:
    """One lease at a time (concurrency 1, batch size 1), a task costs a claim and
    an outcome: on an SQL store (``reserve_and_finish``) the outcome travels with
    the next claim, so each task costs one round trip and one commit, not two.
    Every task runs once."""
    store.create_tasks([TaskSpec(topic="quick", task_id=f"q{n:02}") for n in range(60)])
    ran: list[str] = []

    def quick(task: Task, ctx: Context) -> Any:
        ran.append(task.task_id)
        return ok()

    running(store, [Route(topic="quick", handler=quick, batch_size=1)])
    wait_until(all_done(store, "quick", 60), "the tasks done")
    assert sorted(ran) == [f"q{n:02}" for n in range(60)]  # each once
    assert {t.attempt for t in store.list_tasks(limit=100).tasks} == {1}
    assert {limit for _, limit in store.limits} == {1}
    # A claim takes the outcome unless it waited linger_ms (10) first, or came
    # in between a claim and the dispatcher's next look: on a loaded machine a
    # few; most ride with a claim.
    assert store.carried >= 30, (store.carried, store.recorded)
    assert sum(store.recorded) == 60


@pytest.mark.parametrize("route", [{"concurrency": 4, "batch_size": 1}, {"batch_size": 10}])
def test_with_more_leases_than_one_the_outcomes_are_recorded_apart(
    store: Watched, running: Callable[..., Any], route: dict[str, Any]
) -> None:
    """Holding several leases, the worker records outcomes on their own (the
    recorder, while the next claim is made), which is quicker there than
    carrying them with the claims."""
    store.create_tasks([TaskSpec(topic="quick", task_id=f"q{n:02}") for n in range(40)])
    running(store, [Route(topic="quick", handler=lambda task, ctx: ok(), **route)])
    wait_until(all_done(store, "quick", 40), "the tasks done")
    assert store.carried == 0
    assert sum(store.recorded) == 40


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"routes": []}, "routes"),
        ({"routes": "emails"}, "routes"),
        ({"routes": [Route(topic="a", handler=print), Route(topic="a", handler=print)]}, "routes"),
        ({"routes": [Route(topic="a", handler=print)], "topic": "a"}, "routes"),
        ({"routes": [Route(topic="", handler=print)]}, "topic"),
        ({"routes": [Route(topic="a", handler=42)]}, "handler"),  # type: ignore[arg-type]
        ({"routes": [Route(topic="a", handler=print, concurrency=0)]}, "concurrency"),
        ({"routes": [Route(topic="a", handler=print, lease_time_ms=-1)]}, "lease_time_ms"),
        ({"routes": [Route(topic="a", handler=print, timeout_ms=0)]}, "timeout_ms"),
        ({}, "topic"),
    ],
)
def test_bad_routes_are_refused_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    from sokka import MemoryStore

    with pytest.raises(ValidationError) as raised:
        Worker(MemoryStore(), **kwargs)
    assert raised.value.field == field
