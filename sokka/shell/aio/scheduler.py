"""The asyncio scheduler: creates the task of each slot of each periodic schedule.

The same scheduler as ``sokka.shell.scheduler.Scheduler``, awaiting an
``AsyncTaskStore``: ``SchedulerCore`` plans each wake-up (through
``sokka.core.schedule``), records and logs what the store answered, retries
with a backoff and reports; this module only awaits ``create_tasks`` and
sleeps on the event loop until the next slot or ``stop()``. Many schedulers,
of either runtime, may run on one store: each slot still gets one task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sokka.adapters.aio.store import AsyncTaskStore
from sokka.core.backoff import Backoff
from sokka.core.errors import SokkaError
from sokka.shell.aio.stopping import LoopStop
from sokka.shell.clock import Clock
from sokka.shell.scheduler import Schedule, SchedulerCore, SchedulerReport
from sokka.shell.tracing import TracerProviderLike

__all__ = ["AsyncScheduler"]


class AsyncScheduler(SchedulerCore):
    """Creates every schedule's slot tasks in an async ``store`` until ``stop()``.

    The options are the threaded ``Scheduler``'s. ``await run_once(now_ms)``
    is one wake-up at a given wall-clock time (for tests: any time you
    like); ``await run()`` wakes at every slot on the running event loop, and
    ``start()`` runs that as a task of the loop. A new scheduler knows nothing
    of earlier runs: its first wake-up treats every past slot as missed, and
    each schedule's catch-up bound decides which it still creates.
    """

    def __init__(
        self,
        store: AsyncTaskStore,
        schedules: Sequence[Schedule],
        *,
        clock: Clock | None = None,
        retry_backoff: Backoff | None = None,
        tracer_provider: TracerProviderLike | None = None,
    ) -> None:
        super().__init__(
            schedules, clock=clock, retry_backoff=retry_backoff, tracer_provider=tracer_provider
        )
        self._store = store
        self._stop = LoopStop()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, now_ms: int | None = None) -> SchedulerReport:
        """Plan every schedule at ``now_ms`` (default: the clock), create the due
        slots' tasks, and say what happened. Never raises a store's error: a
        slot that could not be created stays due for the next wake-up."""
        async with self._lock:
            wakeup = self._woken(now_ms)
            for batch in wakeup.batches():
                with self._publishing(batch) as publishing:
                    try:
                        results = await self._store.create_tasks(publishing.specs)
                    except SokkaError as error:
                        self._refused(wakeup, batch, publishing, error)
                    else:
                        self._answered(wakeup, batch, publishing, results)
            return self._reported(wakeup)

    # -- the loop -----------------------------------------------------------

    async def run(self) -> None:
        """Wake at every slot and create its tasks, on the running event loop, until
        ``stop()`` (a ``stop()`` that came first makes it return at once; a
        wake-up in progress finishes first)."""
        self._stop.bind()
        self._log_schedules()
        while not self._stop.asked:
            if self._due():
                try:
                    await self.run_once()
                except Exception:  # a bug or a foreign error must not kill the loop
                    self._wakeup_failed()
            await self._stop.sleep(self.wait_ms() / 1000)

    def start(self) -> asyncio.Task[None]:
        """Run ``run()`` as a task of the running event loop until ``stop()``, and
        return that task (await it to wait for the loop to end). A stopped
        scheduler may be started again: it goes on from the slots it already
        considered."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("scheduler already running")
        self._stop.reset()
        self._task = asyncio.get_running_loop().create_task(self.run(), name="sokka-scheduler")
        return self._task

    def stop(self) -> None:
        """Ask ``run()`` to return (a wake-up in progress finishes first). Safe from
        any thread, and when nothing runs."""
        self._stop.ask()
