"""``App``: handlers by topic, enqueueing, and one worker for every topic.

An application names its store once and registers a handler per topic::

    app = App("sqlite:///app.db")

    @app.handler("emails", concurrency=4, lease="30s", timeout="5m", max_attempts=5)
    def send(task, ctx):
        ...
        return ok()

    task = app.enqueue("emails", {"to": "ann@example.com"}, delay="10m")
    app.run_worker()  # every registered topic, until SIGTERM or SIGINT
    app.result(task.task_id, wait="30s")  # elsewhere: what ok(result) kept

``enqueue`` fills a ``TaskSpec`` from the topic's handler: its
``max_attempts``, lease and timeout are written on the task, so any worker
and any supervisor (not only this app's) treat the task as the handler asks.

``run_worker`` runs ONE threaded ``Worker`` for every served topic, a
``Route`` each (the topic's handler threads, concurrency, lease and
timeout): one keepalive call per round keeps every lease of the process
alive, and, when asked, one embedded ``Supervisor`` covers the served topics.

``AppCore`` is what this ``App`` and the asyncio one
(``sokka.shell.aio.app.App``) share, so that both check alike: the registry
of handlers and the checks of their options, the task an ``enqueue`` makes,
the routes of the one worker, and the periodic schedules (``periodic``) with
the tasks their scheduler creates.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sokka.adapters.connect import connect
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from sokka.core.durations import duration_ms
from sokka.core.errors import ValidationError
from sokka.core.schedule import CatchUp, require_schedule_name
from sokka.core.task import Task, TaskSpec, require_name
from sokka.shell.clock import Clock
from sokka.shell.results import wait_for_result
from sokka.shell.scheduler import Schedule, Scheduler
from sokka.shell.signals import stopping_on_signals
from sokka.shell.supervisor import SupervisorCore
from sokka.shell.tracing import TracerProviderLike, Tracing
from sokka.shell.worker import Route, Worker, WorkerCore, WorkerStats

__all__ = ["App", "AppCore", "TopicHandler"]

log = logging.getLogger("sokka.app")

_H = TypeVar("_H", bound=Callable[..., Any])
_S = TypeVar("_S")

#: ``run_worker``'s ``observe``: called with the worker (and its embedded
#: supervisor, if any) once made, before it runs.
Observe = Callable[[Sequence[WorkerCore], Sequence[SupervisorCore]], object]


class _Running(Protocol):
    """What ``stop()`` needs of a running worker (either runtime's)."""

    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicHandler:
    """A registered handler and how its topic's tasks are run."""

    topic: str
    handler: Callable[..., Any]
    concurrency: int
    lease_time_ms: int
    timeout_ms: int | None
    max_attempts: int | None


class AppCore:
    """The registry of an app's handlers, and what both runtimes' apps check alike.

    ``handler`` registers; ``_spec`` makes the task of an ``enqueue``;
    ``_routes`` gives the routes of the one worker serving some topics;
    ``periodic`` registers a schedule, and ``_scheduled`` gives the schedules
    a scheduler runs (each topic handler's options on its tasks). A
    subclass says which handlers it runs (``_check_handler``), and how it
    calls its store and runs its worker. ``tracer_provider``: where the spans
    of its enqueues and of its worker's attempts go (``sokka.shell.tracing``;
    None: OpenTelemetry's global provider, when one is configured).
    """

    def __init__(self, tracer_provider: TracerProviderLike | None = None) -> None:
        self._tracer_provider = tracer_provider
        self._tracing = Tracing(tracer_provider)
        self._handlers: dict[str, TopicHandler] = {}
        self._schedules: dict[str, Schedule] = {}
        self._lock = threading.Lock()
        self._worker: _Running | None = None
        self._scheduler: _Running | None = None

    @property
    def handlers(self) -> Mapping[str, TopicHandler]:
        """The registered handlers by topic (a copy)."""
        return dict(self._handlers)

    # -- registering ---------------------------------------------------------------

    def handler(
        self,
        topic: str,
        *,
        concurrency: int = 1,
        lease: int | str = 30_000,
        timeout: int | str | None = None,
        max_attempts: int | None = None,
    ) -> Callable[[_H], _H]:
        """Register the decorated function as the handler of ``topic``.

        ``lease`` and ``timeout`` are ints of milliseconds or strings like
        ``"30s"``, ``"5m"`` (as on the command line). ``max_attempts`` is the
        default of the topic's tasks (``enqueue`` may override it). A topic
        has one handler: a second is a ``ValidationError`` naming ``topic``.
        """
        require_name("topic", topic)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise ValidationError("concurrency", "must be an int from 1 to 1024")
        if not 1 <= concurrency <= 1024:
            raise ValidationError("concurrency", f"must be from 1 to 1024 (got {concurrency})")
        lease_ms = duration_ms(lease, "lease")
        timeout_ms = None if timeout is None else duration_ms(timeout, "timeout")
        # TaskSpec's own check of max_attempts, so the rule and message are one.
        TaskSpec(topic=topic, max_attempts=max_attempts)

        def register(function: _H) -> _H:
            if not callable(function):
                raise ValidationError("handler", "must be callable as handler(task, ctx)")
            self._check_handler(function)
            with self._lock:
                if topic in self._handlers:
                    known = _name(self._handlers[topic].handler)
                    raise ValidationError("topic", f"{topic!r} already has a handler ({known})")
                self._handlers[topic] = TopicHandler(
                    topic=topic, handler=function, concurrency=concurrency,
                    lease_time_ms=lease_ms, timeout_ms=timeout_ms, max_attempts=max_attempts,
                )  # fmt: skip
            return function

        return register

    def _check_handler(self, function: Callable[..., Any]) -> None:
        """Refuse, with a ``ValidationError``, a handler this app's runtime cannot run."""

    # -- enqueueing ----------------------------------------------------------------

    def _spec(
        self,
        topic: str,
        data: Any,
        *,
        task_id: str | None,
        delay: int | str | None,
        group: str | None,
        max_attempts: int | None,
        description: str,
        sub_topic: str,
    ) -> TaskSpec:
        """The task ``enqueue`` creates: the topic handler's defaults, and what was given."""
        registered = self._handlers.get(topic)
        if registered is None:
            require_name("topic", topic)
            raise ValidationError("topic", f"{topic!r} has no handler in this app {self._known()}")
        return TaskSpec(
            topic=topic,
            data=data,
            task_id=task_id,
            task_group_id=group,
            sub_topic=sub_topic,
            description=description,
            max_attempts=registered.max_attempts if max_attempts is None else max_attempts,
            lease_time_ms=registered.lease_time_ms,
            timeout_ms=registered.timeout_ms,
            delay_ms=None if delay is None else duration_ms(delay, "delay", zero=True),
        )

    def _known(self) -> str:
        known = ", ".join(repr(t) for t in sorted(self._handlers)) or "none"
        return f"(its topics: {known})"

    # -- periodic schedules ---------------------------------------------------------

    def periodic(
        self,
        cron: str,
        *,
        topic: str,
        name: str | None = None,
        data: Any = None,
        tz: str = "UTC",
        catch_up: int = 1,
        catch_up_within: int | str | None = None,
        max_attempts: int | None = None,
        description: str = "",
        sub_topic: str = "default",
        group: str | None = None,
    ) -> Callable[[_H], _H]:
        """Create a task of ``topic`` at every slot of the ``cron`` line, once per slot.

        Registers the schedule at once, so it works as a statement
        (``app.periodic("0 3 * * *", topic="backups")``) or as a decorator
        stacked on the topic's ``@app.handler`` (the function is returned as
        it was). ``sokka scheduler --app`` (or ``sokka worker --app
        --scheduler``, or ``app.run_scheduler()``, awaited on a
        ``sokka.asyncio.App``) creates the tasks.

        ``cron``: five fields, or six with seconds first, read in time zone
        ``tz`` (``sokka.shell.cron``). ``name``: the schedule's name, which
        names its tasks (``periodic:NAME:2026-12-01T22:05:00Z``): default the
        topic; give each schedule of a topic its own. ``catch_up``: after
        downtime, at most this many missed slots are created, the most
        recent; ``catch_up_within`` (ms or ``"1h"``): none older than that.
        ``data``, ``max_attempts``, ``description``, ``sub_topic``, ``group``:
        as ``enqueue`` takes them; the topic's handler gives the lease and the
        timeout. Bad input is a ``ValidationError`` naming the field (a bad
        cron line: the cron field and its rule), and nothing is registered.
        """
        # croniter (and dateutil) load on the first schedule, not with every
        # `import sokka`: every command and worker process would pay for it.
        from sokka.shell.cron import CronSlots

        require_name("topic", topic)
        slots = CronSlots(cron, tz)
        schedule_name = require_schedule_name(topic if name is None else name)
        spec = TaskSpec(
            topic=topic, data=data, task_group_id=group, sub_topic=sub_topic,
            description=description, max_attempts=max_attempts,
        )  # fmt: skip
        within = (
            None if catch_up_within is None else duration_ms(catch_up_within, "catch_up_within")
        )
        schedule = Schedule(
            name=schedule_name, slots=slots, spec=spec, cron=cron,
            catch_up=CatchUp(slots=catch_up, within_ms=within),
        )  # fmt: skip
        with self._lock:
            if schedule_name in self._schedules:
                known = self._schedules[schedule_name]
                raise ValidationError(
                    "name",
                    f"{schedule_name!r} already names a schedule ({known.cron!r} on topic "
                    f"{known.spec.topic!r}): give each schedule of a topic its own name=",
                )
            self._schedules[schedule_name] = schedule

        def passed_through(function: _H) -> _H:
            return function

        return passed_through

    @property
    def schedules(self) -> Mapping[str, Schedule]:
        """The registered periodic schedules by name (a copy)."""
        return dict(self._schedules)

    def _scheduled(self) -> list[Schedule]:
        """The registered schedules as a scheduler runs them: each task with its
        topic handler's lease, timeout and ``max_attempts`` (unless the schedule
        gave its own). A schedule whose topic has no handler here, or no
        schedule at all, is a ``ValidationError``."""
        schedules = []
        for schedule in self._schedules.values():
            registered = self._handlers.get(schedule.spec.topic)
            if registered is None:
                raise ValidationError(
                    "topic",
                    f"schedule {schedule.name!r} creates tasks of {schedule.spec.topic!r}, "
                    f"which has no handler in this app {self._known()}",
                )
            spec = dataclasses.replace(
                schedule.spec,
                lease_time_ms=registered.lease_time_ms,
                timeout_ms=registered.timeout_ms,
                max_attempts=schedule.spec.max_attempts or registered.max_attempts,
            )
            schedules.append(dataclasses.replace(schedule, spec=spec))
        if not schedules:
            raise ValidationError("schedules", "this app has no periodic schedule (@app.periodic)")
        return schedules

    # -- running -------------------------------------------------------------------

    def _served(self, topics: Sequence[str] | None) -> list[TopicHandler]:
        """The handlers of ``topics`` (every registered one with None), checked."""
        if isinstance(topics, str):
            topics = [topics]
        if topics is None:
            topics = sorted(self._handlers)
        if not topics:
            raise ValidationError("topics", "this app has no handler to run")
        served = []
        for topic in dict.fromkeys(topics):
            if topic not in self._handlers:
                raise ValidationError(
                    "topics", f"{topic!r} has no handler in this app {self._known()}"
                )
            served.append(self._handlers[topic])
        return served

    def _routes(self, topics: Sequence[str] | None) -> list[Route]:
        """The routes of the one worker serving ``topics`` (default: every topic)."""
        return [
            Route(
                topic=h.topic,
                handler=h.handler,
                concurrency=h.concurrency,
                lease_time_ms=h.lease_time_ms,
                timeout_ms=h.timeout_ms,
            )
            for h in self._served(topics)
        ]

    @contextmanager
    def _running(
        self, worker: WorkerCore, routes: Sequence[Route], runtime: str, observe: Observe | None
    ) -> Iterator[None]:
        """``worker`` is this app's running worker while inside (one at a time):
        shown to ``observe`` before it runs, its start logged, and reached by
        ``stop()``."""
        with self._lock:
            if self._worker is not None:
                raise ValidationError("run_worker", "this app's worker is already running")
            self._worker = worker  # type: ignore[assignment]  # both runtimes' have stop()
        try:
            if observe is not None:
                observe([worker], [] if worker.supervisor is None else [worker.supervisor])
            self._log_start(worker.pid, routes, runtime)
            yield
        finally:
            with self._lock:
                self._worker = None

    @contextmanager
    def _scheduling(self, scheduler: _Running) -> Iterator[None]:
        """``scheduler`` is this app's running ``run_scheduler`` while inside (one
        at a time), reached by ``stop()``."""
        with self._lock:
            if self._scheduler is not None:
                raise ValidationError("run_scheduler", "this app's scheduler is already running")
            self._scheduler = scheduler
        try:
            yield
        finally:
            with self._lock:
                self._scheduler = None

    def stop(self) -> None:
        """Ask a running ``run_worker`` and ``run_scheduler`` to stop: the worker
        drains, the scheduler ends its wake-up, then each returns. Safe from any
        thread, and when nothing runs."""
        with self._lock:
            running = [r for r in (self._worker, self._scheduler) if r is not None]
        for each in running:
            each.stop()

    @staticmethod
    def _log_start(pid: str, routes: Sequence[Route], runtime: str) -> None:
        for route in routes:
            log.info(
                "worker %s on topic %r (%s, concurrency %d, lease %s ms)",
                pid, route.topic, runtime, route.concurrency, route.lease_time_ms,
            )  # fmt: skip


class App(AppCore):
    """Handlers by topic on one store, run on threads. See the module docstring.

    ``url_or_store``: a store URL as ``sokka.connect`` reads it
    (``sqlite:///app.db``, ``postgresql+psycopg://...``, ``http://...``,
    ``memory://``), with ``options`` for it, or a ``TaskStore``.
    ``tracer_provider``: where the app's spans go (OpenTelemetry; see
    ``sokka.shell.tracing``), by default the global provider once one is set.
    """

    def __init__(
        self,
        url_or_store: str | TaskStore,
        *,
        tracer_provider: TracerProviderLike | None = None,
        **options: Any,
    ) -> None:
        super().__init__(tracer_provider)
        self._store: TaskStore = opened_store(url_or_store, options, connect)

    @property
    def store(self) -> TaskStore:
        """The store the app enqueues to and its worker serves."""
        return self._store

    def _check_handler(self, function: Callable[..., Any]) -> None:
        from sokka.shell.aio.worker import _is_coroutine_function

        if _is_coroutine_function(function):
            raise ValidationError(
                "handler",
                f"{_name(function)} is a coroutine function (async def): App runs "
                "handlers on threads; register it with sokka.asyncio.App",
            )

    # -- periodic schedules (registered by AppCore.periodic) -------------------------

    def scheduler(self, *, clock: Clock | None = None) -> Scheduler:
        """A ``Scheduler`` for every registered schedule on this app's store, each
        task with its topic handler's lease, timeout and ``max_attempts`` (unless
        the schedule gave its own). A schedule whose topic has no handler here
        is a ``ValidationError`` (as ``enqueue`` refuses one). ``clock``: the
        wall clock to read (default the system's, in Unix-epoch ms)."""
        return Scheduler(
            self._store, self._scheduled(), clock=clock, tracer_provider=self._tracer_provider
        )

    def run_scheduler(self, *, install_signal_handlers: bool = True) -> None:
        """Run ``scheduler()`` on this thread until ``stop()``, SIGTERM or SIGINT
        (signal handlers are installed only on the main thread, and only if
        asked)."""
        scheduler = self.scheduler()

        def on_signal(signum: int) -> None:  # on the relay thread (shell/signals.py)
            log.info("got signal %d, stopping the scheduler", signum)
            scheduler.stop()

        signals = stopping_on_signals(on_signal) if install_signal_handlers else nullcontext()
        with self._scheduling(scheduler), signals:
            scheduler.run()

    # -- enqueueing ----------------------------------------------------------------

    def enqueue(
        self,
        topic: str,
        data: Any = None,
        *,
        task_id: str | None = None,
        delay: int | str | None = None,
        group: str | None = None,
        max_attempts: int | None = None,
        description: str = "",
        sub_topic: str = "default",
        connection: object = None,
    ) -> Task:
        """Create a task of ``topic``, a topic this app has a handler for.

        The handler's ``max_attempts`` (unless given here), lease and timeout
        are written on the task. ``delay`` (ms, or ``"10m"``): no worker takes
        the task before a supervisor has seen it for that long (see
        ``TaskSpec.delay_ms``). ``group``: the task's ``task_group_id``.
        ``connection``: a SQLAlchemy ``Connection`` or ``Session`` on the
        store's database, to create the task in the caller's transaction
        (``SQLStore`` only). Bad input is a ``ValidationError`` naming the
        field, and nothing is created.

        Traced (``sokka.shell.tracing``): the enqueue is a ``"publish <topic>"``
        span, and the task carries its context to every attempt.
        """
        spec = self._spec(
            topic, data, task_id=task_id, delay=delay, group=group, max_attempts=max_attempts,
            description=description, sub_topic=sub_topic,
        )  # fmt: skip
        if connection is not None and not isinstance(self._store, SQLStore):
            raise ValidationError(
                "connection",
                f"needs an SQL store to share a transaction with (this app's is a "
                f"{type(self._store).__name__})",
            )
        with self._tracing.publishing(spec) as publishing:
            if connection is None:
                task = self._store.create_task(publishing.spec)
            else:
                assert isinstance(self._store, SQLStore)
                task = self._store.create_task(publishing.spec, connection=connection)
            publishing.created(task)
        return task

    # -- results -------------------------------------------------------------------

    def result(self, task_id: str, wait: int | str | None = None) -> Any:
        """The result of task ``task_id``: the JSON value its handler kept with
        ``ok(result)`` (None when it kept none).

        A task that failed: ``TaskFailed``, carrying its error. No such task:
        ``NotFound``. A task that has not finished (starting, running or
        snoozed): without ``wait``, ``NotFinished`` at once; with ``wait`` (ms,
        or a string like ``"30s"``), the task is read again, soon at first and
        then at most every second, until it finishes; once ``wait`` has passed,
        ``ResultTimeout`` (a ``NotFinished`` and a ``TimeoutError``) naming the
        task and its status. While waiting, a retryable store error is ridden
        out until the wait is over. A task's result is read from any store: the
        task need not have a handler in this app.
        """
        return wait_for_result(self._store, task_id, wait)

    # -- running -------------------------------------------------------------------

    def run_worker(
        self,
        topics: Sequence[str] | None = None,
        *,
        supervise: bool = False,
        grace: int | str = 30_000,
        pid: str | None = None,
        install_signal_handlers: bool = True,
        observe: Observe | None = None,
        fetch_ahead: int | str = 50,
    ) -> WorkerStats:
        """Serve ``topics`` (default: every registered one) until ``stop()``, SIGTERM
        or SIGINT; then drain and return the worker's stats.

        ONE ``Worker`` serves them all: each topic with its handler's
        concurrency (handler threads of its own), lease and timeout, and one
        keepalive call per round for every lease held. ``supervise``: the
        worker also runs a ``Supervisor`` for the served topics (its default
        lease the longest of theirs, since a task without a lease of its own
        must not be revoked early). Signal handlers are installed only on the
        main thread. ``grace``: how long in-flight handlers may take to
        finish once stopping. A worker that stops on an error raises it here.
        ``observe(workers, supervisors)`` is called once the worker is made,
        before it runs: to watch it and its supervisor
        (``sokka.shell.metrics``'s ``watch``). ``fetch_ahead`` (ms, or
        ``"50ms"``; 0: none): each topic holds, beyond one lease per handler,
        the tasks its handlers are expected to start within it
        (``Worker``'s ``fetch_ahead_ms``).
        """
        routes = self._routes(topics)
        worker = Worker(
            self._store, routes=routes, pid=pid, supervise=supervise,
            grace_ms=duration_ms(grace, "grace", zero=True),
            fetch_ahead_ms=duration_ms(fetch_ahead, "fetch_ahead", zero=True),
            tracer_provider=self._tracer_provider,
        )  # fmt: skip
        with self._running(worker, routes, "threads", observe):
            return worker.run(install_signal_handlers=install_signal_handlers)


def opened_store(
    url_or_store: str | _S, options: Mapping[str, Any], open_url: Callable[..., _S]
) -> _S:
    """An app's store: ``open_url(url, **options)`` for a URL, else the store given
    (with which store options are a ``ValidationError`` naming the first)."""
    if isinstance(url_or_store, str):
        return open_url(url_or_store, **options)
    if options:
        raise ValidationError(
            next(iter(options)), "store options go with a URL, not with a store object"
        )
    return url_or_store


def _name(function: object) -> str:
    return str(getattr(function, "__qualname__", None) or repr(function))
