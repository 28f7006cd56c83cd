"""The asyncio supervisor: list -> mark -> sweep -> execute -> settle, on a loop.

The same supervisor as ``sokka.shell.supervisor.Supervisor``, awaiting an
``AsyncTaskStore``. The pure functions in ``sokka.core.supervision`` decide;
this module reads the clock, awaits the store, retries, logs, and sleeps
until the next lease can lapse (``next_expiry``) or ``stop()``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from returns.result import Failure, Result, Success

from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.store import MAX_PAGE_SIZE
from sokka.core.backoff import Backoff
from sokka.core.commands import RevokeLease, RevokeOutcome
from sokka.core.errors import SokkaError
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Task
from sokka.shell.aio.stopping import LoopStop
from sokka.shell.clock import Clock
from sokka.shell.supervisor import SupervisorCore, SupervisorReport, log_outcome

__all__ = ["Supervisor", "SupervisorReport"]

log = logging.getLogger("sokka.supervisor")


async def execute(store: AsyncTaskStore, command: RevokeLease) -> Result[Task, SokkaError]:
    """``sokka.adapters.store.execute``, awaited: the store's errors come back as
    ``Failure``; an exception that is not a ``SokkaError`` is a bug and propagates."""
    try:
        return Success(await store.revoke_lease(command.task_id, command.record_ver))
    except SokkaError as error:
        return Failure(error)


class Supervisor(SupervisorCore):
    """Watches leased tasks and revokes the leases nobody keeps alive.

    The options are the threaded ``Supervisor``'s; ``sleep`` (between revoke
    retries) is awaited. ``await run()`` loops until ``stop()``.
    """

    def __init__(
        self,
        store: AsyncTaskStore,
        topics: str | Sequence[str] | None = None,
        policy: LeasePolicy | None = None,
        clock: Clock | None = None,
        *,
        interval_ms: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
        revoke_tries: int = 3,
        retry_backoff: Backoff | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        super().__init__(
            topics, policy, clock, interval_ms=interval_ms, page_size=page_size,
            revoke_tries=revoke_tries, retry_backoff=retry_backoff, rand=rand,
        )  # fmt: skip
        self._store = store
        self._stop = LoopStop()
        self._sleep = sleep or self._stop.sleep
        self._cycle_lock = asyncio.Lock()

    # -- one cycle ----------------------------------------------------------

    async def run_once(self) -> SupervisorReport:
        """List every leased task, mark, sweep, revoke what lapsed, settle."""
        async with self._cycle_lock:
            started = self._clock.now_ms()
            tasks, listing_errors = await self._list_leased()
            monitored, commands = self._marked(tasks, complete=not listing_errors)
            outcomes = [await self._revoke(command) for command in commands]
            return self._settled(monitored, tasks, listing_errors, outcomes, started)

    async def _list_leased(self) -> tuple[list[Task], tuple[str, ...]]:
        tasks: list[Task] = []
        errors: list[str] = []
        for topic in self._topics:
            cursor: str | None = None
            while True:
                try:
                    page = await self._store.list_leased_tasks(topic, cursor, self._page_size)
                except SokkaError as error:
                    errors.append(self._listing_failed(topic, error))
                    break
                self._listing_worked(topic)
                tasks.extend(page.tasks)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        return tasks, tuple(errors)

    async def _revoke(self, command: RevokeLease) -> RevokeOutcome:
        tries = 0
        while True:
            result = await execute(self._store, command)
            tries += 1
            retry_in_s = self._retry_in_s(result, tries)
            if retry_in_s is None or self._stop.asked:
                break
            await self._sleep(retry_in_s)
        outcome = RevokeOutcome(command=command, result=result)
        log_outcome(outcome)
        return outcome

    # -- the loop -----------------------------------------------------------

    async def run(self) -> None:
        """Run cycles until ``stop()`` (at once if it was called before); a failing
        cycle is logged, not fatal."""
        self._stop.bind()
        while not self._stop.asked:
            try:
                await self.run_once()
            except Exception:  # a bug or a foreign error must not kill the loop
                log.exception("supervisor cycle failed")
            await self._stop.sleep(self.wait_ms() / 1000)

    def stop(self) -> None:
        """Ask ``run()`` to return (an in-flight cycle finishes first); any thread."""
        self._stop.ask()
