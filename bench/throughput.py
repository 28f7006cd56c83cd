"""End-to-end throughput of worker processes: no-op tasks per second, sokka and peers.

For each configuration, N no-op tasks (20,000 by default) are created first
(timed separately and reported as ``create/s``), then ONE worker process
drains them (several with ``--workers``: see Scale-out below). The drain is
what ``jobs/s`` measures:

* **sokka** on SQLite (a file in a temporary directory) and PostgreSQL (a
  run-private table prefix, dropped after each run), at concurrency 1 and 8,
  each with batch sizes 1, 10, 100, 250 and 1000 (``Worker(store, topic,
  handler, concurrency=C, batch_size=K)``, built directly in the worker
  process rather than through ``sokka worker`` so that every system is
  started, timed and stopped the same way; the default lease time). At batch
  size 1 a run drains only ``min(N, 5000)`` tasks (two round trips per task:
  20,000 would take minutes; the rate is flat in N; the ``tasks`` column
  says so). The best configuration of each store is marked ``*``.
* **sokka asyncio**: the asyncio ``Worker`` (``sokka.asyncio``) with an
  ``async def`` no-op handler, on the async store ``sokka.adapters.aio.connect``
  makes of the same URL (``AsyncSQLStore``: SQLite through a pool of threads,
  PostgreSQL through psycopg's async driver), at the same concurrency and
  batch sizes, on ``asyncio.run``; its best of each store is marked too. Each
  of its runs follows the threaded run of the same configuration (a slow
  spell of a shared machine then mostly hits both), and a line per store
  gives asyncio/threads: best against best, and the median of the ratios
  at each configuration.
* **pgqueuer** (``PgQueuer`` over one asyncpg connection, run as its ``pgq
  run`` CLI runs it: ``PgQueuer.run(batch_size=K)`` on uvloop when installed)
  at batch sizes 10 (its default), 100, 250 and 1000, jobs enqueued with
  ``Queries.enqueue`` in batches of 1000.
* **procrastinate** (``PsycopgConnector``, its schema applied, jobs deferred
  with ``batch_defer_async`` in batches of 1000) with its worker defaults
  (concurrency 1) and with concurrency 10 (``App.run_worker_async``; plain
  asyncio, as its CLI runs it).

Every peer run gets a fresh database (``CREATE DATABASE``, dropped at the
end) on the same PostgreSQL server sokka uses, and every run of every system
starts from an empty queue: a fresh prefix, database file or database. The
handler of every system is an async or sync no-op that appends the job's id
to an in-process list, which the worker writes to a file for the parent when
it stops (to check exactly-once execution). Persistence is each
library's default (pgqueuer: its default ``durable`` tables; fsync and
synchronous_commit are the server's, printed in the header).

**Timing.** The worker is a separate process (this benchmark, re-run as
``python -m bench.throughput _worker``; see ``bench.drain``), so interpreter
start-up and imports are not timed. The child builds its store / app, opens one database connection
(``engine.connect()``, ``asyncpg.connect``, ``App.open_async()``), then
prints ``READY``, waits for the parent's go line and enters the library's
run loop at once: the clock starts when the parent has read ``READY`` from
every worker and sent each its go, so each library's own start-up work
inside its run call (schema checks, LISTEN, worker registration) is timed,
alike for all. The parent then polls the number of unfinished jobs every 20 ms
(``SOKKA_BENCH_POLL_MS``) with one
``COUNT(*)`` on its own connection (sokka: ``status IN ('starting',
'running', 'snoozed')`` through the store's engine; pgqueuer: rows left in
its queue table; procrastinate: ``status IN ('todo', 'doing')``), and the
clock stops at the start of the first poll that finds none: the measured
time over-states the true drain by at most one poll interval (20 ms, about
1% of a 2 s drain). ``jobs/s`` = N / that time. Then the parent tells the
worker to stop (a line on its stdin) and it exits gracefully.

**Checks** (a failure exits 1): every created id was handed to a handler
exactly once, across all the worker processes (``check_exactly_once``: the
ids each process saw against the ids the parent created); sokka: N tasks
``terminated``, the workers recorded N successes and no failure, every task
reserved once (``attempt = 1``) unless the workers report as many lost
leases (``check_sokka``); pgqueuer: N distinct jobs logged ``successful`` and
exactly N ``queued``, N ``picked`` (each job once) and N ``successful`` log
rows, the queue empty; procrastinate: N jobs ``succeeded`` after exactly one
attempt.

The goal line compares sokka's (threaded) best on PostgreSQL with pgqueuer's best (>=)
and with procrastinate's defaults (>= 20x); goals are reported, not enforced.

**Scale-out** (``--workers 1,2,4``): instead of the above, PostgreSQL only,
each configuration is drained by 1, then 2, then 4 worker processes (each
with its own connection, all started before the clock), and at each count
the systems run back to back: sokka at concurrency 8, batch 10 and 250
(each runtime of ``--runtimes``), pgqueuer at batch 10 and 250,
procrastinate at its defaults and at concurrency 10 (``--quick``: sokka and
pgqueuer at batch 250, procrastinate at its defaults). It prints a row per
run (``vs 1``: its rate against the same configuration on one process), then
a table of each configuration's rate at each count with that ratio, and
sokka's best run at each count (either runtime) against each peer run at
that count. The same checks apply: exactly once across all the processes.
More processes than CPUs share them with each other and with the PostgreSQL
server (a line says so): there the figures show contention, not capacity.

Run: ``python bench/throughput.py [--tasks 20000] [--quick]
[--postgres-url URL] [--skip-peers] [--runtimes threads,asyncio]
[--profile [cprofile|py-spy]] [--workers 1,2,4]`` (or
``python -m bench.throughput ...``).
``--quick`` is a smoke run: 2,000 tasks, sokka (both runtimes) at batch
sizes 10 and 250 only, pgqueuer at 10 and 250. ``--runtimes`` picks sokka's
workers (default both). ``--profile`` then re-runs sokka's best threaded
PostgreSQL configuration under a profiler and prints where the time goes:
cProfile inside the worker (every thread; it slows the worker down, and its
rates are not comparable) or py-spy sampling from outside (wall time of the
dispatcher thread, waits included; barely slows it). Needs ``pip install -e
'.[bench]'`` for the peers (or ``--skip-peers``) and a PostgreSQL server
(``--postgres-url``, default ``$SOKKA_BENCH_PG``, else
``$SOKKA_TEST_POSTGRES_URL``, else
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; ``--postgres-url ''``
skips PostgreSQL).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: bench's parent first, not bench/ itself
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import contextlib
import functools
import json
import os
import platform
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bench.drain import (
    HEADER,
    POLL_S,
    SCALE_HEADER,
    TOPIC,
    Row,
    check_exactly_once,
    drain,
    emit,
    ready,
    row_line,
    scale_row_line,
    timed_create,
    write_ids,
)
from bench.harness import (
    DEFAULT_POSTGRES_URL,
    BenchFailure,
    Column,
    PgServer,
    Table,
    add_postgres_url,
    add_quick,
    comma_list,
    first_line,
    fmt_rate,
    fmt_times,
    median_ratio,
    parser_for,
    positive_ints,
    unknown_items,
    verdict,
    versions,
)
from bench.peers import (
    peers_missing,
    run_pgqueuer,
    run_procrastinate,
    worker_pgqueuer,
    worker_procrastinate,
)
from bench.profiling import (
    cumulative,
    is_wait,
    label,
    own_time,
    py_spy_record,
    py_spy_samples,
    stats_of,
    threads_profiled,
)

# -- the worker process: sokka's role, and the peers' -----------------------------------


def _worker_sokka(config: dict[str, Any], seen: list[object]) -> dict[str, Any]:
    from dataclasses import asdict

    from sokka.adapters.sql import SQLStore
    from sokka.core.task import Task
    from sokka.shell.worker import Context, OkOutcome, Worker, ok

    def noop(task: Task, _ctx: Context) -> OkOutcome:
        seen.append(task.task_id)
        return ok()

    store = SQLStore(config["url"], prefix=config["prefix"])
    worker = Worker(
        store, TOPIC, noop, concurrency=config["concurrency"], batch_size=config["batch"]
    )
    with store.engine.connect():  # one pooled connection, open before the clock starts
        pass
    ready(worker.stop)
    with threads_profiled(config.get("profile")):
        stats = worker.run(install_signal_handlers=False)
    store.close()
    return {"stats": asdict(stats)}


def _worker_sokka_asyncio(config: dict[str, Any], seen: list[object]) -> dict[str, Any]:
    import asyncio
    from dataclasses import asdict

    from sokka.asyncio import AsyncContext, AsyncSQLStore, OkOutcome, Worker, connect, ok
    from sokka.core.task import Task

    async def noop(task: Task, _ctx: AsyncContext) -> OkOutcome:
        seen.append(task.task_id)
        return ok()

    async def main() -> dict[str, Any]:
        store = connect(config["url"], prefix=config["prefix"])
        assert isinstance(store, AsyncSQLStore)
        worker = Worker(
            store, TOPIC, noop, concurrency=config["concurrency"], batch_size=config["batch"]
        )
        await store.schema_version()  # one pooled connection, open before the clock starts
        ready(worker.stop)  # stop() may be called from any thread
        stats = await worker.run()
        await store.aclose()
        return {"stats": asdict(stats)}

    return asyncio.run(main())


_ROLES: dict[str, Callable[[dict[str, Any], list[object]], dict[str, Any]]] = {
    "sokka": _worker_sokka,
    "sokka asyncio": _worker_sokka_asyncio,
    "pgqueuer": worker_pgqueuer,
    "procrastinate": worker_procrastinate,
}


def worker_main(config_json: str) -> int:
    """A worker process (``_worker CONFIG``): run the role, write its ids, print ``RESULT``."""
    config = json.loads(config_json)
    seen: list[object] = []
    extra = _ROLES[config["role"]](config, seen)
    write_ids(config["ids_path"], seen)
    emit("RESULT", extra)  # the ids go through the file: there may be many
    return 0


# -- sokka ---------------------------------------------------------------------------


#: sokka's workers: the runtime's name on the command line, its system in the table.
RUNTIMES: Final = {"threads": "sokka", "asyncio": "sokka asyncio"}


def run_sokka(
    url: str,
    store_name: str,
    n: int,
    concurrency: int,
    batch: int | None,
    profile: Profile | None = None,
    runtime: str = "threads",
    processes: int = 1,
) -> Row:
    """Drain ``n`` tasks with ``processes`` sokka workers of ``runtime``; check every task."""
    import sqlalchemy as sa
    from returns.result import Success

    from sokka.adapters.sql import SQLStore
    from sokka.core.task import TaskSpec

    prefix = f"bench_{secrets.token_hex(4)}_"
    store = SQLStore(url, prefix=prefix)
    tasks = f"{prefix}tasks"
    try:
        store.create_schema()

        def create(k: int) -> list[object]:
            results = store.create_tasks([TaskSpec(topic=TOPIC) for _ in range(k)])
            created = [r.unwrap().task_id for r in results if isinstance(r, Success)]
            if len(created) != k:
                raise BenchFailure("create_tasks refused a task")
            return list(created)

        create_s, created = timed_create(n, create)
        left = sa.text(
            f"SELECT count(*) FROM {tasks} WHERE status IN ('starting', 'running', 'snoozed')"
        )

        def remaining() -> int:
            with store.engine.connect() as conn:
                return int(conn.execute(left).scalar_one())

        config = {
            "role": RUNTIMES[runtime], "url": url, "prefix": prefix, "concurrency": concurrency,
            "batch": batch, "profile": profile.cprofile_path if profile else None,
        }  # fmt: skip
        done = drain(config, remaining, n, profile.wrap if profile else None, processes)
        with store.engine.connect() as conn:
            grouped = conn.execute(sa.text(f"SELECT status, count(*) FROM {tasks} GROUP BY status"))
            counts = {str(row[0]): int(row[1]) for row in grouped}
            again = conn.execute(sa.text(f"SELECT count(*) FROM {tasks} WHERE attempt <> 1"))
            reattempted = int(again.scalar_one())
    finally:
        with contextlib.suppress(Exception):
            store.drop_schema()
        store.close()
    problems = check_exactly_once(created, done.ids)
    sokka_problems, notes = check_sokka(
        n, counts, reattempted, [result["stats"] for result in done.results]
    )
    system = RUNTIMES[runtime]
    return Row(
        system, store_name, sokka_config(concurrency, batch), n, create_s,
        done.seconds, problems + sokka_problems, (system, store_name, concurrency, batch),
        processes, notes,
    )  # fmt: skip


def sokka_config(concurrency: int, batch: int | None) -> str:
    """A sokka run's configuration column; batch None: no batch size given (the
    worker's default, fetching ahead by time).

    >>> sokka_config(1, 250), sokka_config(1, None)
    ('concurrency  1, batch  250', 'concurrency  1, defaults')
    """
    size = "defaults" if batch is None else f"batch {batch:>4}"
    return f"concurrency {concurrency:>2}, {size}"


def check_sokka(
    n: int, statuses: dict[str, int], reattempted: int, stats: list[dict[str, int]]
) -> tuple[list[str], list[str]]:
    """What the store and the workers say after a drain of ``n`` tasks: (problems, notes).

    ``statuses``: tasks by status; ``reattempted``: tasks whose attempt is not 1;
    ``stats``: each worker process's ``WorkerStats`` (as a dict). Every task
    must be ``terminated``, the workers must have recorded ``n`` successes and
    no failure, and every task must have been reserved once, unless the workers
    report as many lost leases (a lease lost before its handler ran is reserved
    again: a note, not a problem; a handler run twice is caught by
    ``check_exactly_once``).
    """
    problems = []
    if statuses != {"terminated": n}:
        problems.append(f"statuses {statuses}, not {{'terminated': {n}}}")
    total = {key: sum(s[key] for s in stats) for key in ("succeeded", "failed", "lost", "fenced")}
    if total["succeeded"] != n or total["failed"]:
        problems.append(
            f"workers recorded {total['succeeded']} successes and {total['failed']} failures, "
            f"not {n} and 0"
        )
    lost = total["lost"]
    notes = []
    if reattempted > lost:
        revoked = f" ({lost} lost leases reported)" if lost else ""
        problems.append(f"{reattempted} tasks reserved more than once{revoked}")
    elif lost:
        notes.append(
            f"{lost} leases lost ({total['fenced']} outcomes fenced), {reattempted} tasks "
            "reserved again"
        )
    return problems, notes


# -- profile -------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How to profile one sokka worker: cProfile inside it, or py-spy around it."""

    tool: str  # "cprofile" or "py-spy"
    path: str

    @property
    def cprofile_path(self) -> str | None:
        return self.path if self.tool == "cprofile" else None

    @property
    def wrap(self) -> list[str]:
        # py-spy's --idle splits the dispatcher's wall time into waiting for
        # PostgreSQL and the rest.
        return py_spy_record(self.path, rate=PY_SPY_HZ) if self.tool == "py-spy" else []

    def report(self, wall_s: float) -> None:
        if self.tool == "py-spy":
            _print_py_spy(self.path)
        else:
            _print_cprofile(self.path, wall_s)


PY_SPY_HZ: Final = 250
#: The frame of the worker's dispatcher loop: what the profiles are read below.
WORKER_RUN: Final = "Worker.run (sokka/shell/worker.py)"


def _print_cprofile(path: str, wall_s: float, top: int = 25) -> None:
    """The dispatcher thread by cumulative time; every thread by own time, waits left out."""
    main = stats_of(path + ".main")
    run_s = max(row[3] for row in main.values())
    print(f"dispatcher thread (Worker.run: {run_s:.2f} s; drain {wall_s:.2f} s), by cumulative:")
    print(f"  {'cum s':>7} {'share':>6} {'own s':>7} {'calls':>8}  function")
    for func, (_cc, calls, tt, ct, _callers) in cumulative(main, top):
        print(f"  {ct:7.3f} {ct / run_s:6.1%} {tt:7.3f} {calls:>8}  {label(func)}")
    merged = stats_of(path)
    blocked = sum(row[2] for func, row in merged.items() if is_wait(func))
    total = sum(row[2] for func, row in merged.items() if not is_wait(func))
    print(
        f"every thread, by own time ({total:.2f} s; {blocked:.2f} s blocked on locks, "
        "conditions and queues left out):"
    )
    print(f"  {'own s':>7} {'share':>6} {'calls':>8}  function")
    for func, row in own_time(merged, top, skip=is_wait):
        print(f"  {row[2]:7.3f} {row[2] / total:6.1%} {row[1]:>8}  {label(func)}")


def _print_py_spy(path: str, top: int = 25) -> None:
    """The dispatcher's samples (wall time: --idle), inclusive and own, by function."""
    samples = py_spy_samples(path, "MainThread", WORKER_RUN)
    if not samples.total:
        print("py-spy: no samples of the worker's run")
        return
    total = samples.total
    print(f"dispatcher thread (Worker.run), {total} samples at {PY_SPY_HZ} Hz, wall time:")
    print("  inclusive  function")
    for frame, count in samples.inclusive.most_common(top):
        print(f"  {count / total:8.1%}  {frame}")
    print("  own        function  (psycopg Connection.wait: waiting for PostgreSQL)")
    for frame, count in samples.own.most_common(top // 2):
        print(f"  {count / total:8.1%}  {frame}")


# -- main ----------------------------------------------------------------------------


#: The packages whose versions the header prints (those installed).
PACKAGES: Final = (
    "sokka", "sqlalchemy", "psycopg", "pgqueuer", "asyncpg", "procrastinate", "uvloop",
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    sokka_concurrency: tuple[int, ...]
    sokka_batches: tuple[int | None, ...]  # None: no batch size (the default)
    pgqueuer_batches: tuple[int, ...]  # 10 is its default
    procrastinate_concurrency: tuple[int | None, ...]  # None: its default (1)


FULL = Plan((1, 8), (None, 1, 10, 100, 250, 1000), (10, 100, 250, 1000), (None, 10))
QUICK = Plan((1, 8), (None, 10, 250), (10, 250), (None, 10))
#: The scale-out's configurations (``--workers``), run at each number of processes:
#: a small and a large batch for each system, and the peers' defaults.
SCALE = Plan((8,), (10, 250), (10, 250), (None, 10))
SCALE_QUICK = Plan((8,), (250,), (250,), (None,))
#: sokka at batch size 1 makes two round trips per task: it drains at most this
#: many (its rate is flat in N), so that the default run stays within minutes.
BATCH_1_TASKS = 5000


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--tasks", type=int, default=None, help="N (default 20000; quick 2000)")
    add_quick(parser, "smoke run: 2000 tasks, batch sizes 10 and 250 only (pgqueuer: 10, 250)")
    add_postgres_url(
        parser,
        f"PostgreSQL for sokka and the peers ('' skips PostgreSQL; default $SOKKA_BENCH_PG, "
        f"else $SOKKA_TEST_POSTGRES_URL, else {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--skip-peers", action="store_true", help="sokka only")
    parser.add_argument(
        "--runtimes", type=comma_list, default=list(RUNTIMES),
        help="sokka's workers to run, comma-separated (default: threads,asyncio)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", nargs="?", const="cprofile", choices=("cprofile", "py-spy"), default=None,
        help="then re-run sokka's best PostgreSQL configuration under a profiler (cProfile "
        "in the worker, every thread; or py-spy, sampling) and print where the time goes",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=positive_ints, default=None, metavar="COUNTS",
        help="scale-out instead: drain with each of these numbers of worker processes, "
        "comma-separated (e.g. 1,2,4), sokka and the peers, on PostgreSQL only",
    )  # fmt: skip
    args = parser.parse_args(argv)
    unknown = unknown_items(args.runtimes, list(RUNTIMES))
    if unknown or not args.runtimes:
        parser.error(f"--runtimes: unknown runtime(s) {unknown}; choose from {','.join(RUNTIMES)}")
    n = args.tasks or (2000 if args.quick else 20_000)
    if n < 1:
        parser.error("--tasks must be positive")
    if args.workers is not None:
        if not args.postgres_url:
            parser.error("--workers: the scale-out runs on PostgreSQL; give a --postgres-url")
        if args.profile:
            parser.error("--workers: --profile profiles one worker process; run it without")
        counts = tuple(dict.fromkeys(args.workers))  # in the order given, each once
        return scale_out(args, n, PgServer(args.postgres_url), counts)
    plan = QUICK if args.quick else FULL
    server = PgServer(args.postgres_url) if args.postgres_url else None

    print(f"throughput: {n:,} no-op tasks per run, drained by one worker process")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; {versions(PACKAGES)}")
    if server is not None:
        try:
            print(server.describe())
        except Exception as error:
            print(f"PostgreSQL at {args.postgres_url!r} is unusable: {first_line(error)}")
            print("(--postgres-url '' runs SQLite only)")
            return 1
    print(
        "jobs/s: N / (worker READY line .. first poll, every "
        f"{POLL_S * 1000:.0f} ms, finding nothing unfinished); create/s timed apart"
    )
    print()
    print(HEADER)

    rows: list[Row] = []
    failed = False

    def record(run: Callable[[], Row], label: str) -> Row | None:
        nonlocal failed
        try:
            row = run()
        except Exception as error:  # report it and go on with the next run
            failed = True
            print(f"{label}: ERROR {type(error).__name__}: {error}", flush=True)
            return None
        failed |= bool(row.problems)
        rows.append(row)
        print(row_line(row), flush=True)
        return row

    tmp = tempfile.mkdtemp(prefix="sokka-throughput-")
    try:
        best: dict[tuple[str, str], Row] = {}  # by (system, store)
        stores = [("sqlite", "")] + ([("postgres", args.postgres_url)] if server else [])
        for store_name, pg_url in stores:
            # The two runtimes back to back at each configuration: a slow spell of a
            # shared machine mostly hits both.
            for concurrency in plan.sokka_concurrency:
                for batch in plan.sokka_batches:
                    for runtime in args.runtimes:
                        url = pg_url or f"sqlite:///{tmp}/{secrets.token_hex(4)}.db"
                        size = min(n, BATCH_1_TASKS) if batch == 1 else n
                        run = functools.partial(
                            run_sokka, url, store_name, size, concurrency, batch, runtime=runtime
                        )
                        row = record(
                            run, f"{RUNTIMES[runtime]} {store_name} "
                            f"{sokka_config(concurrency, batch)}",
                        )  # fmt: skip
                        key = (RUNTIMES[runtime], store_name)
                        held = best.get(key)
                        if row and not row.problems and (held is None or row.rate > held.rate):
                            best[key] = row
        peers: list[Row] = []
        missing = peers_missing()
        if server is not None and not args.skip_peers and missing:
            print(f"peers skipped: {missing}")
        elif server is not None and not args.skip_peers:
            for batch in plan.pgqueuer_batches:
                row = record(
                    functools.partial(run_pgqueuer, server, n, batch), f"pgqueuer batch {batch}"
                )
                peers += [row] if row else []
            for workers in plan.procrastinate_concurrency:
                row = record(
                    functools.partial(run_procrastinate, server, n, workers),
                    f"procrastinate concurrency {workers}",
                )
                peers += [row] if row else []

        print()
        print("best per store (*):")
        for row in best.values():
            print(row_line(row, best=True))
        for store_name, _url in stores:
            _compare_runtimes(store_name, rows, best)
        sokka_pg = best.get(("sokka", "postgres"))
        if sokka_pg is not None and peers:
            _compare(sokka_pg, [p for p in peers if not p.problems])
            _compare_defaults(rows, [p for p in peers if not p.problems])
        if args.profile and sokka_pg is not None:
            _, _, concurrency, batch = sokka_pg.key
            profile = Profile(args.profile, os.path.join(tmp, "worker.prof"))
            print()
            where = f"sokka postgres, concurrency {concurrency}, batch {batch}"
            print(f"profile ({args.profile}): {where}")
            row = record(
                functools.partial(
                    run_sokka, args.postgres_url, "postgres", sokka_pg.n, concurrency, batch,
                    profile,
                ),
                "sokka profiled run",
            )  # fmt: skip
            if row is not None:
                profile.report(row.drain_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print("\nFAILED: see the errors above")
    return 1 if failed else 0


def _compare_runtimes(store_name: str, rows: list[Row], best: dict[tuple[str, str], Row]) -> None:
    """The asyncio worker against the threaded one on ``store_name``: best against
    best, and the median of the ratios of the runs at one configuration."""
    threads, aio = best.get(("sokka", store_name)), best.get(("sokka asyncio", store_name))
    if threads is None or aio is None:
        return
    runs = {row.key: row for row in rows if not row.problems}
    pairs = [
        (runs[("sokka asyncio", *key[1:])].rate, row.rate)
        for key, row in runs.items()
        if key[:2] == ("sokka", store_name) and ("sokka asyncio", *key[1:]) in runs
    ]
    print(
        f"asyncio/threads on {store_name}: best of each {fmt_times(aio.rate, threads.rate)}; "
        f"median over the {len(pairs)} configurations "
        f"{median_ratio([a for a, _ in pairs], [t for _, t in pairs]):.2f}x"
    )


def _compare(sokka_pg: Row, peers: list[Row]) -> None:
    print()
    print(f"sokka's best on PostgreSQL: {sokka_pg.rate:,.0f} jobs/s ({sokka_pg.config})")
    for peer in peers:
        print(
            f"  vs {peer.system} {peer.config.strip()}: {peer.rate:,.0f} jobs/s, "
            f"sokka/peer {fmt_times(sokka_pg.rate, peer.rate)}"
        )
    verdicts = []
    pgq = max((p for p in peers if p.system == "pgqueuer"), key=lambda r: r.rate, default=None)
    if pgq is not None:
        met = sokka_pg.rate >= pgq.rate
        verdicts.append(
            f">= pgqueuer's best ({pgq.rate:,.0f}, {pgq.config.strip()}): "
            f"{fmt_times(sokka_pg.rate, pgq.rate)} {verdict(met)}"
        )
    defaults = next((p for p in peers if p.key == ("procrastinate", None)), None)
    if defaults is not None:
        ratio = sokka_pg.rate / defaults.rate
        verdicts.append(
            f">= 20x procrastinate's defaults ({defaults.rate:,.0f}): "
            f"{ratio:.1f}x {verdict(ratio >= 20)}"
        )
    if verdicts:
        print("GOAL sokka's PostgreSQL best " + "; ".join(verdicts))


def _compare_defaults(rows: list[Row], peers: list[Row]) -> None:
    """sokka's threaded worker at its defaults (concurrency 1, no batch size) on
    PostgreSQL against pgqueuer at its defaults (batch 10): the goal is 2x."""
    mine = next((r for r in rows if r.key == ("sokka", "postgres", 1, None) and not r.problems),
                None)  # fmt: skip
    theirs = next((p for p in peers if p.key == ("pgqueuer", 10)), None)
    if mine is None or theirs is None:
        return
    ratio = mine.rate / theirs.rate
    print(
        f"GOAL sokka at its defaults on PostgreSQL ({mine.rate:,.0f}) >= 2x pgqueuer at its "
        f"defaults ({theirs.rate:,.0f}): {ratio:.2f}x {verdict(ratio >= 2)}"
    )


# -- scale-out: several worker processes -------------------------------------------------


def scale_out(args: argparse.Namespace, n: int, server: PgServer, counts: tuple[int, ...]) -> int:
    """``--workers``: each configuration drained by each number of worker processes.

    At each count the systems run back to back (sokka's runtimes, then the
    peers), so that a slow spell of the shared machine mostly hits a count's
    sokka/peer ratios alike. Prints a row a run, then the scaling of each
    configuration against one process, and sokka's best against each peer at
    each count. Exits 1 when a run fails (an error, or a check).
    """
    plan = SCALE_QUICK if args.quick else SCALE
    shown = ", ".join(str(count) for count in counts)
    print(
        f"scale-out: {n:,} no-op tasks per run on PostgreSQL, drained by {shown} worker processes"
    )
    cpus = os.cpu_count() or 1
    print(f"python {platform.python_version()}, {cpus} CPUs; {versions(PACKAGES)}")
    try:
        print(server.describe())
    except Exception as error:
        print(f"PostgreSQL at {args.postgres_url!r} is unusable: {first_line(error)}")
        return 1
    print(
        "jobs/s: N / (every worker READY, then go .. first poll, every "
        f"{POLL_S * 1000:.0f} ms, finding nothing unfinished); create/s timed apart; "
        "vs 1: against the same configuration on 1 process"
    )
    print("check: every created id done exactly once across the processes")
    if max(counts) >= cpus:
        print(
            f"note: up to {max(counts)} worker processes and the PostgreSQL server on {cpus} "
            "CPUs: once they outnumber the CPUs they take turns on them, and the figures "
            "measure contention, not capacity"
        )

    # Each run is called with processes=count.
    runs: list[tuple[str, Callable[..., Row]]] = []
    for concurrency in plan.sokka_concurrency:
        for batch in plan.sokka_batches:
            for runtime in args.runtimes:
                label = f"{RUNTIMES[runtime]} concurrency {concurrency} batch {batch}"
                runs.append((label, functools.partial(
                    run_sokka, args.postgres_url, "postgres", n, concurrency, batch,
                    runtime=runtime,
                )))  # fmt: skip
    missing = None if args.skip_peers else peers_missing()
    if missing:
        print(f"peers skipped: {missing}")
    elif not args.skip_peers:
        for batch in plan.pgqueuer_batches:
            runs.append(
                (f"pgqueuer batch {batch}", functools.partial(run_pgqueuer, server, n, batch))
            )
        for workers in plan.procrastinate_concurrency:
            label = "procrastinate " + ("defaults" if workers is None else f"concurrency {workers}")
            runs.append((label, functools.partial(
                run_procrastinate, server, n, workers
            )))  # fmt: skip

    print()
    print(SCALE_HEADER)
    rows: list[Row] = []
    failed = False
    for count in counts:
        for label, run in runs:
            try:
                row = run(processes=count)
            except Exception as error:  # report it and go on with the next run
                failed = True
                print(f"{label}, {count} processes: ERROR {type(error).__name__}: {error}")
                continue
            failed |= bool(row.problems)
            rows.append(row)
            one = next((r for r in rows if r.key == row.key and r.processes == 1), None)
            print(scale_row_line(row, one), flush=True)

    print()
    for line in scaling_lines(rows, counts):
        print(line)
    print()
    for line in sokka_peer_lines(rows, counts):
        print(line)
    if failed:
        print("\nFAILED: see the errors above")
    return 1 if failed else 0


def _rates(rows: list[Row]) -> dict[tuple[Any, ...], dict[int, Row]]:
    """The passed rows by configuration (in the order first run), then by process count."""
    by: dict[tuple[Any, ...], dict[int, Row]] = {}
    for row in rows:
        if not row.problems:
            by.setdefault(row.key, {})[row.processes] = row
    return by


def scaling_lines(rows: list[Row], counts: tuple[int, ...]) -> list[str]:
    """A line per configuration: its jobs/s at each process count, and the ratio to 1 process.

    Only passed runs count; a count without one shows ``-``, and no ratio is
    shown without a passed run on 1 process.
    """
    table = Table(
        (Column("system", 14, "<"), Column("configuration", 32, "<"),
         *(Column(f"{c} proc{'s' if c != 1 else ''}", 17) for c in counts)),
        sep="",
    )  # fmt: skip
    lines = ["scaling (jobs/s, and against 1 process):", table.header()]
    for by_count in _rates(rows).values():
        any_row = next(iter(by_count.values()))
        one = by_count.get(1)
        cells = []
        for count in counts:
            row = by_count.get(count)
            if row is None:
                cells.append("-")
            elif one is None or count == 1:
                cells.append(fmt_rate(row.rate))
            else:
                cells.append(f"{fmt_rate(row.rate)} {fmt_times(row.rate, one.rate):>6}")
        lines.append(table.row(any_row.system, any_row.config, *cells))
    return lines


def sokka_peer_lines(rows: list[Row], counts: tuple[int, ...]) -> list[str]:
    """sokka's best (either runtime) at each process count against each peer run at that count.

    Only passed runs count; ``-`` where one side has none.
    """
    passed = [row for row in rows if not row.problems]
    best: dict[int, Row] = {}
    for row in passed:
        if row.system in RUNTIMES.values():
            held = best.get(row.processes)
            if held is None or row.rate > held.rate:
                best[row.processes] = row
    peers = {row.key: row for row in passed if row.system not in RUNTIMES.values()}
    if not best or not peers:
        return []
    table = Table(
        (Column("", 46, "<"), *(Column(f"{c} proc{'s' if c != 1 else ''}", 14) for c in counts)),
        sep="",
    )  # fmt: skip
    lines = [
        "sokka/peer at the same number of worker processes (sokka: its best run at that number):",
        table.header(),
        table.row("sokka's best, jobs/s", *(fmt_rate(best[c].rate) if c in best else "-"
                                            for c in counts)),
        table.row("  its runtime", *(("asyncio" if best[c].system != "sokka" else "threads")
                                     if c in best else "-" for c in counts)),
        table.row("  its concurrency/batch", *(f"{best[c].key[2]}/{best[c].key[3]}"
                                               if c in best else "-" for c in counts)),
    ]  # fmt: skip
    for key in dict.fromkeys(row.key for row in passed if row.key in peers):
        at = {row.processes: row for row in passed if row.key == key}
        label = f"vs {peers[key].system} {peers[key].config.strip()}"
        cells = [
            fmt_times(best[c].rate, at[c].rate) if c in best and c in at else "-" for c in counts
        ]
        lines.append(table.row(label, *cells))
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        sys.exit(worker_main(sys.argv[2]))
    sys.exit(main())
