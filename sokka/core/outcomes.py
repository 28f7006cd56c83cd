"""What a handler returns: ``ok()``, ``failed(error)`` or ``snoozed(ms)``.

These are values of the worker's core (``core.holding.finished`` turns one
into the ``Finish`` command a store records), so every runtime, the threaded
worker, the asyncio one and the simulator, reads them the same way.

Names: a handler's answer is an *outcome* (``OkOutcome``, ``FailedOutcome``,
``SnoozedOutcome``, built with ``ok()``, ``failed()``, ``snoozed()``); what a
store records is an *event* of ``core.transitions`` (``Terminate``, ``Fail``,
``Snooze``). The worker core turns the one into the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from sokka.core.task import require_positive_ms

__all__ = [
    "FailedOutcome",
    "OkOutcome",
    "Outcome",
    "SnoozedOutcome",
    "describe",
    "failed",
    "ok",
    "snoozed",
]


@dataclass(frozen=True, slots=True)
class OkOutcome:
    """The task is done."""


@dataclass(frozen=True, slots=True)
class FailedOutcome:
    """The attempt failed. With ``retry`` (the default) and attempts left within the
    task's ``max_attempts``, it runs again after a backoff; otherwise the task fails."""

    error: str
    retry: bool = True


@dataclass(frozen=True, slots=True)
class SnoozedOutcome:
    """Run the task again in ``ms`` milliseconds; not a failure."""

    ms: int


Outcome = OkOutcome | FailedOutcome | SnoozedOutcome


def ok() -> OkOutcome:
    """The handler's answer for a task that is done."""
    return OkOutcome()


def failed(error: str | BaseException, *, retry: bool = True) -> FailedOutcome:
    """The handler's answer for a failed attempt (retried while attempts are left).

    >>> failed(ValueError("no such user"))
    FailedOutcome(error='ValueError: no such user', retry=True)
    """
    if isinstance(error, BaseException):
        error = describe(error)
    return FailedOutcome(str(error), retry)


def snoozed(ms: int) -> SnoozedOutcome:
    """The handler's answer for "not yet": run again after ``ms`` milliseconds."""
    return SnoozedOutcome(require_positive_ms("ms", ms))


def describe(error: BaseException) -> str:
    """``Type: message`` (or just ``Type`` when the message is empty)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
