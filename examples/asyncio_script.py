"""A worker and a supervisor on asyncio, in a plain ``asyncio.run`` script.

    python -m examples.asyncio_script

It enqueues a few welcome emails, works until every one is done (sent, or
failed for good), then stops the worker and the supervisor and prints what
happened. The store is in memory unless ``SOKKA_DB`` names another one
(``connect``: an SQLite or PostgreSQL database with its schema, or a
``sokka serve``). Ctrl-C or SIGTERM stops the worker gracefully too.

``send_welcome`` is a coroutine handler that ``sokka worker`` runs too:

    sokka worker --topic emails --handler examples.asyncio_script:send_welcome
"""

from __future__ import annotations

import asyncio
import logging
import os

from sokka.adapters.store import TaskFilter
from sokka.asyncio import (
    AsyncContext,
    AsyncMemoryStore,
    AsyncTaskStore,
    Outcome,
    Supervisor,
    Worker,
    WorkerStats,
    connect,
    failed,
    ok,
)
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Task, TaskSpec

TOPIC = "emails"
LEASE_MS = 5_000  # the worker's and the supervisor's lease must be the same


def open_store() -> AsyncTaskStore:
    """The store ``SOKKA_DB`` names; in memory (this process only) by default."""
    url = os.environ.get("SOKKA_DB", "memory:")
    if url == "memory:":
        return AsyncMemoryStore()
    return connect(url)


async def send_welcome(task: Task, ctx: AsyncContext) -> Outcome:
    """Send a welcome email to ``data["to"]`` (pretend: an awaited network call)."""
    to = task.data.get("to") if isinstance(task.data, dict) else None
    if not isinstance(to, str):
        return failed("data must be an object with a 'to' address", retry=False)
    if to.endswith("@down.example"):
        return failed(f"{to}: the mail server refused the connection", retry=False)
    await asyncio.sleep(0.01)  # a cancelled handler sees CancelledError here
    return ok()


async def all_done(store: AsyncTaskStore, n: int) -> bool:
    page = await store.list_tasks(TaskFilter(topic=TOPIC), limit=1_000)
    return len(page.tasks) == n and all(t.status.is_final for t in page.tasks)


async def main(addresses: list[str]) -> WorkerStats:
    store = open_store()
    await store.create_tasks([TaskSpec(topic=TOPIC, data={"to": to}) for to in addresses])
    policy = LeasePolicy(lease_time_ms=LEASE_MS, default_snooze_ms=LEASE_MS)
    supervisor = Supervisor(store, TOPIC, policy)
    worker = Worker(store, TOPIC, send_welcome, concurrency=4, lease_time_ms=LEASE_MS)
    supervising = asyncio.create_task(supervisor.run())
    working = asyncio.create_task(worker.run(install_signal_handlers=True))
    try:
        while not working.done() and not await all_done(store, len(addresses)):
            await asyncio.sleep(0.05)
    finally:
        worker.stop()  # stop taking work; running handlers finish (grace_ms)
        supervisor.stop()
        stats = await working
        await supervising
        await store.aclose()
    return stats


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    people = [f"user{n}@example.com" for n in range(20)] + ["ops@down.example"]
    stats = asyncio.run(main(people))
    print(f"done: {stats.succeeded} sent, {stats.failed} failed, {stats.reserved} reserved")
