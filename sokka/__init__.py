"""sokka: durable background tasks with clock-skew-safe lease supervision.

Workers lease tasks and keep the lease alive; a supervisor revokes the
leases of dead or hung workers by watching each task's record version on its
own monotonic clock, never by comparing timestamps written by other machines.

The public API is re-exported here; the architecture is in three layers:
``sokka.core`` (pure), ``sokka.adapters`` (stores), ``sokka.shell`` (runtime).
"""

from typing import TYPE_CHECKING, Any

from sokka.adapters.connect import connect
from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import Page, TaskFilter, TaskStore, execute
from sokka.app import App
from sokka.core.backoff import Backoff, Jitter
from sokka.core.commands import Finish, LeaseToken, RevokeLease, RevokeOutcome
from sokka.core.errors import (
    AlreadyExists,
    InvalidTransition,
    LeaseLost,
    NotFinished,
    NotFound,
    NotRunning,
    ResultTimeout,
    RetryableError,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    TaskCancelled,
    TaskFailed,
    Throttled,
    Unavailable,
    ValidationError,
    WrongOwner,
)
from sokka.core.supervision import (
    LeasePolicy,
    Monitored,
    Observation,
    mark,
    next_expiry,
    settle,
    sweep,
)
from sokka.core.task import Status, Task, TaskSpec
from sokka.core.transitions import (
    Cancel,
    Extend,
    Fail,
    Release,
    Requeue,
    Reserve,
    Revoke,
    Snooze,
    Terminate,
    apply,
)
from sokka.shell.clock import ManualClock, MonotonicClock
from sokka.shell.supervisor import Supervisor, SupervisorReport
from sokka.shell.worker import (
    Cancelled,
    Context,
    FailedOutcome,
    OkOutcome,
    Outcome,
    Route,
    SnoozedOutcome,
    Worker,
    WorkerStats,
    failed,
    ok,
    snoozed,
)

if TYPE_CHECKING:
    from sokka.adapters.http import HTTPStore


def __getattr__(name: str) -> Any:
    # HTTPStore needs httpx (the http extra): imported when first asked for.
    if name == "HTTPStore":
        from sokka.adapters.http import HTTPStore

        return HTTPStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AlreadyExists",
    "App",
    "Backoff",
    "Cancel",
    "Cancelled",
    "Context",
    "Extend",
    "Fail",
    "FailedOutcome",
    "Finish",
    "HTTPStore",
    "InvalidTransition",
    "Jitter",
    "LeaseLost",
    "LeasePolicy",
    "LeaseToken",
    "ManualClock",
    "MemoryStore",
    "Monitored",
    "MonotonicClock",
    "NotFinished",
    "NotFound",
    "NotRunning",
    "Observation",
    "OkOutcome",
    "Outcome",
    "Page",
    "Release",
    "Requeue",
    "Reserve",
    "ResultTimeout",
    "RetryableError",
    "Revoke",
    "RevokeLease",
    "RevokeOutcome",
    "Route",
    "SQLStore",
    "Snooze",
    "SnoozedOutcome",
    "SokkaError",
    "StaleAttempt",
    "StaleRecord",
    "Status",
    "Supervisor",
    "SupervisorReport",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskFilter",
    "TaskSpec",
    "TaskStore",
    "Terminate",
    "Throttled",
    "Unavailable",
    "ValidationError",
    "Worker",
    "WorkerStats",
    "WrongOwner",
    "apply",
    "connect",
    "execute",
    "failed",
    "mark",
    "next_expiry",
    "ok",
    "settle",
    "snoozed",
    "sweep",
]
