"""A Starlette app that enqueues from an endpoint and works in its lifespan.

    uvicorn examples.starlette_app:app

``POST /emails`` with ``{"to": "ann@example.com"}`` enqueues a welcome email
(202, with the task's id); ``GET /emails/{task_id}`` shows its status. The
worker and the supervisor run on the server's event loop for as long as the
app does: they start when the lifespan starts, and on shutdown (uvicorn
handles SIGTERM and Ctrl-C, then ends the lifespan) the worker stops taking
work and lets running handlers finish within ``grace_ms``. The worker does not
install signal handlers of its own: the server owns the signals.

The store is in memory unless ``SOKKA_DB`` names another one (see
``examples.asyncio_script.open_store``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.asyncio_script import LEASE_MS, TOPIC, open_store, send_welcome
from sokka.asyncio import AsyncTaskStore, Supervisor, Worker
from sokka.core.errors import NotFound, ValidationError
from sokka.core.supervision import LeasePolicy
from sokka.core.task import TaskSpec

# sokka's own log lines (a lost lease, a store that is down) and the lifespan's.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("examples.starlette_app")


def store_of(request: Request) -> AsyncTaskStore:
    store: AsyncTaskStore = request.app.state.store
    return store


async def enqueue(request: Request) -> JSONResponse:
    body = await request.json()
    to = body.get("to") if isinstance(body, dict) else None
    if not isinstance(to, str) or "@" not in to:
        return JSONResponse({"error": "to: must be an email address"}, status_code=422)
    try:
        task = await store_of(request).create_task(TaskSpec(topic=TOPIC, data={"to": to}))
    except ValidationError as error:
        return JSONResponse({"error": str(error)}, status_code=422)
    return JSONResponse({"task_id": task.task_id}, status_code=202)


async def show(request: Request) -> JSONResponse:
    try:
        task = await store_of(request).get_task(request.path_params["task_id"])
    except NotFound as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    return JSONResponse({"task_id": task.task_id, "status": task.status.value})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    store = app.state.store = open_store()
    policy = LeasePolicy(lease_time_ms=LEASE_MS, default_snooze_ms=LEASE_MS)
    supervisor = Supervisor(store, TOPIC, policy)
    worker = Worker(
        store, TOPIC, send_welcome, concurrency=8, lease_time_ms=LEASE_MS, grace_ms=10_000
    )
    running = [asyncio.create_task(worker.run()), asyncio.create_task(supervisor.run())]
    try:
        yield
    finally:
        worker.stop()
        supervisor.stop()
        stats, _ = await asyncio.gather(*running)
        log.info("worker stopped: %s", stats)
        await store.aclose()


app = Starlette(
    routes=[
        Route("/emails", enqueue, methods=["POST"]),
        Route("/emails/{task_id}", show, methods=["GET"]),
    ],
    lifespan=lifespan,
)
