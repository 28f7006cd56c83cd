"""The asyncio ``App``: handlers by topic, an awaitable ``enqueue``, one worker.

The same surface as ``sokka.App`` (``sokka.shell.app``), on an event loop::

    app = App("postgresql+psycopg://...")

    @app.handler("emails", concurrency=50, lease="30s")
    async def send(task, ctx):
        ...
        return ok()

    await app.enqueue("emails", {"to": "ann@example.com"}, delay="10m")
    await app.run_worker()  # every registered topic, until stop(), SIGTERM or SIGINT

    app.periodic("*/5 * * * *", topic="emails", data={"digest": True})
    await app.run_scheduler()  # each slot's task, until SIGTERM or SIGINT

Registration, its checks, the task an ``enqueue`` makes and the periodic
schedules (``periodic``, ``schedules``) are ``AppCore``'s, shared with the
threaded ``App``; ``scheduler()`` gives an ``AsyncScheduler`` on the same
bookkeeping as the threaded ``Scheduler``. A handler is an ``async
def`` (run by the topic's ``concurrency`` runners on the loop), or a plain
function (run on the topic's ``concurrency`` handler threads).
``run_worker`` runs ONE asyncio ``Worker`` for every served topic: one
keepalive call per round for every lease held, and an embedded supervisor
when asked.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Any

from sokka.adapters.aio.connect import connect
from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.aio.store import AsyncTaskStore
from sokka.core.durations import duration_ms
from sokka.core.errors import ValidationError
from sokka.core.task import Task
from sokka.shell.aio.scheduler import AsyncScheduler
from sokka.shell.aio.worker import Worker
from sokka.shell.app import AppCore, Observe, opened_store
from sokka.shell.clock import Clock
from sokka.shell.results import async_wait_for_result
from sokka.shell.tracing import TracerProviderLike
from sokka.shell.worker import WorkerStats

__all__ = ["App"]

log = logging.getLogger("sokka.app")


class App(AppCore):
    """Handlers by topic on one async store, run on an event loop.

    ``url_or_store``: a store URL as ``sokka.asyncio.connect`` reads it
    (``sqlite:///app.db``, ``postgresql+psycopg://...``, ``http://...``,
    ``memory://``), with ``options`` for it, or an ``AsyncTaskStore``.
    Nothing is connected until the first call. ``tracer_provider``: as
    ``sokka.App``'s.
    """

    def __init__(
        self,
        url_or_store: str | AsyncTaskStore,
        *,
        tracer_provider: TracerProviderLike | None = None,
        **options: Any,
    ) -> None:
        super().__init__(tracer_provider)
        self._store: AsyncTaskStore = opened_store(url_or_store, options, connect)

    @property
    def store(self) -> AsyncTaskStore:
        """The async store the app enqueues to and its worker serves."""
        return self._store

    # -- periodic schedules (registered by AppCore.periodic) -------------------------

    def scheduler(self, *, clock: Clock | None = None) -> AsyncScheduler:
        """An ``AsyncScheduler`` for every registered schedule on this app's store,
        as ``sokka.App.scheduler`` builds its ``Scheduler``: each task with its
        topic handler's lease, timeout and ``max_attempts`` (unless the schedule
        gave its own); a schedule whose topic has no handler here, or no
        schedule at all, is a ``ValidationError``. ``clock``: the wall clock to
        read (default the system's, in Unix-epoch ms)."""
        return AsyncScheduler(
            self._store, self._scheduled(), clock=clock, tracer_provider=self._tracer_provider
        )

    async def run_scheduler(self, *, install_signal_handlers: bool = True) -> None:
        """Run ``scheduler()`` on the running event loop until ``stop()``, SIGTERM or SIGINT
        (handlers are installed on the loop when it can take them, the main
        thread's, and only if asked). To run the schedules beside the worker:
        ``scheduler().start()``, then ``stop()`` it and await the task
        ``start()`` returned."""
        scheduler = self.scheduler()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(signum, _stop_on_signal, scheduler, signum)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                    continue
                installed.append(signum)
        try:
            with self._scheduling(scheduler):
                await scheduler.run()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    # -- enqueueing ----------------------------------------------------------------

    async def enqueue(
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

        As ``sokka.App.enqueue``, awaited. ``connection``: a SQLAlchemy
        ``AsyncConnection`` or ``AsyncSession`` on the store's database, to
        create the task in the caller's transaction (``AsyncSQLStore`` only):
        the task exists if and only if the caller commits. Bad input is a
        ``ValidationError`` naming the field, and nothing is created. Traced
        as ``sokka.App.enqueue`` is.
        """
        spec = self._spec(
            topic, data, task_id=task_id, delay=delay, group=group, max_attempts=max_attempts,
            description=description, sub_topic=sub_topic,
        )  # fmt: skip
        if connection is not None and not isinstance(self._store, AsyncSQLStore):
            raise ValidationError(
                "connection",
                f"needs an SQL store to share a transaction with (this app's is a "
                f"{type(self._store).__name__})",
            )
        # The publish span is current in this task while the store is awaited.
        with self._tracing.publishing(spec) as publishing:
            if connection is None:
                task = await self._store.create_task(publishing.spec)
            else:
                assert isinstance(self._store, AsyncSQLStore)
                task = await self._store.create_task(publishing.spec, connection=connection)
            publishing.created(task)
        return task

    async def result(self, task_id: str, wait: int | str | None = None) -> Any:
        """As ``sokka.App.result``, awaited: the JSON value task ``task_id``'s
        handler kept with ``ok(result)``; ``TaskFailed``, ``NotFound``,
        ``NotFinished`` or, once ``wait`` has passed, ``ResultTimeout``. The
        wait sleeps on the event loop."""
        return await async_wait_for_result(self._store, task_id, wait)

    async def run_worker(
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

        As ``sokka.App.run_worker``, on the running event loop: one asyncio
        ``Worker`` for all the topics, each with its handler's concurrency,
        lease and timeout. Signal handlers are installed on the loop when it
        can take them (the main thread's). ``observe(workers, supervisors)``
        and ``fetch_ahead``: as ``sokka.App.run_worker``'s.
        """
        routes = self._routes(topics)
        worker = Worker(
            self._store, routes=routes, pid=pid, supervise=supervise,
            grace_ms=duration_ms(grace, "grace", zero=True),
            fetch_ahead_ms=duration_ms(fetch_ahead, "fetch_ahead", zero=True),
            tracer_provider=self._tracer_provider,
        )  # fmt: skip
        with self._running(worker, routes, "asyncio", observe):
            return await worker.run(install_signal_handlers=install_signal_handlers)


def _stop_on_signal(scheduler: AsyncScheduler, signum: int) -> None:
    log.info("got signal %d, stopping the scheduler", signum)
    scheduler.stop()
