"""sokka on asyncio: the public names of the asyncio runtime.

``Worker`` and ``Supervisor`` drive the same pure cores as the threaded
runtime (``sokka.Worker``, ``sokka.Supervisor``), awaiting an
``AsyncTaskStore``; ``App`` is ``sokka.App``'s surface with ``async def``
handlers, an awaitable ``enqueue`` and ``await app.run_worker()``; see
docs/asyncio.md.

>>> import asyncio
>>> from sokka.asyncio import AsyncMemoryStore, Supervisor
>>> asyncio.run(Supervisor(AsyncMemoryStore(), "emails").run_once()).listed
0
"""

from typing import TYPE_CHECKING, Any

from sokka.adapters.aio.connect import connect
from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.aio.sql import AsyncSQLStore
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
from sokka.shell.aio.app import App
from sokka.shell.aio.supervisor import Supervisor, SupervisorReport
from sokka.shell.aio.worker import AsyncContext, AsyncHandler, Worker
from sokka.shell.worker import Cancelled, Context, Route, WorkerStats

if TYPE_CHECKING:
    from sokka.adapters.aio.http import AsyncHTTPStore


def __getattr__(name: str) -> Any:
    # AsyncHTTPStore needs httpx (the http extra): imported when first asked for.
    if name == "AsyncHTTPStore":
        from sokka.adapters.aio.http import AsyncHTTPStore

        return AsyncHTTPStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "App",
    "AsyncContext",
    "AsyncHTTPStore",
    "AsyncHandler",
    "AsyncMemoryStore",
    "AsyncSQLStore",
    "AsyncTaskStore",
    "Cancelled",
    "Context",
    "FailedOutcome",
    "OkOutcome",
    "Outcome",
    "Route",
    "SnoozedOutcome",
    "Supervisor",
    "SupervisorReport",
    "Worker",
    "WorkerStats",
    "connect",
    "failed",
    "ok",
    "snoozed",
]
