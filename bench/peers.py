"""The peers throughput.py compares sokka with: pgqueuer and procrastinate.

Each run gets a fresh database on the same PostgreSQL server sokka uses
(``PgServer.database``, dropped at the end); jobs are enqueued in batches of
``CREATE_CHUNK`` and drained by one or more worker processes (``bench.drain``),
whose handler is a no-op that records the job's id. Needs the ``bench`` extra
(``pip install -e '.[bench]'``); nothing here is imported until a peer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from typing import Any

from bench.drain import (
    CREATE_CHUNK,
    ENTRYPOINT,
    Row,
    check_exactly_once,
    counter,
    drain,
    ready,
)
from bench.harness import PgServer

# -- in the worker process -------------------------------------------------------------


def worker_pgqueuer(config: dict[str, Any], seen: list[object]) -> dict[str, Any]:
    asyncpg = importlib.import_module("asyncpg")
    pgqueuer = importlib.import_module("pgqueuer")

    async def main() -> None:
        connection = await asyncpg.connect(config["dsn"])
        pgq = pgqueuer.PgQueuer(pgqueuer.AsyncpgDriver(connection))

        async def noop(job: Any) -> None:
            seen.append(job.id)

        pgq.entrypoint(ENTRYPOINT)(noop)
        loop = asyncio.get_running_loop()
        ready(lambda: loop.call_soon_threadsafe(pgq.shutdown.set))
        await pgq.run(batch_size=config["batch"])
        await connection.close()

    try:  # as `pgq run` does: uvloop when it is installed
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    return {}


def worker_procrastinate(config: dict[str, Any], seen: list[object]) -> dict[str, Any]:
    procrastinate = import_procrastinate()
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=config["dsn"]))

    async def noop(context: Any) -> None:
        seen.append(context.job.id)

    app.task(name=ENTRYPOINT, pass_context=True)(noop)

    options: dict[str, Any] = {"install_signal_handlers": False}
    if config["concurrency"] is not None:
        options["concurrency"] = config["concurrency"]

    async def main() -> None:
        async with app.open_async():
            loop = asyncio.get_running_loop()
            run = loop.create_task(app.run_worker_async(**options))  # starts at the await
            ready(lambda: loop.call_soon_threadsafe(run.cancel))
            with contextlib.suppress(asyncio.CancelledError):
                await run

    asyncio.run(main())  # as its CLI does
    return {}


def import_procrastinate() -> Any:
    # Its warning that the App is made in __main__ is about importing tasks by
    # path; both processes here register the task themselves.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    return importlib.import_module("procrastinate")


# -- in the parent: set up, drain, check ----------------------------------------------


def run_pgqueuer(server: PgServer, n: int, batch: int, processes: int = 1) -> Row:
    """Drain ``n`` jobs with ``processes`` pgqueuer workers at ``batch``; check every job."""
    import psycopg

    asyncpg = importlib.import_module("asyncpg")
    pgqueuer = importlib.import_module("pgqueuer")
    with server.database("pgq") as dsn:

        async def setup() -> tuple[float, list[object]]:
            connection = await asyncpg.connect(dsn)
            try:
                queries = pgqueuer.Queries(pgqueuer.AsyncpgDriver(connection))
                await queries.install()
                ids: list[object] = []
                started = time.perf_counter()
                for start in range(0, n, CREATE_CHUNK):
                    k = min(CREATE_CHUNK, n - start)
                    ids += await queries.enqueue([ENTRYPOINT] * k, [None] * k, [0] * k)
                return time.perf_counter() - started, ids
            finally:
                await connection.close()

        create_s, created = asyncio.run(setup())
        remaining, close = counter(dsn, "SELECT count(*) FROM pgqueuer")
        config = {"role": "pgqueuer", "dsn": dsn, "batch": batch}
        try:
            done = drain(config, remaining, n, processes=processes)
        finally:
            close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            logged = conn.execute(
                "SELECT status::text, count(*), count(DISTINCT job_id) FROM pgqueuer_log "
                "GROUP BY status"
            ).fetchall()
            left = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()
    problems = check_exactly_once(created, done.ids)
    by_status = {status: (count, distinct) for status, count, distinct in logged}
    if by_status != {"queued": (n, n), "picked": (n, n), "successful": (n, n)}:
        problems.append(f"log (status: rows, jobs) {by_status}, not {n} queued/picked/successful")
    if left is None or left[0] != 0:
        problems.append(f"{left} jobs left in the queue")
    default = " (its default)" if batch == 10 else ""
    return Row(
        "pgqueuer", "postgres", f"batch {batch:>4}{default}", n, create_s, done.seconds,
        problems, ("pgqueuer", batch), processes,
    )  # fmt: skip


def run_procrastinate(server: PgServer, n: int, concurrency: int | None, processes: int = 1) -> Row:
    """Drain ``n`` jobs with ``processes`` procrastinate workers (``concurrency``
    each; ``None``: its default); check every job."""
    import psycopg

    procrastinate = import_procrastinate()
    with server.database("procrastinate") as dsn:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

        async def noop() -> None:  # only deferred here; the worker has its own
            return None

        noop_task = app.task(name=ENTRYPOINT)(noop)

        async def setup() -> tuple[float, list[object]]:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                ids: list[object] = []
                started = time.perf_counter()
                for start in range(0, n, CREATE_CHUNK):
                    k = min(CREATE_CHUNK, n - start)
                    ids += await noop_task.batch_defer_async(*({} for _ in range(k)))
                return time.perf_counter() - started, ids

        create_s, created = asyncio.run(setup())
        remaining, close = counter(
            dsn, "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )
        config = {"role": "procrastinate", "dsn": dsn, "concurrency": concurrency}
        try:
            done = drain(config, remaining, n, processes=processes)
        finally:
            close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            jobs = conn.execute(
                "SELECT status::text, attempts, count(*) FROM procrastinate_jobs "
                "GROUP BY status, attempts"
            ).fetchall()
    problems = check_exactly_once(created, done.ids)
    if [(s, a, c) for s, a, c in jobs] != [("succeeded", 1, n)]:
        problems.append(f"(status, attempts, count): {jobs}")
    label = "defaults (concurrency 1)" if concurrency is None else f"concurrency {concurrency}"
    return Row(
        "procrastinate", "postgres", label, n, create_s, done.seconds, problems,
        ("procrastinate", concurrency), processes,
    )  # fmt: skip


def peers_missing() -> str | None:
    for name in ("pgqueuer", "asyncpg", "procrastinate"):
        try:
            importlib.import_module(name)
        except ImportError:
            return f"{name} is not installed (pip install -e '.[bench]')"
    return None
