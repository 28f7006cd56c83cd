"""The ``sokka`` command, run as a user runs it: the installed console script."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sokka.adapters.sql import SCHEMA_VERSION, SQLStore
from sokka.adapters.store import TaskFilter
from sokka.core.durations import duration_ms
from sokka.core.errors import ValidationError
from sokka.core.task import Status, TaskSpec
from sokka.shell.cli import parse_duration
from tests.shell.test_demo import rescue_counts


def sokka(
    *args: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``sokka`` command (``python -m sokka`` if it is not on PATH)."""
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environment,
        cwd=cwd,
    )


def test_demo_kills_a_worker_and_shows_the_rescue(tmp_path: Path) -> None:
    run = sokka("demo", "--tasks", "120", "--workers", "3", timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "SIGKILL worker-1" in out
    assert "SIGSTOP worker-2" in out
    assert "tasks lost:     0" in out
    assert "tasks done:     120 of 120" in out
    assert "none run twice at once" in out
    # the kill-to-revoke time the simulator is calibrated against (docs/simulation.md)
    assert re.search(r"worker-1 killed: its \d lease\(s\) revoked after \d+\.\d\d s", out), out
    # The per-worker rescues add up to the total (they once said 2 + 1 against 4).
    per_worker, total = rescue_counts(out)
    assert set(per_worker) >= {"worker-1", "worker-2"}, out
    assert sum(per_worker.values()) == total >= 2, out
    # It speaks at once: what it starts, then progress while the workers warm up,
    # not silence until the first fault.
    lines = out.splitlines()
    assert "queueing 120 tasks" in lines[0], out
    kill = next(i for i, line in enumerate(lines) if "SIGKILL worker-1" in line)
    assert any("starting a supervisor and 3 worker processes" in line for line in lines[:kill])
    assert any(re.search(r"done \d+/120", line) for line in lines[:kill]), out
    assert any("supervisor revoked worker-1's lease" in line for line in lines[kill:]), out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("demo", "--lease-time", "30"), "has no unit"),
        (("demo", "--lease-time", "soon"), "is not a duration"),
        (("demo", "--workers", "1"), "1 is not in the range 2<=x<=16"),
    ],
)
def test_bad_options_are_one_clear_error(args: tuple[str, ...], says: str) -> None:
    run = sokka(*args)
    assert run.returncode == 2
    assert says in run.stderr
    assert "Traceback" not in run.stderr


def test_version() -> None:
    run = sokka("--version")
    assert run.returncode == 0
    assert run.stdout.startswith("sokka ")


def test_init_creates_the_schema_once_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first = sokka("init", "--db", url)
    assert first.returncode == 0, first.stderr
    assert f"schema version {SCHEMA_VERSION} created" in first.stdout
    again = sokka("init", "--db", url)
    assert again.returncode == 0, again.stderr
    assert "already there" in again.stdout
    with SQLStore(url) as store:
        assert store.schema_version() == SCHEMA_VERSION


def test_init_reads_the_store_from_sokka_db_and_defaults_to_sokka_db_here(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    assert sokka("init", env={"SOKKA_DB": url}).returncode == 0
    assert (tmp_path / "from-env.db").exists()
    run = sokka("init", unset=("SOKKA_DB",), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "sokka.db").exists()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://root@localhost/test", "the scheme 'mysql' is not supported"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot be reached"),
    ],
)
def test_init_with_a_bad_or_unreachable_store_is_one_clear_line(url: str, says: str) -> None:
    run = sokka("init", "--db", url)
    assert run.returncode == 1
    assert says in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_task_commands_create_list_get_and_administer(tmp_path: Path) -> None:
    env = {"SOKKA_DB": f"sqlite:///{tmp_path / 'q.db'}"}
    assert sokka("init", env=env).returncode == 0
    made = sokka("task", "create", "--topic", "mail", "--id", "m1", "--data", '{"to": "ann"}',
                 "--max-attempts", "2", "--timeout", "5s", "--json", env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    (created,) = json.loads(made.stdout)["tasks"]
    assert (created["task_id"], created["data"], created["timeout_ms"]) == (
        "m1",
        {"to": "ann"},
        5000,
    )
    many = sokka("task", "create", "--topic", "mail", "--count", "30", env=env)
    assert "created 30 tasks" in many.stdout
    listed = sokka("task", "list", "--topic", "mail", "--limit", "7", "--all", "--json", env=env)
    assert len(json.loads(listed.stdout)["tasks"]) == 31
    page = sokka("task", "list", "--limit", "5", env=env)
    assert "more: --cursor" in page.stdout
    assert page.stdout.splitlines()[0].split()[:3] == ["TASK", "TOPIC", "STATUS"]
    got = sokka("task", "get", "m1", env=env)
    assert "starting" in got.stdout
    assert 'data: {"to":"ann"}' in got.stdout
    cancelled = sokka("task", "cancel", "m1", "--reason", "typo", "--json", env=env)
    assert json.loads(cancelled.stdout)["tasks"][0]["error"] == "cancelled: typo"
    requeued = sokka("task", "requeue", "m1", "--json", env=env)
    assert json.loads(requeued.stdout)["tasks"][0]["status"] == "starting"
    grouped = sokka("task", "group", "m1", "--json", env=env)
    assert [t["task_id"] for t in json.loads(grouped.stdout)["tasks"]] == ["m1"]


@pytest.mark.parametrize(
    "args",
    [
        ("task", "list"),
        ("task", "get", "m1"),
        ("task", "create", "--topic", "q"),
        ("worker", "--topic", "q", "--handler", "json:dumps"),
        ("worker", "--topic", "q", "--handler", "json:dumps", "--runtime", "asyncio"),
        ("supervise",),
        ("supervise", "--runtime", "asyncio"),
        ("serve", "--port", "0"),
    ],
)
def test_commands_but_init_name_a_missing_sqlite_file_and_create_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """`sokka task list --db sqlite:///missing.db` said "no sokka schema" and left an
    empty missing.db behind; only `sokka init` may create a database."""
    run = sokka(*args, "--db", "sqlite:///missing.db", cwd=tmp_path, timeout=30)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.strip() == (
        f"sokka: url: the SQLite file {tmp_path / 'missing.db'} does not exist: "
        "create it with `sokka init` (or SQLStore(...).create_schema())"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_url_with_two_slashes_shows_the_form_meant(tmp_path: Path) -> None:
    run = sokka("task", "list", "--db", "sqlite://relative.db", cwd=tmp_path)
    assert run.returncode == 1
    assert "write sqlite:///relative.db for a path relative to the working directory" in run.stderr
    assert "sqlite:////absolute/path.db" in run.stderr
    assert "in-memory" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unsupported_url_lists_every_kind_of_store_the_cli_takes() -> None:
    run = sokka("task", "list", "--db", "mysql://root@localhost/test")
    assert run.returncode == 1
    for scheme in ("sqlite:///", "postgresql+psycopg://", "http://", "https://"):
        assert scheme in run.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("task", "get", "nope"), "task 'nope' not found"),
        (("task", "create", "--topic", "q", "--data", "{oops"), "data: is not JSON"),
        (("task", "create", "--topic", ""), "topic: must not be empty"),
        (("task", "requeue", "m1"), "cannot requeue a task that is starting"),
        (("worker", "--topic", "q", "--handler", "nowhere"), "is not of the form"),
        (("worker", "--topic", "q", "--handler", "no_such_module:f"), "cannot import"),
        (("worker", "--topic", "q", "--handler", "json:nothing"), "has no 'nothing'"),
    ],
)
def test_store_and_input_errors_are_one_clear_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    env = {"SOKKA_DB": f"sqlite:///{tmp_path / 'q.db'}"}
    sokka("init", env=env)
    sokka("task", "create", "--topic", "q", "--id", "m1", env=env)
    run = sokka(*args, env=env)
    assert run.returncode == 1, run.stdout
    assert says in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ('raise RuntimeError("boom")\n', "importing 'broken' raised RuntimeError: boom"),
        ("def handle(:\n", "importing 'broken' raised SyntaxError: invalid syntax ("),
        ("1 / 0\n", "importing 'broken' raised ZeroDivisionError: division by zero"),
    ],
)
def test_a_handler_module_that_fails_on_import_is_one_clear_line(
    tmp_path: Path, source: str, says: str
) -> None:
    """A module raising anything but ImportError printed a 25-line traceback."""
    (tmp_path / "broken.py").write_text(source)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    run = sokka("worker", "--db", db, "--topic", "q", "--handler", "broken:handle", cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.startswith(f"sokka: handler: {says}"), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_durations() -> None:
    assert [parse_duration(t) for t in ("1ms", "2s", "1.5s", "3m", "1h")] == [
        1,
        2000,
        1500,
        180_000,
        3_600_000,
    ]
    for bad in ("", "0s", "5 parsecs", "-1s", "10"):
        with pytest.raises(ValidationError):
            parse_duration(bad)
    # Where zero is allowed (a delay, a grace period, fetching ahead), "0s" says it too.
    assert [parse_duration(t, zero=True) for t in ("0s", "0ms", "0.0m")] == [0, 0, 0]
    assert duration_ms("0ms", "fetch_ahead", zero=True) == 0
    with pytest.raises(ValidationError, match="must be longer than 0 ms") as raised:
        duration_ms("0s", "lease")
    assert raised.value.field == "lease"


def test_fetch_ahead_takes_a_duration_or_zero_and_a_worker_runs_with_none_ahead(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    env = {"SOKKA_DB": url}
    assert sokka("init", env=env).returncode == 0
    bad = sokka("worker", "--topic", "emails", "--handler", "examples.emails:send_welcome",
                "--fetch-ahead", "soon", env=env)  # fmt: skip
    assert bad.returncode == 2
    assert "Invalid value for '--fetch-ahead': 'soon' is not a duration" in bad.stderr
    with SQLStore(url) as store:
        store.create_tasks([TaskSpec(topic="emails", data={"to": f"r{n}@example.com"})
                            for n in range(20)])  # fmt: skip
        exe = shutil.which("sokka")
        command = [exe] if exe else [sys.executable, "-m", "sokka"]
        worker = subprocess.Popen(
            [*command, "worker", "--topic", "emails", "--handler",
             "examples.emails:send_welcome", "--fetch-ahead", "0"],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            done = TaskFilter(topic="emails", status=Status.TERMINATED)
            while len(store.list_tasks(done, limit=100).tasks) < 20:
                assert time.monotonic() < deadline, "the worker did not drain the topic"
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert "succeeded=20," in stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    url: str
    output: str = ""  #: what the server printed, once it stopped
    returncode: int | None = None


@contextmanager
def serving(db: str, *options: str) -> Iterator[Served]:
    """Run ``sokka serve`` on a free port until it answers /health; SIGTERM it after."""
    port = _free_port()
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    server = subprocess.Popen(
        [*command, "serve", "--db", db, "--port", str(port), *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{served.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)
        yield served
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        served.output, _ = server.communicate(timeout=20)
        served.returncode = server.returncode


def test_serve_answers_the_task_commands_over_http_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    (tmp_path / "token").write_text("cli-test-token-0123456789\n")
    with serving(db, "--token-file", str(tmp_path / "token")) as served:
        url = served.url
        env = {"SOKKA_DB": url, "SOKKA_TOKEN": "cli-test-token-0123456789"}
        made = sokka("task", "create", "--topic", "mail", "--id", "m1", "--data", '{"to": "ann"}',
                     "--json", env=env)  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["tasks"][0]["data"] == {"to": "ann"}
        assert "created 5 tasks" in sokka("task", "create", "--topic", "mail", "--count", "5",
                                          env=env).stdout  # fmt: skip
        listed = sokka("task", "list", "--limit", "2", "--all", "--json", env=env)
        assert len(json.loads(listed.stdout)["tasks"]) == 6
        cancelled = sokka("task", "cancel", "m1", "--reason", "typo", "--json", env=env)
        assert json.loads(cancelled.stdout)["tasks"][0]["error"] == "cancelled: typo"
        # Errors read exactly as they do in-process: one line, exit 1.
        missing = sokka("task", "get", "nope", env=env)
        assert (missing.returncode, missing.stderr.strip()) == (1, "sokka: task 'nope' not found")
        wrong = sokka("task", "list", env={**env, "SOKKA_TOKEN": "not-the-token-at-all"})
        assert wrong.returncode == 1
        assert "refused the token" in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1
        # The server's own store saw all of it.
        with SQLStore(db) as store:
            assert store.get_task("m1").error == "cancelled: typo"
    assert served.returncode == 0, served.output
    assert "token required" in served.output


def test_a_server_without_a_token_answers_only_its_own_host_names(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with serving(db, "--allow-host", "queue.internal") as served:
        url = served.url

        def status(host: str) -> int:
            return httpx.get(f"{url}/health", headers={"Host": host}, timeout=5).status_code

        assert status("localhost:8080") == 200
        assert status("queue.internal") == 200
        assert status("attacker.example") == 421
        created = httpx.post(f"{url}/v1/create_task", json={"spec": {"topic": "q"}},
                             headers={"Host": "attacker.example"}, timeout=5)  # fmt: skip
        assert created.status_code == 421
    with SQLStore(db) as store:
        assert store.list_tasks().tasks == ()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("serve", "--host", "0.0.0.0"), "refusing to serve 0.0.0.0 without a token"),
        (("init", "--db", "http://127.0.0.1:9"), "run it against the database"),
        (("serve", "--token-file", "/nonexistent/token"), "cannot read /nonexistent/token"),
    ],
)
def test_serve_and_http_urls_refuse_unsafe_or_impossible_requests(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    run = sokka(*args, env={"SOKKA_DB": f"sqlite:///{tmp_path / 'q.db'}"}, unset=("SOKKA_TOKEN",))
    assert run.returncode != 0
    assert says in run.stderr
    assert "Traceback" not in run.stderr


def _worker_log(url: str, env: dict[str, str]) -> str:
    """What a worker over HTTP logs in about two seconds of polling an empty topic."""
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    worker = subprocess.Popen(
        [*command, "worker", "--db", url, "--topic", "idle", "--handler", "json:dumps",
         "--max-poll", "100ms", "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    time.sleep(2)
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    return output


def test_a_worker_over_http_logs_no_line_per_poll_unless_asked(tmp_path: Path) -> None:
    """httpx logged one INFO line per request: one per poll of an idle worker."""
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with serving(db) as served:
        quiet = _worker_log(served.url, {})
        loud = _worker_log(served.url, {"SOKKA_LIBRARY_LOG_LEVEL": "info"})
    assert "INFO sokka.worker: worker " in quiet  # sokka's own lines keep --log-level
    assert " httpx: " not in quiet, quiet
    assert "HTTP Request: POST" not in quiet
    # Asked for, they are there: one per poll, so many in two seconds.
    assert loud.count(" httpx: HTTP Request: POST") >= 5, loud


def test_serve_on_a_port_in_use_says_so_before_claiming_to_serve(tmp_path: Path) -> None:
    """It logged "serving ... on ..." first, then uvicorn failed to bind and exited 3."""
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = sokka("serve", "--db", db, "--port", str(port), timeout=30)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(another server? choose one with --port)"
    )
    assert "serving" not in run.stdout + run.stderr


def test_a_server_that_is_down_is_one_clear_line() -> None:
    run = sokka("task", "list", "--db", f"http://127.0.0.1:{_free_port()}")
    assert run.returncode == 1
    assert "cannot reach" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_simulate_plot_without_matplotlib_says_how_to_install_it_before_simulating(
    tmp_path: Path,
) -> None:
    """It ran the whole simulation and its sweep, printed the table, then failed."""
    stub = tmp_path / "stub" / "matplotlib"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("no matplotlib here (test stub)")\n')
    pythonpath = os.pathsep.join(p for p in (str(stub.parent), os.environ.get("PYTHONPATH")) if p)
    run = sokka("simulate", "skew", "--tasks", "20", "--workers", "2", "--plot",
                str(tmp_path / "x.png"), env={"PYTHONPATH": pythonpath}, timeout=120)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.strip() == (
        "sokka: plot: needs matplotlib, which is not installed: pip install 'sokka[plot]'"
    )
    assert run.stdout == ""  # nothing was simulated
    assert not (tmp_path / "x.png").exists()


def test_python_m_runs_every_command_including_the_last_defined() -> None:
    """`python -m sokka.shell.cli simulate` answered "No such command": the module
    ran main() before the commands below that line were defined."""
    run = subprocess.run(
        [sys.executable, "-m", "sokka.shell.cli", "simulate", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No such command" not in run.stderr
    assert "Usage: sokka simulate" in run.stdout


def test_task_group_lists_every_task_of_a_group_larger_than_a_page(tmp_path: Path) -> None:
    # tasks_in_group answers at most 1000 tasks; the command pages past them.
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with SQLStore(db) as store:
        for start in (0, 600):
            store.create_tasks([TaskSpec(topic="q", task_id=f"g{n:04}", task_group_id="big")
                                for n in range(start, start + 600)])  # fmt: skip
    grouped = sokka("task", "group", "big", "--json", "--db", db)
    assert grouped.returncode == 0, grouped.stderr
    assert [t["task_id"] for t in json.loads(grouped.stdout)["tasks"]] == [
        f"g{n:04}" for n in range(1200)
    ]


# -- the asyncio runtime ---------------------------------------------------------------

HANDLERS = """\
import asyncio, threading
from sokka.asyncio import ok

async def coro(task, ctx):
    await asyncio.sleep(task.data["s"])
    return ok()

def plain(task, ctx):
    assert threading.current_thread() is not threading.main_thread()
    ctx.sleep(task.data["s"])
    return ok()
"""


def _sokka_process(*args: str, cwd: Path) -> subprocess.Popen[str]:
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    return subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    )


def _until(what: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(signum)
    output, _ = process.communicate(timeout=30)
    return process.returncode, output


@pytest.mark.parametrize(
    ("handler", "runtime", "start_line", "signum"),
    [
        ("handlers:coro", None, "(asyncio, concurrency 4, lease 2000 ms)", signal.SIGTERM),
        ("handlers:coro", None, "(asyncio, concurrency 4, lease 2000 ms)", signal.SIGINT),
        ("handlers:coro", "asyncio", "(asyncio, concurrency 4, lease 2000 ms)", signal.SIGTERM),
        ("handlers:plain", "asyncio", "(asyncio, concurrency 4, lease 2000 ms)", signal.SIGTERM),
        ("handlers:plain", None, "(concurrency 4, lease 2000 ms)", signal.SIGTERM),
    ],
)
def test_worker_runs_async_def_handlers_on_asyncio_and_stops_on_a_signal_with_exit_0(
    tmp_path: Path, handler: str, runtime: str | None, start_line: str, signum: int
) -> None:
    """--runtime auto (the default) picks asyncio for an async def handler, threads
    for a plain one; --runtime asyncio also runs a plain one (on its thread pool).
    SIGTERM and SIGINT (Ctrl-C) both stop it gracefully."""
    (tmp_path / "handlers.py").write_text(HANDLERS)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with SQLStore(db) as store:
        store.create_tasks([TaskSpec(topic="q", data={"s": 0.05}) for _ in range(6)])
        # Every option the threaded command takes reaches the asyncio worker too.
        worker = _sokka_process(
            "worker", "--db", db, "--topic", "q", "--handler", handler,
            *(("--runtime", runtime) if runtime else ()), "--concurrency", "4",
            "--batch-size", "2", "--lease-time", "2s", "--timeout", "20s", "--grace", "3s",
            "--max-poll", "100ms", "--supervise", "--pid", "w1",
            "--stats-file", str(tmp_path / "stats.json"), "--log-level", "debug", cwd=tmp_path,
        )  # fmt: skip

        def all_done() -> bool:
            tasks = store.list_tasks(TaskFilter(topic="q")).tasks
            return all(t.status is Status.TERMINATED for t in tasks)

        _until(all_done, worker)
        assert {t.pid for t in store.list_tasks(TaskFilter(topic="q")).tasks} == {"w1"}
    code, output = _stop(worker, signum)
    assert code == 0, output
    assert f"INFO sokka.worker: worker w1 on topic 'q' {start_line}" in output
    assert f"INFO sokka.worker: worker w1: got signal {int(signum)}, stopping" in output
    assert "INFO sokka.worker: worker w1 stopped: WorkerStats(reserved=6, succeeded=6," in output
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert (stats["pid"], stats["reserved"], stats["succeeded"]) == ("w1", 6, 6)
    assert "Traceback" not in output


def test_a_coroutine_handler_with_runtime_threads_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    assert sokka("task", "create", "--db", db, "--topic", "q", "--id", "t1").returncode == 0
    run = sokka("worker", "--db", db, "--topic", "q", "--handler", "handlers:coro",
                "--runtime", "threads", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert (
        "Error: --runtime threads cannot run handlers:coro: it is a coroutine function "
        "(async def); run it with --runtime asyncio (or auto, the default)"
    ) in run.stderr
    assert "Traceback" not in run.stderr
    with SQLStore(db) as store:
        task = store.get_task("t1")
    assert (task.status, task.attempt) == (Status.STARTING, 0)  # nothing was reserved


def test_an_async_worker_on_a_store_without_a_schema_exits_1_naming_it(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    sqlite3.connect(tmp_path / "bare.db").close()  # a file, but no schema in it
    run = sokka("worker", "--db", f"sqlite:///{tmp_path / 'bare.db'}", "--topic", "q",
                "--handler", "handlers:coro", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "(asyncio, concurrency 1, lease 30000 ms)" in run.stderr  # it ran there
    assert run.stderr.strip().splitlines()[-1] == (
        "sokka: no sokka schema under the prefix 'sokka_': run `sokka init` or "
        "SQLStore.create_schema()"
    )
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_supervise_on_asyncio_revokes_an_abandoned_lease_and_exits_0_on_a_signal(
    tmp_path: Path, signum: int
) -> None:
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with SQLStore(db) as store:
        store.create_task(TaskSpec(topic="q", task_id="t1"))
        assert store.reserve_tasks("q", "gone", 1)[0].attempt == 1  # then nobody keeps it
        supervisor = _sokka_process(
            "supervise", "--db", db, "--topic", "q", "--runtime", "asyncio",
            "--lease-time", "300ms", "--interval", "100ms", cwd=tmp_path,
        )  # fmt: skip
        _until(lambda: store.get_task("t1").status is Status.STARTING, supervisor)
        task = store.get_task("t1")
    code, output = _stop(supervisor, signum)
    assert code == 0, output
    assert (task.pid, task.attempt, task.failures) == (None, 1, 1)
    assert "INFO sokka.supervisor: supervising q with a lease of 300 ms" in output
    assert "Traceback" not in output


def test_an_async_worker_over_http_runs_tasks_with_the_servers_token(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    (tmp_path / "token").write_text("cli-test-token-0123456789\n")
    with serving(db, "--token-file", str(tmp_path / "token")) as served, SQLStore(db) as store:
        store.create_task(TaskSpec(topic="q", task_id="t1", data={"s": 0.01}))
        exe = shutil.which("sokka")
        command = [exe] if exe else [sys.executable, "-m", "sokka"]
        worker = subprocess.Popen(
            [*command, "worker", "--db", served.url, "--topic", "q", "--handler",
             "handlers:coro", "--pid", "w1", "--max-poll", "100ms"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
            env={**os.environ, "SOKKA_TOKEN_FILE": str(tmp_path / "token")},
        )  # fmt: skip
        _until(lambda: store.get_task("t1").status is Status.TERMINATED, worker)
        code, output = _stop(worker)
    assert code == 0, output
    assert "(asyncio, concurrency 1," in output
    assert store.get_task("t1").pid == "w1"


@pytest.mark.parametrize("runtime", ["threads", "asyncio"])
def test_supervise_on_a_store_without_a_schema_exits_1_naming_it(
    tmp_path: Path, runtime: str
) -> None:
    """It logged "will retry" for ever (a missing schema is not a store that is down)."""
    sqlite3.connect(tmp_path / "bare.db").close()  # a file, but no schema in it
    run = sokka("supervise", "--db", f"sqlite:///{tmp_path / 'bare.db'}", "--topic", "q",
                "--runtime", runtime, cwd=tmp_path, timeout=30)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "sokka: no sokka schema under the prefix 'sokka_': run `sokka init` or "
        "SQLStore.create_schema()"
    )
    assert "will retry" not in run.stderr


def test_task_create_with_a_delay_waits_snoozed_until_a_supervisor_wakes_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    made = sokka("task", "create", "--db", db, "--topic", "q", "--id", "later", "--delay", "1h",
                 "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    (task,) = json.loads(made.stdout)["tasks"]
    assert (task["status"], task["snooze_time_ms"]) == ("snoozed", 3_600_000)
    with SQLStore(db) as store:
        assert store.reserve_tasks("q", "w1", 10) == []  # not before the delay
    bad = sokka("task", "create", "--db", db, "--topic", "q", "--delay", "soon")
    assert bad.returncode == 2
    assert "--delay" in bad.stderr
