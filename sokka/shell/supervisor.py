"""The supervisor: list -> mark -> sweep -> execute -> settle, on a loop.

The pure functions in ``sokka.core.supervision`` decide; this module reads
the clock, talks to the store, retries, logs, and sleeps until the next
lease can lapse. Many supervisors may watch the same store: each revoke is a
compare-and-set on the record_ver it observed, so a task is revoked once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from returns.result import Failure, Result, Success

from sokka.adapters.store import MAX_PAGE_SIZE, TaskStore, execute, require_limit
from sokka.core.backoff import Backoff
from sokka.core.commands import RevokeLease, RevokeOutcome, is_retry_worthy
from sokka.core.errors import RetryableError, SokkaError, ValidationError
from sokka.core.supervision import (
    EMPTY,
    LeasePolicy,
    Monitored,
    mark,
    next_expiry,
    settle,
    sweep,
)
from sokka.core.task import Status, Task, require_name, require_positive_ms
from sokka.shell.clock import Clock, MonotonicClock
from sokka.shell.errorlog import RepeatedErrors
from sokka.shell.observers import NO_SUPERVISOR_OBSERVER, SupervisorObserver

__all__ = ["Supervisor", "SupervisorCore", "SupervisorReport", "build_report", "log_outcome"]

log = logging.getLogger("sokka.supervisor")

#: The loop never sleeps less than this between cycles, so a store that
#: keeps failing cannot turn it into a busy loop.
MIN_WAIT_MS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorReport:
    """What one cycle saw and did."""

    listed: int  #: leased tasks read from the store
    complete: bool  #: every page of every topic was read
    monitored: int  #: entries in the supervisor's memory after the cycle
    revoked: tuple[str, ...]  #: expired leases taken back (task back to starting)
    failed: tuple[str, ...]  #: expired leases that spent the task's last attempt
    woken: tuple[str, ...]  #: snoozed tasks woken up
    conflicts: int  #: revokes refused because the task changed (nothing done)
    retryable_errors: int  #: revokes that hit a retryable error; retried next cycle
    listing_errors: tuple[str, ...]  #: why a listing stopped early, if it did
    duration_ms: int  #: on the supervisor's clock


class SupervisorCore:
    """What every runtime's supervisor holds, and decides without I/O.

    Checks the options, keeps the supervisor's memory (``monitored``), turns a
    listing into revoke commands and the revokes' outcomes into a report
    through the pure functions of ``sokka.core.supervision``, and logs store
    failures without flooding. The threaded ``Supervisor`` and the asyncio one
    (``sokka.shell.aio.supervisor``) add only how they call the store and sleep.
    """

    def __init__(
        self,
        topics: str | Sequence[str] | None,
        policy: LeasePolicy | None,
        clock: Clock | None,
        *,
        interval_ms: int | None,
        page_size: int,
        revoke_tries: int,
        retry_backoff: Backoff | None,
        rand: Callable[[], float],
    ) -> None:
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
        self._monitored: Monitored = EMPTY
        self.last_report: SupervisorReport | None = None
        #: Told what each cycle did (``sokka.shell.observers``): set it before the
        #: loop runs; ``sokka.shell.metrics.SupervisorMetrics.watch`` does.
        self.observer: SupervisorObserver = NO_SUPERVISOR_OBSERVER

    @property
    def monitored(self) -> Monitored:
        """The supervisor's current memory (an immutable value)."""
        return self._monitored

    @property
    def policy(self) -> LeasePolicy:
        """The lease and default snooze times this supervisor judges leases by."""
        return self._policy

    def wait_ms(self) -> int:
        """How long the loop sleeps now: until the next expiry, at most one interval."""
        wait = self._interval_ms
        expiry = next_expiry(self._monitored)
        if expiry is not None:
            # sweep revokes strictly after the expiry: wake one ms past it.
            wait = min(wait, expiry + 1 - self._clock.now_ms())
        return max(wait, MIN_WAIT_MS)

    @staticmethod
    def _where(topic: str | None) -> str:
        return "all topics" if topic is None else f"topic {topic!r}"

    def _listing_failed(self, topic: str | None, error: SokkaError) -> str:
        """Log a failed listing (once, then in summaries); its line in the report."""
        self._errors.failed(f"listing leased tasks of {self._where(topic)}", error)
        return f"{self._where(topic)}: {error}"

    def _listing_worked(self, topic: str | None) -> None:
        self._errors.succeeded(f"listing leased tasks of {self._where(topic)}")

    def _marked(
        self, tasks: Sequence[Task], complete: bool
    ) -> tuple[Monitored, tuple[RevokeLease, ...]]:
        """``mark`` what was listed, then ``sweep``: the new memory and the revokes due."""
        # The versions were seen by now at the latest: projecting expiries from
        # this later instant only makes them later, never earlier.
        now = self._clock.now_ms()
        monitored = mark(self._monitored, tasks, now, self._policy, complete=complete)
        return monitored, sweep(monitored, self._clock.now_ms())

    def _retry_in_s(self, result: Result[Task, SokkaError], tries: int) -> float | None:
        """Seconds until a revoke is tried again, or None when it is not."""
        if not is_retry_worthy(result) or tries >= self._revoke_tries:
            return None
        return self._backoff.delay_ms(tries - 1, self._rand()) / 1000

    def _settled(
        self,
        monitored: Monitored,
        tasks: Sequence[Task],
        listing_errors: tuple[str, ...],
        outcomes: Sequence[RevokeOutcome],
        started_ms: int,
    ) -> SupervisorReport:
        """``settle`` the revokes' outcomes into the memory; the cycle's report."""
        self._monitored = settle(monitored, outcomes)
        self.last_report = build_report(
            tasks,
            not listing_errors,
            outcomes,
            listing_errors,
            self._clock.now_ms() - started_ms,
            len(self._monitored),
        )
        self.observer.cycle(self.last_report, outcomes)
        return self.last_report


class Supervisor(SupervisorCore):
    """Watches leased tasks and revokes the leases nobody keeps alive.

    ``topics``: one topic, several, or ``None`` for all. ``clock`` is the
    supervisor's own monotonic clock (a ``ManualClock`` in tests).
    ``interval_ms`` bounds how long the loop sleeps between listings (default:
    a quarter of the lease); it also wakes at the next projected expiry.
    """

    def __init__(
        self,
        store: TaskStore,
        topics: str | Sequence[str] | None = None,
        policy: LeasePolicy | None = None,
        clock: Clock | None = None,
        *,
        interval_ms: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
        revoke_tries: int = 3,
        retry_backoff: Backoff | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__(
            topics, policy, clock, interval_ms=interval_ms, page_size=page_size,
            revoke_tries=revoke_tries, retry_backoff=retry_backoff, rand=rand,
        )  # fmt: skip
        self._store = store
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._cycle_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- one cycle ----------------------------------------------------------

    def run_once(self) -> SupervisorReport:
        """List every leased task, mark, sweep, revoke what lapsed, settle."""
        with self._cycle_lock:
            started = self._clock.now_ms()
            tasks, listing_errors = self._list_leased()
            monitored, commands = self._marked(tasks, complete=not listing_errors)
            outcomes = [self._revoke(command) for command in commands]
            return self._settled(monitored, tasks, listing_errors, outcomes, started)

    def _list_leased(self) -> tuple[list[Task], tuple[str, ...]]:
        tasks: list[Task] = []
        errors: list[str] = []
        for topic in self._topics:
            cursor: str | None = None
            while True:
                try:
                    page = self._store.list_leased_tasks(topic, cursor, self._page_size)
                except SokkaError as error:
                    errors.append(self._listing_failed(topic, error))
                    break
                self._listing_worked(topic)
                tasks.extend(page.tasks)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        return tasks, tuple(errors)

    def _revoke(self, command: RevokeLease) -> RevokeOutcome:
        tries = 0
        while True:
            result = execute(self._store, command)
            tries += 1
            retry_in_s = self._retry_in_s(result, tries)
            if retry_in_s is None or self._stop.is_set():
                break
            self._sleep(retry_in_s)
        outcome = RevokeOutcome(command=command, result=result)
        log_outcome(outcome)
        return outcome

    # -- the loop -----------------------------------------------------------

    def start(self) -> None:
        """Run cycles on a daemon thread until ``stop()``."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("supervisor already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sokka-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the loop to stop and wait for it (an in-flight cycle finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a bug or a foreign error must not kill the loop
                log.exception("supervisor cycle failed")
            self._stop.wait(self.wait_ms() / 1000)


def build_report(
    tasks: Sequence[Task],
    complete: bool,
    outcomes: Sequence[RevokeOutcome],
    listing_errors: tuple[str, ...],
    duration_ms: int,
    monitored: int,
) -> SupervisorReport:
    """What a cycle did, from what it listed and its revokes' outcomes (every runtime)."""
    revoked: list[str] = []
    failed: list[str] = []
    woken: list[str] = []
    conflicts = retryable = 0
    for outcome in outcomes:
        task_id = outcome.command.task_id
        match outcome.result:
            case Success(task) if outcome.command.status is Status.SNOOZED:
                woken.append(task_id)
            case Success(task) if task.status is Status.FAILED:
                failed.append(task_id)
            case Success(_):
                revoked.append(task_id)
            case Failure(RetryableError()):
                retryable += 1
            case Failure(_):
                conflicts += 1
    return SupervisorReport(
        listed=len(tasks),
        complete=complete,
        monitored=monitored,
        revoked=tuple(revoked),
        failed=tuple(failed),
        woken=tuple(woken),
        conflicts=conflicts,
        retryable_errors=retryable,
        listing_errors=listing_errors,
        duration_ms=duration_ms,
    )


def log_outcome(outcome: RevokeOutcome) -> None:
    """Log what a revoke gave (every runtime)."""
    command = outcome.command
    fields = {"task_id": command.task_id, "record_ver": command.record_ver}
    match outcome.result:
        case Success(task) if command.status is Status.SNOOZED:
            log.info(
                "woke snoozed task %s (record_ver %d)", command.task_id, command.record_ver,
                extra={**fields, "topic": task.topic},
            )  # fmt: skip
        case Success(task):
            log.info(
                "revoked the lease of task %s (record_ver %d, %d ms overdue): now %s",
                command.task_id,
                command.record_ver,
                command.overdue_ms,
                task.status,
                extra={**fields, "topic": task.topic, "overdue_ms": command.overdue_ms,
                       "status": str(task.status)},
            )  # fmt: skip
        case Failure(RetryableError() as error):
            log.warning(
                "revoke of task %s will be retried: %s", command.task_id, error, extra=fields
            )
        case Failure(error):
            log.info("revoke of task %s not needed: %s", command.task_id, error, extra=fields)
