"""``sokka demo``: a worker process is killed mid-task, and its task is rescued.

The demo queues a few hundred tasks on a store (a new SQLite file in a
temporary directory unless ``--db`` names one), starts several ``sokka
worker`` processes and a supervisor, and then:

1. SIGKILLs one worker while it runs a task. Nothing tells the others: the
   supervisor sees that task's record version stop changing for a whole
   lease on its own clock, revokes the lease, and another worker runs it.
2. SIGSTOPs another worker mid-task for longer than a lease, then lets it go
   on (SIGCONT), like a long GC pause or a suspended VM. Its task is rescued
   the same way; when it wakes up, it finds its lease lost and discards its
   result instead of reporting it (fencing).

Every handler run is written to a journal (start and end, on the machine's
monotonic clock, which all processes share). From it the demo checks that no
task was lost, that each was done exactly once, and that no two workers ever
ran the same task while both held its lease; it exits non-zero otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sokka.adapters.store import TaskFilter
from sokka.core.errors import RetryableError
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.clock import MonotonicClock
from sokka.shell.supervisor import Supervisor

__all__ = ["demo_handler", "run_demo"]

JOURNAL_ENV = "SOKKA_DEMO_JOURNAL"
_journal_fd: int | None = None


def _journal(event: dict[str, Any]) -> None:
    """Append one line to the demo journal (one write: atomic for short lines)."""
    global _journal_fd
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        return
    if _journal_fd is None:
        _journal_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_journal_fd, (json.dumps(event) + "\n").encode())


def demo_handler(task: Task, ctx: Any) -> Any:
    """The demo's work: sleep ``data["ms"]``, noting start and end in the journal."""
    from sokka.shell.worker import ok

    run = {"task": task.task_id, "attempt": task.attempt, "worker": task.pid}
    _journal({**run, "ev": "start", "t": time.monotonic()})
    ctx.sleep(task.data["ms"] / 1000)
    _journal({**run, "ev": "end", "t": time.monotonic(), "cancelled": ctx.cancelled})
    return ok()


@dataclass(slots=True)
class _Run:
    """One handler run, from the journal."""

    task: str
    attempt: int
    worker: str
    start: float
    end: float | None = None


@dataclass(slots=True)
class _Fault:
    worker: str
    kind: str  # "killed" or "paused"
    at: float
    until: float | None = None
    tasks: list[str] = field(default_factory=list)


def _read_journal(path: Path) -> list[_Run]:
    runs: dict[tuple[str, int], _Run] = {}
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        key = (event["task"], event["attempt"])
        if event["ev"] == "start":
            runs[key] = _Run(event["task"], event["attempt"], event["worker"], event["t"])
        elif key in runs:
            runs[key].end = event["t"]
    return list(runs.values())


@dataclass(frozen=True, slots=True)
class _Revoked:
    """A running task's lease that the supervisor revoked."""

    task: str
    attempt: int
    holder: str  # the worker whose lease it was
    at: float  # time.monotonic() before the revoke call


class _Revokes:
    """Wraps the supervisor's store to note each lease it revokes, and whose it was.

    The holder comes from the supervisor's own listing: a revoke is a
    compare-and-set on the ``record_ver`` listed, so the task it changed is the
    one listed, pid and all (the revoke itself clears the pid).
    """

    def __init__(self, store: Any, on_revoke: Callable[[_Revoked], object] = lambda _: None):
        self._store = store
        self._on_revoke = on_revoke
        self._listed: dict[tuple[str, int], Task] = {}  # (task, record_ver) -> as listed
        self.revoked: list[_Revoked] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def list_leased_tasks(self, *args: Any, **kwargs: Any) -> Any:
        page = self._store.list_leased_tasks(*args, **kwargs)
        for task in page.tasks:
            self._listed[task.task_id, task.record_ver] = task
        return page

    def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        before = time.monotonic()
        task: Task = self._store.revoke_lease(task_id, record_ver)
        listed = self._listed.get((task_id, record_ver))
        if listed is not None and listed.status is Status.RUNNING and listed.pid:
            revoked = _Revoked(task_id, listed.attempt, listed.pid, before)
            self.revoked.append(revoked)
            self._on_revoke(revoked)
        return task

    @property
    def at(self) -> dict[tuple[str, int], float]:
        """(task, attempt) -> when its lease was revoked."""
        return {(r.task, r.attempt): r.at for r in self.revoked}


def _retrying(call: Callable[[], Any]) -> Any:
    for _ in range(50):
        try:
            return call()
        except RetryableError:
            time.sleep(0.05)
    return call()


def run_demo(
    *,
    db: str | None = None,
    prefix: str = "sokka_",
    tasks: int = 300,
    workers: int = 4,
    lease_ms: int = 2_000,
    say: Callable[[str], object] = print,
) -> int:
    """Run the demo; return the exit status (0: nothing lost, nothing run twice)."""
    from sokka.adapters.sql import SQLStore

    workdir = Path(tempfile.mkdtemp(prefix="sokka-demo-"))
    url = db or f"sqlite:///{workdir / 'demo.db'}"
    journal = workdir / "journal.jsonl"
    topic = f"demo-{secrets.token_hex(3)}"
    clock = MonotonicClock()
    started = time.monotonic()
    out = _Output(started, say, interactive=sys.stdout.isatty())
    tell = out.tell

    store = SQLStore(url, prefix=prefix)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        shown = store.engine.url.render_as_string(hide_password=True)
        tell(f"queueing {tasks} tasks of 100 to 400 ms on {shown}")
        store.create_schema()
        durations = [100 + (n * 37) % 300 for n in range(tasks)]  # 100..400 ms
        for begin in range(0, tasks, 1000):
            store.create_tasks(
                [
                    TaskSpec(topic=topic, task_id=f"{topic}-{n:04d}", data={"ms": durations[n]})
                    for n in range(begin, min(begin + 1000, tasks))
                ]
            )
        tell(f"queued {tasks} tasks (topic {topic})")
        tell(
            f"starting a supervisor and {workers} worker processes, 2 tasks at a time each; "
            f"leases last {lease_ms} ms unless kept alive"
        )

        def revoked(lease: _Revoked) -> None:
            tell(f"supervisor revoked {lease.holder}'s lease on {lease.task} (attempt "
                 f"{lease.attempt}): no keepalive for a whole lease")  # fmt: skip

        watched = _Revokes(store, on_revoke=revoked)
        supervisor = Supervisor(
            watched, topic, LeasePolicy(lease_time_ms=lease_ms, default_snooze_ms=lease_ms), clock
        )
        supervisor.start()
        env = {**os.environ, JOURNAL_ENV: str(journal)}
        for n in range(1, workers + 1):
            name = f"worker-{n}"
            command = [
                sys.executable, "-m", "sokka", "worker", "--db", url, "--prefix", prefix,
                "--topic", topic, "--handler", "sokka.shell.demo:demo_handler",
                "--concurrency", "2", "--lease-time", f"{lease_ms}ms", "--pid", name,
                "--grace", "5s", "--stats-file", str(workdir / f"{name}.json"),
                "--log-level", "error",
            ]  # fmt: skip
            with (workdir / f"{name}.log").open("wb") as log:  # the child keeps its own copy
                processes[name] = subprocess.Popen(command, env=env, stderr=log, stdout=log)
        progress = _Progress(store, topic, tasks, journal, out)
        faults = _inject_faults(store, topic, tasks, processes, journal, lease_ms, tell, progress)
        _wait_until_done(store, topic, tasks, lease_ms, tell, progress)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        exits = {name: process.wait(timeout=30) for name, process in processes.items()}
        supervisor.stop()
        return _summary(store, topic, tasks, journal, workdir, faults, exits, watched, lease_ms,
                        say)  # fmt: skip
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        store.close()
        shutil.rmtree(workdir, ignore_errors=True)


class _Output:
    """The demo's lines, each stamped with the time since it started, printed at
    once (flushed even into a pipe); on a terminal the progress line is redrawn
    in place under them."""

    def __init__(self, started: float, say: Callable[[str], object], *, interactive: bool):
        self.started = started
        self.interactive = interactive
        self._say = say
        self._lock = threading.Lock()  # the supervisor's thread tells too
        self._last_progress = -1.0

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:5.1f}s]"

    def tell(self, message: str) -> None:
        with self._lock:
            if self.interactive:
                sys.stdout.write("\r\033[K")
            self._say(f"{self.stamp()} {message}")
            sys.stdout.flush()

    def progress(self, line: str, *, force: bool = False) -> None:
        """A progress line: redrawn on a terminal, else at most one a second."""
        with self._lock:
            if self.interactive:
                sys.stdout.write(f"\r\033[K{self.stamp()} {line}")
            elif force or time.monotonic() - self._last_progress >= 1.0:
                self._say(f"{self.stamp()} {line}")
                self._last_progress = time.monotonic()
            sys.stdout.flush()

    def end_progress(self) -> None:
        if self.interactive:
            with self._lock:
                sys.stdout.write("\n")
                sys.stdout.flush()


class _Progress:
    """Counts of the demo's tasks, and which workers have begun, as they change."""

    def __init__(self, store: Any, topic: str, tasks: int, journal: Path, out: _Output):
        self._store = store
        self._topic = topic
        self._tasks = tasks
        self._journal = journal
        self._out = out
        self._working: set[str] = set()

    def show(self) -> dict[Status, int]:
        for run in _read_journal(self._journal):
            if run.worker not in self._working:
                self._working.add(run.worker)
                self._out.tell(f"{run.worker} started its first task ({run.task})")
        counts = _counts(self._store, self._topic)
        self._out.progress(
            f"done {counts[Status.TERMINATED]}/{self._tasks}  running {counts[Status.RUNNING]}  "
            f"waiting {counts[Status.STARTING]}",
            force=counts[Status.TERMINATED] == self._tasks,
        )
        return counts

    def finish(self) -> None:
        self._out.end_progress()


def _counts(store: Any, topic: str) -> dict[Status, int]:
    counts: dict[Status, int] = dict.fromkeys(Status, 0)
    for task in _all_tasks(store, topic):
        counts[task.status] += 1
    return counts


def _in_flight(journal: Path, worker: str) -> list[str]:
    return [r.task for r in _read_journal(journal) if r.worker == worker and r.end is None]


def _inject_faults(
    store: Any,
    topic: str,
    tasks: int,
    processes: dict[str, subprocess.Popen[bytes]],
    journal: Path,
    lease_ms: int,
    tell: Callable[[str], None],
    progress: _Progress,
) -> list[_Fault]:
    """Kill one worker mid-task at about a fifth of the work; pause another at two fifths."""
    faults: list[_Fault] = []
    names = sorted(processes)
    plan = [(tasks // 5, names[0], "killed"), (2 * tasks // 5, names[1], "paused")]
    deadline = time.monotonic() + 60
    for threshold, name, kind in plan:
        tell(f"waiting until {threshold} tasks are done and {name} is busy, to "
             f"{'SIGKILL' if kind == 'killed' else 'SIGSTOP'} it")  # fmt: skip
        while time.monotonic() < deadline:
            done = progress.show()[Status.TERMINATED]
            busy = _in_flight(journal, name)
            if done >= threshold and busy:
                break
            time.sleep(0.02)
        process = processes[name]
        busy = _in_flight(journal, name)
        if kind == "killed":
            process.send_signal(signal.SIGKILL)
            faults.append(_Fault(name, kind, time.monotonic(), tasks=busy))
            tell(f"SIGKILL {name} while it runs {', '.join(busy) or 'nothing'}")
        else:
            process.send_signal(signal.SIGSTOP)
            fault = _Fault(name, kind, time.monotonic(), tasks=busy)
            faults.append(fault)
            tell(f"SIGSTOP {name} while it runs {', '.join(busy) or 'nothing'} "
                 f"(for {1.5 * lease_ms / 1000:.1f} s: longer than a lease)")  # fmt: skip

            def resume(process: subprocess.Popen[bytes] = process, fault: _Fault = fault) -> None:
                time.sleep(1.5 * lease_ms / 1000)
                process.send_signal(signal.SIGCONT)
                fault.until = time.monotonic()
                tell(f"SIGCONT {fault.worker}: it wakes up and finds its lease gone")

            threading.Thread(target=resume, daemon=True).start()
    return faults


def _wait_until_done(
    store: Any,
    topic: str,
    tasks: int,
    lease_ms: int,
    tell: Callable[[str], None],
    progress: _Progress,
) -> None:
    deadline = time.monotonic() + max(60.0, 20 * lease_ms / 1000)
    while time.monotonic() < deadline:
        if progress.show()[Status.TERMINATED] == tasks:
            break
        time.sleep(0.1)
    progress.finish()
    tell("all tasks terminated" if _counts(store, topic)[Status.TERMINATED] == tasks
         else "gave up waiting")  # fmt: skip


def _overlaps(runs: Sequence[_Run], ends: dict[tuple[str, int], float]) -> list[str]:
    """Tasks two runs of which overlapped while both held the task's lease."""
    by_task: dict[str, list[tuple[float, float, int]]] = {}
    for run in runs:
        end = ends.get((run.task, run.attempt), run.end if run.end is not None else run.start)
        by_task.setdefault(run.task, []).append((run.start, end, run.attempt))
    bad: list[str] = []
    for task_id, spans in by_task.items():
        for i, (s1, e1, a1) in enumerate(spans):
            for s2, e2, a2 in spans[i + 1 :]:
                if a1 != a2 and s1 < e2 and s2 < e1:
                    bad.append(task_id)
    return bad


def _summary(
    store: Any,
    topic: str,
    tasks: int,
    journal: Path,
    workdir: Path,
    faults: list[_Fault],
    exits: dict[str, int],
    revokes: _Revokes,
    lease_ms: int,
    say: Callable[[str], object],
) -> int:
    final = {t.task_id: t for t in _all_tasks(store, topic)}
    runs = _read_journal(journal)
    done = sum(1 for t in final.values() if t.status is Status.TERMINATED)
    lost = tasks - done
    # How long each run held a valid lease: until it ended, the kill, or the revoke.
    killed_at = {f.worker: f.at for f in faults if f.kind == "killed"}
    ends: dict[tuple[str, int], float] = {}
    revoked_at = revokes.at
    for run in runs:
        end = run.end if run.end is not None else killed_at.get(run.worker, run.start)
        revoked = revoked_at.get((run.task, run.attempt))
        ends[run.task, run.attempt] = min(end, revoked) if revoked is not None else end
    concurrent = _overlaps(runs, ends)
    finished_runs = {(r.task, r.attempt) for r in runs if r.end is not None}
    twice = [
        t
        for t in final.values()
        if (t.task_id, t.attempt) not in finished_runs and t.status is Status.TERMINATED
    ]
    stats = [json.loads(p.read_text()) for p in sorted(workdir.glob("worker-*.json"))]
    fenced = sum(s.get("fenced", 0) for s in stats)
    say("")
    say(f"tasks done:     {done} of {tasks}, each terminated exactly once by the store")
    say(f"tasks lost:     {lost}")
    # One count in both places: a rescue is a running task's lease that the
    # supervisor revoked and that was then run again (by any worker, the paused
    # one included once it wakes). The per-worker lines split exactly the
    # leases the total counts, by the worker that held them.
    by_holder: dict[str, list[_Revoked]] = {}
    for lease in revokes.revoked:
        by_holder.setdefault(lease.holder, []).append(lease)
    faulted = {f.worker: f for f in faults}
    rescued = 0
    for holder in [*(f.worker for f in faults), *sorted(set(by_holder) - set(faulted))]:
        leases = by_holder.get(holder, [])
        fault = faulted.get(holder)
        since = fault.at if fault is not None else None
        revoked_after = []
        rescues = []
        for lease in leases:
            origin = since if since is not None else lease.at
            revoked_after.append(lease.at - origin)
            later = [r.start for r in runs if r.task == lease.task and r.attempt > lease.attempt]
            if later:
                rescues.append(min(later) - origin)
        rescued += len(rescues)
        how = ", ".join(f"{s:.1f} s" for s in rescues) or "-"
        if fault is None:  # a worker the demo left alone, yet late with its keepalives
            say(f"{holder} not stopped: its {len(leases)} lease(s) revoked all the same, "
                f"rescued {len(rescues)}, after {how} from the revoke")  # fmt: skip
            continue
        revoked_how = ", ".join(f"{s:.2f} s" for s in revoked_after) or "-"
        say(
            f"{holder} {fault.kind}: its {len(leases)} lease(s) revoked after {revoked_how}, "
            f"rescued {len(rescues)}, after {how} (lease {lease_ms / 1000:.1f} s "
            f"+ supervisor interval up to {lease_ms / 4000:.1f} s)"
        )
    say(f"leases rescued: {rescued} (revoked by the supervisor, then run again: the sum of "
        "the lines above)")  # fmt: skip
    say(f"fenced results: {fenced} (finished by a worker after its lease was gone; discarded)")
    graceful = {name: code for name, code in exits.items() if name not in killed_at}
    say("worker exits:   " + ", ".join(f"{n} {c}" for n, c in sorted(exits.items())))
    problems = []
    if lost:
        problems.append(f"{lost} task(s) lost")
    if concurrent:
        problems.append(f"ran concurrently under two leases: {', '.join(sorted(set(concurrent)))}")
    if twice:
        problems.append(f"done without a journaled run: {', '.join(t.task_id for t in twice)}")
    if any(code != 0 for code in graceful.values()):
        problems.append("a worker did not exit cleanly on SIGTERM")
    if problems:
        say("FAILED: " + "; ".join(problems))
        return 1
    say("no task lost, none run twice at once: the rescue worked")
    return 0


def _all_tasks(store: Any, topic: str) -> list[Task]:
    found: list[Task] = []
    cursor = None
    while True:
        page = _retrying(partial(store.list_tasks, TaskFilter(topic=topic), cursor, 1000))
        found.extend(page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            return found
