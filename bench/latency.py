"""Pickup latency: from a task's creation to its handler starting, sokka and peers.

One worker process waits; the parent creates tasks and each handler reports
``time.time()`` at its start minus the creation time carried in the task
(taken just before the create call, so the create's own commit is counted;
both processes read the same machine clock). Two workloads per system:

* **idle**: 25 tasks (``--tasks``), one at a time, each after the previous
  one's handler started and a random gap of 0.2..2 s (``--quick``: 8 tasks,
  0.05..0.3 s): the worker is idle when each task comes, its poll backoff
  grown (sokka's idle poll backs off to 2 s);
* **load**: ``--load-rate`` tasks per second (200) for ``--load-seconds`` (3)
  from one producer thread, the worker at concurrency 4: latency with work
  already flowing.

Systems: sokka's threaded ``Worker`` (``sokka``) and asyncio ``Worker``
(``sokka asyncio``, a coroutine handler; ``--runtimes`` picks them) on SQLite
(a file in a temporary directory), PostgreSQL (a run-private prefix) and HTTP
(``HTTPStore``, or ``AsyncHTTPStore``, to a ``sokka serve``-like server in a
child process fronting PostgreSQL, or SQLite without PostgreSQL); pgqueuer
and procrastinate on PostgreSQL (each in a fresh database; their defaults:
pgqueuer's entrypoint has no concurrency limit, procrastinate runs at
concurrency 4 under load; needs the ``bench`` extra). The worker is a child
process (``python -m bench.latency _worker CONFIG``) that prints ``READY``
once it is built, then one ``PICKED <ms>`` line per handler start; its
handler is a no-op.

Prints p50/p90/p99/max per system and workload (and the median time of the
create call itself, which the latency includes), and sokka's ratios to
pgqueuer's p50 (goal: PostgreSQL p50 <= pgqueuer's, p99 <= 25 ms; SQLite
p50 <= 10 ms). Goals are reported, not enforced; a check that fails (a task
not picked, picked twice) exits 1.

Run: ``python bench/latency.py [--quick] [--stores sqlite,postgres,http]
[--runtimes threads,asyncio] [--skip-peers] [--tasks 25] [--load-rate 200] [--load-seconds 3]
[--postgres-url URL]`` (or ``python -m bench.latency ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: bench's parent first, not bench/ itself
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import asyncio
import contextlib
import functools
import importlib
import json
import math
import os
import platform
import queue
import random
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from bench.drain import ENTRYPOINT, TOPIC, emit, on_stop_line
from bench.harness import (
    DEFAULT_POSTGRES_URL,
    ROOT,
    BenchFailure,
    Column,
    PgServer,
    Table,
    add_postgres_url,
    add_quick,
    child_env,
    comma_list,
    first_line,
    parser_for,
    positive_int,
    unknown_items,
    verdict,
    versions,
)
from bench.peers import import_procrastinate, peers_missing

STORES: Final = ("sqlite", "postgres", "http")
PACKAGES: Final = ("sokka", "sqlalchemy", "psycopg", "pgqueuer", "asyncpg", "procrastinate")
READY_TIMEOUT_S: Final = 60.0
PICK_TIMEOUT_S: Final = 30.0  #: a task not picked by then is a failed check
LOAD_CONCURRENCY: Final = 4
#: sokka's workers: the runtime's name on the command line, its system in the table.
RUNTIMES: Final = {"threads": "sokka", "asyncio": "sokka asyncio"}


# -- in the worker process -----------------------------------------------------------


_PRINTING = threading.Lock()  # handlers run on several threads: one whole line at a time


def picked(created_s: float) -> None:
    """A handler started: tell the parent how long after its task's creation."""
    ms = round((time.time() - created_s) * 1000, 3)
    with _PRINTING:
        emit("PICKED", ms)


def _worker_sokka(config: dict[str, Any]) -> None:
    if config.get("runtime") == "asyncio":
        _worker_sokka_asyncio(config)
        return
    from sokka.core.task import Task
    from sokka.shell.worker import Context, OkOutcome, Worker, ok

    def handler(task: Task, _ctx: Context) -> OkOutcome:
        assert isinstance(task.data, dict)
        picked(float(task.data["t"]))
        return ok()

    store: Any
    if config["store"] == "http":
        from sokka.adapters.http import HTTPStore

        store = HTTPStore(config["url"])
    else:
        from sokka.adapters.sql import SQLStore

        store = SQLStore(config["url"], prefix=config["prefix"])
        with store.engine.connect():  # one pooled connection, open before READY
            pass
    worker = Worker(store, TOPIC, handler, concurrency=config["concurrency"])
    on_stop_line(worker.stop)
    emit("READY")
    worker.run(install_signal_handlers=False)
    store.close()


def _worker_sokka_asyncio(config: dict[str, Any]) -> None:
    from sokka.asyncio import AsyncContext, Worker
    from sokka.core.task import Task
    from sokka.shell.worker import OkOutcome, ok

    async def handler(task: Task, _ctx: AsyncContext) -> OkOutcome:
        assert isinstance(task.data, dict)
        picked(float(task.data["t"]))
        return ok()

    async def main() -> None:
        store: Any
        if config["store"] == "http":
            from sokka.adapters.aio.http import AsyncHTTPStore

            store = AsyncHTTPStore(config["url"])
        else:
            from sokka.adapters.aio.sql import AsyncSQLStore

            store = AsyncSQLStore(config["url"], prefix=config["prefix"])
            await store.schema_version()  # one pooled connection, open before READY
        worker = Worker(store, TOPIC, handler, concurrency=config["concurrency"])
        on_stop_line(worker.stop)
        emit("READY")
        await worker.run()
        await store.aclose()

    asyncio.run(main())


def _worker_pgqueuer(config: dict[str, Any]) -> None:
    asyncpg = importlib.import_module("asyncpg")
    pgqueuer = importlib.import_module("pgqueuer")

    async def main() -> None:
        connection = await asyncpg.connect(config["dsn"])
        pgq = pgqueuer.PgQueuer(pgqueuer.AsyncpgDriver(connection))

        async def handler(job: Any) -> None:
            picked(float(json.loads(job.payload)["t"]))

        pgq.entrypoint(ENTRYPOINT)(handler)  # its defaults: no concurrency limit
        loop = asyncio.get_running_loop()
        on_stop_line(lambda: loop.call_soon_threadsafe(pgq.shutdown.set))
        emit("READY")
        await pgq.run()
        await connection.close()

    try:  # as `pgq run` does: uvloop when it is installed
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def _worker_procrastinate(config: dict[str, Any]) -> None:
    procrastinate = import_procrastinate()
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=config["dsn"]))

    async def handler(t: float) -> None:
        picked(t)

    app.task(name=ENTRYPOINT)(handler)
    options: dict[str, Any] = {"install_signal_handlers": False}
    if config["concurrency"] > 1:
        options["concurrency"] = config["concurrency"]

    async def main() -> None:
        async with app.open_async():
            loop = asyncio.get_running_loop()
            run = loop.create_task(app.run_worker_async(**options))
            on_stop_line(lambda: loop.call_soon_threadsafe(run.cancel))
            emit("READY")
            with contextlib.suppress(asyncio.CancelledError):
                await run

    asyncio.run(main())


def _serve(config: dict[str, Any]) -> None:
    """A server process: ``create_app`` over an SQLStore, on a loopback port it prints."""
    import socket

    import uvicorn

    from sokka.adapters.sql import SQLStore
    from sokka.shell.http import create_app

    store = SQLStore(config["url"], prefix=config["prefix"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    on_stop_line(lambda: setattr(server, "should_exit", True))
    threading.Thread(target=lambda: _announce(server, port), daemon=True).start()
    server.run()
    store.close()


def _announce(server: Any, port: int) -> None:
    while not server.started:
        time.sleep(0.01)
    emit("READY", f"http://127.0.0.1:{port}")


_ROLES: dict[str, Callable[[dict[str, Any]], None]] = {
    "sokka": _worker_sokka,
    "pgqueuer": _worker_pgqueuer,
    "procrastinate": _worker_procrastinate,
    "serve": _serve,
}


def worker_main(config_json: str) -> int:
    config = json.loads(config_json)
    _ROLES[config["role"]](config)
    return 0


# -- in the parent: a child process and its lines --------------------------------------


class Child:
    """A child process of this benchmark in one role, and the lines it prints."""

    def __init__(self, config: dict[str, Any]) -> None:
        command = [sys.executable, "-m", "bench.latency", "_worker", json.dumps(config)]
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            text=True, cwd=ROOT, env=child_env(),
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.ready = ""  #: what followed READY (a server's URL)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, tag: str, timeout: float) -> str:
        """The rest of the next line starting with ``tag`` (BenchFailure after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise self.failure(f"no {tag} line within {timeout:.0f} s") from None
            if line is None:
                raise self.failure(f"the child exited before {tag}")
            if line.startswith(tag):
                return line[len(tag) :].strip()

    def failure(self, why: str) -> BenchFailure:
        self._stderr.seek(0)
        return BenchFailure(f"{why}\n--- child stderr ---\n{self._stderr.read()[-3000:]}")

    def stop(self) -> None:
        try:
            if self.process.poll() is None and self.process.stdin is not None:
                self.process.stdin.write("stop\n")
                self.process.stdin.close()
            self.process.wait(30)
        except (subprocess.TimeoutExpired, OSError):
            self.process.kill()
            self.process.wait()
        finally:
            self._stderr.close()


@contextlib.contextmanager
def child(config: dict[str, Any]) -> Iterator[Child]:
    started = Child(config)
    try:
        started.ready = json.loads(started.expect("READY", READY_TIMEOUT_S) or '""')
        yield started
    finally:
        started.stop()


# -- the workloads ---------------------------------------------------------------------


@dataclass
class Plan:
    tasks: int
    gap_s: tuple[float, float]
    load_rate: int
    load_seconds: float


@dataclass
class Row:
    system: str
    store: str
    workload: str
    latencies_ms: list[float]
    problems: list[str] = field(default_factory=list)
    create_ms: list[float] = field(default_factory=list)  #: each create call's own time

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        k = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[k]  # nearest rank


def measure_idle(
    worker: Child, create: Callable[[float], None], plan: Plan, rand: random.Random
) -> tuple[list[float], list[str]]:
    """One task at a time, each after the previous was picked and a random gap."""
    latencies: list[float] = []
    problems: list[str] = []
    for _ in range(plan.tasks):
        time.sleep(rand.uniform(*plan.gap_s))
        create(time.time())
        try:
            latencies.append(float(worker.expect("PICKED", PICK_TIMEOUT_S)))
        except BenchFailure as error:
            problems.append(first_line(error))
            break
    return latencies, problems


def measure_load(
    worker: Child, create: Callable[[float], None], plan: Plan
) -> tuple[list[float], list[str]]:
    """``load_rate`` tasks a second, paced from one thread; every one must be picked."""
    n = max(1, round(plan.load_rate * plan.load_seconds))
    interval = 1 / plan.load_rate
    start = time.perf_counter()
    for i in range(n):
        pause = start + i * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        create(time.time())
    latencies: list[float] = []
    problems: list[str] = []
    try:
        for _ in range(n):
            latencies.append(float(worker.expect("PICKED", PICK_TIMEOUT_S)))
    except BenchFailure as error:
        problems.append(f"{len(latencies)} of {n} picked: {first_line(error)}")
    with contextlib.suppress(queue.Empty):
        while (line := worker.lines.get(timeout=0.2)) is not None:
            if line.startswith("PICKED"):
                problems.append("a task was picked more than once")
                break
    return latencies, problems


def run_system(
    system: str,
    store: str,
    config: dict[str, Any],
    make_creator: Callable[[], tuple[Callable[[float], None], Callable[[], None]]],
    plan: Plan,
    seed: int,
) -> list[Row]:
    rows = []
    for workload in ("idle", "load"):
        concurrency = 1 if workload == "idle" else LOAD_CONCURRENCY
        made, close = make_creator()
        create_ms: list[float] = []

        def create(
            t: float, made: Callable[[float], None] = made, times: list[float] = create_ms
        ) -> None:
            made(t)  # the latency counts from before this call: its commit is part of it
            times.append((time.time() - t) * 1000)

        try:
            with child({**config, "concurrency": concurrency}) as worker:
                if workload == "idle":
                    latencies, problems = measure_idle(worker, create, plan, random.Random(seed))
                else:
                    latencies, problems = measure_load(worker, create, plan)
        finally:
            close()
        rows.append(Row(system, store, workload, latencies, problems, create_ms))
    return rows


# -- the systems ------------------------------------------------------------------------


def sokka_creator(
    make_store: Callable[[], Any],
) -> Callable[[], tuple[Callable[[float], None], Callable[[], None]]]:
    def make() -> tuple[Callable[[float], None], Callable[[], None]]:
        from sokka.core.task import TaskSpec

        store = make_store()
        store.list_tasks(limit=1)  # connected and the schema checked: not timed below

        def create(t: float) -> None:
            store.create_task(TaskSpec(topic=TOPIC, data={"t": t}))

        return create, store.close

    return make


def run_sokka_sql(
    url: str, store_name: str, plan: Plan, seed: int, runtime: str = "threads"
) -> list[Row]:
    from sokka.adapters.sql import SQLStore

    prefix = f"lat_{secrets.token_hex(4)}_"
    owner = SQLStore(url, prefix=prefix)
    owner.create_schema()
    try:
        config = {
            "role": "sokka", "runtime": runtime, "store": store_name, "url": url,
            "prefix": prefix,
        }  # fmt: skip
        return run_system(
            RUNTIMES[runtime], store_name, config,
            sokka_creator(lambda: SQLStore(url, prefix=prefix)), plan, seed,
        )  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            owner.drop_schema()
        owner.close()


def run_sokka_http(
    url: str, backing: str, plan: Plan, seed: int, runtime: str = "threads"
) -> list[Row]:
    from sokka.adapters.http import HTTPStore
    from sokka.adapters.sql import SQLStore

    prefix = f"lat_{secrets.token_hex(4)}_"
    owner = SQLStore(url, prefix=prefix)
    owner.create_schema()
    try:
        with child({"role": "serve", "url": url, "prefix": prefix}) as server:
            base_url = server.ready
            config = {"role": "sokka", "runtime": runtime, "store": "http", "url": base_url}
            return run_system(
                RUNTIMES[runtime], f"http/{backing}", config,
                sokka_creator(lambda: HTTPStore(base_url)), plan, seed,
            )  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            owner.drop_schema()
        owner.close()


def run_pgqueuer(pg: PgServer, plan: Plan, seed: int) -> list[Row]:
    asyncpg = importlib.import_module("asyncpg")
    pgqueuer = importlib.import_module("pgqueuer")
    with pg.database("lat_pgq") as dsn:

        async def install() -> None:
            connection = await asyncpg.connect(dsn)
            try:
                await pgqueuer.Queries(pgqueuer.AsyncpgDriver(connection)).install()
            finally:
                await connection.close()

        asyncio.run(install())

        def make() -> tuple[Callable[[float], None], Callable[[], None]]:
            loop = asyncio.new_event_loop()
            connection = loop.run_until_complete(asyncpg.connect(dsn))
            queries = pgqueuer.Queries(pgqueuer.AsyncpgDriver(connection))

            def create(t: float) -> None:
                payload = json.dumps({"t": t}).encode()
                loop.run_until_complete(queries.enqueue([ENTRYPOINT], [payload], [0]))

            def close() -> None:
                loop.run_until_complete(connection.close())
                loop.close()

            return create, close

        return run_system(
            "pgqueuer", "postgres", {"role": "pgqueuer", "dsn": dsn}, make, plan, seed
        )


def run_procrastinate(pg: PgServer, plan: Plan, seed: int) -> list[Row]:
    procrastinate = import_procrastinate()
    with pg.database("lat_procrastinate") as dsn:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

        async def handler(t: float) -> None:  # only deferred here
            return None

        task = app.task(name=ENTRYPOINT)(handler)

        async def install() -> None:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(install())

        def make() -> tuple[Callable[[float], None], Callable[[], None]]:
            loop = asyncio.new_event_loop()
            opened = app.open_async()
            loop.run_until_complete(opened.__aenter__())

            def create(t: float) -> None:
                loop.run_until_complete(task.defer_async(t=t))

            def close() -> None:
                loop.run_until_complete(opened.__aexit__(None, None, None))
                loop.close()

            return create, close

        config = {"role": "procrastinate", "dsn": dsn}
        return run_system("procrastinate", "postgres", config, make, plan, seed)


# -- printing ---------------------------------------------------------------------------

TABLE: Final = Table(
    (
        Column("system", 14, "<"),
        Column("store", 14, "<"),
        Column("workload", 9, "<"),
        Column("tasks", 6),
        Column("p50 ms", 9),
        Column("p90 ms", 9),
        Column("p99 ms", 9),
        Column("max ms", 9),
        Column("create p50", 11),
    )
)


def row_line(row: Row) -> str:
    cells = [f"{row.percentile(p):.1f}" for p in (50, 90, 99, 100)]
    check = "ok" if not row.problems else "FAILED: " + "; ".join(row.problems)
    n = str(len(row.latencies_ms))
    creating = f"{statistics.median(row.create_ms):.1f}" if row.create_ms else "-"
    return f"{TABLE.row(row.system, row.store, row.workload, n, *cells, creating)}  {check}"


def goals(rows: list[Row]) -> list[str]:
    """The goal lines: sokka's p50 against pgqueuer's, its p99 and SQLite's p50 bounds."""
    by = {(r.system, r.store, r.workload): r for r in rows if r.latencies_ms and not r.problems}
    lines = []
    for workload in ("idle", "load"):
        peer = by.get(("pgqueuer", "postgres", workload))
        for system, store in [
            (system, store)
            for system in RUNTIMES.values()
            for store in ("postgres", "sqlite", "http/postgres", "http/sqlite")
        ]:
            mine = by.get((system, store, workload))
            if mine is None:
                continue
            p50, p99 = mine.percentile(50), mine.percentile(99)
            text = f"{workload}: {system} {store} p50 {p50:.1f} ms"
            if peer is not None:
                ratio = p50 / peer.percentile(50)
                text += f" = {ratio:.2f}x pgqueuer's ({peer.percentile(50):.1f} ms)"
            if store == "postgres":
                met = (peer is None or p50 <= peer.percentile(50)) and p99 <= 25
                text += f"; p99 {p99:.1f} ms; goal p50 <= pgqueuer's and p99 <= 25 ms: "
                text += verdict(met)
            elif store == "sqlite":
                text += f"; goal p50 <= 10 ms: {verdict(p50 <= 10)}"
            lines.append(text)
    return lines


# -- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    add_quick(parser, "smoke run: 8 idle tasks at 0.05..0.3 s gaps, 1 s of load at 50/s")
    parser.add_argument("--stores", type=comma_list, default=list(STORES),
                        help=f"sokka's stores, of {','.join(STORES)} (default: all)")  # fmt: skip
    parser.add_argument("--skip-peers", action="store_true", help="sokka only")
    parser.add_argument(
        "--runtimes", type=comma_list, default=list(RUNTIMES),
        help="sokka's workers to run, comma-separated (default: threads,asyncio)",
    )  # fmt: skip
    parser.add_argument("--tasks", type=positive_int, default=None, help="idle tasks (25)")
    parser.add_argument("--load-rate", type=positive_int, default=None, help="tasks/s (200)")
    parser.add_argument("--load-seconds", type=float, default=None, help="seconds of load (3)")
    parser.add_argument("--seed", type=int, default=13, help="of the idle gaps")
    add_postgres_url(
        parser,
        "PostgreSQL for sokka and the peers ('' skips it; default $SOKKA_BENCH_PG, "
        f"else $SOKKA_TEST_POSTGRES_URL, else {DEFAULT_POSTGRES_URL})",
    )
    args = parser.parse_args(argv)
    unknown = unknown_items(args.stores, STORES)
    if unknown:
        parser.error(f"--stores: unknown {', '.join(unknown)} (choose from {', '.join(STORES)})")
    unknown = unknown_items(args.runtimes, list(RUNTIMES))
    if unknown or not args.runtimes:
        parser.error(f"--runtimes: unknown runtime(s) {unknown}; choose from {','.join(RUNTIMES)}")
    quick = Plan(8, (0.05, 0.3), 50, 1.0)
    full = Plan(25, (0.2, 2.0), 200, 3.0)
    base = quick if args.quick else full
    plan = Plan(
        args.tasks or base.tasks,
        base.gap_s,
        args.load_rate or base.load_rate,
        args.load_seconds if args.load_seconds is not None else base.load_seconds,
    )
    pg = PgServer(args.postgres_url) if args.postgres_url else None
    print(
        f"pickup latency: idle {plan.tasks} tasks at {plan.gap_s[0]}..{plan.gap_s[1]} s gaps; "
        f"load {plan.load_rate}/s for {plan.load_seconds:g} s at concurrency {LOAD_CONCURRENCY}"
    )
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; {versions(PACKAGES)}")
    if pg is not None:
        try:
            print(pg.describe())
        except Exception as error:
            print(f"PostgreSQL at {args.postgres_url!r} is unusable: {first_line(error)}")
            return 1
    print()
    print(TABLE.header() + "  check")

    rows: list[Row] = []
    failed = False

    def record(run: Callable[[], list[Row]], label: str) -> None:
        nonlocal failed
        try:
            made = run()
        except Exception as error:  # report it and go on
            failed = True
            print(f"{label}: ERROR {type(error).__name__}: {error}", flush=True)
            return
        for row in made:
            failed |= bool(row.problems)
            rows.append(row)
            print(row_line(row), flush=True)

    tmp = tempfile.mkdtemp(prefix="sokka-latency-")
    sqlite_url = f"sqlite:///{tmp}/latency.db"
    # The two runtimes back to back on each store, each on a schema of its own.
    for store in args.stores:
        for runtime in args.runtimes:
            system = RUNTIMES[runtime]
            if store == "sqlite":
                sqlite_run = functools.partial(
                    run_sokka_sql, sqlite_url, "sqlite", plan, args.seed, runtime
                )
                record(sqlite_run, f"{system} sqlite")
            elif store == "postgres" and pg is not None:
                pg_run = functools.partial(
                    run_sokka_sql, args.postgres_url, "postgres", plan, args.seed, runtime
                )
                record(pg_run, f"{system} postgres")
            elif store == "http":
                backing = "postgres" if pg is not None else "sqlite"
                url = args.postgres_url if pg is not None else f"sqlite:///{tmp}/http.db"
                http_run = functools.partial(run_sokka_http, url, backing, plan, args.seed, runtime)
                record(http_run, f"{system} http")
    if pg is not None and not args.skip_peers:
        missing = peers_missing()
        if missing:
            print(f"peers skipped: {missing}")
        else:
            record(lambda: run_pgqueuer(pg, plan, args.seed), "pgqueuer")
            record(lambda: run_procrastinate(pg, plan, args.seed), "procrastinate")
    print()
    for line in goals(rows):
        print(f"goal: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":
        sys.exit(worker_main(sys.argv[2]))
    sys.exit(main())
