"""The error taxonomy every store and every layer shares.

Stores raise these and nothing else: a driver's exception is translated into
one of them at the adapter boundary. The tree is shallow on purpose, so a
caller can catch exactly the family it can act on:

    SokkaError
    ├── ValidationError        bad input; names the field and the rule
    ├── NotFound               no task with that id
    ├── AlreadyExists          a task with that id exists already
    ├── StaleRecord            compare-and-set on record_ver failed
    ├── InvalidTransition      the status table does not allow the event
    ├── LeaseLost              the caller no longer holds the lease
    │   ├── NotRunning         the task is not running (revoked, finished, ...)
    │   │   └── TaskCancelled  an operator cancelled the caller's attempt
    │   ├── StaleAttempt       the lease was revoked and reserved again
    │   └── WrongOwner         another pid holds the lease
    ├── TaskFailed             asked for a result: the task failed (its error)
    ├── NotFinished            asked for a result: the task has not finished
    │   └── ResultTimeout      ... and did not finish within the wait
    ├── RetryableError         try again later; nothing was changed
    │   ├── Throttled          the store is busy (lock timeout, rate limit)
    │   └── Unavailable        the store cannot be reached
    └── StoreError             the store failed in a way retrying will not mend
        └── SchemaError        the schema is missing, or newer than this code

``RetryableError`` is the only family a caller should retry blindly.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "InvalidTransition",
    "LeaseLost",
    "NotFinished",
    "NotFound",
    "NotRunning",
    "ResultTimeout",
    "RetryableError",
    "SchemaError",
    "SokkaError",
    "StaleAttempt",
    "StaleRecord",
    "StoreError",
    "TaskCancelled",
    "TaskFailed",
    "Throttled",
    "Unavailable",
    "ValidationError",
    "WrongOwner",
]


class SokkaError(Exception):
    """Base of every error sokka raises on purpose."""

    #: A stable, machine-readable name (used by the HTTP API's problem types).
    code = "sokka-error"


class ValidationError(SokkaError, ValueError):
    """Bad input: ``field`` is the offending field, ``rule`` the rule it broke.

    >>> str(ValidationError("topic", "must not be empty"))
    'topic: must not be empty'
    """

    code = "invalid-input"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule

    def __reduce__(self) -> tuple[type[ValidationError], tuple[str, str]]:
        return (type(self), (self.field, self.rule))


class NotFound(SokkaError, LookupError):
    """No task has this id."""

    code = "not-found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id

    def __reduce__(self) -> tuple[type[NotFound], tuple[str]]:
        return (type(self), (self.task_id,))


class AlreadyExists(SokkaError):
    """A task with this id exists already; nothing was written."""

    code = "already-exists"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} already exists")
        self.task_id = task_id

    def __reduce__(self) -> tuple[type[AlreadyExists], tuple[str]]:
        return (type(self), (self.task_id,))


class StaleRecord(SokkaError):
    """Compare-and-set failed: the task changed since ``expected`` was read."""

    code = "stale-record"

    def __init__(self, task_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"task {task_id!r}: record_ver is {actual}, not {expected} (it changed concurrently)"
        )
        self.task_id = task_id
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[type[StaleRecord], tuple[str, int, int]]:
        return (type(self), (self.task_id, self.expected, self.actual))


class InvalidTransition(SokkaError):
    """The status table has no transition for this event from this status."""

    code = "invalid-transition"

    def __init__(self, task_id: str, status: str, event: str) -> None:
        super().__init__(f"task {task_id!r}: cannot {event} a task that is {status}")
        self.task_id = task_id
        self.status = status
        self.event = event

    def __reduce__(self) -> tuple[type[InvalidTransition], tuple[str, str, str]]:
        return (type(self), (self.task_id, self.status, self.event))


class LeaseLost(SokkaError):
    """The caller does not hold the lease it claims: it must stop and report nothing."""

    code = "lease-lost"

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(f"task {task_id!r}: {message}")
        self.task_id = task_id

    def __reduce__(self) -> tuple[type[LeaseLost], tuple[str, str]]:
        # args[0] is the full message; rebuild from its parts.
        prefix = f"task {self.task_id!r}: "
        return (type(self), (self.task_id, str(self)[len(prefix) :]))


class NotRunning(LeaseLost):
    """The task is not running any more (its lease was revoked, or it finished)."""

    code = "not-running"


class TaskCancelled(NotRunning):
    """An operator cancelled the task while the caller held its lease: stop, report nothing.

    A ``NotRunning``, so code that handles a lost lease handles this too; a
    worker that can tell it apart says "cancelled" rather than "lost".
    """

    code = "task-cancelled"


class StaleAttempt(LeaseLost):
    """The caller's attempt is not the task's: its lease was revoked and reserved again."""

    code = "stale-attempt"


class WrongOwner(LeaseLost):
    """Another pid holds the lease."""

    code = "wrong-owner"


class TaskFailed(SokkaError):
    """Asked for the result of a task that failed: it has none, only ``error``.

    >>> str(TaskFailed("t1", "ValueError: no such user"))
    "task 't1' failed: ValueError: no such user"
    """

    code = "task-failed"

    def __init__(self, task_id: str, error: str) -> None:
        super().__init__(f"task {task_id!r} failed: {error}")
        self.task_id = task_id
        self.error = error

    def __reduce__(self) -> tuple[type[TaskFailed], tuple[str, str]]:
        return (type(self), (self.task_id, self.error))


class NotFinished(SokkaError):
    """Asked for the result of a task that has not finished (``status`` is
    starting, running or snoozed): there is none yet."""

    code = "not-finished"

    def __init__(self, task_id: str, status: str, message: str | None = None) -> None:
        super().__init__(message or f"task {task_id!r} has not finished yet (it is {status})")
        self.task_id = task_id
        self.status = status

    def __reduce__(self) -> tuple[type[NotFinished], tuple[str, str, str]]:
        return (type(self), (self.task_id, self.status, str(self)))


class ResultTimeout(NotFinished, TimeoutError):
    """The task did not finish within the time its result was waited for.

    >>> str(ResultTimeout("t1", "running", 30_000))
    "task 't1' did not finish within 30000 ms (it is running)"
    """

    code = "result-timeout"

    def __init__(self, task_id: str, status: str, waited_ms: int) -> None:
        message = f"task {task_id!r} did not finish within {waited_ms} ms (it is {status})"
        super().__init__(task_id, status, message)
        self.waited_ms = waited_ms

    def __reduce__(self) -> tuple[type[ResultTimeout], tuple[str, str, int]]:  # type: ignore[override]
        return (type(self), (self.task_id, self.status, self.waited_ms))


class RetryableError(SokkaError):
    """The call did nothing and may succeed if tried again later."""

    code = "retryable"


class Throttled(RetryableError):
    """The store is busy (lock timeout, serialization failure, rate limit)."""

    code = "throttled"


class Unavailable(RetryableError):
    """The store cannot be reached (connection refused or lost)."""

    code = "unavailable"


class StoreError(SokkaError):
    """The store failed in a way that retrying will not mend (a bug, a broken setup)."""

    code = "store-error"


class SchemaError(StoreError):
    """The store's schema is missing, or newer than this version of sokka knows."""

    code = "schema-error"
