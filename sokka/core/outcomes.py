"""What a handler returns: ``ok()``, ``failed(error)`` or ``snoozed(ms)``.

These are values of the worker's core (``core.holding.finished`` turns one
into the ``Finish`` command a store records), so every runtime, the threaded
worker, the asyncio one and the simulator, reads them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sokka.core.task import require_positive_ms

__all__ = ["Failed", "Ok", "Outcome", "Snoozed", "describe", "failed", "ok", "snoozed"]


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
    """The handler's answer for a failed attempt (retried while attempts are left).

    >>> failed(ValueError("no such user"))
    Failed(error='ValueError: no such user', retry=True)
    """
    if isinstance(error, BaseException):
        error = describe(error)
    return Failed(str(error), retry)


def snoozed(ms: int) -> Snoozed:
    """The handler's answer for "not yet": run again after ``ms`` milliseconds."""
    return Snoozed(require_positive_ms("ms", ms))


def describe(error: BaseException) -> str:
    """``Type: message`` (or just ``Type`` when the message is empty)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
