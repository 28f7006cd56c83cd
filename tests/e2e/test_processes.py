"""End to end, on real OS processes: `sokka worker` and `sokka supervise`, killed,
paused and stopped the way production does it, on SQLite, on PostgreSQL, and over
HTTP (every worker and the supervisor talk to a `sokka serve` process fronting
SQLite, with a token). The asyncio runtime passes the same scenarios on SQLite
and PostgreSQL: its workers run a coroutine handler (``tests/e2e/aio_handler.py``,
so `sokka worker` picks asyncio itself) and its supervisor is `sokka supervise
--runtime asyncio`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sokka.adapters.sql import SQLStore
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.demo import JOURNAL_ENV
from tests.databases import postgres_engine, postgres_url, test_prefix

LEASE_MS = 1_000
INTERVAL_MS = 250
MAX_POLL_MS = 200  # an idle worker looks for ready tasks at least this often
TOPIC = "e2e"
ROOT = Path(__file__).resolve().parents[2]  # where the handler module `tests...` is found


class Cluster:
    """Worker and supervisor processes on one store, with a journal of handler runs."""

    def __init__(
        self, url: str, prefix: str, workdir: Path, *, http: bool = False, aio: bool = False
    ) -> None:
        self.url, self.prefix, self.workdir, self.aio = url, prefix, workdir, aio
        self.journal = workdir / "journal.jsonl"
        self.store = SQLStore(url, prefix=prefix)
        self.store.create_schema()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self.env = {**os.environ, JOURNAL_ENV: str(self.journal)}
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        )
        self.served = self._serve() if http else None

    def _serve(self) -> str:
        """Start `sokka serve` on the store; workers and supervisor then use its URL."""
        token_file = self.workdir / "token"
        token_file.write_text("e2e-token-0123456789abcdef\n")
        self.env["SOKKA_TOKEN_FILE"] = str(token_file)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._start("server", ["serve", "--port", str(port), "--token-file", str(token_file)])
        base_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy)
        return base_url

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        served = getattr(self, "served", None)
        db = ["--db", served] if served else ["--db", self.url, "--prefix", self.prefix]
        command = [sys.executable, "-m", "sokka", *args, *db]
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        self.processes[name] = process
        return process

    def worker(self, name: str, *, concurrency: int = 1, grace: str = "5s") -> None:
        handler = (
            "tests.e2e.aio_handler:journal_handler" if self.aio else "sokka.shell.demo:demo_handler"
        )
        self._start(name, [
            "worker", "--topic", TOPIC, "--handler", handler,
            "--pid", name, "--concurrency", str(concurrency), "--lease-time", f"{LEASE_MS}ms",
            "--grace", grace, "--stats-file", str(self.workdir / f"{name}.json"),
            "--max-poll", f"{MAX_POLL_MS}ms",
        ])  # fmt: skip

    def supervisor(self) -> None:
        self._start("supervisor", [
            "supervise", "--topic", TOPIC, "--lease-time", f"{LEASE_MS}ms",
            "--interval", f"{INTERVAL_MS}ms", "--runtime", "asyncio" if self.aio else "threads",
        ])  # fmt: skip

    def add(self, task_id: str, ms: int) -> None:
        self.store.create_task(TaskSpec(topic=TOPIC, task_id=task_id, data={"ms": ms}))

    def runs(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line]

    def started(self, task_id: str, worker: str) -> float | None:
        return next(
            (e["t"] for e in self.runs()
             if e["ev"] == "start" and e["task"] == task_id and e["worker"] == worker),
            None,
        )  # fmt: skip

    def task(self, task_id: str) -> Task:
        return self.store.get_task(task_id)

    def stats(self, name: str) -> dict[str, Any]:
        return json.loads((self.workdir / f"{name}.json").read_text())  # type: ignore[no-any-return]

    def stop(self, name: str, timeout: float = 15) -> int:
        process = self.processes[name]
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=timeout)

    def runtime_of(self, name: str) -> str:
        """The runtime a worker said it started on (its first log line)."""
        log = (self.workdir / f"{name}.log").read_text(errors="replace")
        return "asyncio" if f"worker {name} on topic {TOPIC!r} (asyncio," in log else "threads"

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(timeout=10)
        for log in self._logs:
            log.close()
        self.store.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )


def wait_for(what: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


@pytest.fixture(params=["sqlite", "postgres", "http", "sqlite-asyncio", "postgres-asyncio"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    store, _, runtime = request.param.partition("-")
    aio = runtime == "asyncio"
    if store == "sqlite":
        made = Cluster(f"sqlite:///{tmp_path / 'e2e.db'}", "sokka_", tmp_path, aio=aio)
    elif store == "http":
        made = Cluster(f"sqlite:///{tmp_path / 'e2e.db'}", "sokka_", tmp_path, http=True)
    else:
        postgres_engine()  # skip (or fail under SOKKA_REQUIRE_POSTGRES) if unreachable
        made = Cluster(postgres_url(), test_prefix("e2e"), tmp_path, aio=aio)
    try:
        yield made
    except BaseException:
        print(made.logs())
        raise
    finally:
        made.close()
        if store == "postgres":
            with SQLStore(postgres_url(), prefix=made.prefix) as store:
                store.drop_schema()


def test_a_killed_workers_task_is_rescued_within_a_lease_and_an_interval(
    cluster: Cluster,
) -> None:
    cluster.add("victim", 1_500)
    cluster.supervisor()
    cluster.worker("doomed")
    wait_for(lambda: cluster.started("victim", "doomed"))
    cluster.worker("rescuer")
    time.sleep(0.3)  # the rescuer is up and polling
    cluster.processes["doomed"].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    rescued_at = wait_for(lambda: cluster.started("victim", "rescuer"))
    # The lease can lapse no later than a lease after the last keepalive, the
    # supervisor sees that within an interval, and the idle rescuer polls within
    # MAX_POLL_MS; allow a second for scheduling on a shared machine.
    assert rescued_at - killed_at <= (LEASE_MS + INTERVAL_MS + MAX_POLL_MS) / 1000 + 1.0
    wait_for(lambda: cluster.task("victim").status is Status.TERMINATED)
    victim = cluster.task("victim")
    assert (victim.attempt, victim.pid, victim.failures) == (2, "rescuer", 1)
    assert cluster.stop("rescuer") == 0
    assert cluster.runtime_of("rescuer") == ("asyncio" if cluster.aio else "threads")
    ends = [e for e in cluster.runs() if e["ev"] == "end" and e["task"] == "victim"]
    assert [(e["worker"], e["attempt"]) for e in ends] == [("rescuer", 2)]


def test_a_paused_worker_does_not_report_after_its_lease_was_taken_over(
    cluster: Cluster,
) -> None:
    cluster.add("paused", 1_500)
    cluster.supervisor()
    cluster.worker("sleepy")
    wait_for(lambda: cluster.started("paused", "sleepy"))
    sleepy = cluster.processes["sleepy"]
    sleepy.send_signal(signal.SIGSTOP)  # a long GC pause, a suspended VM
    cluster.worker("rescuer")
    # Resume it after three leases, whatever happened meanwhile: a process paused
    # inside a write transaction holds SQLite's write lock until it runs again.
    time.sleep(3 * LEASE_MS / 1000)
    sleepy.send_signal(signal.SIGCONT)
    wait_for(lambda: cluster.task("paused").status is Status.TERMINATED, timeout=30)
    # Its handler wakes up and finishes; the worker must discard that result.
    wait_for(lambda: any(e["ev"] == "end" and e["worker"] == "sleepy" for e in cluster.runs()))
    time.sleep(0.5)
    assert cluster.stop("sleepy") == 0
    assert cluster.stop("rescuer") == 0
    assert cluster.runtime_of("sleepy") == ("asyncio" if cluster.aio else "threads")
    task = cluster.task("paused")
    assert (task.status, task.attempt, task.pid) == (Status.TERMINATED, 2, "rescuer")
    stats = cluster.stats("sleepy")
    assert stats["succeeded"] == 0
    assert stats["fenced"] == 1
    assert stats["lost"] >= 1


def test_sigterm_finishes_in_flight_work_releases_the_rest_and_exits_0(
    cluster: Cluster,
) -> None:
    cluster.add("short", 400)
    cluster.add("long", 20_000)
    cluster.worker("stopping", concurrency=2, grace="1500ms")
    wait_for(lambda: cluster.started("short", "stopping") and cluster.started("long", "stopping"))
    began = time.monotonic()
    assert cluster.stop("stopping") == 0
    assert time.monotonic() - began < 5  # the grace period, not the long task
    assert cluster.runtime_of("stopping") == ("asyncio" if cluster.aio else "threads")
    short, long = cluster.task("short"), cluster.task("long")
    assert short.status is Status.TERMINATED
    assert (long.status, long.pid, long.failures) == (Status.STARTING, None, 0)
    assert cluster.stats("stopping")["released"] == 1
    running = cluster.store.list_leased_tasks(TOPIC).tasks
    assert running == ()
