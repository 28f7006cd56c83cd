"""One worker process, timed while it drains a queue: what throughput.py measures with.

The parent starts the worker (``python -m bench.throughput _worker CONFIG``),
waits for its ``READY`` line, starts the clock, polls the number of
unfinished jobs every ``POLL_S`` (``SOKKA_BENCH_POLL_MS``, 20 ms), stops the
clock at the first poll that finds none, then writes a line to the worker's
stdin; the worker stops and prints ``RESULT`` with what its handler saw.
A ``Row`` is one such run, printed as a line of ``TABLE``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bench.harness import ROOT, BenchFailure, Column, Table, child_env

TOPIC: Final = "bench"
ENTRYPOINT: Final = "noop"
CREATE_CHUNK: Final = 1000  # the most one create_tasks / enqueue / batch_defer call gets
POLL_S: Final = float(os.environ.get("SOKKA_BENCH_POLL_MS", "20")) / 1000
READY_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 60.0


# -- in the worker process -----------------------------------------------------------


def emit(tag: str, payload: object = None) -> None:
    """Tell the parent: a line ``TAG`` or ``TAG <json>`` on stdout."""
    print(tag if payload is None else f"{tag} {json.dumps(payload)}", flush=True)


def on_stop_line(stop: Callable[[], object]) -> None:
    """Call ``stop`` when the parent writes a line (or closes our stdin)."""

    def wait() -> None:
        sys.stdin.readline()
        stop()

    threading.Thread(target=wait, name="bench-stop", daemon=True).start()


# -- driving one worker process ----------------------------------------------------


@dataclass
class Drain:
    seconds: float
    result: dict[str, Any]


def _spawn(config: dict[str, Any], stderr: Any, wrap: list[str]) -> subprocess.Popen[str]:
    # The benchmark again, as a module, in its private worker mode (throughput.worker_main).
    command = [*wrap, sys.executable, "-m", "bench.throughput", "_worker", json.dumps(config)]
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        text=True, cwd=ROOT, env=child_env(),
    )  # fmt: skip


def drain(
    config: dict[str, Any], remaining: Callable[[], int], n: int, wrap: list[str] | None = None
) -> Drain:
    """Start a worker process, time it from READY until ``remaining()`` is 0, stop it.

    ``wrap``: a command that runs the worker's command (a profiler).
    """
    with tempfile.TemporaryFile("w+") as stderr:
        child = _spawn(config, stderr, wrap or [])
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert child.stdout is not None
            for line in child.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

        def expect(tag: str, timeout: float) -> str:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
                except queue.Empty:
                    raise BenchFailure(f"no {tag} from the worker within {timeout:.0f} s") from None
                if line is None:
                    raise BenchFailure(f"the worker exited before {tag}")
                if line.startswith(tag):
                    return line[len(tag) :].strip()

        try:
            try:
                expect("READY", READY_TIMEOUT_S)
                started = time.perf_counter()
                limit = max(120.0, n / 100)  # nobody here is slower than 100 jobs/s
                while True:
                    polled = time.perf_counter()
                    if remaining() == 0:
                        break
                    if child.poll() is not None:
                        raise BenchFailure(f"the worker exited early (code {child.returncode})")
                    if polled - started > limit:
                        raise BenchFailure(f"not drained after {limit:.0f} s")
                    time.sleep(POLL_S)
                seconds = polled - started
                assert child.stdin is not None
                child.stdin.write("stop\n")
                child.stdin.close()
                result = json.loads(expect("RESULT", STOP_TIMEOUT_S))
                if child.wait(STOP_TIMEOUT_S) != 0:
                    raise BenchFailure(f"the worker exited with code {child.returncode}")
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        except BenchFailure as error:
            stderr.seek(0)
            tail = stderr.read()[-3000:]
            raise BenchFailure(f"{error}\n--- worker stderr ---\n{tail}") from None
        return Drain(seconds, result)


# -- results -------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    store: str
    config: str
    n: int
    create_s: float
    drain_s: float
    problems: list[str] = field(default_factory=list)
    key: tuple[Any, ...] = ()

    @property
    def rate(self) -> float:
        return self.n / self.drain_s


#: One run a row; its best mark and its check follow the last column.
TABLE: Final = Table(
    (
        Column("system", 14, "<"),
        Column("store", 10, "<"),
        Column("configuration", 30, "<"),
        Column("tasks", 7),
        Column("create/s", 10),
        Column("drain s", 9),
        Column("jobs/s", 10),
    ),
    sep="",
)
HEADER: Final = TABLE.header() + "  check"


def row_line(row: Row, best: bool = False) -> str:
    mark = "*" if best else " "
    check = "ok" if not row.problems else "FAILED: " + "; ".join(row.problems)
    cells = (
        row.system, row.store, row.config, f"{row.n:,}", f"{row.n / row.create_s:,.0f}",
        f"{row.drain_s:.2f}", f"{row.rate:,.0f}",
    )  # fmt: skip
    return f"{TABLE.row(*cells)}{mark} {check}"


def check_worker(result: dict[str, Any], n: int) -> list[str]:
    problems = []
    if result["calls"] != n or result["unique"] != n:
        problems.append(f"handler ran {result['calls']} times on {result['unique']} ids, not {n}")
    return problems


def timed_create(n: int, create: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for start in range(0, n, CREATE_CHUNK):
        create(min(CREATE_CHUNK, n - start))
    return time.perf_counter() - started


def counter(dsn: str, sql: str) -> tuple[Callable[[], int], Callable[[], None]]:
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)

    def count() -> int:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0

    return count, conn.close
