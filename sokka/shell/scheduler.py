"""The scheduler: creates the task of each slot of each periodic schedule, on a loop.

``sokka.core.schedule.plan`` decides which slots are due and which the
catch-up bound skips; this module reads the wall clock, creates the due
slots' tasks through the store (one ``create_tasks`` call per wake-up),
logs what was skipped, retries what the store could not take, and sleeps
until the next slot.

Cron is wall-clock time by definition, so the wall clock is this loop's
input (lease supervision never reads one). Many schedulers may run on the
same store: a slot's task id is the slot's (``slot_task_id``), a store
creates an id once, so each slot gets one task; a scheduler whose clock is
ahead creates it early by its skew, one behind finds it made already.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from returns.result import Failure, Result, Success

from sokka.adapters.store import MAX_BATCH, TaskStore
from sokka.core.backoff import Backoff
from sokka.core.errors import AlreadyExists, RetryableError, SokkaError, ValidationError
from sokka.core.schedule import (
    CatchUp,
    Plan,
    Slots,
    next_wakeup,
    plan,
    require_schedule_name,
    retry_from,
    slot_task_id,
)
from sokka.core.task import Task, TaskSpec
from sokka.shell.clock import Clock
from sokka.shell.tracing import PublishingMany, TracerProviderLike, Tracing

__all__ = ["Schedule", "Scheduler", "SchedulerCore", "SchedulerReport", "WallClock"]

log = logging.getLogger("sokka.scheduler")

#: The shortest wait before retrying slots the store could not take.
MIN_RETRY_MS: Final = 100
#: The longest sleep between two readings of the wall clock: a clock that an
#: operator or NTP steps forward is noticed within this, not at the old slot.
MAX_SLEEP_MS: Final = 1_000


class WallClock:
    """``time.time_ns`` in milliseconds since the Unix epoch: what cron slots are on."""

    def now_ms(self) -> int:
        """Milliseconds since 1970-01-01T00:00:00Z, as this machine's clock says."""
        return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A periodic schedule: the task ``spec`` to create at every slot of ``slots``.

    ``name`` names the slots' task ids (``periodic:NAME:2026-12-01T22:05:00Z``),
    so it must stay the same across deployments; ``spec`` has no ``task_id``
    (each slot's is made from the name) and no delay.
    """

    name: str
    slots: Slots
    spec: TaskSpec
    catch_up: CatchUp = field(default_factory=CatchUp)
    cron: str = ""  #: the cron line, as written (for logs)

    def __post_init__(self) -> None:
        require_schedule_name(self.name)
        if not isinstance(self.spec, TaskSpec):
            raise ValidationError("spec", "must be a TaskSpec")
        if self.spec.task_id is not None:
            raise ValidationError("spec.task_id", "is made from the schedule's name and slot")
        if self.spec.delay_ms:
            raise ValidationError("spec.delay_ms", "a periodic task is due at its slot")
        if not isinstance(self.catch_up, CatchUp):
            raise ValidationError("catch_up", "must be a CatchUp")

    def task_spec(self, slot_ms: int) -> TaskSpec:
        """The task of one slot: ``spec`` with the slot's id."""
        return dataclasses.replace(self.spec, task_id=slot_task_id(self.name, slot_ms))


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerReport:
    """What one wake-up did, by task id."""

    created: tuple[str, ...]  #: tasks this scheduler created
    existing: tuple[str, ...]  #: slots whose task another scheduler (or an earlier run) made
    failed: tuple[str, ...]  #: tasks the store refused for good (logged; not retried)
    retrying: tuple[str, ...]  #: tasks the store could not take now; due again next wake-up
    skipped: int  #: schedules that left past slots out (catch-up bound)
    wake_ms: int | None  #: the next slot of any schedule (wall clock)


#: Slots of one ``create_tasks`` call: each with its schedule and its task.
_Batch = Sequence[tuple[Schedule, int, TaskSpec]]


@dataclass(slots=True, kw_only=True)
class _Wakeup:
    """One wake-up in progress: the plans made at ``now_ms``, the slots they made
    due, and what the store answered so far, by task id."""

    now_ms: int
    plans: dict[str, Plan]
    pending: list[tuple[Schedule, int, TaskSpec]]
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)

    def batches(self) -> list[_Batch]:
        """The due slots in ``create_tasks`` calls of at most ``MAX_BATCH`` tasks."""
        return [self.pending[at : at + MAX_BATCH] for at in range(0, len(self.pending), MAX_BATCH)]


class SchedulerCore:
    """What every runtime's scheduler holds and decides, without calling a store.

    Checks the schedules, plans each wake-up through ``sokka.core.schedule``
    (keeping the last moment each schedule considered), records and logs what
    the store answered, makes the slots it could not take due again with a
    backoff, and reports. The threaded ``Scheduler`` and the asyncio one
    (``sokka.shell.aio.scheduler.AsyncScheduler``) add only how they call the
    store (``create_tasks`` once per batch of ``_Wakeup.batches``: its results
    to ``_answered``, its error to ``_refused``) and sleep.
    """

    def __init__(
        self,
        schedules: Sequence[Schedule],
        *,
        clock: Clock | None,
        retry_backoff: Backoff | None,
        tracer_provider: TracerProviderLike | None = None,
    ) -> None:
        names = [s.name for s in schedules]
        if not schedules:
            raise ValidationError("schedules", "there is no schedule to run")
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValidationError("schedules", f"two schedules are named {twice[0]!r}")
        self._schedules = tuple(schedules)
        self._clock: Clock = clock or WallClock()
        self._backoff = retry_backoff or Backoff(base_ms=500, cap_ms=30_000)
        self._last: dict[str, int | None] = {s.name: None for s in schedules}
        self._failures = 0
        self._wake_ms: int | None = None
        # Each slot's task is published in a span of its own (``publish <topic>``)
        # and carries its context: its attempts are traced under it.
        self._tracing = Tracing(tracer_provider)

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        """The schedules this scheduler runs, in the order given."""
        return self._schedules

    # -- one wake-up: plan, then a store call per batch, then the report -----

    def _woken(self, now_ms: int | None) -> _Wakeup:
        """Plan every schedule at ``now_ms`` (default: the clock): the slots to
        create, each schedule's ``_last`` moved on, the skipped slots logged."""
        now = self._clock.now_ms() if now_ms is None else now_ms
        plans = {
            s.name: plan(s.slots, s.catch_up, self._last[s.name], now) for s in self._schedules
        }
        pending: list[tuple[Schedule, int, TaskSpec]] = []
        for schedule in self._schedules:
            p = plans[schedule.name]
            self._last[schedule.name] = p.considered_ms
            _log_skipped(schedule, p)
            pending.extend((schedule, slot, schedule.task_spec(slot)) for slot in p.due)
        return _Wakeup(now_ms=now, plans=plans, pending=pending)

    def _publishing(self, batch: _Batch) -> AbstractContextManager[PublishingMany]:
        """``batch``'s tasks published (``Tracing.publishing_many``): create its
        ``specs``, then tell ``_answered`` or ``_refused`` what the store said."""
        return self._tracing.publishing_many([spec for _, _, spec in batch])

    def _refused(
        self, wakeup: _Wakeup, batch: _Batch, publishing: PublishingMany, error: SokkaError
    ) -> None:
        """Record (and log) a ``create_tasks`` call of ``batch`` that raised ``error``."""
        publishing.created([Failure(error)] * len(batch))
        # The call changed nothing (a store's contract): every slot stays due.
        level = logging.WARNING if isinstance(error, RetryableError) else logging.ERROR
        log.log(level, "creating %d periodic task(s) failed, will retry: %s",
                len(batch), error)  # fmt: skip
        for schedule, slot, spec in batch:
            wakeup.retrying.append(str(spec.task_id))
            self._retry(schedule.name, slot)

    def _answered(
        self,
        wakeup: _Wakeup,
        batch: _Batch,
        publishing: PublishingMany,
        results: Sequence[Result[Task, SokkaError]],
    ) -> None:
        """Record (and log) the store's result for each task of ``batch``."""
        publishing.created(results)
        for (schedule, slot, spec), result in zip(batch, results, strict=True):
            task_id = str(spec.task_id)
            match result:
                case Success(_):
                    wakeup.created.append(task_id)
                    log.info("created %s (schedule %r, topic %r)",
                             task_id, schedule.name, spec.topic)  # fmt: skip
                case Failure(AlreadyExists()):
                    wakeup.existing.append(task_id)
                case Failure(RetryableError() as retryable):
                    log.warning("creating %s failed, will retry: %s", task_id, retryable)
                    wakeup.retrying.append(task_id)
                    self._retry(schedule.name, slot)
                case Failure(error):
                    wakeup.failed.append(task_id)
                    log.error("cannot create %s (schedule %r): %s",
                              task_id, schedule.name, error)  # fmt: skip

    def _retry(self, name: str, slot: int) -> None:
        """Make ``slot`` due again (and every later slot this wake-up considered)."""
        last = self._last[name]
        self._last[name] = retry_from(slot) if last is None else min(last, retry_from(slot))

    def _reported(self, wakeup: _Wakeup) -> SchedulerReport:
        """When to wake next (the next slot, or sooner to retry), and the report."""
        self._wake_ms = next_wakeup(wakeup.plans.values())
        if wakeup.retrying:
            self._failures += 1
            delay = self._backoff.delay_ms(self._failures, random.random())
            retry_at = wakeup.now_ms + max(MIN_RETRY_MS, delay)
            self._wake_ms = retry_at if self._wake_ms is None else min(self._wake_ms, retry_at)
        else:
            self._failures = 0
        return SchedulerReport(
            created=tuple(wakeup.created), existing=tuple(wakeup.existing),
            failed=tuple(wakeup.failed), retrying=tuple(wakeup.retrying),
            skipped=sum(1 for p in wakeup.plans.values() if p.skipped_until is not None),
            wake_ms=self._wake_ms,
        )  # fmt: skip

    # -- the loop's decisions -------------------------------------------------

    def wait_ms(self) -> int:
        """How long to sleep before the next wake-up (at most ``MAX_SLEEP_MS``)."""
        if self._wake_ms is None:
            return MAX_SLEEP_MS
        return max(0, min(MAX_SLEEP_MS, self._wake_ms - self._clock.now_ms()))

    def _due(self) -> bool:
        """Whether the loop must wake now (first time, or the wake-up time came)."""
        return self._wake_ms is None or self._clock.now_ms() >= self._wake_ms

    def _wakeup_failed(self) -> None:
        """In an ``except`` block: log a wake-up that raised (a bug or a foreign
        error must not kill the loop), and try again in ``MAX_SLEEP_MS``."""
        log.exception("scheduler wake-up failed")
        self._wake_ms = self._clock.now_ms() + MAX_SLEEP_MS

    def _log_schedules(self) -> None:
        for schedule in self._schedules:
            log.info(
                "schedule %r: %s on topic %r (catch-up %d slot(s)%s)",
                schedule.name, schedule.cron or schedule.slots, schedule.spec.topic,
                schedule.catch_up.slots, _within(schedule.catch_up),
            )  # fmt: skip


class Scheduler(SchedulerCore):
    """Creates every schedule's slot tasks in ``store`` until ``stop()``.

    ``run_once(now_ms)`` is one wake-up at a given wall-clock time (for
    tests: any time you like); ``start()`` runs wake-ups on a daemon thread,
    ``run()`` on the calling one. A new scheduler knows nothing of earlier
    runs: its first wake-up treats every past slot as missed, and the
    catch-up bound of each schedule decides which it still creates (their
    ids dedupe those an earlier run made). ``tracer_provider``: each slot's
    task is published in a span of its own (``sokka.shell.tracing``), whose
    context it carries to its attempts; by default the global provider.
    """

    def __init__(
        self,
        store: TaskStore,
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run_once(self, now_ms: int | None = None) -> SchedulerReport:
        """Plan every schedule at ``now_ms`` (default: the clock), create the due
        slots' tasks, and say what happened. Never raises a store's error: a
        slot that could not be created stays due for the next wake-up."""
        with self._lock:
            wakeup = self._woken(now_ms)
            for batch in wakeup.batches():
                with self._publishing(batch) as publishing:
                    try:
                        results = self._store.create_tasks(publishing.specs)
                    except SokkaError as error:
                        self._refused(wakeup, batch, publishing, error)
                    else:
                        self._answered(wakeup, batch, publishing, results)
            return self._reported(wakeup)

    # -- the loop -----------------------------------------------------------

    def run(self) -> None:
        """Wake at every slot and create its tasks, on this thread, until ``stop()``
        (a ``stop()`` that came first makes it return at once)."""
        self._log_schedules()
        while not self._stop.is_set():
            if self._due():
                try:
                    self.run_once()
                except Exception:  # a bug or a foreign error must not kill the loop
                    self._wakeup_failed()
            self._stop.wait(self.wait_ms() / 1000)

    def start(self) -> None:
        """Run wake-ups on a daemon thread until ``stop()`` (a stopped scheduler may
        be started again: it goes on from the slots it already considered)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("scheduler already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="sokka-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the loop to stop, and wait for ``start()``'s thread (a wake-up in
        progress finishes first). Safe from any thread and when nothing runs."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            self._thread = None


def _log_skipped(schedule: Schedule, p: Plan) -> None:
    """Say which past slots the catch-up bound leaves out (the core does not log)."""
    if p.skipped_until is None:
        return
    bound = f"catch-up {schedule.catch_up.slots} slot(s){_within(schedule.catch_up)}"
    if p.skipped_from is None:  # a first wake-up: every earlier slot counts as missed
        log.info("schedule %r: slots up to %s are not caught up (%s)",
                 schedule.name, _shown(p.skipped_until), bound)  # fmt: skip
    elif p.skipped_from == p.skipped_until:
        log.warning("schedule %r: skipped the slot of %s (%s)",
                    schedule.name, _shown(p.skipped_until), bound)  # fmt: skip
    else:
        log.warning("schedule %r: skipped the slots from %s to %s (%s)", schedule.name,
                    _shown(p.skipped_from), _shown(p.skipped_until), bound)  # fmt: skip


def _within(catch_up: CatchUp) -> str:
    return "" if catch_up.within_ms is None else f" within {catch_up.within_ms} ms"


def _shown(slot_ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=slot_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
