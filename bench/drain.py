"""Worker processes, timed while they drain a queue: what throughput.py measures with.

The parent starts one or more workers (``python -m bench.throughput _worker
CONFIG``), waits for every one's ``READY`` line, writes a go line to each and
starts the clock, polls the number of unfinished jobs every ``POLL_S``
(``SOKKA_BENCH_POLL_MS``, 20 ms), stops the clock at the first poll that
finds none, then writes a stop line to each worker's stdin; each stops,
writes the ids its handler saw to its ``ids_path`` and prints ``RESULT``.
``check_exactly_once`` then checks every created id against what all the
processes saw. A ``Row`` is one such run, printed as a line of ``TABLE``
(one process) or ``SCALE_TABLE`` (``--workers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench.harness import ROOT, BenchFailure, Column, Table, child_env, fmt_times

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


def ready(stop: Callable[[], object]) -> None:
    """Print ``READY``, wait for the parent's go line, then call ``stop`` on the next line.

    The parent sends its go when every worker process of the run is ready, so
    that no process drains the queue before the clock starts. A closed stdin
    counts as a line: a worker whose parent is gone stops.
    """
    emit("READY")
    sys.stdin.readline()
    on_stop_line(stop)


def write_ids(path: str, ids: list[object]) -> None:
    """Write the ids the handler saw, in the order it saw them, for the parent's check."""
    with open(path, "w") as file:
        json.dump(ids, file)


# -- driving the worker processes --------------------------------------------------


@dataclass
class Drain:
    """One timed drain: its seconds, and each worker process's ``RESULT`` and ids."""

    seconds: float
    results: list[dict[str, Any]]
    ids: list[list[object]]  #: per process, the ids its handler saw


def _spawn(config: dict[str, Any], stderr: Any, wrap: list[str]) -> subprocess.Popen[str]:
    # The benchmark again, as a module, in its private worker mode (throughput.worker_main).
    command = [*wrap, sys.executable, "-m", "bench.throughput", "_worker", json.dumps(config)]
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        text=True, cwd=ROOT, env=child_env(),
    )  # fmt: skip


class _Child:
    """One worker process, its stdout read into a queue by a thread of its own."""

    def __init__(self, index: int, config: dict[str, Any], stderr: Any, wrap: list[str]) -> None:
        self.index = index
        self.stderr = stderr
        self.process = _spawn(config, stderr, wrap)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._pumping = threading.Thread(target=self._pump, daemon=True)
        self._pumping.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, tag: str, deadline: float) -> str:
        """The rest of the first line starting with ``tag``, by ``deadline`` (monotonic)."""
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise BenchFailure(f"no {tag} from worker {self.index} in time") from None
            if line is None:
                raise BenchFailure(f"worker {self.index} exited before {tag}")
            if line.startswith(tag):
                return line[len(tag) :].strip()

    def send(self, line: str, close: bool = False) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            if close:
                self.process.stdin.close()
        except OSError as error:  # it exited: its stderr says why
            raise BenchFailure(f"worker {self.index} did not take {line!r}: {error}") from None

    def close(self) -> None:
        """Kill the process unless it has exited; close its pipes once its output is read."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._pumping.join(STOP_TIMEOUT_S)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a broken pipe: nothing left to flush
                    pipe.close()

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        return str(self.stderr.read()[-3000:])


def drain(
    config: dict[str, Any],
    remaining: Callable[[], int],
    n: int,
    wrap: list[str] | None = None,
    processes: int = 1,
) -> Drain:
    """Start ``processes`` worker processes, time them from go until ``remaining()`` is 0.

    Each process gets ``config`` with its own ``ids_path`` (where it writes the
    ids its handler saw). The clock starts when every process has printed
    ``READY`` and been sent its go line; it stops at the start of the first
    poll that finds nothing unfinished. Then every process is told to stop
    and must print ``RESULT`` and exit 0. ``wrap``: a command that runs each
    worker's command (a profiler).
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1: {processes}")
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="sokka-drain-"))
        paths = [os.path.join(folder, f"ids-{i}.json") for i in range(processes)]
        children: list[_Child] = []
        try:
            try:
                for i, path in enumerate(paths):
                    stderr = stack.enter_context(tempfile.TemporaryFile("w+"))
                    children.append(_Child(i, {**config, "ids_path": path}, stderr, wrap or []))
                deadline = time.monotonic() + READY_TIMEOUT_S
                for child in children:
                    child.expect("READY", deadline)
                for child in children:
                    child.send("go")
                started = time.perf_counter()
                # procrastinate's defaults do a few hundred jobs/s, and under 40 on a
                # busy 2-CPU machine: a run that is merely slow must not fail.
                limit = max(120.0, n / 20)
                while True:
                    polled = time.perf_counter()
                    if remaining() == 0:
                        break
                    for child in children:
                        if child.process.poll() is not None:
                            raise BenchFailure(
                                f"worker {child.index} exited early "
                                f"(code {child.process.returncode})"
                            )
                    if polled - started > limit:
                        raise BenchFailure(f"not drained after {limit:.0f} s")
                    time.sleep(POLL_S)
                seconds = polled - started
                for child in children:
                    child.send("stop", close=True)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                results = [json.loads(child.expect("RESULT", deadline)) for child in children]
                for child in children:
                    code = child.process.wait(max(deadline - time.monotonic(), 0.001))
                    if code != 0:
                        raise BenchFailure(f"worker {child.index} exited with code {code}")
            finally:
                for child in children:
                    child.close()
        except BenchFailure as error:
            tails = "".join(
                f"\n--- worker {child.index} stderr ---\n{child.stderr_tail()}"
                for child in children
            )
            raise BenchFailure(f"{error}{tails}") from None
        ids = []
        for path in paths:
            with open(path) as file:
                ids.append(json.load(file))
        return Drain(seconds, results, ids)


# -- results -------------------------------------------------------------------------


@dataclass
class Row:
    """One timed drain: what ran, on what, by how many processes, and what its checks found.

    ``problems`` fail the run; ``notes`` explain something it passed with.
    """

    system: str
    store: str
    config: str
    n: int
    create_s: float
    drain_s: float
    problems: list[str] = field(default_factory=list)
    key: tuple[Any, ...] = ()
    processes: int = 1
    notes: list[str] = field(default_factory=list)

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

#: One run of the scale-out (``--workers``) a row: the store is PostgreSQL, the
#: number of worker processes is a column, and so is the rate against one process.
SCALE_TABLE: Final = Table(
    (
        Column("system", 14, "<"),
        Column("configuration", 32, "<"),
        Column("procs", 5),
        Column("tasks", 8),
        Column("create/s", 10),
        Column("drain s", 9),
        Column("jobs/s", 10),
        Column("vs 1", 7),
    ),
    sep="",
)
SCALE_HEADER: Final = SCALE_TABLE.header() + "  check"


def _check_cell(row: Row) -> str:
    if row.problems:
        return "FAILED: " + "; ".join(row.problems)
    return "ok" + "".join(f" ({note})" for note in row.notes)


def row_line(row: Row, best: bool = False) -> str:
    mark = "*" if best else " "
    cells = (
        row.system, row.store, row.config, f"{row.n:,}", f"{row.n / row.create_s:,.0f}",
        f"{row.drain_s:.2f}", f"{row.rate:,.0f}",
    )  # fmt: skip
    return f"{TABLE.row(*cells)}{mark} {_check_cell(row)}"


def scale_row_line(row: Row, one: Row | None) -> str:
    """``row`` as a line of ``SCALE_TABLE``; ``one``: the same configuration on one process."""
    against = fmt_times(row.rate, one.rate) if one is not None and not one.problems else "-"
    cells = (
        row.system, row.config, str(row.processes), f"{row.n:,}",
        f"{row.n / row.create_s:,.0f}", f"{row.drain_s:.2f}", f"{row.rate:,.0f}", against,
    )  # fmt: skip
    return f"{SCALE_TABLE.row(*cells)}  {_check_cell(row)}"


def check_exactly_once(created: Sequence[object], done_by: Sequence[Sequence[object]]) -> list[str]:
    """What is wrong with a drain, if anything: each created id done once, by one process.

    ``created``: the ids the parent created; ``done_by``: per worker process,
    the ids its handler was called with. Ids are compared as strings (they
    come back from the children through JSON). The answer names the ids done
    more than once (and by which processes), never done, or never created;
    it is empty when every created id was done exactly once in all.
    """
    wanted = Counter(str(task_id) for task_id in created)
    done: Counter[str] = Counter()
    by: dict[str, list[int]] = {}
    for process, ids in enumerate(done_by):
        for task_id in ids:
            key = str(task_id)
            done[key] += 1
            by.setdefault(key, []).append(process)
    problems = []
    twice = sorted(key for key, count in done.items() if count > 1)
    if twice:
        first = twice[0]
        problems.append(
            f"{len(twice)} ids done more than once (e.g. {first!r} {done[first]} times, by "
            f"process {', '.join(str(p) for p in by[first])})"
        )
    never = sorted(key for key in wanted if key not in done)
    if never:
        problems.append(f"{len(never)} ids never done (e.g. {never[0]!r})")
    strangers = sorted(key for key in done if key not in wanted)
    if strangers:
        problems.append(
            f"{len(strangers)} ids done that were never created (e.g. {strangers[0]!r})"
        )
    repeated = sorted(key for key, count in wanted.items() if count > 1)
    if repeated:
        problems.append(f"{len(repeated)} ids created more than once (e.g. {repeated[0]!r})")
    if problems:  # the whole first, then what is wrong with which ids
        processes = f"{len(done_by)} process{'es' if len(done_by) != 1 else ''}"
        problems.insert(
            0,
            f"{len(wanted)} tasks created, handlers ran {sum(done.values())} times on "
            f"{len(done)} distinct ids in {processes}",
        )
    return problems


def timed_create(n: int, create: Callable[[int], Sequence[object]]) -> tuple[float, list[object]]:
    """Create ``n`` jobs in chunks of ``CREATE_CHUNK``: the seconds it took, and their ids.

    ``create(k)`` creates ``k`` jobs and returns their ids.
    """
    ids: list[object] = []
    started = time.perf_counter()
    for start in range(0, n, CREATE_CHUNK):
        ids.extend(create(min(CREATE_CHUNK, n - start)))
    return time.perf_counter() - started, ids


def counter(dsn: str, sql: str) -> tuple[Callable[[], int], Callable[[], None]]:
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)

    def count() -> int:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0

    return count, conn.close
