"""OpenTelemetry spans from enqueue to each attempt, on real stores and both runtimes.

The spans go to the SDK's ``InMemorySpanExporter`` through a
``SimpleSpanProcessor`` on one ``TracerProvider`` that the tests pass to the
App and the Worker explicitly (``tracer_provider=``): the global provider is
never set, so a test can also show what happens when none is configured.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the tracing tests need opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.span import SpanContext, TraceFlags, TraceState
from starlette.applications import Starlette

import sokka.asyncio
from sokka import App, ok
from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.http import HTTPStore
from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskFilter, TaskStore
from sokka.core.backoff import Backoff, Jitter
from sokka.core.task import MAX_TRACE_CONTEXT_BYTES, Status, Task
from sokka.shell import worker as threaded
from sokka.shell.aio import worker as aio
from sokka.shell.clock import ManualClock
from sokka.shell.tracing import Tracing
from tests import databases

PATIENCE_S = 30
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
TRACER = PROVIDER.get_tracer("tests")
RUNTIMES = ["threads", "asyncio"]
_prefix_numbers = itertools.count()

Handler = Callable[[Task, Any], Any]


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An initialised database: (url, prefix)."""
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'traced.db'}", "sokka_"
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        url = databases.postgres_url()
        prefix = databases.test_prefix(f"trace{next(_prefix_numbers)}")
    with SQLStore(url, prefix=prefix) as store:
        store.create_schema()
    yield url, prefix
    if request.param == "postgres":
        with SQLStore(url, prefix=prefix) as store:
            store.drop_schema()


#: Fast retries, and an embedded supervisor that wakes a retry soon.
WORKER_OPTIONS: dict[str, Any] = {
    "lease_time_ms": 10_000,
    "retry_backoff": Backoff(base_ms=1, cap_ms=1, jitter=Jitter.NONE),
    "supervise": True,
    "supervisor_interval_ms": 20,
}


def final(tasks: list[Task]) -> bool:
    return bool(tasks) and all(t.status.is_final for t in tasks)


def run_threads(
    store: TaskStore, topic: str, handler: Handler, enqueue: Callable[[App], list[Task]],
    *, tracer_provider: TracerProvider | None = PROVIDER, **options: Any,
) -> tuple[list[Task], str]:  # fmt: skip
    """Enqueue through a threaded App, run a threaded Worker until every task
    enqueued is final; return the tasks as the store has them, and the worker's pid."""
    app = App(store, tracer_provider=tracer_provider)
    app.handler(topic, max_attempts=options.pop("max_attempts", None))(handler)
    made = enqueue(app)
    worker = threaded.Worker(
        store, topic, handler, tracer_provider=tracer_provider, **{**WORKER_OPTIONS, **options}
    )
    worker.start()
    deadline = time.monotonic() + PATIENCE_S
    try:
        while not final(now := [store.get_task(t.task_id) for t in made]):
            assert time.monotonic() < deadline, f"gave up waiting for {now}"
            time.sleep(0.02)
    finally:
        worker.stop()
        assert worker.wait_stopped(PATIENCE_S)
    return now, worker.pid


def run_asyncio(
    url: str, prefix: str, topic: str, handler: Handler,
    enqueue: Callable[[sokka.asyncio.App], Any], *, plain: bool = False,
    async_handler: Callable[[Task, Any], Any] | None = None, **options: Any,
) -> tuple[list[Task], str]:  # fmt: skip
    """As ``run_threads``, on an event loop: an asyncio App on an AsyncSQLStore, and
    an asyncio Worker running ``handler`` as an ``async def`` (``plain``: as a plain
    function, on the worker's handler threads; ``async_handler``: that one)."""

    async def as_coroutine(task: Task, ctx: Any) -> Any:
        return handler(task, ctx)

    run = handler if plain else async_handler or as_coroutine

    async def main() -> tuple[list[Task], str]:
        store = AsyncSQLStore(url, prefix=prefix)
        try:
            app = sokka.asyncio.App(store, tracer_provider=PROVIDER)
            app.handler(topic, max_attempts=options.pop("max_attempts", None))(run)
            made = await enqueue(app)
            worker = aio.Worker(
                store, topic, run, tracer_provider=PROVIDER, **{**WORKER_OPTIONS, **options}
            )
            running = asyncio.create_task(worker.run())
            try:
                async with asyncio.timeout(PATIENCE_S):
                    while not final(now := [await store.get_task(t.task_id) for t in made]):
                        await asyncio.sleep(0.02)
            finally:
                worker.stop()
                await running
            return now, worker.pid
        finally:
            await store.aclose()

    return asyncio.run(main())


def run_on(
    runtime: str, db: tuple[str, str], topic: str, handler: Handler, datas: list[Any],
    **options: Any,
) -> tuple[list[Task], str]:  # fmt: skip
    """Enqueue one task per element of ``datas`` inside a ``"request"`` span, on
    ``runtime``, and run them to the end."""
    url, prefix = db
    if runtime == "threads":

        def enqueue(app: App) -> list[Task]:
            with TRACER.start_as_current_span("request"):
                return [app.enqueue(topic, data) for data in datas]

        options.pop("async_handler", None)
        with SQLStore(url, prefix=prefix) as store:
            return run_threads(store, topic, handler, enqueue, **options)

    async def enqueue_async(app: sokka.asyncio.App) -> list[Task]:
        with TRACER.start_as_current_span("request"):
            return [await app.enqueue(topic, data) for data in datas]

    return run_asyncio(url, prefix, topic, handler, enqueue_async, **options)


def named(name: str) -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.name == name]


def only(name: str) -> ReadableSpan:
    (span,) = named(name)
    return span


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    assert span.context is not None
    assert parent.context is not None
    return (
        span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and span.context.trace_id == parent.context.trace_id
    )


def send(task: Task, ctx: Any) -> Any:
    """A handler with a span of its own (a child of the attempt's, if it is current)."""
    with TRACER.start_as_current_span("send email") as own:
        own.set_attribute("to", task.data["to"])
    return ok()


# -- one task: enqueue -> attempt -> the handler's own span ------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_attempt_is_traced_as_a_child_of_its_enqueue(runtime: str, db: Any) -> None:
    (task,), pid = run_on(runtime, db, "emails", send, [{"to": "ann@example.com"}])
    assert task.status is Status.TERMINATED
    request, publish, process = only("request"), only("publish emails"), only("process emails")
    assert child_of(publish, request)
    assert publish.kind is SpanKind.PRODUCER
    assert publish.attributes is not None
    assert dict(publish.attributes) == {
        "messaging.system": "sokka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "emails",
        "messaging.message.id": task.task_id,
    }
    # The stored context is the publish span's, and the attempt is its child.
    assert publish.context is not None
    carried = task.trace_context
    assert carried is not None
    version, trace_id, parent_id, flags = carried["traceparent"].split("-")
    assert (version, trace_id, parent_id) == (
        "00", f"{publish.context.trace_id:032x}", f"{publish.context.span_id:016x}",
    )  # fmt: skip
    assert int(flags, 16) & TraceFlags.SAMPLED
    assert child_of(process, publish)
    assert process.kind is SpanKind.CONSUMER
    assert process.attributes is not None
    assert dict(process.attributes) == {
        "messaging.system": "sokka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "emails",
        "messaging.message.id": task.task_id,
        "sokka.task.attempt": 1,
        "sokka.worker.pid": pid,
        "sokka.outcome": "ok",
    }
    assert process.status.status_code is StatusCode.OK
    # The handler's own span is the attempt's child: the attempt's span was current.
    own = only("send email")
    assert child_of(own, process)
    assert own.attributes is not None
    assert own.attributes["to"] == "ann@example.com"


def test_a_plain_handler_on_the_asyncio_worker_is_traced_on_its_thread(db: Any) -> None:
    url, prefix = db

    async def enqueue(app: sokka.asyncio.App) -> list[Task]:
        with TRACER.start_as_current_span("request"):
            return [await app.enqueue("emails", {"to": "bob@example.com"})]

    (task,), _ = run_asyncio(url, prefix, "emails", send, enqueue, plain=True)
    assert task.status is Status.TERMINATED
    process = only("process emails")
    assert child_of(process, only("publish emails"))
    assert child_of(only("send email"), process)


# -- retries: every attempt in the enqueue's trace ---------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_failed_attempt_then_a_retry_are_two_spans_of_one_trace(runtime: str, db: Any) -> None:
    def flaky(task: Task, ctx: Any) -> Any:
        if task.attempt == 1:
            raise ConnectionError("smtp down")
        return ok()

    (task,), _ = run_on(runtime, db, "emails", flaky, [{"to": "c"}], max_attempts=2)
    assert (task.status, task.attempt) == (Status.TERMINATED, 2)
    publish = only("publish emails")
    first, second = sorted(named("process emails"), key=lambda s: s.start_time or 0)
    assert child_of(first, publish)
    assert child_of(second, publish)
    assert first.attributes is not None
    assert second.attributes is not None
    assert (first.attributes["sokka.task.attempt"], second.attributes["sokka.task.attempt"]) == (
        1, 2,
    )  # fmt: skip
    assert first.status.status_code is StatusCode.ERROR
    assert "ConnectionError: smtp down" in (first.status.description or "")
    assert first.attributes["sokka.outcome"] == "failed"
    (raised,) = first.events
    assert raised.name == "exception"
    assert raised.attributes is not None
    assert raised.attributes["exception.type"] == "ConnectionError"
    assert second.status.status_code is StatusCode.OK


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_failure_and_a_timeout_end_their_spans_with_error(runtime: str, db: Any) -> None:
    def handler(task: Task, ctx: Any) -> Any:
        if task.data == "fail":
            return sokka.failed("no such mailbox", retry=False)
        # Woken by the watchdog's cancel, which says why. (Polling ctx.cancelled
        # instead may see the lapsed deadline first: "the lease is no longer live".)
        ctx.sleep(PATIENCE_S)
        return ok()

    async def async_handler(task: Task, ctx: Any) -> Any:
        if task.data == "fail":
            return sokka.failed("no such mailbox", retry=False)
        await asyncio.sleep(PATIENCE_S)  # the timeout cancels it
        return ok()

    tasks, _ = run_on(
        runtime, db, "jobs", handler, ["fail", "slow"], max_attempts=1, timeout_ms=200,
        async_handler=async_handler,
    )  # fmt: skip
    assert [t.status for t in tasks] == [Status.FAILED, Status.FAILED]
    by_task = {
        s.attributes["messaging.message.id"]: s
        for s in named("process jobs")
        if s.attributes is not None
    }
    failed, slow = by_task[tasks[0].task_id], by_task[tasks[1].task_id]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "no such mailbox"
    assert failed.attributes is not None
    assert failed.attributes["sokka.outcome"] == "failed"
    assert slow.status.status_code is StatusCode.ERROR
    assert "timed out after 200 ms" in (slow.status.description or "")
    assert slow.attributes is not None
    assert slow.attributes["sokka.outcome"] == "cancelled"


# -- the HTTP store carries the context ---------------------------------------------------


def test_the_http_store_carries_the_context(
    http_server: tuple[Starlette, HTTPStore], tmp_path: Path
) -> None:
    server, client = http_server
    backing = SQLStore(f"sqlite:///{tmp_path / 'behind.db'}")
    backing.create_schema()
    server.state.store = backing
    try:

        def enqueue(app: App) -> list[Task]:
            with TRACER.start_as_current_span("request"):
                return [app.enqueue("emails", {"to": "dee@example.com"})]

        (task,), _ = run_threads(client, "emails", send, enqueue)
    finally:
        server.state.store = MemoryStore()
        backing.close()
    publish, process = only("publish emails"), only("process emails")
    assert child_of(publish, only("request"))
    assert child_of(process, publish)
    assert child_of(only("send email"), process)
    assert task.trace_context is not None  # read back through the server


# -- untraced: no provider, a context too large, no OpenTelemetry -----------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_without_a_provider_nothing_is_traced_or_stored(runtime: str, db: Any) -> None:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a global tracer provider was set in this process")
    url, prefix = db
    if runtime == "threads":

        def enqueue(app: App) -> list[Task]:
            with TRACER.start_as_current_span("request"):  # a span, but the app has no provider
                return [app.enqueue("emails", {"to": "eve"})]

        with SQLStore(url, prefix=prefix) as store:
            (task,), _ = run_threads(store, "emails", send, enqueue, tracer_provider=None)
            stored = store.get_task(task.task_id)
    else:

        async def body() -> Task:
            store = AsyncSQLStore(url, prefix=prefix)
            try:
                app = sokka.asyncio.App(store)
                app.handler("emails")(send)
                with TRACER.start_as_current_span("request"):
                    return await app.enqueue("emails", {"to": "eve"})
            finally:
                await store.aclose()

        stored = asyncio.run(body())
    assert (stored.trace_context, stored.trace_context_json) == (None, None)
    assert [s.name for s in EXPORTER.get_finished_spans() if "emails" in s.name] == []
    assert Tracing().tracer() is None


def test_a_tracestate_over_the_bound_is_dropped_never_the_enqueue() -> None:
    big = TraceState([(f"vendor{i}", "v" * 200) for i in range(8)])
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=big,
    )
    assert len(big.to_header()) > MAX_TRACE_CONTEXT_BYTES
    store = MemoryStore()
    app = App(store, tracer_provider=PROVIDER)
    app.handler("emails")(send)
    with trace.use_span(trace.NonRecordingSpan(remote)):
        task = app.enqueue("emails", {"to": "fay"})
    assert task.trace_context is not None
    assert set(task.trace_context) == {"traceparent"}
    publish = only("publish emails")
    assert publish.context is not None
    assert publish.context.trace_id == remote.trace_id  # still in the caller's trace
    assert task.trace_context["traceparent"].split("-")[2] == f"{publish.context.span_id:016x}"


def test_a_failed_enqueue_ends_its_span_with_the_error() -> None:
    app = App(MemoryStore(), tracer_provider=PROVIDER)
    app.handler("emails")(send)
    app.enqueue("emails", task_id="once")
    with pytest.raises(sokka.AlreadyExists):
        app.enqueue("emails", task_id="once")
    first, second = named("publish emails")
    assert first.status.status_code is StatusCode.UNSET
    assert second.status.status_code is StatusCode.ERROR
    assert [e.name for e in second.events] == ["exception"]


def test_sokka_runs_without_opentelemetry_installed(tmp_path: Path) -> None:
    """With the API impossible to import, an App enqueues and a worker runs the task,
    and nothing is stored for tracing."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from sokka import App, MemoryStore, ok
        from sokka.shell.worker import Worker
        store = MemoryStore()
        app = App(store)
        app.handler("q")(lambda task, ctx: ok())
        task = app.enqueue("q", {"n": 1})
        assert task.trace_context is None
        worker = Worker(store, "q", lambda task, ctx: ok())
        worker.start()
        import time
        deadline = time.monotonic() + 30
        while store.get_task(task.task_id).status.value != "terminated":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        worker.stop()
        assert "opentelemetry.trace" not in sys.modules
        print("ran untraced")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ran untraced"


def test_tasks_listed_after_a_run_keep_their_context(db: Any) -> None:
    """Every read of the store gives the context back, not only get_task."""
    (task,), _ = run_on("threads", db, "emails", send, [{"to": "gil"}])
    url, prefix = db
    with SQLStore(url, prefix=prefix) as store:
        (listed,) = store.list_tasks(TaskFilter(topic="emails")).tasks
    assert listed.trace_context == task.trace_context is not None


def test_a_task_without_a_context_is_a_root_span_whatever_is_current(db: Any) -> None:
    """A task created without tracing (by hand, by another program) gets a root
    attempt span, even when the asyncio worker was started inside a span (its
    runners inherit that span as current)."""
    url, prefix = db
    with SQLStore(url, prefix=prefix) as store:
        plain = store.create_task(sokka.TaskSpec(topic="emails", data={"to": "hal"}))
    assert plain.trace_context is None

    async def send_async(task: Task, ctx: Any) -> Any:
        return send(task, ctx)

    async def main() -> Task:
        store = AsyncSQLStore(url, prefix=prefix)
        try:
            worker = aio.Worker(store, "emails", send_async, tracer_provider=PROVIDER)
            with TRACER.start_as_current_span("deploy"):
                running = asyncio.create_task(worker.run())
            try:
                async with asyncio.timeout(PATIENCE_S):
                    while not (task := await store.get_task(plain.task_id)).status.is_final:
                        await asyncio.sleep(0.02)
            finally:
                worker.stop()
                await running
            return task
        finally:
            await store.aclose()

    assert asyncio.run(main()).status is Status.TERMINATED
    process = only("process emails")
    assert process.parent is None  # a root: not a child of "deploy"
    assert child_of(only("send email"), process)


#: 2026-12-01T22:00:00Z: a slot of every schedule below.
SLOT_MS = 1_796_162_400_000


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_scheduled_task_is_published_in_a_span_its_attempt_a_child_of_it(
    db: tuple[str, str], runtime: str
) -> None:
    """The scheduler publishes each slot's task in a PRODUCER span of its own
    (siblings, not nested, however many slots one wake-up creates), and the
    task carries that span's context, so its attempt is traced under it. A
    slot made already (by another scheduler, or an earlier run) is no error."""

    def schedule(app: Any) -> None:
        app.periodic("0 * * * *", topic="emails", name="hourly", data={"to": "ops"})
        app.periodic("*/5 * * * *", topic="emails", name="five", data={"to": "dev"})

    url, prefix = db
    clock = ManualClock(SLOT_MS + 1_000)
    if runtime == "threads":
        with SQLStore(url, prefix=prefix) as store:

            def enqueue(app: App) -> list[Task]:
                schedule(app)
                scheduler = app.scheduler(clock=clock)
                created = scheduler.run_once().created
                assert len(created) == 2
                assert app.scheduler(clock=clock).run_once().existing == created  # again
                return [store.get_task(task_id) for task_id in created]

            tasks, _ = run_threads(store, "emails", send, enqueue)
    else:

        async def enqueue_async(app: sokka.asyncio.App) -> list[Task]:
            schedule(app)
            created = (await app.scheduler(clock=clock).run_once()).created
            assert len(created) == 2
            again = await app.scheduler(clock=clock).run_once()
            assert again.existing == created
            return [await app.store.get_task(task_id) for task_id in created]

        tasks, _ = run_asyncio(url, prefix, "emails", send, enqueue_async)
    assert [t.status for t in tasks] == [Status.TERMINATED] * 2
    publishes, processes = named("publish emails"), named("process emails")
    assert len(publishes) == 4  # two slots, twice: the second wake-up found them made
    assert all(p.kind is SpanKind.PRODUCER and p.parent is None for p in publishes)
    assert all(p.status.status_code is StatusCode.UNSET for p in publishes)
    assert len(processes) == 2
    for task in tasks:
        (process,) = [
            p for p in processes
            if p.attributes is not None and p.attributes["messaging.message.id"] == task.task_id
        ]  # fmt: skip
        (parent,) = [p for p in publishes if child_of(process, p)]
        assert parent.attributes is not None
        assert parent.attributes["messaging.message.id"] == task.task_id
        assert parent.context is not None
        assert task.trace_context is not None
        assert f"{parent.context.span_id:016x}" in task.trace_context["traceparent"]


def test_a_batch_published_at_once_marks_refusals_but_not_slots_made_already() -> None:
    """``publishing_many``: one span per spec, each context carried by its spec; a
    task the store refused ends its span with ERROR, one that exists already
    (made by another scheduler) does not."""
    from returns.result import Failure, Success

    from sokka.core.errors import AlreadyExists, Unavailable

    specs = [sokka.TaskSpec(topic="emails", task_id=f"t{n}") for n in range(3)]
    made = MemoryStore().create_task(specs[0])
    with TRACER.start_as_current_span("wake-up"), Tracing(PROVIDER).publishing_many(
        specs
    ) as publishing:
        carried = [spec.trace_context for spec in publishing.specs]
        publishing.created([
            Success(made), Failure(AlreadyExists("t1")), Failure(Unavailable("down")),
        ])  # fmt: skip
    spans = {
        (s.attributes or {})["messaging.message.id"]: s for s in named("publish emails")
    }
    assert sorted(spans) == ["t0", "t1", "t2"]
    wake_up = only("wake-up")
    assert all(child_of(span, wake_up) for span in spans.values())  # siblings
    assert [spans[t].status.status_code for t in ("t0", "t1", "t2")] == [
        StatusCode.UNSET, StatusCode.UNSET, StatusCode.ERROR,
    ]  # fmt: skip
    for spec_context, task_id in zip(carried, ("t0", "t1", "t2"), strict=True):
        context = spans[task_id].context
        assert spec_context is not None
        assert context is not None
        assert f"{context.span_id:016x}" in spec_context["traceparent"]
