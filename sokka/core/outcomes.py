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

import json
from dataclasses import dataclass, field
from typing import Any, Final

from sokka.core.task import MAX_ERROR_LENGTH, encode_result, require_positive_ms

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
    """The task is done, with an optional ``result`` (a JSON value) to keep on it.

    The result is checked and encoded when the outcome is made (``result_json``,
    canonical JSON text): a value that is not JSON, or is over
    ``MAX_RESULT_BYTES`` encoded, is a ``ValidationError`` naming ``result``,
    raised where the handler calls ``ok(...)``, so its attempt fails as any
    raising handler's does, and nothing is stored. Changing the value after
    ``ok(value)`` changes nothing: what is stored was encoded then.
    """

    result: Any = field(default=None, compare=False, hash=False)
    result_json: str | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "result_json", encode_result(self.result))

    def stored_result(self) -> Any:
        """The result as it will be stored: decoded afresh from ``result_json``."""
        return None if self.result_json is None else json.loads(self.result_json)


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


_OK: Final = OkOutcome()


def ok(result: Any = None) -> OkOutcome:
    """The handler's answer for a task that is done, keeping ``result`` on the task.

    ``result`` is any JSON value of at most ``MAX_RESULT_BYTES`` (64 KiB)
    encoded; ``None``, the default, stores no result. Anything else is a
    ``ValidationError`` naming ``result``, raised here.

    >>> ok({"sent": 2}).result_json
    '{"sent":2}'
    >>> ok(b"bytes")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: result: result is a bytes, which is not a JSON value
    """
    return _OK if result is None else OkOutcome(result)


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
