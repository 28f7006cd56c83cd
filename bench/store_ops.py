"""Benchmark the stores' operations, and the SQL store against its raw-driver ceiling.

For each store (``memory``, ``sqlite``: a file in a temporary directory,
``postgres``: run-private table prefixes, dropped at the end) this measures
operations per second of creating, reserving and terminating, extending and
listing tasks, and the time of one full supervisor cycle
(``bench.stores.operations``), on a realistic queue (``bench.stores.common``).

**The ceiling** (SQLite and PostgreSQL): in the same run, a hand-written loop
on the bare driver runs *the same statements* the store runs, on an identical
table (``bench.stores.ceiling``); a statement audit fails the run if they
differ (``bench.stores.audit``). Each store row prints its ratio to this
ceiling: what the store costs on top of the database work its design
requires. **The minimal loop** (reference only, *not* the ceiling): the
smallest set of statements that does the same job.

Method: interleaved rounds of every side, medians, the ratio as the median of
the rounds' ratios (``bench.stores.measure``). Every measured call is checked.

**Over HTTP** (``http`` in ``--stores``): reserve+terminate and the
supervisor cycle through ``HTTPStore`` -> uvicorn on 127.0.0.1 -> a backing
store, against the same kind of store called in-process, with the server on a
thread of this process and in a child process (``bench.stores.http_setup``,
``bench.stores.http_compare``).

Run: ``python bench/store_ops.py [--stores memory,sqlite,postgres,http] [--quick]
[--postgres-url URL] [--profile] [--http-over memory,sqlite,postgres]
[--http-server both|thread|process]`` (or ``python -m bench.store_ops ...``).
``--postgres-url`` defaults to ``$SOKKA_BENCH_PG``, else
``$SOKKA_TEST_POSTGRES_URL``, else the local test server. ``--profile`` also
runs cProfile on the store side of the operation with the lowest ratio to its
ceiling, for each SQL store, and on every reserve+terminate operation that
misses its goal. Exits 0 unless a correctness check fails (goals are
reported, not enforced).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: bench's parent first, not bench/ itself
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import dataclasses
import gc
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Final

from bench.harness import (
    BenchFailure,
    add_postgres_url,
    add_quick,
    comma_list,
    first_line,
    parser_for,
    unknown_items,
    version_of,
)
from bench.stores.backends import Backend, MemoryBackend, PostgresBackend, SQLiteBackend
from bench.stores.common import FULL, QUICK
from bench.stores.http_compare import run_http, summary_http
from bench.stores.http_setup import HTTP_MODES, HttpBackend, StoreUnreachable
from bench.stores.measure import Results
from bench.stores.run import run_backend, summary_stores

STORES: Final = ("memory", "sqlite", "postgres")
HTTP: Final = "http"  #: the HTTP comparison, selected like a store


def out(line: str) -> None:
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument(
        "--stores",
        default=",".join((*STORES, HTTP)),
        help="comma-separated, from memory,sqlite,postgres,http (default: all); http: "
        "reserve+terminate and the supervisor cycle over HTTP against in-process, on the "
        "--http-over stores",
    )
    parser.add_argument(
        "--http-over",
        default=None,
        help="comma-separated backing stores of the HTTP comparison, from "
        "memory,sqlite,postgres (default: the other stores selected, or all three when "
        "--stores is only http)",
    )
    parser.add_argument(
        "--http-server",
        choices=("both", *HTTP_MODES),
        default="both",
        help="where the HTTP server runs: on a thread of this process (shares the GIL "
        "with the client), in a child process, or both (default)",
    )
    add_quick(parser, "a seconds-long smoke run")
    add_postgres_url(parser)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the store side of each SQL store's lowest-ratio operation, and of "
        "every reserve+terminate operation that misses its goal",
    )
    args = parser.parse_args(argv)
    wanted = comma_list(args.stores)
    unknown = unknown_items(wanted, (*STORES, HTTP))
    if unknown or not wanted:
        parser.error(f"unknown store(s) {unknown}; choose from {','.join((*STORES, HTTP))}")
    if args.http_over is None:
        http_over: list[str] = [s for s in STORES if s in wanted] or list(STORES)
    else:
        if HTTP not in wanted:
            parser.error("--http-over needs http in --stores")
        http_over = comma_list(args.http_over)
        unknown = unknown_items(http_over, STORES)
        if unknown or not http_over:
            parser.error(f"unknown --http-over store(s) {unknown}; choose from {','.join(STORES)}")
    http_modes = HTTP_MODES if args.http_server == "both" else (args.http_server,)
    base = QUICK if args.quick else FULL
    settings = dataclasses.replace(base, profile=args.profile)

    psycopg_version = version_of("psycopg") or "not installed"
    out(f"sokka store benchmark{' (--quick)' if args.quick else ''}: {settings.rounds} rounds, "
        f"~{settings.target_s} s per side per round, medians")  # fmt: skip
    out(f"Python {platform.python_version()}, SQLAlchemy {version_of('sqlalchemy')}, psycopg "
        f"{psycopg_version}, SQLite {sqlite3.sqlite_version}; {platform.machine()}, "
        f"{os.cpu_count()} CPUs")  # fmt: skip
    results = Results()
    started = time.perf_counter()
    try:
        for name in STORES:
            if name not in wanted:
                continue
            with ExitStack() as stack:
                backend: Backend
                if name == "memory":
                    backend = MemoryBackend(settings)
                elif name == "sqlite":
                    directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="sokka-"))
                    backend = SQLiteBackend(settings, directory)
                else:
                    try:
                        backend = PostgresBackend(settings, args.postgres_url)
                    except Exception as error:
                        results.skipped[name] = f"PostgreSQL not reachable: {first_line(error)}"
                        out(f"\n== postgres: skipped ({results.skipped[name]}) ==")
                        continue
                stack.callback(backend.close)
                section = time.perf_counter()
                run_backend(backend, settings, results, out)
                gc.unfreeze()
                out(f"  ({name}: {time.perf_counter() - section:.0f} s)")
        for name in STORES if HTTP in wanted else ():
            if name not in http_over:
                continue
            with ExitStack() as stack:
                directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="sokka-http-"))
                try:
                    http_backend = HttpBackend(
                        name, http_modes, stack, directory, args.postgres_url, settings.finished
                    )
                except StoreUnreachable as error:
                    results.http_skipped[f"http over {name}"] = str(error)
                    out(f"\n== HTTP over {name}: skipped ({error}) ==")
                    continue
                section = time.perf_counter()
                run_http(http_backend, settings, results, out)
                gc.unfreeze()
                out(f"  (http over {name}: {time.perf_counter() - section:.0f} s)")
    except BenchFailure as failure:
        out(f"\nCORRECTNESS CHECK FAILED: {failure}")
        return 1
    if any(s in wanted for s in STORES):
        summary_stores(results, settings, out)
    if HTTP in wanted:
        summary_http(results, out)
    out(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
