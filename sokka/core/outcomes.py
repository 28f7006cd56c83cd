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
from typing import Final

from sokka.core.task import MAX_ERROR_LENGTH, require_positive_ms

__all__ = [
    "FailedOutcome",
    "OkOutcome",
    "Outcome",
    "SnoozedOutcome",
    "describe",
    "failed",
    "ok",
    "raised",
    "snoozed",
]

#: The most of an error's own ``Type: message`` kept before its traceback.
MAX_SUMMARY_LENGTH: Final = 1_000
_CLIPPED_FRAMES: Final = "... (earlier lines of the traceback clipped)\n"


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


#: What a handler returns: ``ok()``, ``failed(error)`` or ``snoozed(ms)``.
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


def raised(error: BaseException, traceback: str) -> FailedOutcome:
    """The outcome of a handler that raised ``error`` (retried while attempts are left).

    The error text is ``Type: message``, then ``traceback`` (as the shell
    formatted it) clipped from the front, so the innermost frames stay and the
    whole fits a task's error history (``MAX_ERROR_LENGTH``).

    >>> outcome = raised(ValueError("no"), "Traceback (most recent call last):\\n" + "x\\n" * 5000)
    >>> text = outcome.error
    >>> text.splitlines()[:2], len(text) <= MAX_ERROR_LENGTH
    (['ValueError: no', '... (earlier lines of the traceback clipped)'], True)
    """
    summary = describe(error)
    if len(summary) > MAX_SUMMARY_LENGTH:
        summary = summary[: MAX_SUMMARY_LENGTH - 14] + " ... (clipped)"
    room = MAX_ERROR_LENGTH - len(summary) - 1
    trace = traceback.rstrip("\n")
    if len(trace) > room:
        tail = trace[len(trace) - (room - len(_CLIPPED_FRAMES)) :]
        # start at a whole line when there is one
        newline = tail.find("\n")
        trace = _CLIPPED_FRAMES + (tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail)
    return FailedOutcome(f"{summary}\n{trace}" if trace else summary)


def snoozed(ms: int) -> SnoozedOutcome:
    """The handler's answer for "not yet": run again after ``ms`` milliseconds."""
    return SnoozedOutcome(require_positive_ms("ms", ms))


def describe(error: BaseException) -> str:
    """``Type: message`` (or just ``Type`` when the message is empty)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
