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
from sokka.adapters.store import MAX_PAGE_SIZE, require_limit
from sokka.core.backoff import Backoff
from sokka.core.commands import RevokeLease, RevokeOutcome, is_retry_worthy
from sokka.core.errors import SokkaError, ValidationError
from sokka.core.supervision import EMPTY, LeasePolicy, Monitored, mark, next_expiry, settle, sweep
from sokka.core.task import Task, require_name, require_positive_ms
from sokka.shell.clock import Clock, MonotonicClock
from sokka.shell.errorlog import RepeatedErrors
from sokka.shell.supervisor import MIN_WAIT_MS, SupervisorReport, build_report, log_outcome

__all__ = ["Supervisor", "SupervisorReport"]

log = logging.getLogger("sokka.supervisor")


async def execute(store: AsyncTaskStore, command: RevokeLease) -> Result[Task, SokkaError]:
    """``sokka.adapters.store.execute``, awaited: the store's errors come back as
    ``Failure``; an exception that is not a ``SokkaError`` is a bug and propagates."""
    try:
        return Success(await store.revoke_lease(command.task_id, command.record_ver))
    except SokkaError as error:
        return Failure(error)


class Supervisor:
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
        self._store = store
        if isinstance(topics, str):
            topics = (topics,)
        self._topics: tuple[str | None, ...] = (
            # each topic once: a topic listed twice would list its tasks twice
            (None,)
            if topics is None
            else tuple(dict.fromkeys(require_name("topics", t) for t in topics))
        )
        if not self._topics:
            raise ValidationError("topics", "must name at least one topic, or be None for all")
        self._policy = policy or LeasePolicy(lease_time_ms=30_000, default_snooze_ms=60_000)
        self._clock: Clock = clock or MonotonicClock()
        self._errors = RepeatedErrors(log, "supervisor", self._clock)
        self._interval_ms = require_positive_ms(
            "interval_ms",
            interval_ms if interval_ms is not None else max(self._policy.lease_time_ms // 4, 1),
        )
        self._page_size = require_limit("page_size", page_size, MAX_PAGE_SIZE)
        self._revoke_tries = require_limit("revoke_tries", revoke_tries, 100)
        self._backoff = retry_backoff or Backoff(base_ms=50, cap_ms=1_000)
        self._rand = rand
        self._sleep = sleep or self._sleep_unless_stopped
        self._stopping = False
        self._wake = asyncio.Event()  # set by stop(); bound to the loop on first use
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitored: Monitored = EMPTY
        self._cycle_lock = asyncio.Lock()
        self.last_report: SupervisorReport | None = None

    @property
    def monitored(self) -> Monitored:
        """The supervisor's current memory (an immutable value)."""
        return self._monitored

    @property
    def policy(self) -> LeasePolicy:
        return self._policy

    # -- one cycle ----------------------------------------------------------

    async def run_once(self) -> SupervisorReport:
        """List every leased task, mark, sweep, revoke what lapsed, settle."""
        async with self._cycle_lock:
            started = self._clock.now_ms()
            tasks, listing_errors = await self._list_leased()
            complete = not listing_errors
            # The versions were seen by now at the latest: projecting expiries
            # from this later instant only makes them later, never earlier.
            monitored = mark(
                self._monitored, tasks, self._clock.now_ms(), self._policy, complete=complete
            )
            commands = sweep(monitored, self._clock.now_ms())
            outcomes = [await self._revoke(command) for command in commands]
            self._monitored = settle(monitored, outcomes)
            self.last_report = build_report(
                tasks,
                complete,
                outcomes,
                listing_errors,
                self._clock.now_ms() - started,
                len(self._monitored),
            )
            return self.last_report

    async def _list_leased(self) -> tuple[list[Task], tuple[str, ...]]:
        tasks: list[Task] = []
        errors: list[str] = []
        for topic in self._topics:
            where = "all topics" if topic is None else f"topic {topic!r}"
            cursor: str | None = None
            while True:
                try:
                    page = await self._store.list_leased_tasks(topic, cursor, self._page_size)
                except SokkaError as error:
                    self._errors.failed(f"listing leased tasks of {where}", error)
                    errors.append(f"{where}: {error}")
                    break
                self._errors.succeeded(f"listing leased tasks of {where}")
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
            if not is_retry_worthy(result) or tries >= self._revoke_tries or self._stopping:
                break
            delay_ms = self._backoff.delay_ms(tries - 1, self._rand())
            await self._sleep(delay_ms / 1000)
        outcome = RevokeOutcome(command=command, result=result)
        log_outcome(outcome)
        return outcome

    # -- the loop -----------------------------------------------------------

    def wait_ms(self) -> int:
        """How long the loop sleeps now: until the next expiry, at most one interval."""
        wait = self._interval_ms
        expiry = next_expiry(self._monitored)
        if expiry is not None:
            # sweep revokes strictly after the expiry: wake one ms past it.
            wait = min(wait, expiry + 1 - self._clock.now_ms())
        return max(wait, MIN_WAIT_MS)

    async def run(self) -> None:
        """Run cycles until ``stop()`` (at once if it was called before); a failing
        cycle is logged, not fatal."""
        self._loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                await self.run_once()
            except Exception:  # a bug or a foreign error must not kill the loop
                log.exception("supervisor cycle failed")
            await self._sleep_unless_stopped(self.wait_ms() / 1000)

    def stop(self) -> None:
        """Ask ``run()`` to return (an in-flight cycle finishes first); any thread."""
        self._stopping = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        if self._stopping:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
