"""``App``: handlers by topic, enqueueing, and one worker process for every topic.

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

``run_worker`` runs one threaded ``Worker`` per topic, each on a thread of
its own with its own concurrency, all on the app's store, and an embedded
``Supervisor`` for the served topics when asked. Each ``Worker`` keeps its
own leases alive, so a process serving three topics makes three keepalive
calls per round, not one.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from sokka.adapters.connect import connect
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from sokka.core.durations import duration_ms
from sokka.core.errors import ValidationError
from sokka.core.schedule import CatchUp, require_schedule_name
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Task, TaskSpec, require_name
from sokka.shell.clock import Clock
from sokka.shell.results import wait_for_result
from sokka.shell.scheduler import Schedule, Scheduler
from sokka.shell.supervisor import Supervisor
from sokka.shell.worker import Handler, Worker, WorkerStats

__all__ = ["App", "TopicHandler"]

log = logging.getLogger("sokka.app")

_H = TypeVar("_H", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicHandler:
    """A registered handler and how its topic's tasks are run."""

    topic: str
    handler: Handler
    concurrency: int
    lease_time_ms: int
    timeout_ms: int | None
    max_attempts: int | None


class App:
    """Handlers by topic on one store. See the module docstring.

    ``url_or_store``: a store URL as ``sokka.connect`` reads it
    (``sqlite:///app.db``, ``postgresql+psycopg://...``, ``http://...``,
    ``memory://``), with ``options`` for it, or a ``TaskStore``.
    """

    def __init__(self, url_or_store: str | TaskStore, **options: Any) -> None:
        if isinstance(url_or_store, str):
            self._store: TaskStore = connect(url_or_store, **options)
        elif options:
            raise ValidationError(
                next(iter(options)), "store options go with a URL, not with a store object"
            )
        else:
            self._store = url_or_store
        self._handlers: dict[str, TopicHandler] = {}
        self._schedules: dict[str, Schedule] = {}
        self._lock = threading.Lock()
        self._workers: list[Worker] = []

    @property
    def store(self) -> TaskStore:
        """The store the app enqueues to and its workers serve."""
        return self._store

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
            from sokka.shell.aio.worker import _is_coroutine_function

            if not callable(function):
                raise ValidationError("handler", "must be callable as handler(task, ctx)")
            if _is_coroutine_function(function):
                raise ValidationError(
                    "handler",
                    f"{_name(function)} is a coroutine function (async def): App runs "
                    "handlers on threads; use sokka.asyncio's Worker for it",
                )
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
        --scheduler``, or ``app.run_scheduler()``) creates the tasks.

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

    def scheduler(self, *, clock: Clock | None = None) -> Scheduler:
        """A ``Scheduler`` for every registered schedule on this app's store, each
        task with its topic handler's lease, timeout and ``max_attempts`` (unless
        the schedule gave its own). A schedule whose topic has no handler here
        is a ``ValidationError`` (as ``enqueue`` refuses one). ``clock``: the
        wall clock to read (default the system's, in Unix-epoch ms)."""
        schedules = []
        for schedule in self._schedules.values():
            registered = self._handlers.get(schedule.spec.topic)
            if registered is None:
                known = ", ".join(repr(t) for t in sorted(self._handlers)) or "none"
                raise ValidationError(
                    "topic",
                    f"schedule {schedule.name!r} creates tasks of {schedule.spec.topic!r}, "
                    f"which has no handler in this app (its topics: {known})",
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
        return Scheduler(self._store, schedules, clock=clock)

    def run_scheduler(self, *, install_signal_handlers: bool = True) -> None:
        """Run ``scheduler()`` on this thread until SIGTERM or SIGINT (signal
        handlers are installed only on the main thread, and only if asked)."""
        scheduler = self.scheduler()
        restore: dict[int, Any] = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, _frame: FrameType | None) -> None:
                log.info("got signal %d, stopping the scheduler", signum)
                scheduler.stop()

            restore = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            scheduler.run()
        finally:
            for signum, previous in restore.items():
                signal.signal(signum, previous)

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
        """
        registered = self._handlers.get(topic)
        if registered is None:
            require_name("topic", topic)
            known = ", ".join(repr(t) for t in sorted(self._handlers)) or "none"
            raise ValidationError(
                "topic", f"{topic!r} has no handler in this app (its topics: {known})"
            )
        spec = TaskSpec(
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
        if connection is None:
            return self._store.create_task(spec)
        if not isinstance(self._store, SQLStore):
            raise ValidationError(
                "connection",
                f"needs an SQL store to share a transaction with (this app's is a "
                f"{type(self._store).__name__})",
            )
        return self._store.create_task(spec, connection=connection)

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
        install_signal_handlers: bool = True,
        observe: Callable[[Sequence[Worker], Sequence[Supervisor]], object] | None = None,
    ) -> dict[str, WorkerStats]:
        """Serve ``topics`` (default: every registered one) until ``stop()``, SIGTERM
        or SIGINT; then drain every topic's worker and return their stats by topic.

        One ``Worker`` per topic, on a thread of its own, with the handler's
        concurrency, lease and timeout; ``supervise``: also one ``Supervisor``
        for the served topics (its default lease the longest of theirs, since
        a task without a lease of its own must not be revoked early). Signal
        handlers are installed only on the main thread. ``grace``: how long
        in-flight handlers may take to finish once stopping. If a worker
        stops with an error, the others are stopped too and the error raised.
        ``observe(workers, supervisors)`` is called once they are made, before
        any runs: to watch them (``sokka.shell.metrics``'s ``watch``).
        """
        served = self._served(topics)
        grace_ms = duration_ms(grace, "grace", zero=True)
        workers = {
            h.topic: Worker(
                self._store,
                h.topic,
                h.handler,
                concurrency=h.concurrency,
                lease_time_ms=h.lease_time_ms,
                timeout_ms=h.timeout_ms,
                grace_ms=grace_ms,
            )
            for h in served
        }
        supervisor = None
        if supervise:
            longest = max(h.lease_time_ms for h in served)
            supervisor = Supervisor(
                self._store,
                [h.topic for h in served],
                LeasePolicy(lease_time_ms=longest, default_snooze_ms=longest),
            )
        stats: dict[str, WorkerStats] = {}
        errors: list[BaseException] = []

        def run(topic: str, worker: Worker) -> None:
            try:
                stats[topic] = worker.run(install_signal_handlers=False)
            except BaseException as error:  # reported by run_worker, after the others stop
                log.error("worker %s of topic %r stopped with %r", worker.pid, topic, error)
                errors.append(error)
                self.stop()

        with self._lock:
            if self._workers:
                raise ValidationError("run_worker", "this app's worker is already running")
            self._workers = list(workers.values())
        if observe is not None:
            try:
                observe(list(workers.values()), [supervisor] if supervisor else [])
            except BaseException:
                with self._lock:
                    self._workers = []
                raise
        restore = self._install_signals() if install_signal_handlers else {}
        threads = [
            threading.Thread(target=run, args=(topic, worker), name=f"sokka-app-{topic}")
            for topic, worker in workers.items()
        ]
        try:
            for topic, worker in workers.items():
                h = self._handlers[topic]
                log.info(
                    "worker %s on topic %r (concurrency %d, lease %d ms)",
                    worker.pid, topic, h.concurrency, h.lease_time_ms,
                )  # fmt: skip
            if supervisor is not None:
                supervisor.start()
            for thread in threads:
                thread.start()
            for thread in threads:
                # A join with a timeout, so that the main thread runs signal handlers.
                while thread.is_alive():
                    thread.join(0.2)
        finally:
            self.stop()
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
            if supervisor is not None:
                supervisor.stop()
            for signum, previous in restore.items():
                signal.signal(signum, previous)
            with self._lock:
                self._workers = []
        if errors:
            raise errors[0]
        return stats

    def stop(self) -> None:
        """Ask a running ``run_worker`` to stop: every topic's worker drains, then
        ``run_worker`` returns. Safe from any thread, and when nothing runs."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.stop()

    def _served(self, topics: Sequence[str] | None) -> list[TopicHandler]:
        if isinstance(topics, str):
            topics = [topics]
        if topics is None:
            topics = sorted(self._handlers)
        if not topics:
            raise ValidationError("topics", "this app has no handler to run")
        served = []
        for topic in dict.fromkeys(topics):
            if topic not in self._handlers:
                known = ", ".join(repr(t) for t in sorted(self._handlers)) or "none"
                raise ValidationError(
                    "topics", f"{topic!r} has no handler in this app (its topics: {known})"
                )
            served.append(self._handlers[topic])
        return served

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("got signal %d, stopping every topic's worker", signum)
            self.stop()

        return {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}


def _name(function: object) -> str:
    return str(getattr(function, "__qualname__", None) or repr(function))
