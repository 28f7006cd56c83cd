"""sokka on asyncio: the public names of the asyncio runtime.

``Worker`` and ``Supervisor`` drive the same pure cores as the threaded
runtime (``sokka.Worker``, ``sokka.Supervisor``), awaiting an
``AsyncTaskStore``; see docs/asyncio.md.

>>> import asyncio
>>> from sokka.asyncio import AsyncMemoryStore, Supervisor
>>> asyncio.run(Supervisor(AsyncMemoryStore(), "emails").run_once()).listed
0
"""

from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.aio.store import AsyncTaskStore
from sokka.core.outcomes import (
    FailedOutcome,
    OkOutcome,
    Outcome,
    SnoozedOutcome,
    failed,
    ok,
    snoozed,
)
from sokka.shell.aio.supervisor import Supervisor, SupervisorReport
from sokka.shell.aio.worker import AsyncContext, AsyncHandler, Worker
from sokka.shell.worker import Cancelled, Context, WorkerStats

# The stores. The async SQL and HTTP stores, and ``connect(url)`` (from
# ``sokka.adapters.aio.connect``), are re-exported here when they land.

__all__ = [
    "AsyncContext",
    "AsyncHandler",
    "AsyncMemoryStore",
    "AsyncTaskStore",
    "Cancelled",
    "Context",
    "FailedOutcome",
    "OkOutcome",
    "Outcome",
    "SnoozedOutcome",
    "Supervisor",
    "SupervisorReport",
    "Worker",
    "WorkerStats",
    "failed",
    "ok",
    "snoozed",
]
