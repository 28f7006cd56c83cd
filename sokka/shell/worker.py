"""The worker: reserve, run the handler, keep the lease alive, record the outcome.

A handler is a plain function ``handler(task, ctx) -> Outcome`` returning
``ok()``, ``failed(error)`` or ``snoozed(ms)``. An exception is a failure
carrying its type and message; any other return value is a failure that says
so.

Every lease decision (when a keepalive is due, when to give a lease up, when
a handler has timed out, which outcome may still be recorded, what to
release when stopping) is made by the worker's pure core,
``sokka.core.holding``. This module only carries it out: it keeps the
``Holdings`` value under a lock, calls the store, runs the handlers, and
sleeps until the core's ``next_wakeup``.

Threads of one ``Worker``:

* the dispatcher (``run()``'s thread): reserves in batches and hands tasks
  to the handler threads;
* a recorder: records outcomes in batches (``finish_many``) on a connection
  of its own while the next batch runs (on a ``single_writer`` store such as
  SQLite the dispatcher records them itself);
* ``concurrency`` handler threads per topic served (a worker serves one
  topic, or several: ``routes=``, each ``Route`` with its own handler,
  concurrency, lease and timeout; what to reserve next, topic by topic, is
  the core's ``sokka.core.polling``);
* one keepalive thread for all the worker's leases, of every topic: it sends
  the one ``extend_leases`` call that ``holding.due`` asks for;
* a watchdog: ``holding.tick`` (timeouts, the self-fence, the end of a stop's
  grace period), on a thread of its own so that a store call stuck on the
  keepalive thread cannot delay it;
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

import contextlib
import functools
import logging
import os
import random
import secrets
import socket
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pyrsistent import pmap
from returns.result import Failure, Result, Success

from sokka.adapters.ready import Doorbell, ReadySignal, Wakeable
from sokka.adapters.store import MAX_BATCH, ReservesAndFinishes, TaskStore, require_limit
from sokka.core import holding, polling
from sokka.core.backoff import Backoff
from sokka.core.commands import CancelHandler, ExtendLeases, Finish, LeaseToken, Why
from sokka.core.errors import (
    LeaseLost,
    NotFound,
    RetryableError,
    SokkaError,
    TaskCancelled,
    ValidationError,
)
from sokka.core.holding import (
    Discarded,
    Held,
    Holdings,
    Recording,
    Token,
    TopicPolicy,
    WorkerPolicy,
)
from sokka.core.outcomes import (
    FailedOutcome,
    OkOutcome,
    Outcome,
    SnoozedOutcome,
    describe,
    failed,
    ok,
    raised,
    snoozed,
)
from sokka.core.polling import Polls
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Task, require_name, require_positive_ms
from sokka.core.transitions import Fail, Release, Snooze, Terminate
from sokka.shell.clock import Clock, MonotonicClock
from sokka.shell.errorlog import RepeatedErrors
from sokka.shell.observers import (
    NO_WORKER_OBSERVER,
    HandlerResult,
    StoreCall,
    WorkerObserver,
)
from sokka.shell.signals import stopping_on_signals
from sokka.shell.supervisor import Supervisor, SupervisorCore
from sokka.shell.tracing import TracerProviderLike, Tracing

__all__ = [
    "Cancelled",
    "Context",
    "FailedOutcome",
    "Handler",
    "OkOutcome",
    "Outcome",
    "Route",
    "SnoozedOutcome",
    "Worker",
    "WorkerCore",
    "WorkerStats",
    "failed",
    "ok",
    "snoozed",
]

log = logging.getLogger("sokka.worker")

#: A topic that fetches ahead by time holds at most this many leases at once
#: (or its concurrency, if that is more): the core's default.
FETCH_AHEAD_MOST = polling.FetchAhead().most


def _non_negative(field: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            field, f"must be a non-negative integer of milliseconds (got {value!r})"
        )
    return value


class Cancelled(Exception):
    """Raised by ``Context.raise_if_cancelled()``; the worker reports nothing for it."""


class Context:
    """What a handler gets beside the task: its lease and a cancellation flag.

    ``lease`` is the token ``(task_id, attempt)``: quote it in downstream
    writes and refuse a write whose attempt is older than one already seen,
    and a worker that lost its lease can never overwrite its successor's work.
    """

    __slots__ = ("_cancelled", "_event", "_lease", "_live", "_reason", "task")

    def __init__(self, task: Task, live: Callable[[], bool] | None = None) -> None:
        self.task = task
        self._lease: LeaseToken | None = None  # made when first read: most handlers don't
        self._cancelled = False
        self._live = live
        # Made only if the handler sleeps: most handlers never do, and an Event
        # per task is a noticeable share of a no-op task's cost.
        self._event: threading.Event | None = None
        self._reason: str | None = None

    @property
    def lease(self) -> LeaseToken:
        """This attempt's lease token ``(task_id, attempt)``, to fence writes with."""
        lease = self._lease
        if lease is None:
            lease = self._lease = LeaseToken(self.task.task_id, self.task.attempt)
        return lease

    @property
    def cancelled(self) -> bool:
        """True once the lease is lost, the timeout passed, or the worker is stopping.

        Exact when read: it asks the worker's core whether the lease is still
        live at this instant, so a handler resumed after a long pause sees its
        lapsed lease at once, before the worker's watchdog has run.
        """
        if self._cancelled:
            return True
        live = self._live
        if live is not None and not live():
            self._set_cancelled("the lease is no longer live")
            return True
        return False

    @property
    def cancel_reason(self) -> str | None:
        """Why the context was cancelled (for people), or None while it is not."""
        return self._reason

    def raise_if_cancelled(self) -> None:
        """Raise ``Cancelled`` if the handler should stop now."""
        if self.cancelled:
            raise Cancelled(self._reason or "cancelled")

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return early (True) if cancelled meanwhile."""
        event = self._event
        if event is None:
            event = self._event = threading.Event()
        if self.cancelled:  # cancelled before the event existed
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


def handler_raised(pid: str, task: Task, error: BaseException, ran_ms: int) -> FailedOutcome:
    """A handler raised ``error``: log it with its traceback, and make it the
    attempt's failure, its traceback kept (bounded) in the task's error history."""
    log.warning(
        "worker %s: task %s (attempt %d) raised after %d ms: %s",
        pid, task.task_id, task.attempt, ran_ms, describe(error), exc_info=error,
        extra={"worker": pid, "task_id": task.task_id, "topic": task.topic,
               "attempt": task.attempt, "duration_ms": ran_ms},
    )  # fmt: skip
    tb = error.__traceback__
    frames = tb.tb_next if tb is not None and tb.tb_next is not None else tb  # not the runtime's
    return raised(error, "".join(traceback.format_exception(type(error), error, frames)))


def log_cancelled(pid: str, task_id: str, what: str) -> None:
    """Log that an operator cancelled a task this worker held (not a lost lease:
    nothing is wrong with the worker, and the task will not run again)."""
    log.info("worker %s: task %s was cancelled by an operator; %s", pid, task_id, what)


@dataclass(slots=True)
class WorkerStats:
    """Counters since the worker started (read them with ``Worker.stats()``)."""

    reserved: int = 0
    succeeded: int = 0
    failed: int = 0  #: attempts reported as failed (retried or final)
    snoozed: int = 0
    timed_out: int = 0
    lost: int = 0  #: leases given up: refused keepalive or outcome, or the self-fence
    fenced: int = 0  #: outcomes discarded because the lease was lost
    released: int = 0  #: leases handed back unfinished at shutdown
    #: tasks an operator cancelled while this worker held them: the handler was
    #: cancelled (or its outcome dropped) and nothing was reported
    cancelled: int = 0
    store_errors: int = 0  #: retryable store errors the worker rode out

    # One way to count what the worker core says, for every runtime that drives it;
    # an observer, when given, is told the same events with the task's topic.

    def count_answer(
        self, finish: Finish, result: Result[Task, SokkaError],
        observer: WorkerObserver = NO_WORKER_OBSERVER, topic: str = "",
    ) -> None:  # fmt: skip
        """Count the store's answer to one recorded outcome."""
        match result:
            case Success(_):
                self.count_recorded(finish, observer, topic)
            case Failure(TaskCancelled()):
                self.cancelled += 1  # an operator's doing, not a lost lease
                observer.operator_cancelled(topic)
            case Failure(LeaseLost() | NotFound()):
                self.lost += 1  # the lease was gone: the outcome is discarded
                self.fenced += 1
                observer.lost(topic)
                observer.fenced(topic)
            case Failure(RetryableError()):
                self.store_errors += 1
                observer.store_error("finish_many")
            case _:
                pass

    def count_recorded(
        self, finish: Finish, observer: WorkerObserver = NO_WORKER_OBSERVER, topic: str = ""
    ) -> None:
        """Count an outcome the store recorded, by its kind."""
        match finish.event:
            case Terminate():
                self.succeeded += 1
                observer.recorded(topic, "succeeded")
            case Fail():
                self.failed += 1
                observer.recorded(topic, "failed")
            case Snooze():
                self.snoozed += 1
                observer.recorded(topic, "snoozed")
            case Release():
                self.released += 1
                observer.recorded(topic, "released")

    def count_cancel(
        self, cancel: CancelHandler, observer: WorkerObserver = NO_WORKER_OBSERVER,
        topic: str = "",
    ) -> None:  # fmt: skip
        """Count a handler the core cancelled: a lease lost, an outcome dropped, a
        timeout, an operator's cancel."""
        if cancel.why is Why.CANCELLED:
            self.cancelled += 1
            observer.operator_cancelled(topic)
            return
        if cancel.why.loses_lease:
            self.lost += 1
            observer.lost(topic)
        if cancel.discarded:
            self.fenced += 1
            observer.fenced(topic)
        if cancel.why is Why.TIMED_OUT:
            self.timed_out += 1
            observer.timed_out(topic)

    def count_discarded(
        self, verdict: Discarded, observer: WorkerObserver = NO_WORKER_OBSERVER, topic: str = ""
    ) -> None:
        """Count a handler's outcome the core refused to report."""
        if verdict.gave_up:
            self.lost += 1
            observer.lost(topic)
        if verdict.gave_up or verdict.why in (Why.FENCED, Why.REFUSED, Why.GONE):
            self.fenced += 1  # the outcome of a lease that was lost (not timed out or released)
            observer.fenced(topic)


class _Ran(Protocol):
    """What ``WorkerCore._count_ran`` reads of a handler's context (either runtime's)."""

    @property
    def task(self) -> Task: ...

    @property
    def cancelled(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One topic a worker serves: its handler, its concurrency, and, where they
    differ from the worker's, its lease and timeout.

    ``concurrency``: handlers of the topic running at once; ``batch_size``:
    the most tasks of it one reserve asks for, and leases held at once if
    larger than ``concurrency`` (default: fetched ahead by time, the worker's
    ``fetch_ahead_ms``);
    ``lease_time_ms`` / ``timeout_ms``: for the topic's tasks that carry none
    of their own (None: the worker's). Checked when the worker is made.
    """

    topic: str
    handler: Callable[..., Any]
    concurrency: int = 1
    batch_size: int | None = None
    lease_time_ms: int | None = None
    timeout_ms: int | None = None


class WorkerCore:
    """What every runtime's worker checks and keeps before it runs: the options.

    The threaded ``Worker`` and the asyncio one (``sokka.shell.aio.worker``)
    take the same options with the same checks and errors; each adds only how
    it runs handlers and calls the store. Every lease decision is the core's
    (``sokka.core.holding``), under ``policy``, and what to reserve next is
    the core's too (``sokka.core.polling``).

    A worker serves one topic (``topic``, ``handler`` and the options) or
    several (``routes``: one ``Route`` each, with its own handler, concurrency,
    lease and timeout). Either way it holds every lease in one ``Holdings``
    value and keeps them all alive with one keepalive call per round.
    """

    def __init__(
        self,
        topic: str | None,
        handler: object,
        *,
        routes: Sequence[Route] | None = None,
        pid: str | None,
        concurrency: int,
        batch_size: int | None,
        lease_time_ms: int,
        keepalive_ratio: float,
        fence_ratio: float,
        timeout_ms: int | None,
        retry_backoff: Backoff | None,
        poll_backoff: Backoff | None,
        grace_ms: int,
        linger_ms: int,
        fetch_ahead_ms: int,
        clock: Clock | None,
        rand: Callable[[], float],
        tracer_provider: TracerProviderLike | None = None,
    ) -> None:
        routes = self._check_routes(topic, handler, routes, concurrency, batch_size)
        self.pid = require_name(
            "pid", pid or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        #: The routes by topic, in the order given.
        self._routes: dict[str, Route] = {route.topic: route for route in routes}
        self._topics: tuple[str, ...] = tuple(self._routes)
        # Leases held at once per topic, waiting or running (decided outcomes do not
        # count): a route's batch size, or fetched ahead by time (``polling.FetchAhead``).
        capacity_of = {
            route.topic: max(route.batch_size or route.concurrency, route.concurrency)
            for route in routes
        }
        ahead = polling.FetchAhead(
            within_ms=_non_negative("fetch_ahead_ms", fetch_ahead_ms), most=FETCH_AHEAD_MOST
        )
        fetching = {
            route.topic: ahead for route in routes if route.batch_size is None and fetch_ahead_ms
        }
        own = {
            route.topic: TopicPolicy(
                lease_time_ms=route.lease_time_ms or lease_time_ms,
                timeout_ms=route.timeout_ms or timeout_ms,
            )
            for route in routes
            if route.lease_time_ms is not None or route.timeout_ms is not None
        }
        self.policy = WorkerPolicy(
            lease_time_ms=lease_time_ms,
            keepalive_ratio=keepalive_ratio,
            fence_ratio=fence_ratio,
            timeout_ms=timeout_ms,
            grace_ms=_non_negative("grace_ms", grace_ms),
            retry_backoff=retry_backoff or Backoff(base_ms=1_000, cap_ms=300_000),
            topics=pmap(own),
        )
        self._poll = poll_backoff or Backoff(base_ms=20, cap_ms=2_000)
        self._polls: Polls = polling.polls(
            [
                (route.topic, capacity_of[route.topic],
                 route.batch_size or route.concurrency, route.concurrency)
                for route in routes
            ],
            self._poll,
            fetching,
        )
        self._linger_ms = _non_negative("linger_ms", linger_ms)
        self._clock: Clock = clock or MonotonicClock()
        self._rand = rand
        # A store that is down fails every call: the first failure is logged, the
        # repeats are summarised (and the dispatcher backs off as on empty polls).
        self._errors = RepeatedErrors(log, f"worker {self.pid}", self._clock)
        self._holdings: Holdings = holding.holdings(self.pid, self.policy)
        self._stats = WorkerStats()
        #: Told what the worker does (``sokka.shell.observers``): set it before
        #: ``run()``; ``sokka.shell.metrics.WorkerMetrics.watch`` does.
        self.observer: WorkerObserver = NO_WORKER_OBSERVER
        #: Where each attempt's span goes (``sokka.shell.tracing``): nothing is
        #: traced until OpenTelemetry is installed and a provider configured.
        self.tracing = Tracing(tracer_provider)

    #: The supervisor the worker embeds (``supervise=True``), set by each runtime.
    _supervisor: SupervisorCore | None

    @property
    def _batch(self) -> int:
        """Outcomes recorded per call: up to one batch of every topic (a topic that
        fetches ahead by time: its batch now)."""
        return min(sum(lane.batch for lane in self._polls.lanes), MAX_BATCH)

    #: The store, when it takes a claim and outcomes in one call (each runtime sets it).
    _fused: object | None
    # What each runtime keeps of the outcomes it has yet to record: the leases
    # decided, in order; the handler returns not yet folded into the core; when
    # the oldest of them came; and the leases waiting for a handler, and running.
    _outcomes: list[Token]
    _returns: list[tuple[Token, object, int]]
    _first_outcome_ms: int
    _waiting_count: int
    _running: int

    def _take_outcomes(
        self, waiting: int, fold: Callable[[], None], force: bool, patient: bool
    ) -> Recording | None:
        """The outcomes to record now, taken out of the core (``holding.record``): up
        to ``MAX_BATCH``, once ``waiting`` (decided or returned) fill a batch, the
        worker is idle, or the oldest waited ``linger_ms`` (``patient``: only the
        last); ``force``: whatever waits. ``fold`` folds the returns in first."""
        if not self._outcomes and not self._returns:
            return None
        now = self._clock.now_ms()
        idle = self._running == 0 and not self._waiting_count
        eager = not patient and (idle or waiting >= self._batch)
        if not (force or eager) and now - self._first_outcome_ms < self._linger_ms:
            return None
        fold()
        if not self._outcomes:
            return None
        tokens, self._outcomes = self._outcomes[:MAX_BATCH], self._outcomes[MAX_BATCH:]
        self._first_outcome_ms = now
        self._holdings, recording = holding.record(self._holdings, tokens, now)
        return recording if recording else None

    def _put_back(self, recording: Recording) -> None:
        """A call that carried ``recording`` failed: its outcomes wait to be sent again."""
        self._holdings, again = holding.unsent(self._holdings, recording)
        self._outcomes = list(again) + self._outcomes

    def _settle(self, recording: Recording, results: Sequence[Result[Task, SokkaError]]) -> None:
        """The store's answer to ``recording``, into the core; counted and logged."""
        self._holdings, again = holding.recorded(self._holdings, recording, results)
        if again and not self._outcomes:
            self._first_outcome_ms = self._clock.now_ms()
        self._outcomes.extend(again)
        for finish, held, result in zip(recording.finishes, recording.held, results, strict=True):
            self._count_answer(held, finish, result)
            match result:
                case Failure(TaskCancelled() as refusal):
                    log_cancelled(self.pid, finish.task_id, f"outcome dropped: {refusal}")
                case Failure(LeaseLost() | NotFound() as refusal):
                    log.warning(
                        "worker %s: lost the lease of %s: the store refused the outcome: %s",
                        self.pid, finish.task_id, refusal,
                    )  # fmt: skip
                case Failure(RetryableError()):
                    pass  # counted; sent again with the next batch
                case Failure(other):
                    log.error("worker %s: could not record %s: %s", self.pid, finish.task_id, other)

    @property
    def _fusing(self) -> bool:
        """Whether claims carry the outcomes waiting (``reserve_and_finish``): on a
        store that takes both in one call, while the worker holds one lease at a
        time. Then claim, run and outcome follow one another, and carrying the
        outcome with the next claim takes a round trip and a commit out of each
        task. With more leases, recording on a connection of its own while the
        next claim is made is quicker (measured: docs/performance.md)."""
        return self._fused is not None and sum(lane.capacity for lane in self._polls.lanes) == 1

    @property
    def _capacity_of(self) -> dict[str, int]:
        """Leases each topic holds at once now, waiting or running."""
        return {lane.topic: lane.capacity for lane in self._polls.lanes}

    @property
    def supervisor(self) -> SupervisorCore | None:
        """The supervisor this worker runs beside itself (``supervise=True``), or None."""
        return self._supervisor

    def leases_by_topic(self) -> dict[str, holding.TopicLeases]:
        """The leases held now, by topic: how many, and the longest time one of them
        has gone since its last successful keepalive was sent (every served topic is
        there, with zeros when nothing is held)."""
        held = holding.leases_by_topic(self._holdings, self._clock.now_ms())
        return {**dict.fromkeys(self.topics, holding.NOTHING_HELD), **held}

    @staticmethod
    def _check_routes(
        topic: str | None,
        handler: object,
        routes: Sequence[Route] | None,
        concurrency: int,
        batch_size: int | None,
    ) -> tuple[Route, ...]:
        """The routes served, checked: ``routes``, or the one of ``topic``."""
        if routes is None:
            if topic is None:
                raise ValidationError("topic", "give a topic and its handler, or routes")
            routes = (
                Route(topic=topic, handler=handler,  # type: ignore[arg-type]  # checked below
                      concurrency=concurrency, batch_size=batch_size),
            )  # fmt: skip
        elif topic is not None or handler is not None:
            raise ValidationError("routes", "give either routes or one topic and its handler")
        given: object = routes  # callers may pass anything
        if isinstance(given, str | bytes) or not isinstance(given, Sequence) or not given:
            raise ValidationError("routes", "must be a non-empty sequence of Route")
        checked = []
        seen: set[str] = set()
        for route in routes:
            if not isinstance(route, Route):
                raise ValidationError("routes", f"must hold Route values (got {route!r})")
            require_name("topic", route.topic)
            if route.topic in seen:
                raise ValidationError("routes", f"topic {route.topic!r} is routed twice")
            seen.add(route.topic)
            if not callable(route.handler):
                raise ValidationError("handler", "must be callable as handler(task, ctx)")
            count = require_limit("concurrency", route.concurrency, 1024)
            require_limit("batch_size", route.batch_size or count, MAX_BATCH)
            if route.lease_time_ms is not None:
                require_positive_ms("lease_time_ms", route.lease_time_ms)
            if route.timeout_ms is not None:
                require_positive_ms("timeout_ms", route.timeout_ms)
            checked.append(route)
        return tuple(checked)

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this worker serves, in the order given."""
        return self._topics

    @property
    def holdings(self) -> Holdings:
        """The leases held, as the core's immutable value (handler starts and
        returns of the last moments may not be folded in yet)."""
        return self._holdings

    def _embedded_policy(self) -> LeasePolicy:
        """The lease policy of the supervisor a worker embeds (``supervise=True``):
        the longest lease of the topics served, since a task without a lease of
        its own must not be revoked before its topic's lease has passed."""
        policy = self.policy
        lease = max(policy.lease_ms_of(topic) for topic in self._topics)
        return LeasePolicy(lease_time_ms=lease, default_snooze_ms=lease)

    def _long_poll_ms(self, store: object, *, hints: bool) -> int:
        """How long a reserve may ask the store to hold it, or 0 (no long poll).

        A store that can hold a reserve until a task is ready (an HTTP store's
        ``max_wait_ms``) and gives no hints of its own: the idle dispatcher waits
        there instead, as long as the core allows (``reserve_wait_ms``).
        """
        max_wait = getattr(store, "max_wait_ms", 0)
        if hints or isinstance(max_wait, bool) or not isinstance(max_wait, int):
            return 0
        if len(self._topics) > 1:
            return 0  # a reserve held on one topic would hold up every other one
        return self.policy.reserve_wait_ms(max_wait)  # the cap is a lease rule: the core's

    # -- counting: the stats and the observer, told at the same points in every runtime

    def _log_lost(self, token: Token, reason: str, topic: str) -> None:
        log.warning(
            "worker %s: lost the lease of %s: %s", self.pid, token[0], reason,
            extra={"worker": self.pid, "task_id": token[0], "attempt": token[1],
                   "topic": topic},
        )  # fmt: skip

    def _count_answer(self, held: Held, finish: Finish, result: Result[Task, SokkaError]) -> None:
        """The store's answer to one recorded outcome (``held`` was its lease)."""
        self._stats.count_answer(finish, result, self.observer, held.task.topic)

    def _count_cancel(self, cancel: CancelHandler) -> None:
        """A handler the core cancelled (the command names its task's topic: the
        lease may have left the holdings already)."""
        self._stats.count_cancel(cancel, self.observer, cancel.topic)

    def _count_discarded(self, verdict: Discarded, topic: str) -> None:
        """A handler's outcome the core refused to report; ``topic`` is the task's,
        which the runtime kept with the handler's return (the lease may be gone
        from the holdings, and its token does not name the topic)."""
        self._stats.count_discarded(verdict, self.observer, topic)
        if verdict.gave_up:
            self._log_lost(verdict.lease, verdict.reason, topic)

    def _count_store_errors(self, call: StoreCall, count: int = 1) -> None:
        """Retryable store errors the worker rides out."""
        if count:
            self._stats.store_errors += count
            self.observer.store_error(call, count)

    def _count_keepalive(
        self, chunk: ExtendLeases, results: Sequence[Result[Task, SokkaError]]
    ) -> None:
        """A keepalive's answers: its round trip, and the leases it could not extend
        for a retryable reason."""
        self.observer.keepalive(len(chunk.leases), self._clock.now_ms() - chunk.sent_ms)
        self._count_store_errors(
            "extend_leases",
            sum(
                1
                for r in results
                if isinstance(r, Failure) and isinstance(r.failure(), RetryableError)
            ),
        )

    def _count_ran(
        self, ctx: _Ran, outcome: object, began_ms: int, *, raised_cancelled: bool
    ) -> None:
        """A handler returned ``outcome``: ``cancelled`` if it raised so or had been told
        to stop (its lease lost, its timeout passed, the worker stopping)."""
        observer = self.observer
        if observer is NO_WORKER_OBSERVER:
            return  # not even ctx.cancelled: it reads the clock
        result: HandlerResult
        match outcome:
            case _ if raised_cancelled or ctx.cancelled:
                result = "cancelled"
            case OkOutcome():
                result = "ok"
            case SnoozedOutcome():
                result = "snoozed"
            case _:  # a failure, an exception, or a value that is no outcome
                result = "failed"
        observer.finished(ctx.task, result, self._clock.now_ms() - began_ms)


_STORE_CALLS: dict[str, StoreCall] = {
    "reserve": "reserve_tasks",
    "keepalive": "extend_leases",
    "record outcomes": "finish_many",
}


class Worker(WorkerCore):
    """Runs ``handler`` on the tasks of ``topic``. See the module docstring.

    Or serves several topics at once: ``Worker(store, routes=[Route(topic=...,
    handler=..., concurrency=...), ...])``, each topic with its own handler
    threads, slots and poll backoff, and every lease kept alive by the one
    keepalive thread. The other options are then the defaults of the routes.

    Fetching ahead: without a ``batch_size``, a topic holds one lease per
    handler, plus as many tasks as its handlers are expected to start within
    ``fetch_ahead_ms`` (50 by default; 0: none), judged by how long its
    handlers have been taking, and at most ``FETCH_AHEAD_MOST`` leases
    (``sokka.core.polling.FetchAhead``). Until a handler has returned, and
    for handlers that take ``fetch_ahead_ms`` or longer, that is none: the
    worker reserves only what its handlers can start at once. Many short
    tasks are thus reserved and recorded in batches without a ``batch_size``;
    a ``batch_size`` fixes the batch (and the leases held at once, if larger
    than ``concurrency``) instead.
    """

    def __init__(
        self,
        store: TaskStore,
        topic: str | None = None,
        handler: Handler | None = None,
        *,
        routes: Sequence[Route] | None = None,
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
        fetch_ahead_ms: int = 50,
        supervise: bool = False,
        supervisor_interval_ms: int | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        tracer_provider: TracerProviderLike | None = None,
    ) -> None:
        super().__init__(
            topic, handler, routes=routes, pid=pid, concurrency=concurrency,
            batch_size=batch_size, lease_time_ms=lease_time_ms, keepalive_ratio=keepalive_ratio,
            fence_ratio=fence_ratio, timeout_ms=timeout_ms, retry_backoff=retry_backoff,
            poll_backoff=poll_backoff, grace_ms=grace_ms, linger_ms=linger_ms,
            fetch_ahead_ms=fetch_ahead_ms, clock=clock, rand=rand,
            tracer_provider=tracer_provider,
        )  # fmt: skip
        self._store = store

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the dispatcher waits on it
        # Each topic's handler threads wait on their topic's condition.
        self._work_of = {topic: threading.Condition(self._lock) for topic in self._topics}
        self._record = threading.Condition(self._lock)  # the recorder waits on it
        # A store with one writer at a time (SQLite) gains nothing from recording
        # on a second connection while reserving: the two would queue for the lock.
        self._single_writer = bool(getattr(store, "single_writer", False))
        # The core's value (``self._holdings``, made by WorkerCore): every lease held,
        # keyed by (task_id, attempt). Replaced, never mutated, under the lock; read
        # without it by ``Context.cancelled``.
        self._contexts: dict[Token, Context] = {}
        # Per topic: the leases waiting for a handler thread, and the handlers running.
        self._ready_of: dict[str, deque[tuple[Token, Context]]] = {
            topic: deque() for topic in self._topics
        }
        self._running_of = dict.fromkeys(self._topics, 0)
        self._waiting_count = 0  # leases waiting, every topic
        self._running = 0  # handlers running, every topic
        self._outcomes: list[Token] = []  # decided, in the order they were decided
        self._first_outcome_ms = 0  # when the oldest of them (or of the returns) was decided
        # Handler starts and returns, queued by the handler threads and folded into
        # the core in one step (holding.started_many / finished_many) before any
        # decision that depends on them: a map write per event, not per thread.
        self._starts: list[tuple[Token, int]] = []
        self._returns: list[tuple[Token, object, int]] = []
        self._returned_topics: dict[Token, str] = {}  # the topic of each return's task
        self._stopping = threading.Event()  # no more reservations
        self._halt = threading.Event()  # the keepalive thread ends
        self._stopped = threading.Event()  # run() has returned
        self._fatal: SokkaError | None = None
        self._threads: list[threading.Thread] = []
        # The store's wake-up hint, when it has one (``Wakeable``): the idle
        # dispatcher waits on it instead of sleeping blind, the poll backoff
        # still bounding each wait (a lost hint costs one poll, never a task).
        self._signal: ReadySignal | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._hinted: set[str] = set()  # topics the store hinted at since the last round
        self._max_long_poll_ms = self._long_poll_ms(store, hints=isinstance(store, Wakeable))
        # A store that takes a claim and outcomes in one call (``reserve_and_finish``):
        # while ``_fusing``, the dispatcher sends the outcomes waiting with its next
        # claim, and the recorder only records what no claim took within linger_ms.
        self._fused: ReservesAndFinishes | None = (
            store
            if isinstance(store, ReservesAndFinishes) and not self._max_long_poll_ms
            else None
        )
        self._supervisor: Supervisor | None = (
            Supervisor(
                store,
                list(self._topics),
                self._embedded_policy(),
                self._clock,
                interval_ms=supervisor_interval_ms,
            )
            if supervise
            else None
        )

    # -- public ------------------------------------------------------------------

    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters (a copy: later work does not change it)."""
        with self._lock:
            return replace(self._stats)

    def stop(self) -> None:
        """Ask the worker to stop: no new reservations, then a graceful drain."""
        self._stopping.set()
        with self._wake:
            self._wake_dispatcher_locked(every=True)
            for work in self._work_of.values():
                work.notify_all()

    def run(self, *, install_signal_handlers: bool = True) -> WorkerStats:
        """Work until ``stop()`` (or SIGTERM / SIGINT), then drain and return the stats.

        On stop: in-flight handlers get ``grace_ms`` to finish; tasks reserved
        but not started, and handlers still running after the grace period, are
        released so other workers can take them at once.
        """
        handling: contextlib.AbstractContextManager[None] = (
            stopping_on_signals(self._on_signal)
            if install_signal_handlers
            else contextlib.nullcontext()
        )
        try:
            with handling:
                try:
                    if isinstance(self._store, Wakeable):
                        self._signal = self._subscribe(self._store)
                    self._start_threads()
                    self._dispatch()
                    self._drain()
                finally:
                    for unsubscribe in self._unsubscribe:
                        unsubscribe()
                    self._shutdown_threads()
        finally:
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
        """Wait until a started worker has stopped (or ``timeout`` seconds); True if it has."""
        return self._stopped.wait(timeout)

    # -- threads -------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:  # on the relay thread (shell/signals.py)
        log.info("worker %s: got signal %d, stopping", self.pid, signum)
        self.stop()

    def _subscribe(self, store: Wakeable) -> ReadySignal:
        """One signal for the hints of every topic served; each hint marks its topic,
        whose poll backoff then ends (``polling.hinted``)."""
        signal = Doorbell()

        def ringer(topic: str) -> Callable[[], None]:
            def ring() -> None:  # on the ringing thread: quick, and must not raise
                self._hinted.add(topic)
                signal.wake()

            return ring

        for topic in self._topics:
            self._unsubscribe.append(store.subscribe_ready(topic, ringer(topic)))
        return signal

    def _start_threads(self) -> None:
        n = 0
        for route in self._routes.values():
            for _ in range(route.concurrency):
                self._spawn(functools.partial(self._handle_loop, route), f"sokka-handler-{n}")
                n += 1
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
        long_poll_ms = 0  # the next reserve's wait at the server (HTTPStore), 0: none
        while not self._stopping.is_set():
            if self._single_writer and not self._fusing:
                self._flush()  # one writer at a time: record from this thread too
            with self._lock:
                unsettled = self._unsettled_by_topic_locked()
                for topic in self._take_hints():
                    self._polls = polling.hinted(self._polls, topic)
                plan = polling.to_reserve(self._polls, unsettled, self._clock.now_ms())
            got_any = False
            for reserve in plan:  # every topic with free slots, in this round's order
                if self._stopping.is_set():
                    break
                got = self._reserve(reserve.topic, reserve.limit, long_poll_ms)
                got_any = got_any or bool(got)
                with self._lock:
                    self._polls = polling.reserved(
                        self._polls, reserve.topic, None if got is None else len(got),
                        self._clock.now_ms(), self._rand(),
                    )  # fmt: skip
                if got is not None and not got and self._max_long_poll_ms:
                    # The server holds the next reserve until a task is ready, the
                    # backoff at most: no sleep here (one topic only).
                    long_poll_ms = max(1, min(self._wait_ms()[0], self._max_long_poll_ms))
                    self._polls = polling.hinted(self._polls, reserve.topic)
                else:
                    long_poll_ms = 0
            if self._fusing:
                self._flush()  # what no claim took: none was due, or more came since
            if got_any or long_poll_ms:
                continue
            wait_ms, room = self._wait_ms()
            if not wait_ms:
                continue
            signal = self._signal
            if signal is not None and room and not self._stopping.is_set():
                # Idle with room: wait for the store's hint (or for this worker's
                # own reasons to wake, which ring it too), the backoff at most.
                signal.wait(wait_ms)
                continue
            with self._wake:
                if not (self._dispatcher_records and self._waiting_locked() >= self._batch):
                    self._wake.wait(max(wait_ms, 1) / 1000)

    def _take_hints(self) -> list[str]:
        hinted = list(self._hinted)
        for topic in hinted:
            self._hinted.discard(topic)
        return hinted

    def _wait_ms(self) -> tuple[int, bool]:
        """How long the dispatcher may sleep (the core's ``polling.wait_ms``), and
        whether some topic has room (a hint may then end the sleep)."""
        with self._lock:
            unsettled = self._unsettled_by_topic_locked()
            now = self._clock.now_ms()
            room = any(
                unsettled[topic] < capacity for topic, capacity in self._capacity_of.items()
            )
            return polling.wait_ms(self._polls, unsettled, now, self._linger_ms), room

    def _record_loop(self) -> None:
        """Record outcomes on a thread of their own, on another connection, so a
        batch's outcomes are written while the next batch is reserved and run."""
        while not self._stopping.is_set():
            patient = self._fusing  # the claims carry the outcomes
            with self._record:
                if patient or self._waiting_locked() < self._batch:
                    self._record.wait(max(self._linger_ms, 1) / 1000)
            try:
                self._flush(patient=patient)
            except Exception:  # the recorder must not die; the drain flushes too
                log.exception("worker %s: recording outcomes failed", self.pid)
                self._stopping.wait(0.1)

    def _reserve(self, topic: str, limit: int, wait_ms: int = 0) -> list[Task] | None:
        """Reserve up to ``limit`` tasks of ``topic`` (a long poll of ``wait_ms`` when
        given); None when the store failed (already logged)."""
        sent = self._clock.now_ms()
        tasks: list[Task]
        recording: Recording | None = None
        if self._fusing:
            with self._lock:
                recording = self._recording_locked(force=True)
        try:
            if recording is not None and self._fused is not None:
                tasks, results = self._fused.reserve_and_finish(
                    topic, self.pid, limit, list(recording.finishes)
                )
            elif wait_ms:
                reserve: Any = self._store.reserve_tasks  # HTTPStore's, with wait_ms
                tasks = reserve(topic, self.pid, limit, wait_ms=wait_ms)
            else:
                tasks = self._store.reserve_tasks(topic, self.pid, limit)
        except RetryableError as error:
            if recording is not None:
                self._unsent(recording)  # sent again with the next claim
            self._note_store_error("reserve", error)
            return None
        except SokkaError as error:  # not retryable (a missing schema, ...): stop
            if recording is not None:
                self._unsent(recording)  # the drain tries them once more
            log.error("worker %s: reserve failed, stopping: %s", self.pid, error)
            self._fatal = error
            self.stop()
            return None
        self._errors.succeeded("reserve")
        if recording is not None:
            self._recorded(recording, results)
        if not tasks:
            return tasks
        rand = self._rand
        jitters = [rand() for _ in tasks]
        with self._lock:
            self._stats.reserved += len(tasks)
            self._holdings = holding.take(self._holdings, tasks, sent, jitters)
            ready = self._ready_of[topic]
            for task in tasks:
                token = (task.task_id, task.attempt)
                ctx = Context(task, self._live_check(token))
                self._contexts[token] = ctx
                ready.append((token, ctx))
            self._waiting_count += len(tasks)
            self._work_of[topic].notify(len(tasks))
        return tasks

    def _live_check(self, token: Token) -> Callable[[], bool]:
        clock = self._clock
        return lambda: holding.live(self._holdings, token, clock.now_ms())

    def _unsettled_locked(self) -> int:
        """Leases held whose outcome is not decided yet (waiting or running)."""
        return self._waiting_count + self._running

    def _unsettled_by_topic_locked(self) -> dict[str, int]:
        """``_unsettled_locked`` per topic."""
        running = self._running_of
        return {topic: len(ready) + running[topic] for topic, ready in self._ready_of.items()}

    def _flush(self, *, force: bool = False, patient: bool = False) -> None:
        """Record decided outcomes in one call (when enough are waiting, or they
        waited; ``patient``: only once they waited ``linger_ms``)."""
        with self._lock:
            recording = self._recording_locked(force=force, patient=patient)
        if recording is None:
            return
        try:
            results = self._store.finish_many(list(recording.finishes))
        except RetryableError as error:
            self._note_store_error("record outcomes", error)
            self._unsent(recording)
            failures = self._errors.streak("record outcomes")
            self._stopping.wait(self._poll.delay_ms(min(failures, 30), self._rand()) / 1000)
            return
        self._errors.succeeded("record outcomes")
        self._recorded(recording, results)

    def _recording_locked(self, *, force: bool, patient: bool = False) -> Recording | None:
        """``_take_outcomes``, the lock held."""
        return self._take_outcomes(self._waiting_locked(), self._fold_locked, force, patient)

    def _unsent(self, recording: Recording) -> None:
        """``_put_back``, under the lock."""
        with self._lock:
            self._put_back(recording)

    def _recorded(self, recording: Recording, results: Sequence[Result[Task, SokkaError]]) -> None:
        """``_settle``, under the lock."""
        with self._lock:
            self._settle(recording, results)

    def _note_store_error(self, what: str, error: SokkaError) -> None:
        with self._lock:
            self._count_store_errors(_STORE_CALLS[what])
        self._errors.failed(what, error)

    def _waiting_locked(self) -> int:
        """Outcomes waiting to be recorded (decided, or returned and not yet folded)."""
        return len(self._outcomes) + len(self._returns)

    def _decided_locked(self, token: Token) -> None:
        """An outcome for ``token`` waits to be recorded: queue it, wake a recorder."""
        if not self._waiting_locked():
            self._first_outcome_ms = self._clock.now_ms()
        self._outcomes.append(token)
        self._nudge_recorder_locked()

    @property
    def _dispatcher_records(self) -> bool:
        """Whether the dispatcher records outcomes as soon as a batch waits (one
        writer at a time, or claims that carry them), not the recorder."""
        return self._single_writer or self._fusing

    def _nudge_recorder_locked(self) -> None:
        if self._waiting_locked() >= self._batch:
            if self._dispatcher_records:
                self._wake_dispatcher_locked()
            else:
                self._record.notify()

    def _wake_dispatcher_locked(self, *, every: bool = False) -> None:
        """Wake the dispatcher, whether it waits on the lock's condition or on the
        store's signal."""
        if every:
            self._wake.notify_all()
        else:
            self._wake.notify()
        if self._signal is not None:
            self._signal.wake()

    def _fold_locked(self) -> None:
        """Fold the queued handler starts and returns into the core, in order."""
        if not self._returns:
            if self._starts:
                self._holdings = holding.started_many(self._holdings, self._starts)
                self._starts = []
            return
        starts, returns, self._starts, self._returns = self._starts, self._returns, [], []
        topics, self._returned_topics = self._returned_topics, {}
        self._holdings, verdicts = holding.ran(self._holdings, starts, returns)
        for verdict in verdicts:
            match verdict:
                case Finish(task_id=task_id, event=event):
                    self._outcomes.append((task_id, event.attempt))
                case Discarded():
                    self._count_discarded(verdict, topics[verdict.lease])

    # -- handler threads -------------------------------------------------------------

    def _handle_loop(self, route: Route) -> None:
        """A handler thread of ``route``'s topic: run its waiting leases, one at a time."""
        topic, handler = route.topic, route.handler
        ready, work = self._ready_of[topic], self._work_of[topic]
        while True:
            with self._wake:
                # Once stopping, no new task starts: the drain releases what waits.
                while not ready or self._stopping.is_set():
                    if self._halt.is_set():
                        return
                    work.wait(0.1)
                token, ctx = ready.popleft()
                self._waiting_count -= 1
                now = self._clock.now_ms()
                if not holding.live(self._holdings, token, now):
                    # given up while it waited (its keepalives failed): never started
                    self._contexts.pop(token, None)
                    continue
                self._starts.append((token, now))  # folded in before the next tick
                self._running += 1
                self._running_of[topic] += 1
            self._run_one(handler, token, ctx)

    def _run_one(self, handler: Callable[..., Any], token: Token, ctx: Context) -> None:
        outcome: object
        started = self._clock.now_ms()
        self.observer.started(ctx.task)
        # The attempt's span is current on this handler thread while the handler runs.
        with self.tracing.attempt(ctx.task, self.pid) as span:
            try:
                outcome = handler(ctx.task, ctx)
            except Cancelled:
                outcome = _CANCELLED
            except BaseException as error:  # a handler's exception is its failure; the
                # thread must live on (even after sys.exit())
                span.raised(error)
                outcome = handler_raised(self.pid, ctx.task, error, self._clock.now_ms() - started)
            span.ended(outcome, ctx, cancelled=outcome is _CANCELLED)
        self._count_ran(ctx, outcome, started, raised_cancelled=outcome is _CANCELLED)
        self._handler_returned(token, ctx, outcome, self._clock.now_ms() - started)

    def _handler_returned(self, token: Token, ctx: Context, outcome: object, ran_ms: int) -> None:
        with self._wake:
            self._running -= 1
            topic = ctx.task.topic
            self._running_of[topic] -= 1
            self._polls = polling.ran(self._polls, topic, ran_ms)  # fetch ahead by run time
            if self._running == 0 and not self._waiting_count and not self._fusing:
                self._record.notify()  # idle: the recorder records (else the next claim)
            if not self._running_of[topic] and not self._ready_of[topic]:
                self._hinted.add(topic)  # this topic is idle: reserve for it at once
                self._wake_dispatcher_locked()
            elif polling.refills(
                self._polls, topic, len(self._ready_of[topic]) + self._running_of[topic]
            ):
                self._wake_dispatcher_locked()  # half a batch is free: refill it now
            self._contexts.pop(token, None)
            now = self._clock.now_ms()
            if outcome is _CANCELLED:
                if ctx.cancelled:
                    # The core has decided why (a fence, a timeout, a stop); make it
                    # say so before the handler's non-answer is folded in.
                    self._fold_locked()
                    self._holdings, cancels = holding.tick(self._holdings, now)
                    self._apply_cancels_locked(cancels)
                else:
                    outcome = FailedOutcome("the handler raised Cancelled without being cancelled")
            if not self._waiting_locked():
                self._first_outcome_ms = now
            self._returns.append((token, outcome, now))  # folded in before recording
            self._returned_topics[token] = topic
            self._nudge_recorder_locked()

    # -- keepalive, timeouts, the self-fence -------------------------------------------

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
        """Send the keepalive the core says is due (one call for every due lease)."""
        with self._lock:
            self._holdings, command = holding.due(self._holdings, self._clock.now_ms())
        if command is not None:
            self._extend(command)
        return self._sleep_ms(100)

    def _extend(self, command: ExtendLeases) -> None:
        for start in range(0, len(command.leases), MAX_BATCH):
            chunk = replace(command, leases=command.leases[start : start + MAX_BATCH])
            try:
                results = self._store.extend_leases(self.pid, list(chunk.leases))
            except RetryableError as error:
                self._note_store_error("keepalive", error)
                continue  # the core has set a retry
            self._errors.succeeded("keepalive")
            with self._lock:
                self._count_keepalive(chunk, results)
                self._holdings, cancels = holding.acknowledged(self._holdings, chunk, results)
                self._apply_cancels_locked(cancels)

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
        with self._lock:
            self._fold_locked()
            self._holdings, cancels = holding.tick(self._holdings, self._clock.now_ms())
            self._apply_cancels_locked(cancels)
        return self._sleep_ms(50)

    def _sleep_ms(self, cap_ms: int) -> int:
        """Until the core's next wake-up, at most ``cap_ms`` (new leases may come)."""
        wakeup = holding.next_wakeup(self._holdings)
        if wakeup is None:
            return cap_ms
        return min(cap_ms, max(1, wakeup - self._clock.now_ms()))

    def _apply_cancels_locked(self, cancels: Sequence[CancelHandler]) -> None:
        for cancel in cancels:
            self._count_cancel(cancel)
            if cancel.why is Why.CANCELLED:
                log_cancelled(self.pid, cancel.lease[0], f"handler cancelled: {cancel.reason}")
            elif cancel.why.loses_lease:
                self._log_lost(cancel.lease, cancel.reason, cancel.topic)
            if cancel.discarded and cancel.lease in self._outcomes:
                self._outcomes.remove(cancel.lease)
            if cancel.decided:
                self._decided_locked(cancel.lease)
                self._wake_dispatcher_locked(every=True)
            ctx = self._contexts.get(cancel.lease)
            if ctx is not None:
                ctx._set_cancelled(cancel.reason)

    # -- graceful stop ---------------------------------------------------------------

    def _drain(self) -> None:
        """Let in-flight handlers finish within the grace period, then release the rest.

        The core releases what has not started at once and, when the grace
        period is over, what still runs (the watchdog's ``tick``); this loop
        records those outcomes until no lease is left.
        """
        for thread in self._threads:
            if thread.name == "sokka-recorder":  # from here on, the drain records
                thread.join(timeout=5)
        with self._lock:
            self._fold_locked()  # a handler that started is not released as waiting
            self._holdings, released = holding.stopping(self._holdings, self._clock.now_ms())
            for ready in self._ready_of.values():
                for token, _ctx in ready:
                    self._contexts.pop(token, None)
                ready.clear()
            self._waiting_count = 0
            for token in released:
                self._decided_locked(token)
        while True:
            self._flush(force=True)
            with self._lock:
                if not self._holdings and not self._outcomes and not self._returns:
                    return
                self._wake.wait(0.01)
