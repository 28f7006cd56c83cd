"""The worker's side of a lease: what one worker holds, and what to do next.

``supervision`` is the supervisor's core; this is the worker's. Every lease
decision a worker makes lives here, as pure functions of an immutable
``Holdings`` value and ``now_ms`` (the worker's own monotonic clock):

* ``take``: leases just reserved, counted from when the reserve was *sent*;
* ``started``: a handler began (its timeout runs from here);
* ``due``: one ``ExtendLeases`` for every lease whose keepalive is due;
* ``acknowledged``: the keepalive's answers, credited at the time the call was
  *sent*; a refusal gives the lease up (``CancelHandler``);
* ``finished``: a handler returned: a ``Finish`` to record, or ``Discarded``
  when the lease was lost, timed out or released meanwhile;
* ``record`` / ``recorded``: which decided outcomes may be sent now, and
  what their answers mean;
* ``tick``: time passing: the self-fence and timeouts become ``CancelHandler``;
* ``stopping``: release what has not started, and start the grace period;
* ``live``: may this handler go on (what ``ctx.cancelled`` reads);
* ``next_wakeup``: the earliest time at which calling ``tick`` or ``due``
  can change anything; the shell sleeps until then (aioquic's ``get_timer``).

**The self-fence.** A lease is given up locally once ``fence_ratio`` of its
lease has passed since the last successful keepalive was *sent*. A
supervisor waits a whole lease from when it *sees* the version that
keepalive wrote, which is later; so, with ``fence_ratio < 1`` and a worker
clock that does not run slower than ``fence_ratio`` times the supervisor's,
the worker stops before any supervisor can revoke. No outcome is ever
returned for a lease that was given up, refused, timed out or released.

A lease moves through four phases::

    WAITING --started--> RUNNING --finished / timeout--> DECIDED --record--> (sent)
       |                    |                               ^                   |
       +--stopping----------+--grace over (release)---------+    <--retryable---+

and leaves the map when its outcome is sent (``record``), or when it is given
up. A lease whose outcome is being recorded is thus not extended, and a
keepalive refusal for it is not a loss: the outcome's own answer decides.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, NamedTuple

from pyrsistent import PMap, pmap
from returns.result import Failure, Result, Success

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
from sokka.core.outcomes import FailedOutcome, OkOutcome, SnoozedOutcome
from sokka.core.task import Task, require_name, require_positive_ms
from sokka.core.transitions import Fail, Release, Snooze, Terminate

__all__ = [
    "NOTHING_HELD",
    "Discarded",
    "Held",
    "Holdings",
    "Phase",
    "Recording",
    "Token",
    "TopicLeases",
    "TopicPolicy",
    "WorkerPolicy",
    "acknowledged",
    "due",
    "finished",
    "finished_many",
    "holdings",
    "leases_by_topic",
    "live",
    "next_wakeup",
    "record",
    "recorded",
    "started",
    "started_many",
    "stopping",
    "take",
    "tick",
    "unsent",
]

#: A lease token as the map's key: ``(task_id, attempt)`` (``Task.lease``).
Token = tuple[str, int]

_DEFAULT_RETRY: Final = Backoff(base_ms=1_000, cap_ms=300_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicPolicy:
    """One topic's lease settings, where they differ from the worker's.

    A worker serving several topics holds leases of each under its topic's
    ``lease_time_ms`` and ``timeout_ms`` (a task's own values still win).

    >>> TopicPolicy(lease_time_ms=5_000)
    TopicPolicy(lease_time_ms=5000, timeout_ms=None)
    """

    lease_time_ms: int
    timeout_ms: int | None = None

    def __post_init__(self) -> None:
        require_positive_ms("lease_time_ms", self.lease_time_ms)
        if self.timeout_ms is not None:
            require_positive_ms("timeout_ms", self.timeout_ms)


_NO_TOPICS: Final[PMap[str, TopicPolicy]] = pmap()


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerPolicy:
    """The worker's lease settings.

    ``lease_time_ms`` applies to tasks without their own; ``topics`` gives a
    topic its own lease and timeout (a worker serving several topics), which
    then apply to that topic's tasks without their own. Keepalives go out
    every ``keepalive_ratio`` of a lease, and a lease is given up once
    ``fence_ratio`` of it has passed without a successful keepalive.
    ``timeout_ms`` bounds a handler (a task's own ``timeout_ms`` wins);
    ``grace_ms`` is how long running handlers may finish after ``stopping``.

    >>> WorkerPolicy(lease_time_ms=1_000).fence_ms(1_000)
    900
    >>> WorkerPolicy(keepalive_ratio=0.95)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: keepalive_ratio: must satisfy 0 < keepalive_ratio < \
fence_ratio < 1 (got 0.95 and 0.9)
    """

    lease_time_ms: int = 30_000
    keepalive_ratio: float = 0.7
    fence_ratio: float = 0.9
    timeout_ms: int | None = None
    grace_ms: int = 30_000
    retry_backoff: Backoff = _DEFAULT_RETRY
    topics: PMap[str, TopicPolicy] = _NO_TOPICS

    def __post_init__(self) -> None:
        require_positive_ms("lease_time_ms", self.lease_time_ms)
        if not isinstance(self.topics, PMap) or not all(
            isinstance(k, str) and isinstance(v, TopicPolicy) for k, v in self.topics.items()
        ):
            raise ValidationError("topics", "must be a PMap of topic names to TopicPolicy")
        ratios = (self.keepalive_ratio, self.fence_ratio)
        if not all(isinstance(r, int | float) and not isinstance(r, bool) for r in ratios) or not (
            0 < self.keepalive_ratio < self.fence_ratio < 1
        ):
            raise ValidationError(
                "keepalive_ratio",
                "must satisfy 0 < keepalive_ratio < fence_ratio < 1 "
                f"(got {self.keepalive_ratio!r} and {self.fence_ratio!r})",
            )
        if self.timeout_ms is not None:
            require_positive_ms("timeout_ms", self.timeout_ms)
        if (
            isinstance(self.grace_ms, bool)
            or not isinstance(self.grace_ms, int)
            or (self.grace_ms < 0)
        ):
            raise ValidationError(
                "grace_ms",
                f"must be a non-negative integer of milliseconds (got {self.grace_ms!r})",
            )
        if not isinstance(self.retry_backoff, Backoff):
            raise ValidationError("retry_backoff", "must be a Backoff")

    def lease_ms_of(self, topic: str) -> int:
        """The lease of ``topic``'s tasks that carry none of their own.

        >>> p = WorkerPolicy(lease_time_ms=1_000, topics=pmap({"b": TopicPolicy(lease_time_ms=5)}))
        >>> p.lease_ms_of("a"), p.lease_ms_of("b")
        (1000, 5)
        """
        own = self.topics.get(topic) if self.topics else None
        return self.lease_time_ms if own is None else own.lease_time_ms

    def timeout_ms_of(self, topic: str) -> int | None:
        """The timeout of ``topic``'s handlers for tasks that carry none of their own."""
        own = self.topics.get(topic) if self.topics else None
        return self.timeout_ms if own is None else own.timeout_ms

    @property
    def shortest_lease_ms(self) -> int:
        """The shortest default lease of any topic (the worker's own included)."""
        if not self.topics:
            return self.lease_time_ms
        return min(self.lease_time_ms, *(t.lease_time_ms for t in self.topics.values()))

    def keepalive_ms(self, lease_ms: int) -> int:
        """How long after a keepalive was sent the next one is due."""
        return max(int(lease_ms * self.keepalive_ratio), 1)

    def fence_ms(self, lease_ms: int) -> int:
        """How long after the last successful keepalive was sent the lease is given up."""
        return max(int(lease_ms * self.fence_ratio), 1)

    def retry_ms(self, lease_ms: int) -> int:
        """How soon a keepalive that failed (or is unanswered) is tried again."""
        return max(lease_ms // 20, 1)

    def reserve_wait_ms(self, store_max_ms: int) -> int:
        """The longest a reserve may ask the store to hold it (a long poll).

        A lease counts from when the reserve was *sent* (``take``), so a call
        the store held for ``w`` ms hands over leases already ``w`` ms old: the
        wait is capped at a tenth of the (shortest) lease, and at what the
        store allows.

        >>> WorkerPolicy(lease_time_ms=30_000).reserve_wait_ms(15_000)
        3000
        """
        return max(0, min(store_max_ms, self.shortest_lease_ms // 10))

    @property
    def window_ms(self) -> int:
        """Leases due within this long of a due one are extended in the same call
        (a tenth of the shortest lease: extending a little early is safe)."""
        return max(self.shortest_lease_ms // 10, 1)


class Phase(enum.Enum):
    """Where a held lease is between its reservation and its recorded outcome."""

    WAITING = "waiting"  #: reserved; the handler has not started
    RUNNING = "running"  #: the handler runs
    DECIDED = "decided"  #: an outcome waits to be sent (handler, timeout or stop)


class Held(NamedTuple):
    """One lease this worker holds. Times are the worker's own clock.

    A ``NamedTuple`` rather than a frozen dataclass: it is rebuilt several
    times per task (taken, started, decided), and a tuple is built about
    five times faster than a frozen dataclass sets its eleven fields.
    """

    task: Task
    phase: Phase
    lease_ms: int
    keepalive_ms: int
    fence_ms: int
    ok_sent_ms: int  #: when the last successful keepalive (or the reserve) was sent
    extend_at_ms: int  #: when the next keepalive is due
    timeout_ms: int | None
    started_ms: int | None  #: when the handler started
    jitter: float  #: the random draw for this attempt's retry backoff, in [0, 1)
    finish: Finish | None  #: the outcome, once decided

    @property
    def fence_at_ms(self) -> int:
        """The last instant at which the lease is still held (given up just after)."""
        return self.ok_sent_ms + self.fence_ms

    def _with(
        self,
        *,
        phase: Phase | None = None,
        ok_sent_ms: int | None = None,
        extend_at_ms: int | None = None,
        started_ms: int | None = None,
        finish: Finish | None = None,
    ) -> Held:
        # Positional and field by field: this runs several times per task, and a
        # generic replace() costs a noticeable share of a no-op task's time.
        return Held(
            self.task,
            self.phase if phase is None else phase,
            self.lease_ms,
            self.keepalive_ms,
            self.fence_ms,
            self.ok_sent_ms if ok_sent_ms is None else ok_sent_ms,
            self.extend_at_ms if extend_at_ms is None else extend_at_ms,
            self.timeout_ms,
            self.started_ms if started_ms is None else started_ms,
            self.jitter,
            self.finish if finish is None else finish,
        )


@dataclass(frozen=True, slots=True)
class Holdings:
    """The leases one worker holds, by lease token, and whether it is stopping.

    >>> h = holdings("w1", WorkerPolicy(lease_time_ms=1_000))
    >>> len(h), next_wakeup(h)
    (0, None)
    """

    pid: str
    policy: WorkerPolicy
    leases: PMap[Token, Held]
    drain_at_ms: int | None = None  #: when the grace period of a stop ends
    #: Handlers the core cancelled while they ran (fence, refusal, timeout, stop),
    #: with why: when one returns, its outcome is discarded for that reason, and
    #: the entry leaves. Its lease may be gone from ``leases`` long before.
    outrun: PMap[Token, Why] = field(default_factory=pmap)

    def __len__(self) -> int:
        return len(self.leases)

    def __contains__(self, lease: object) -> bool:
        return lease in self.leases

    def get(self, lease: Token) -> Held | None:
        return self.leases.get(lease)

    def _with(
        self,
        leases: PMap[Token, Held],
        drain_at_ms: int | None = None,
        outrun: PMap[Token, Why] | None = None,
    ) -> Holdings:
        drain = self.drain_at_ms if drain_at_ms is None else drain_at_ms
        return Holdings(
            self.pid, self.policy, leases, drain, self.outrun if outrun is None else outrun
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Discarded:
    """A handler returned, and nothing may be reported for its lease.

    ``gave_up``: the lease was given up by this very call (its fence had
    passed); otherwise it had been lost, timed out or released before.
    """

    lease: Token
    why: Why
    reason: str
    gave_up: bool = False


_NO_LEASES: Final[PMap[Token, Held]] = pmap()


def holdings(pid: str, policy: WorkerPolicy) -> Holdings:
    """A worker's empty holdings."""
    return Holdings(require_name("pid", pid), policy, _NO_LEASES)


def take(
    holdings: Holdings, tasks: Iterable[Task], sent_ms: int, jitters: Sequence[float] = ()
) -> Holdings:
    """Add the leases of ``tasks``, reserved by a call sent at ``sent_ms``.

    Each lease counts from the reserve's *send* time, the latest instant at
    which the store can have written it. A task's lease and timeout are its
    own, else its topic's (``policy.topics``), else the worker's: leases of
    several topics live in one map, kept alive by the one ``due``. ``jitters``
    (one draw in [0, 1) per task, in order; 0.5 when missing) spread the
    retries of failed attempts.

    >>> from sokka.core.task import Status
    >>> t = Task(task_id="t1", task_group_id="t1", topic="q", status=Status.RUNNING, attempt=1)
    >>> h = take(holdings("w1", WorkerPolicy(lease_time_ms=1_000)), [t], sent_ms=100)
    >>> h.get(("t1", 1)).phase, next_wakeup(h)   # keepalive due at 100 + 0.7 * 1000
    (<Phase.WAITING: 'waiting'>, 800)
    """
    policy = holdings.policy
    topics = policy.topics
    evolver = holdings.leases.evolver()
    timings: dict[int, tuple[int, int]] = {}  # lease -> (keepalive, fence): few distinct
    for index, task in enumerate(tasks):
        lease_ms = task.lease_time_ms or (
            policy.lease_ms_of(task.topic) if topics else policy.lease_time_ms
        )
        timing = timings.get(lease_ms)
        if timing is None:
            timing = timings[lease_ms] = (policy.keepalive_ms(lease_ms), policy.fence_ms(lease_ms))
        keepalive_ms, fence_ms = timing
        evolver[(task.task_id, task.attempt)] = Held(
            task,
            Phase.WAITING,
            lease_ms,
            keepalive_ms,
            fence_ms,
            sent_ms,
            sent_ms + keepalive_ms,
            task.timeout_ms or (policy.timeout_ms_of(task.topic) if topics else policy.timeout_ms),
            None,
            jitters[index] if index < len(jitters) else 0.5,
            None,
        )
    return holdings._with(evolver.persistent())


def started(holdings: Holdings, lease: Token, now_ms: int) -> tuple[Holdings, bool]:
    """The handler of ``lease`` starts at ``now_ms``: True if it may (the waiting
    lease is now running); False, and nothing changes, if the lease is no
    longer held, no longer waiting, or past its fence.
    """
    held = holdings.leases.get(lease)
    if held is None or held.phase is not Phase.WAITING or now_ms > held.fence_at_ms:
        return holdings, False
    running = held._with(phase=Phase.RUNNING, started_ms=now_ms)
    return holdings._with(holdings.leases.set(lease, running)), True


def started_many(holdings: Holdings, starts: Iterable[tuple[Token, int]]) -> Holdings:
    """``started`` for many handlers at once, each ``(lease, when it started)``.

    For a runtime whose handlers start on many threads: each asks ``live``
    before it starts, queues the start, and the queue is folded in here, in
    one step, before the next decision that depends on it (``tick``,
    ``stopping``). A start for a lease that is gone or past waiting is ignored.
    """
    current = holdings.leases
    evolver = current.evolver()
    changed = False
    for lease, when in starts:
        held = current.get(lease)
        if held is None or held.phase is not Phase.WAITING:
            continue
        evolver[lease] = held._with(phase=Phase.RUNNING, started_ms=when)
        changed = True
    return holdings._with(evolver.persistent()) if changed else holdings


def live(holdings: Holdings, lease: Token, now_ms: int) -> bool:
    """True while the handler of ``lease`` may go on: the lease is held, within its
    fence and timeout, and neither decided nor past a stop's grace period.

    A handler checks this (through ``ctx.cancelled``) before a side effect, so
    it is exact at the instant asked, whether or not ``tick`` has run since.
    """
    held = holdings.leases.get(lease)
    if held is None or (held.phase is not Phase.RUNNING and held.phase is not Phase.WAITING):
        return False
    if now_ms > held.ok_sent_ms + held.fence_ms:
        return False
    timeout, began = held.timeout_ms, held.started_ms
    if timeout is not None and began is not None and now_ms > began + timeout:
        return False
    return holdings.drain_at_ms is None or now_ms <= holdings.drain_at_ms


def due(holdings: Holdings, now_ms: int) -> tuple[Holdings, ExtendLeases | None]:
    """The keepalive to send now, if one is due: one call for every due lease.

    Nothing is sent until some lease is due; then every lease due within the
    policy's window is extended too, so leases reserved together stay in one
    call. A lease whose outcome is being recorded is not extended. Until the
    answer comes (``acknowledged``), each extended lease is due again after a
    short retry interval, so a lost or failed call is retried well within the
    fence.

    >>> from sokka.core.task import Status
    >>> t = Task(task_id="t1", task_group_id="t1", topic="q", status=Status.RUNNING, attempt=1)
    >>> h = take(holdings("w1", WorkerPolicy(lease_time_ms=1_000)), [t], sent_ms=0)
    >>> due(h, 699)[1] is None
    True
    >>> h, command = due(h, 700)
    >>> [tuple(lease) for lease in command.leases], command.sent_ms, next_wakeup(h)
    ([('t1', 1)], 700, 750)
    """
    leases = holdings.leases
    horizon = now_ms + holdings.policy.window_ms
    candidates: list[tuple[Token, Held]] = []
    any_due = False
    for key, held in leases.items():
        if held.extend_at_ms > horizon or now_ms > held.fence_at_ms:
            continue  # not due yet, or lapsed: tick gives it up, no keepalive revives it
        candidates.append((key, held))
        if held.extend_at_ms <= now_ms:
            any_due = True
    if not any_due:
        return holdings, None
    candidates.sort(key=lambda item: (item[1].extend_at_ms, item[0]))
    evolver = leases.evolver()
    for key, held in candidates:
        evolver[key] = held._with(extend_at_ms=now_ms + holdings.policy.retry_ms(held.lease_ms))
    command = ExtendLeases(
        pid=holdings.pid,
        leases=tuple(LeaseToken(key[0], key[1]) for key, _ in candidates),
        sent_ms=now_ms,
    )
    return holdings._with(evolver.persistent()), command


def _refused(error: SokkaError) -> bool:
    """The store says the lease is gone (as opposed to "try again")."""
    return isinstance(error, LeaseLost | NotFound)


def acknowledged(
    holdings: Holdings, command: ExtendLeases, results: Sequence[Result[Task, SokkaError]]
) -> tuple[Holdings, tuple[CancelHandler, ...]]:
    """Fold the answers of ``command`` (one result per lease, in order) into the holdings.

    * success: the lease is safe from ``command.sent_ms`` on (the send time,
      not the answer's arrival); the next keepalive is due a keepalive
      interval after it;
    * refused (lease lost, not found): the lease is given up and its handler
      cancelled, unless its outcome is being recorded (that answer decides);
      the reason is ``Why.CANCELLED`` when an operator cancelled the task
      (``TaskCancelled``), ``Why.REFUSED`` otherwise;
    * any other error: nothing changes; the retry that ``due`` set stands.

    Answers for leases no longer held are ignored.
    """
    if len(results) != len(command.leases):
        raise ValidationError("results", "must hold one result per lease of the command")
    sent = command.sent_ms
    leases = holdings.leases
    changes: dict[Token, Held | None] = {}
    outrun: dict[Token, Why] = {}
    cancels: list[CancelHandler] = []
    for token, result in zip(command.leases, results, strict=True):
        key = (token.task_id, token.attempt)
        held = changes[key] if key in changes else leases.get(key)
        if held is None:
            continue
        match result:
            case Success(_):
                if sent >= held.ok_sent_ms:
                    changes[key] = held._with(
                        ok_sent_ms=sent, extend_at_ms=sent + held.keepalive_ms
                    )
            case Failure(error) if _refused(error):
                changes[key] = None
                why = Why.CANCELLED if isinstance(error, TaskCancelled) else Why.REFUSED
                if held.phase is Phase.RUNNING:
                    outrun[key] = why
                cancels.append(
                    CancelHandler(
                        lease=key,
                        topic=held.task.topic,
                        why=why,
                        reason=f"the store refused the keepalive: {error}",
                        discarded=held.phase is Phase.DECIDED,
                    )
                )
            case _:
                pass
    return _outran(_changed(holdings, changes), outrun), tuple(cancels)


def _changed(holdings: Holdings, changes: dict[Token, Held | None]) -> Holdings:
    """``holdings`` with ``changes`` applied (``None``: the lease leaves the map)."""
    if not changes:
        return holdings
    evolver = holdings.leases.evolver()
    for key, held in changes.items():
        if held is not None:
            evolver[key] = held
        elif key in holdings.leases:
            evolver.remove(key)
    return holdings._with(evolver.persistent())


def _outran(holdings: Holdings, cancelled: dict[Token, Why]) -> Holdings:
    """Remember why running handlers were cancelled (the first reason stands)."""
    fresh = {key: why for key, why in cancelled.items() if key not in holdings.outrun}
    if not fresh:
        return holdings
    return holdings._with(holdings.leases, outrun=holdings.outrun.update(fresh))


@lru_cache(maxsize=256)
def _terminate(pid: str, attempt: int) -> Terminate:
    # The same few values (one pid, attempts 1, 2, ...) for every task: a frozen
    # value can be shared, and validating it once saves a share of a no-op task.
    return Terminate(pid=pid, attempt=attempt)


def _finish_for(holdings: Holdings, held: Held, outcome: object) -> Finish:
    task, pid = held.task, holdings.pid
    match outcome:
        case OkOutcome(result_json=None):
            return Finish(task_id=task.task_id, event=_terminate(pid, task.attempt))
        case OkOutcome():
            # The result as ok() encoded it (a copy: the handler may have changed
            # its own value since), so it is valid and this cannot raise.
            event = Terminate(pid=pid, attempt=task.attempt, result=outcome.stored_result())
            return Finish(task_id=task.task_id, event=event)
        case SnoozedOutcome(ms=ms):
            return Finish(
                task_id=task.task_id, event=Snooze(pid=pid, attempt=task.attempt, snooze_ms=ms)
            )
        case FailedOutcome(error=error, retry=retry):
            delay = (
                max(holdings.policy.retry_backoff.delay_ms(task.failures, held.jitter), 1)
                if retry
                else None
            )
            return Finish(
                task_id=task.task_id,
                event=Fail(pid=pid, attempt=task.attempt, error=error, retry_after_ms=delay),
            )
    return _finish_for(
        holdings,
        held,
        FailedOutcome(f"the handler returned {outcome!r}, not ok(), failed(error) or snoozed(ms)"),
    )


def finished(
    holdings: Holdings, lease: Token, outcome: object, now_ms: int
) -> tuple[Holdings, Finish | Discarded]:
    """The handler of ``lease`` returned ``outcome`` at ``now_ms``.

    The outcome becomes a ``Finish`` to record (the lease is then decided),
    unless the lease was given up, timed out or released meanwhile, or its
    fence had passed when the handler returned (then it is given up here): a
    ``Discarded``. A return value that is not an ``Outcome`` is a failure
    that says so.
    """
    holdings, (verdict,) = finished_many(holdings, [(lease, outcome, now_ms)])
    return holdings, verdict


def finished_many(
    holdings: Holdings, returns: Iterable[tuple[Token, object, int]]
) -> tuple[Holdings, tuple[Finish | Discarded, ...]]:
    """``finished`` for many handlers at once, each ``(lease, outcome, when it
    returned)``, in one step; one verdict each, in order."""
    return ran(holdings, (), returns)


def ran(
    holdings: Holdings,
    starts: Iterable[tuple[Token, int]],
    returns: Iterable[tuple[Token, object, int]],
) -> tuple[Holdings, tuple[Finish | Discarded, ...]]:
    """``started_many(starts)`` then ``finished_many(returns)``, in one step.

    For a runtime that queues its handlers' starts and returns and folds them
    in together: the result is the same as the two calls in turn, but a lease
    that starts and returns within one fold is written once (decided), not
    twice, since nothing between the two can read its start time.

    >>> from sokka.core.outcomes import ok
    >>> from sokka.core.task import Status
    >>> t = Task(task_id="t1", task_group_id="t1", topic="q", status=Status.RUNNING, attempt=1)
    >>> h = take(holdings("w1", WorkerPolicy(lease_time_ms=1_000)), [t], sent_ms=0)
    >>> h, (finish,) = ran(h, [(("t1", 1), 5)], [(("t1", 1), ok(), 9)])
    >>> h.get(("t1", 1)).phase, type(finish.event).__name__
    (<Phase.DECIDED: 'decided'>, 'Terminate')
    """
    returns = list(returns)
    returning = {lease for lease, _outcome, _when in returns}
    holdings = started_many(holdings, (s for s in starts if s[0] not in returning))
    current = holdings.leases
    evolver = current.evolver()
    changed: dict[Token, Held | None] = {}
    verdicts: list[Finish | Discarded] = []
    outrun = holdings.outrun
    returned: list[Token] = []
    for lease, outcome, when in returns:
        held = changed[lease] if lease in changed else current.get(lease)
        why = outrun.get(lease) if outrun else None
        if why is not None:
            # the core cancelled this handler while it ran: say why, not just "gone"
            returned.append(lease)
            verdicts.append(Discarded(lease=lease, why=why, reason=_LATE_RETURN[why]))
        elif held is None:
            reason = "the lease had been given up before the handler returned"
            verdicts.append(Discarded(lease=lease, why=Why.GONE, reason=reason))
        elif held.phase is not Phase.RUNNING and held.phase is not Phase.WAITING:
            why = Why.STOPPING if isinstance(_event(held), Release) else Why.TIMED_OUT
            verdicts.append(Discarded(lease=lease, why=why, reason=f"the attempt was {why.value}"))
        elif when > held.fence_at_ms:
            reason = (
                f"no keepalive succeeded for {when - held.ok_sent_ms} ms "
                f"(the fence is {held.fence_ms} ms): lease given up"
            )
            evolver.remove(lease)
            changed[lease] = None
            verdicts.append(Discarded(lease=lease, why=Why.FENCED, reason=reason, gave_up=True))
        else:
            finish = _finish_for(holdings, held, outcome)
            decided = held._with(phase=Phase.DECIDED, finish=finish)
            evolver[lease] = decided
            changed[lease] = decided
            verdicts.append(finish)
    if returned:
        cleared = outrun.evolver()
        for lease in set(returned):
            cleared.remove(lease)
        holdings = holdings._with(
            evolver.persistent() if changed else current, outrun=cleared.persistent()
        )
    elif changed:
        holdings = holdings._with(evolver.persistent())
    return holdings, tuple(verdicts)


_LATE_RETURN: Final[dict[Why, str]] = {
    Why.REFUSED: "the store had refused the lease's keepalive before the handler returned",
    Why.FENCED: "the lease had been given up (no keepalive succeeded) before the handler returned",
    Why.TIMED_OUT: "the attempt was timed out",
    Why.STOPPING: "the attempt was stopping",
    Why.GONE: "the lease had been given up before the handler returned",
    Why.CANCELLED: "an operator had cancelled the task before the handler returned",
}


def _event(held: Held) -> object:
    return None if held.finish is None else held.finish.event


@dataclass(frozen=True, slots=True)
class Recording:
    """Outcomes on their way to the store: send ``finishes`` (``finish_many``),
    then fold the answers in with ``recorded`` (or ``unsent`` if the call failed).

    Their leases have left the holdings: a lease whose outcome is being
    recorded is neither extended nor fenced, and a keepalive refusal for it
    is not a loss (the outcome's own answer decides). ``held`` keeps what is
    needed to put one back if its answer says "try again".
    """

    finishes: tuple[Finish, ...]
    held: tuple[Held, ...]

    def __len__(self) -> int:
        return len(self.finishes)


_NOTHING_TO_RECORD: Final = Recording((), ())


def record(holdings: Holdings, leases: Iterable[Token], now_ms: int) -> tuple[Holdings, Recording]:
    """The outcomes of ``leases`` that may be sent now; their leases leave the map.

    Only decided leases still within their fence qualify: an outcome whose
    lease has lapsed is never sent (``tick`` gives that lease up). The shell
    chooses which and when (batching); the core says whether.
    """
    current = holdings.leases
    evolver = current.evolver()
    finishes: list[Finish] = []
    sent: list[Held] = []
    taken: set[Token] = set()
    for lease in leases:
        held = current.get(lease)
        if held is None or held.phase is not Phase.DECIDED or held.finish is None:
            continue
        if now_ms > held.fence_at_ms or lease in taken:
            continue
        taken.add(lease)
        evolver.remove(lease)
        finishes.append(held.finish)
        sent.append(held)
    if not finishes:
        return holdings, _NOTHING_TO_RECORD
    return holdings._with(evolver.persistent()), Recording(tuple(finishes), tuple(sent))


def recorded(
    holdings: Holdings, recording: Recording, results: Sequence[Result[Task, SokkaError]]
) -> tuple[Holdings, tuple[Token, ...]]:
    """Fold the store's answers to ``recording.finishes`` (one each, in order).

    A retryable error puts the lease back, decided, to be sent again (its
    token is returned, so the shell can queue it); any other answer ends it:
    recorded, or refused (the lease was lost: nothing more to do).
    """
    if len(results) != len(recording.finishes):
        raise ValidationError("results", "must hold one result per finish")
    again = [
        held
        for held, result in zip(recording.held, results, strict=True)
        if isinstance(result, Failure) and isinstance(result.failure(), RetryableError)
    ]
    return _put_back(holdings, again)


def unsent(holdings: Holdings, recording: Recording) -> tuple[Holdings, tuple[Token, ...]]:
    """The call carrying ``recording`` failed as a whole: every lease is decided again."""
    return _put_back(holdings, recording.held)


def _put_back(holdings: Holdings, held: Sequence[Held]) -> tuple[Holdings, tuple[Token, ...]]:
    if not held:
        return holdings, ()
    evolver = holdings.leases.evolver()
    tokens = []
    for one in held:
        token = (one.task.task_id, one.task.attempt)
        evolver[token] = one
        tokens.append(token)
    return holdings._with(evolver.persistent()), tuple(tokens)


def tick(holdings: Holdings, now_ms: int) -> tuple[Holdings, tuple[CancelHandler, ...]]:
    """Time has passed: the self-fence, timeouts and the end of a stop's grace period.

    * a lease past its fence (``now_ms > last successful keepalive sent +
      fence``) is given up, whatever its phase;
    * a running handler past its timeout is cancelled and its attempt fails;
    * once a stop's grace period is over, running handlers are cancelled and
      their leases released.
    """
    drain = holdings.drain_at_ms
    draining = drain is not None and now_ms > drain
    evolver = holdings.leases.evolver()
    cancels: list[CancelHandler] = []
    outrun: dict[Token, Why] = {}
    for key, held in holdings.leases.items():
        phase = held.phase
        if now_ms > held.ok_sent_ms + held.fence_ms:
            evolver.remove(key)
            if phase is Phase.RUNNING:
                outrun[key] = Why.FENCED
            cancels.append(
                CancelHandler(
                    lease=key,
                    topic=held.task.topic,
                    why=Why.FENCED,
                    reason=(
                        f"no keepalive succeeded for {now_ms - held.ok_sent_ms} ms "
                        f"(the fence is {held.fence_ms} ms): lease given up"
                    ),
                    discarded=phase is Phase.DECIDED,
                )
            )
        elif phase is not Phase.RUNNING:
            continue
        elif (
            held.timeout_ms is not None
            and held.started_ms is not None
            and now_ms > held.started_ms + held.timeout_ms
        ):
            reason = f"timed out after {held.timeout_ms} ms"
            finish = _finish_for(holdings, held, FailedOutcome(reason))
            evolver[key] = held._with(phase=Phase.DECIDED, finish=finish)
            outrun[key] = Why.TIMED_OUT
            cancels.append(
                CancelHandler(
                    lease=key, topic=held.task.topic, why=Why.TIMED_OUT, reason=reason,
                    decided=True,
                )
            )
        elif draining:
            evolver[key] = held._with(phase=Phase.DECIDED, finish=_release(holdings, held))
            outrun[key] = Why.STOPPING
            cancels.append(
                CancelHandler(
                    lease=key, topic=held.task.topic, why=Why.STOPPING,
                    reason="the worker is stopping", decided=True,
                )
            )
    if not cancels:
        return holdings, ()
    return _outran(holdings._with(evolver.persistent()), outrun), tuple(cancels)


def _release(holdings: Holdings, held: Held) -> Finish:
    task = held.task
    return Finish(task_id=task.task_id, event=Release(pid=holdings.pid, attempt=task.attempt))


def stopping(holdings: Holdings, now_ms: int) -> tuple[Holdings, tuple[Token, ...]]:
    """The worker stops: leases whose handler has not started are released now
    (returned: their ``Release`` waits to be recorded), and running handlers
    get the policy's grace period, after which ``tick`` releases them too.
    Calling it again does not move the end of the grace period."""
    evolver = holdings.leases.evolver()
    released: list[Token] = []
    for key, held in holdings.leases.items():
        if held.phase is Phase.WAITING:
            evolver[key] = held._with(phase=Phase.DECIDED, finish=_release(holdings, held))
            released.append(key)
    drain = holdings.drain_at_ms
    if drain is None:
        drain = now_ms + holdings.policy.grace_ms
    return holdings._with(evolver.persistent(), drain), tuple(released)


def next_wakeup(holdings: Holdings, *, keepalives: bool = True) -> int | None:
    """The earliest time at which ``due`` or ``tick`` can have something to do.

    A keepalive coming due, a fence or a timeout passing (one ms after its
    deadline, as the rules compare with ``>``), or a stop's grace period
    ending while a handler runs. ``None`` when nothing is held.

    With ``keepalives=False``, only ``tick``'s deadlines count: for a shell
    that sends one keepalive at a time and does not call ``due`` while one is
    in flight (a keepalive that came due meanwhile is no reason to wake).

    >>> from sokka.core.task import Status
    >>> t = Task(task_id="t1", task_group_id="t1", topic="q", status=Status.RUNNING, attempt=1)
    >>> h = take(holdings("w1", WorkerPolicy(lease_time_ms=1_000)), [t], sent_ms=0)
    >>> next_wakeup(h), next_wakeup(h, keepalives=False)   # keepalive at 700, fence after 900
    (700, 901)
    """
    earliest: int | None = None
    drain = holdings.drain_at_ms
    for held in holdings.leases.values():
        phase = held.phase
        when = held.ok_sent_ms + held.fence_ms + 1
        if keepalives and held.extend_at_ms < when:
            when = held.extend_at_ms
        if phase is Phase.RUNNING:
            if held.timeout_ms is not None and held.started_ms is not None:
                when = min(when, held.started_ms + held.timeout_ms + 1)
            if drain is not None:
                when = min(when, drain + 1)
        if earliest is None or when < earliest:
            earliest = when
    return earliest


class TopicLeases(NamedTuple):
    """What a worker holds of one topic, for a gauge: how many leases, and the
    longest time one of them has gone since its last successful keepalive (or its
    reserve) was sent. That lag nears ``fence_ratio`` of the lease just before the
    worker gives a lease up: the early warning of a keepalive in trouble."""

    held: int
    keepalive_lag_ms: int


NOTHING_HELD: Final = TopicLeases(0, 0)


def leases_by_topic(holdings: Holdings, now_ms: int) -> dict[str, TopicLeases]:
    """The leases held, by their task's topic (a topic with none is absent).

    >>> from sokka.core.task import Status
    >>> t = Task(task_id="t1", task_group_id="t1", topic="q", status=Status.RUNNING, attempt=1)
    >>> h = take(holdings("w1", WorkerPolicy(lease_time_ms=1_000)), [t], sent_ms=100)
    >>> leases_by_topic(h, 400)
    {'q': TopicLeases(held=1, keepalive_lag_ms=300)}
    """
    found: dict[str, TopicLeases] = {}
    for held in holdings.leases.values():
        topic = held.task.topic
        count, lag = found.get(topic, NOTHING_HELD)
        found[topic] = TopicLeases(count + 1, max(lag, now_ms - held.ok_sent_ms))
    return found
