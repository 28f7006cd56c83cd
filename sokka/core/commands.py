"""Commands are plain frozen values; adapters interpret them.

A command has no ``run()`` method: ``sokka.adapters.store.execute`` turns it
into store calls, and the outcome comes back as a value the core can fold
into its state (``supervision.settle``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from returns.result import Failure, Result

from sokka.core.errors import RetryableError, SokkaError, ValidationError
from sokka.core.task import MAX_ATTEMPTS, Status, Task, require_at_most_max_int, require_name, shown
from sokka.core.transitions import Fail, Release, Snooze, Terminate

__all__ = [
    "CancelHandler",
    "Command",
    "ExtendLeases",
    "Finish",
    "LeaseToken",
    "RevokeLease",
    "RevokeOutcome",
    "Why",
    "is_retry_worthy",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeLease:
    """Revoke the lease of ``task_id`` if it still has ``record_ver``.

    ``status`` is what the supervisor saw (running: an expired lease;
    snoozed: time to wake up); ``overdue_ms`` how far past its projected
    expiry, on the supervisor's own clock, the sweep found it.
    """

    task_id: str
    record_ver: int
    status: Status
    overdue_ms: int




@dataclass(frozen=True, slots=True)
class LeaseToken:
    """The lease a worker holds: the task and the attempt it reserved.

    A handler can quote it to fence its own downstream writes: a write that
    carries an older attempt than the latest one seen must be refused.
    """

    task_id: str
    attempt: int

    def __iter__(self) -> Iterator[str | int]:
        """Unpacks as the pair it stands for: ``task_id, attempt = lease``."""
        return iter((self.task_id, self.attempt))

    def __post_init__(self) -> None:
        require_name("task_id", self.task_id)
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int):
            raise ValidationError("attempt", "must be an integer")
        if self.attempt < 1:
            raise ValidationError("attempt", f"must be at least 1 (got {shown(self.attempt)})")
        require_at_most_max_int("attempt", self.attempt, MAX_ATTEMPTS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    """One element of ``TaskStore.finish_many``: an owner outcome for one task
    (terminate, snooze, fail, or release: give the lease back unfinished)."""

    task_id: str
    event: Terminate | Snooze | Fail | Release

    def __post_init__(self) -> None:
        require_name("task_id", self.task_id)
        if not isinstance(self.event, Terminate | Snooze | Fail | Release):
            raise ValidationError(
                "event",
                "must be an owner outcome: Terminate, Snooze, Fail or Release "
                f"(got {type(self.event).__name__})",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendLeases:
    """One keepalive for many leases: ``TaskStore.extend_leases(pid, leases)``.

    ``sent_ms`` is when the worker's core asked for it, on the worker's own
    clock: a success is credited from that instant, never from when the answer
    came back (``core.holding.acknowledged``).
    """

    pid: str
    leases: tuple[LeaseToken, ...]
    sent_ms: int


class Why(enum.StrEnum):
    """Why a worker's core cancels a handler or discards its outcome."""

    #: The store refused a keepalive: the lease was revoked, or the task moved on.
    REFUSED = "refused"
    #: No keepalive succeeded within ``fence_ratio`` of the lease: given up locally.
    FENCED = "fenced"
    #: The handler ran past its timeout; the attempt fails.
    TIMED_OUT = "timed out"
    #: The worker is stopping and the grace period is over; the lease is released.
    STOPPING = "stopping"
    #: The lease had already been given up when the handler returned.
    GONE = "gone"
    #: An operator cancelled the task (the store refused a keepalive with
    #: ``TaskCancelled``): the task is failed for good, nobody runs it again.
    CANCELLED = "cancelled"

    @property
    def loses_lease(self) -> bool:
        """The lease is given up (the handler's work may run again elsewhere)."""
        return self in (Why.REFUSED, Why.FENCED)


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelHandler:
    """Tell the handler of ``lease`` to stop (its ``ctx.cancelled`` turns true).

    ``topic``: the task's (a lease token does not name it, and the lease may
    have left the holdings by the time the shell counts this). ``decided``: an
    outcome now waits to be recorded for this lease (a failed attempt after a
    timeout, a release when stopping). ``discarded``: an outcome that was
    waiting to be recorded was thrown away, because the lease is lost.
    """

    lease: tuple[str, int]
    topic: str
    why: Why
    reason: str
    decided: bool = False
    discarded: bool = False


Command = RevokeLease | ExtendLeases | Finish | CancelHandler


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokeOutcome:
    """What executing a ``RevokeLease`` gave: the revoked task or the error."""

    command: RevokeLease
    result: Result[Task, SokkaError]


def is_retry_worthy(result: Result[Task, SokkaError]) -> bool:
    """True only for a retryable error (throttled, unavailable): worth another try.

    Anything else is final: revoked (success), conflict (the task changed, or
    left the status the supervisor saw), not found. (``Status.is_final`` is
    another question: whether a task's status is terminal.)

    >>> from sokka.core.errors import Throttled, NotFound
    >>> is_retry_worthy(Failure(Throttled("busy"))), is_retry_worthy(Failure(NotFound("t")))
    (True, False)
    """
    match result:
        case Failure(RetryableError()):
            return True
        case _:
            return False
