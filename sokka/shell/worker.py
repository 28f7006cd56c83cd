"""The worker: reserve, run the handler, keep the lease alive, record the outcome.

A handler is a plain function ``handler(task, ctx) -> Outcome`` returning
``ok()``, ``failed(error)`` or ``snoozed(ms)``. An exception is a failure
carrying its type and message; any other return value is a failure that says
so.

Threads of one ``Worker``:

* the dispatcher (``run()``'s thread): reserves in batches and hands tasks
  to the handler threads;
* a recorder: records outcomes in batches (``finish_many``) on a connection
  of its own while the next batch runs (on a ``single_writer`` store such as
  SQLite the dispatcher records them itself);
* ``concurrency`` handler threads;
* one keepalive thread for all the worker's leases: it extends every lease
  due within the next moments in one ``extend_leases`` call, at about 0.7 of
  its lease time;
* a watchdog: timeouts and the self-fence, on a thread of their own so that
  a store call stuck on the keepalive thread cannot delay them;
* optionally an embedded supervisor (``supervise=True``).

Self-fencing: a lease whose last successful keepalive was *sent* more than
``fence_ratio`` of its lease time ago is given up locally, before any
supervisor can revoke it (a supervisor waits a whole lease from when it
*sees* the version that keepalive wrote, which is later). Its handler is
cancelled (``ctx.cancelled``) and whatever it returns is discarded: the
worker never reports the outcome of a lease it lost. A keepalive the store
refuses (revoked, wrong owner, stale attempt, not found) does the same.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

from returns.result import Failure, Success

from sokka.adapters.store import MAX_BATCH, TaskStore, require_limit
from sokka.core.backoff import Backoff
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    LeaseLost,
    NotFound,
    RetryableError,
    SokkaError,
    ValidationError,
)
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Task, require_name, require_positive_ms
from sokka.core.transitions import Fail, Release, Snooze, Terminate
from sokka.shell.clock import Clock, MonotonicClock
from sokka.shell.supervisor import Supervisor

__all__ = [
    "Cancelled",
    "Context",
    "Failed",
    "Handler",
    "Ok",
    "Outcome",
    "Snoozed",
    "Worker",
    "WorkerStats",
    "failed",
    "ok",
    "snoozed",
]

log = logging.getLogger("sokka.worker")


# -- what a handler returns -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok:
    """The task is done."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The attempt failed. With ``retry`` (the default) and attempts left within the
    task's ``max_attempts``, it runs again after a backoff; otherwise the task fails."""

    error: str
    retry: bool = True


@dataclass(frozen=True, slots=True)
class Snoozed:
    """Run the task again in ``ms`` milliseconds; not a failure."""

    ms: int


Outcome = Ok | Failed | Snoozed


def ok() -> Ok:
    """The handler's answer for a task that is done."""
    return Ok()


def failed(error: str | BaseException, *, retry: bool = True) -> Failed:
    """The handler's answer for a failed attempt (retried while attempts are left)."""
    if isinstance(error, BaseException):
        error = _describe(error)
    return Failed(str(error), retry)


def snoozed(ms: int) -> Snoozed:
    """The handler's answer for "not yet": run again after ``ms`` milliseconds."""
    return Snoozed(require_positive_ms("ms", ms))


def _non_negative(field: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            field, f"must be a non-negative integer of milliseconds (got {value!r})"
        )
    return value


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Cancelled(Exception):
    """Raised by ``Context.raise_if_cancelled()``; the worker reports nothing for it."""


class Context:
    """What a handler gets beside the task: its lease and a cancellation flag.

    ``lease`` is the token ``(task_id, attempt)``: quote it in downstream
    writes and refuse a write whose attempt is older than one already seen,
    and a worker that lost its lease can never overwrite its successor's work.
    """

    __slots__ = ("_cancelled", "_event", "_reason", "lease", "task")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.lease = LeaseToken(task.task_id, task.attempt)
        self._cancelled = False
        # Made only if the handler sleeps: most handlers never do, and an Event
        # per task is a noticeable share of a no-op task's cost.
        self._event: threading.Event | None = None
        self._reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once the lease is lost, the timeout passed, or the worker is stopping."""
        return self._cancelled

    @property
    def cancel_reason(self) -> str | None:
        return self._reason

    def raise_if_cancelled(self) -> None:
        """Raise ``Cancelled`` if the handler should stop now."""
        if self._cancelled:
            raise Cancelled(self._reason or "cancelled")

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return early (True) if cancelled meanwhile."""
        event = self._event
        if event is None:
            event = self._event = threading.Event()
        if self._cancelled:  # cancelled before the event existed
            event.set()
        return event.wait(seconds)

    def _set_cancelled(self, reason: str) -> None:
        if not self._cancelled:
            self._reason = reason
            self._cancelled = True
            event = self._event
            if event is not None:
                event.set()


Handler = Callable[[Task, Context], Outcome]

_CANCELLED = object()  # what a handler "returned" when it raised Cancelled


@dataclass(slots=True)
class WorkerStats:
    """Counters since the worker started (read them with ``Worker.stats()``)."""

    reserved: int = 0
    succeeded: int = 0
    failed: int = 0  #: attempts reported as failed (retried or final)
    snoozed: int = 0
    timed_out: int = 0
    lost: int = 0  #: leases given up: refused keepalive, or the self-fence
    fenced: int = 0  #: outcomes discarded because the lease was lost
    released: int = 0  #: leases handed back unfinished at shutdown
    store_errors: int = 0  #: retryable store errors the worker rode out


@dataclass(slots=True, eq=False)
class _Held:
    """A lease this worker holds, from reservation until its outcome is recorded."""

    task: Task
    ctx: Context
    lease_ms: int
    last_ok_sent_ms: int  #: when the last successful keepalive (or the reserve) was sent
    next_extend_ms: int
    started_ms: int | None = None
    settled_ms: int = 0  #: when its outcome was decided
    timeout_ms: int | None = None
    settled: bool = False  #: an outcome was decided (by the handler, or a timeout)
    lost: bool = False
    pending: Finish | None = field(default=None)


class Worker:
    """Runs ``handler`` on the tasks of ``topic``. See the module docstring."""

    def __init__(
        self,
        store: TaskStore,
        topic: str,
        handler: Handler,
        *,
        pid: str | None = None,
        concurrency: int = 1,
        batch_size: int | None = None,
        lease_time_ms: int = 30_000,
        keepalive_ratio: float = 0.7,
        fence_ratio: float = 0.9,
        timeout_ms: int | None = None,
        retry_backoff: Backoff | None = None,
        poll_backoff: Backoff | None = None,
        grace_ms: int = 30_000,
        linger_ms: int = 10,
        supervise: bool = False,
        supervisor_interval_ms: int | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._topic = require_name("topic", topic)
        if not callable(handler):
            raise ValidationError("handler", "must be callable as handler(task, ctx)")
        self._handler = handler
        self.pid = require_name(
            "pid", pid or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self._concurrency = require_limit("concurrency", concurrency, 1024)
        self._batch = require_limit("batch_size", batch_size or concurrency, MAX_BATCH)
        # Leases held at once, waiting or running (recorded outcomes do not count).
        self._capacity = max(self._batch, self._concurrency)
        self._lease_ms = require_positive_ms("lease_time_ms", lease_time_ms)
        if not 0 < keepalive_ratio < fence_ratio < 1:
            raise ValidationError(
                "keepalive_ratio", "must satisfy 0 < keepalive_ratio < fence_ratio < 1"
            )
        self._keepalive_ratio = keepalive_ratio
        self._fence_ratio = fence_ratio
        self._timeout_ms = (
            None if timeout_ms is None else require_positive_ms("timeout_ms", timeout_ms)
        )
        self._retry = retry_backoff or Backoff(base_ms=1_000, cap_ms=300_000)
        self._poll = poll_backoff or Backoff(base_ms=20, cap_ms=2_000)
        self._grace_ms = _non_negative("grace_ms", grace_ms)
        self._linger_ms = _non_negative("linger_ms", linger_ms)
        self._clock: Clock = clock or MonotonicClock()
        self._rand = rand

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the dispatcher waits on it
        self._work = threading.Condition(self._lock)  # the handler threads wait on it
        self._record = threading.Condition(self._lock)  # the recorder waits on it
        # A store with one writer at a time (SQLite) gains nothing from recording
        # on a second connection while reserving: the two would queue for the lock.
        self._single_writer = bool(getattr(store, "single_writer", False))
        # keyed by lease, (task_id, attempt): after a revoke this worker may hold the
        # same task again under a new attempt while the old lease is still winding down.
        self._held: dict[tuple[str, int], _Held] = {}
        self._ready: deque[_Held] = deque()
        self._running = 0
        self._outcomes: list[_Held] = []
        self._stats = WorkerStats()
        self._stopping = threading.Event()  # no more reservations
        self._halt = threading.Event()  # the keepalive thread ends
        self._stopped = threading.Event()  # run() has returned
        self._fatal: SokkaError | None = None
        self._threads: list[threading.Thread] = []
        self._supervisor = (
            Supervisor(
                store,
                topic,
                LeasePolicy(lease_time_ms=lease_time_ms, default_snooze_ms=lease_time_ms),
                self._clock,
                interval_ms=supervisor_interval_ms,
            )
            if supervise
            else None
        )

    # -- public ------------------------------------------------------------------

    def stats(self) -> WorkerStats:
        with self._lock:
            return replace(self._stats)

    def stop(self) -> None:
        """Ask the worker to stop: no new reservations, then a graceful drain."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
            self._work.notify_all()

    def run(self, *, install_signal_handlers: bool = True) -> WorkerStats:
        """Work until ``stop()`` (or SIGTERM / SIGINT), then drain and return the stats.

        On stop: in-flight handlers get ``grace_ms`` to finish; tasks reserved
        but not started, and handlers still running after the grace period, are
        released so other workers can take them at once.
        """
        restore = self._install_signals() if install_signal_handlers else {}
        try:
            self._start_threads()
            self._dispatch()
            self._drain()
        finally:
            self._shutdown_threads()
            for signum, previous in restore.items():
                signal.signal(signum, previous)
            self._stopped.set()
        if self._fatal is not None:
            raise self._fatal
        return self.stats()

    def start(self) -> threading.Thread:
        """Run the worker on a background thread (``stop()`` ends it)."""
        thread = threading.Thread(
            target=self.run, kwargs={"install_signal_handlers": False},
            name=f"sokka-worker-{self.pid}", daemon=True,
        )  # fmt: skip
        thread.start()
        return thread

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # -- threads -------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("worker %s: got signal %d, stopping", self.pid, signum)
            self.stop()

        return {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def _start_threads(self) -> None:
        for n in range(self._concurrency):
            self._spawn(self._handle_loop, f"sokka-handler-{n}")
        self._spawn(self._keepalive_loop, "sokka-keepalive")
        self._spawn(self._watchdog_loop, "sokka-watchdog")
        if not self._single_writer:
            self._spawn(self._record_loop, "sokka-recorder")
        if self._supervisor is not None:
            self._supervisor.start()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _shutdown_threads(self) -> None:
        self._stopping.set()
        self._halt.set()
        if self._supervisor is not None:
            self._supervisor.stop()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            if thread.name in ("sokka-keepalive", "sokka-watchdog"):
                thread.join(timeout=5)

    # -- the dispatcher ------------------------------------------------------------

    def _dispatch(self) -> None:
        empty_polls = 0
        while not self._stopping.is_set():
            if self._single_writer:
                self._flush()  # one writer at a time: record from this thread too
            with self._lock:
                room = self._unsettled_locked() < self._capacity
            if room:
                got = self._reserve()
                if got:
                    empty_polls = 0
                    continue
                if got is not None:
                    empty_polls += 1
                wait_ms = self._poll.delay_ms(min(empty_polls, 30), self._rand())
            else:
                wait_ms = self._linger_ms
            with self._wake:
                if not (self._single_writer and len(self._outcomes) >= self._batch):
                    self._wake.wait(max(wait_ms, 1) / 1000)

    def _record_loop(self) -> None:
        """Record outcomes on a thread of their own, on another connection, so a
        batch's outcomes are written while the next batch is reserved and run."""
        while not self._stopping.is_set():
            with self._record:
                if len(self._outcomes) < self._batch:
                    self._record.wait(max(self._linger_ms, 1) / 1000)
            try:
                self._flush()
            except Exception:  # the recorder must not die; the drain flushes too
                log.exception("worker %s: recording outcomes failed", self.pid)
                self._stopping.wait(0.1)

    def _reserve(self) -> list[Task] | None:
        """Reserve a batch; None when the store failed (already logged)."""
        with self._lock:
            limit = max(1, min(self._batch, self._capacity - self._unsettled_locked()))
        sent = self._clock.now_ms()
        try:
            tasks = self._store.reserve_tasks(self._topic, self.pid, limit)
        except RetryableError as error:
            self._note_store_error("reserve", error)
            return None
        except SokkaError as error:  # not retryable (a missing schema, ...): stop
            log.error("worker %s: reserve failed, stopping: %s", self.pid, error)
            self._fatal = error
            self.stop()
            return None
        if not tasks:
            return tasks
        with self._lock:
            self._stats.reserved += len(tasks)
            for task in tasks:
                lease_ms = task.lease_time_ms or self._lease_ms
                held = _Held(
                    task=task,
                    ctx=Context(task),
                    lease_ms=lease_ms,
                    last_ok_sent_ms=sent,
                    next_extend_ms=sent + int(lease_ms * self._keepalive_ratio),
                    timeout_ms=task.timeout_ms or self._timeout_ms,
                )
                self._held[task.task_id, task.attempt] = held
                self._ready.append(held)
            self._work.notify(len(tasks))
        return tasks

    def _unsettled_locked(self) -> int:
        """Leases held whose outcome is not decided yet (waiting or running)."""
        return len(self._ready) + self._running

    def _flush(self, *, force: bool = False) -> None:
        """Record buffered outcomes in one call (when enough are waiting, or they waited)."""
        with self._lock:
            if not self._outcomes:
                return
            idle = self._running == 0 and not self._ready
            waited = self._clock.now_ms() - self._outcomes[0].settled_ms
            if not (force or idle or len(self._outcomes) >= self._batch) and (
                waited < self._linger_ms
            ):
                return
            batch, self._outcomes = self._outcomes[:MAX_BATCH], self._outcomes[MAX_BATCH:]
            now = self._clock.now_ms()
            send: list[_Held] = []
            for held in batch:
                if held.lost or now - held.last_ok_sent_ms > self._fence_ms(held):
                    self._lose_locked(held, "the lease lapsed before the outcome was recorded")
                    self._stats.fenced += 1
                    continue
                send.append(held)
        if not send:
            return
        try:
            results = self._store.finish_many([h.pending for h in send if h.pending is not None])
        except RetryableError as error:
            self._note_store_error("record outcomes", error)
            with self._lock:
                self._outcomes = send + self._outcomes
            self._stopping.wait(0.05)
            return
        with self._lock:
            for held, result in zip(send, results, strict=True):
                match result:
                    case Success(_):
                        self._held.pop(held.task.lease, None)
                        self._count(held.pending)
                    case Failure(LeaseLost() | NotFound() as refusal):
                        self._lose_locked(held, f"the store refused the outcome: {refusal}")
                        self._stats.fenced += 1
                    case Failure(RetryableError()):
                        self._stats.store_errors += 1
                        self._outcomes.append(held)
                    case Failure(other):
                        log.error(
                            "worker %s: could not record %s: %s", self.pid, held.task.task_id, other
                        )
                        self._held.pop(held.task.lease, None)

    def _count(self, finish: Finish | None) -> None:
        match finish:
            case Finish(event=Terminate()):
                self._stats.succeeded += 1
            case Finish(event=Fail()):
                self._stats.failed += 1
            case Finish(event=Snooze()):
                self._stats.snoozed += 1
            case Finish(event=Release()):
                self._stats.released += 1

    def _note_store_error(self, what: str, error: SokkaError) -> None:
        with self._lock:
            self._stats.store_errors += 1
        log.warning("worker %s: %s failed, will retry: %s", self.pid, what, error)

    # -- handler threads -------------------------------------------------------------

    def _handle_loop(self) -> None:
        while True:
            with self._wake:
                # Once stopping, no new task starts: the drain releases what waits.
                while not self._ready or self._stopping.is_set():
                    if self._halt.is_set():
                        return
                    self._work.wait(0.1)
                held = self._ready.popleft()
                if held.lost:
                    continue
                self._running += 1
                held.started_ms = self._clock.now_ms()
            self._run_one(held)

    def _run_one(self, held: _Held) -> None:
        outcome: object
        try:
            outcome = self._handler(held.task, held.ctx)
        except Cancelled:
            outcome = _CANCELLED
        except BaseException as error:  # a handler's exception is its failure; the
            outcome = failed(error)  # thread must live on (even after sys.exit())
        self._settle(held, outcome)

    def _settle(self, held: _Held, outcome: object) -> None:
        with self._wake:
            self._running -= 1
            if self._running == 0 and not self._ready:
                self._wake.notify()  # idle: the dispatcher reserves
                self._record.notify()  # and the recorder records
            if held.lost:
                if not held.settled:  # it finished after its lease was lost: discard
                    held.settled = True
                    self._stats.fenced += 1
                return
            if held.settled:  # a timeout or the shutdown decided already
                return
            if outcome is _CANCELLED:
                if held.ctx.cancelled:  # stopping: the drain releases it
                    return
                outcome = Failed("the handler raised Cancelled without being cancelled")
            held.settled = True
            held.settled_ms = self._clock.now_ms()
            held.pending = self._finish_for(held, outcome)
            self._outcomes.append(held)
            if len(self._outcomes) >= self._batch:
                self._record.notify()
                if self._single_writer:
                    self._wake.notify()

    def _finish_for(self, held: _Held, outcome: object) -> Finish:
        task, pid, attempt = held.task, self.pid, held.task.attempt
        match outcome:
            case Ok():
                return Finish(task_id=task.task_id, event=Terminate(pid=pid, attempt=attempt))
            case Snoozed(ms=ms):
                return Finish(
                    task_id=task.task_id, event=Snooze(pid=pid, attempt=attempt, snooze_ms=ms)
                )
            case Failed(error=error, retry=retry):
                delay = self._retry.delay_ms(task.failures, self._rand()) if retry else None
                return Finish(
                    task_id=task.task_id,
                    event=Fail(
                        pid=pid, attempt=attempt, error=error,
                        retry_after_ms=max(delay, 1) if delay is not None else None,
                    ),
                )  # fmt: skip
        description = f"the handler returned {outcome!r}, not ok(), failed(error) or snoozed(ms)"
        return self._finish_for(held, Failed(description))

    # -- keepalive, timeouts, the self-fence -------------------------------------------

    def _fence_ms(self, held: _Held) -> int:
        return int(held.lease_ms * self._fence_ratio)

    def _keepalive_loop(self) -> None:
        while not self._halt.is_set():
            try:
                wait_ms = self._keepalive_once()
            except Exception:  # the keepalive thread must not die
                log.exception("worker %s: keepalive cycle failed", self.pid)
                wait_ms = 100
            if self._halt.wait(max(wait_ms, 1) / 1000):
                return

    def _keepalive_once(self) -> int:
        """Extend what is due now, and what would be due soon: one call for all."""
        now = self._clock.now_ms()
        with self._lock:
            horizon = now + max(self._lease_ms // 10, 1)
            due = [h for h in self._held.values() if h.next_extend_ms <= horizon and not h.lost]
            if not any(h.next_extend_ms <= now for h in due):
                due = []
        if due:
            self._extend(due, now)
        with self._lock:
            deadlines = [h.next_extend_ms for h in self._held.values()]
        if not deadlines:
            return 100
        return min(100, max(1, min(deadlines) - self._clock.now_ms()))

    def _watchdog_loop(self) -> None:
        """Fences and timeouts, on a thread of their own: a keepalive call stuck in
        the store must not delay giving up a lease before a supervisor can revoke it."""
        while not self._halt.is_set():
            try:
                wait_ms = self._watch_once()
            except Exception:  # the watchdog must not die
                log.exception("worker %s: watchdog cycle failed", self.pid)
                wait_ms = 50
            if self._halt.wait(max(wait_ms, 1) / 1000):
                return

    def _watch_once(self) -> int:
        now = self._clock.now_ms()
        with self._lock:
            for held in list(self._held.values()):
                silent = now - held.last_ok_sent_ms
                if silent > self._fence_ms(held):
                    self._lose_locked(
                        held,
                        f"no keepalive succeeded for {silent} ms "
                        f"(the fence is {self._fence_ms(held)} ms): lease given up",
                    )
                elif (
                    held.timeout_ms is not None
                    and held.started_ms is not None
                    and not held.settled
                    and now - held.started_ms > held.timeout_ms
                ):
                    self._time_out_locked(held)
            deadlines = [h.last_ok_sent_ms + self._fence_ms(h) + 1 for h in self._held.values()]
            deadlines += [
                h.started_ms + h.timeout_ms + 1
                for h in self._held.values()
                if h.timeout_ms is not None and h.started_ms is not None and not h.settled
            ]
        if not deadlines:
            return 50
        return min(50, max(1, min(deadlines) - self._clock.now_ms()))

    def _extend(self, due: Sequence[_Held], sent: int) -> None:
        for start in range(0, len(due), MAX_BATCH):
            chunk = due[start : start + MAX_BATCH]
            try:
                results = self._store.extend_leases(
                    self.pid, [LeaseToken(h.task.task_id, h.task.attempt) for h in chunk]
                )
            except RetryableError as error:
                self._note_store_error("keepalive", error)
                with self._lock:
                    for held in chunk:
                        held.next_extend_ms = sent + max(held.lease_ms // 20, 1)
                continue
            with self._lock:
                for held, result in zip(chunk, results, strict=True):
                    match result:
                        case Success(_):
                            held.last_ok_sent_ms = sent
                            held.next_extend_ms = sent + int(held.lease_ms * self._keepalive_ratio)
                        case Failure(LeaseLost() | NotFound() as refusal):
                            self._lose_locked(held, f"the store refused the keepalive: {refusal}")
                        case Failure(_):
                            self._stats.store_errors += 1
                            held.next_extend_ms = sent + max(held.lease_ms // 20, 1)

    def _lose_locked(self, held: _Held, reason: str) -> None:
        if held.lost:
            return
        held.lost = True
        self._stats.lost += 1
        self._held.pop(held.task.lease, None)
        if held in self._outcomes:  # its outcome was waiting to be recorded: discard it
            self._outcomes.remove(held)
            self._stats.fenced += 1
        held.ctx._set_cancelled(reason)
        log.warning("worker %s: lost the lease of %s: %s", self.pid, held.task.task_id, reason)

    def _time_out_locked(self, held: _Held) -> None:
        assert held.timeout_ms is not None
        held.settled = True
        held.settled_ms = self._clock.now_ms()
        held.ctx._set_cancelled(f"timed out after {held.timeout_ms} ms")
        self._stats.timed_out += 1
        held.pending = self._finish_for(held, Failed(f"timed out after {held.timeout_ms} ms"))
        self._outcomes.append(held)
        self._wake.notify_all()

    # -- graceful stop ---------------------------------------------------------------

    def _drain(self) -> None:
        """Let in-flight handlers finish within the grace period, then release the rest."""
        deadline = time.monotonic() + self._grace_ms / 1000
        for thread in self._threads:
            if thread.name == "sokka-recorder":  # from here on, the drain records
                thread.join(timeout=5)
        with self._lock:
            unstarted = list(self._ready)
            self._ready.clear()
        self._release(unstarted)
        while time.monotonic() < deadline:
            self._flush(force=True)
            with self._lock:
                busy = self._running > 0 or bool(self._outcomes)
            if not busy:
                break
            with self._wake:
                self._wake.wait(0.01)
        self._flush(force=True)
        with self._lock:
            leftover = [h for h in self._held.values() if not h.lost]
            for held in leftover:
                held.ctx._set_cancelled("the worker is stopping")
        self._release(leftover)

    def _release(self, held_list: Sequence[_Held]) -> None:
        if not held_list:
            return
        with self._lock:
            for held in held_list:
                held.settled = True
                held.settled_ms = self._clock.now_ms()
                held.pending = Finish(
                    task_id=held.task.task_id,
                    event=Release(pid=self.pid, attempt=held.task.attempt),
                )
                self._outcomes.append(held)
        for _ in range(3):
            self._flush(force=True)
            with self._lock:
                if not any(h in self._outcomes for h in held_list):
                    return
            time.sleep(0.05)
