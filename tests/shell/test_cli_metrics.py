"""Metrics and JSON logs from the command line, run as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from sokka.adapters.sql import SQLStore
from sokka.core.task import Status, TaskSpec
from tests.shell.test_cli import serving, sokka
from tests.shell.test_metrics import samples_of, scrape, value

HANDLERS = """
from sokka.shell.worker import failed, ok

def handle(task, ctx):
    if task.data.get("do") == "raise":
        raise ValueError("no such mailbox")
    if task.data.get("do") == "fail":
        return failed("bounced")
    return ok()
"""


def _start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    return subprocess.Popen(
        [*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=cwd, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _json_lines(process: subprocess.Popen[str], until: str) -> list[dict[str, Any]]:
    """Read stderr, each line parsed as JSON, up to the first whose message has ``until``."""
    assert process.stderr is not None
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        assert line, f"the process ended: {process.wait()}"
        lines.append(json.loads(line))
        if until in lines[-1]["message"]:
            return lines
    raise AssertionError(f"no line said {until!r}")


def _stop(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]]]:
    """SIGTERM it; its exit code, and every line it wrote afterwards, parsed as JSON."""
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=30)
    return process.returncode, [json.loads(line) for line in rest.splitlines()]


def _url(lines: list[dict[str, Any]]) -> str:
    (said,) = [line["message"] for line in lines if line["message"].startswith("metrics on ")]
    return str(said.removeprefix("metrics on "))


def _until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_worker_serves_its_metrics_and_logs_json_lines(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with SQLStore(db) as store:
        store.create_tasks(
            [TaskSpec(topic="mail", data={"do": "ok"}) for _ in range(3)]
            + [TaskSpec(topic="mail", task_id="bad", data={"do": "raise"}, max_attempts=1)]
            + [TaskSpec(topic="mail", data={"do": "fail"}, max_attempts=1)]
        )
        worker = _start(
            "worker", "--db", db, "--topic", "mail", "--handler", "handlers:handle",
            "--pid", "w1", "--metrics-port", "0", "--log-format", "json", cwd=tmp_path,
        )  # fmt: skip
        try:
            lines = _json_lines(worker, until="metrics on ")
            url = _url(lines)
            assert url.startswith("http://127.0.0.1:")  # loopback unless --metrics-host
            _until(lambda: store.get_task("bad").status is Status.FAILED)
            _until(lambda: value(scrape(url), "sokka_worker_outcomes_total", topic="mail",
                                 outcome="succeeded") == 3)  # fmt: skip
            samples = scrape(url)
        finally:
            code, rest = _stop(worker)
    assert code == 0, rest
    assert value(samples, "sokka_worker_tasks_started_total", topic="mail") == 5
    assert value(samples, "sokka_worker_outcomes_total", topic="mail", outcome="failed") == 2
    lines += rest
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert line["time"].endswith("Z")
    start = lines[0]
    assert (start["logger"], start["level"], start["worker"], start["topic"]) == (
        "sokka.worker", "INFO", "w1", "mail"
    )  # fmt: skip
    (raised,) = [line for line in lines if line.get("task_id") == "bad"]
    assert raised["level"] == "WARNING"
    assert (raised["topic"], raised["attempt"], raised["worker"]) == ("mail", 1, "w1")
    assert "ValueError: no such mailbox" in raised["exception"]
    assert "stopped: WorkerStats(reserved=5, succeeded=3, failed=2" in lines[-1]["message"]


def test_a_supervisor_serves_its_metrics_and_logs_json_lines(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with SQLStore(db) as store:
        store.create_task(TaskSpec(topic="mail", task_id="t1"))
        store.reserve_tasks("mail", "vanished", 1)  # then nobody keeps it alive
        supervisor = _start(
            "supervise", "--db", db, "--topic", "mail", "--lease-time", "300ms",
            "--interval", "100ms", "--metrics-port", "0", "--log-format", "json", cwd=tmp_path,
        )  # fmt: skip
        try:
            lines = _json_lines(supervisor, until="metrics on ")
            url = _url(lines)
            _until(lambda: store.get_task("t1").status is Status.STARTING)
            _until(lambda: value(scrape(url), "sokka_supervisor_revocations_total",
                                 outcome="revoked") == 1)  # fmt: skip
            samples = scrape(url)
        finally:
            code, rest = _stop(supervisor)
    assert code == 0, rest
    assert value(samples, "sokka_supervisor_cycle_duration_seconds_count") >= 1
    assert ("sokka_worker_tasks_started_total", frozenset()) not in samples  # no worker here
    lines += rest
    (revoked,) = [line for line in lines if line["message"].startswith("revoked the lease")]
    assert (revoked["task_id"], revoked["topic"], revoked["status"]) == ("t1", "mail", "starting")


def test_metrics_port_without_prometheus_client_says_how_to_install_it(tmp_path: Path) -> None:
    """Before anything runs: nothing is reserved."""
    stub = tmp_path / "stub" / "prometheus_client"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("not here (test stub)")\n')
    pythonpath = os.pathsep.join(p for p in (str(stub.parent), os.environ.get("PYTHONPATH")) if p)
    (tmp_path / "handlers.py").write_text(HANDLERS)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    assert sokka("task", "create", "--db", db, "--topic", "mail", "--id", "t1").returncode == 0
    for command in (
        ("worker", "--topic", "mail", "--handler", "handlers:handle"),
        ("supervise", "--topic", "mail"),
    ):
        run = sokka(*command, "--db", db, "--metrics-port", "0", cwd=tmp_path,
                    env={"PYTHONPATH": pythonpath})  # fmt: skip
        assert run.returncode == 1, run.stderr
        assert run.stderr.strip() == (
            "sokka: --metrics-port: needs prometheus-client, which is not installed: "
            "pip install 'sokka[metrics]'"
        )
    with SQLStore(db) as store:
        assert store.get_task("t1").attempt == 0


def test_serve_answers_metrics_only_with_the_token_and_counts_requests(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    token = "metrics-test-token-0123456789"
    (tmp_path / "token").write_text(token)
    with serving(db, "--token-file", str(tmp_path / "token"), "--log-format", "json") as served:
        url = f"{served.url}/metrics"
        refused = httpx.get(url)
        assert refused.status_code == 401
        assert "sokka_http" not in refused.text
        wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        env = {"SOKKA_DB": served.url, "SOKKA_TOKEN": token}
        assert sokka("task", "create", "--topic", "mail", "--count", "2", env=env).returncode == 0
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        samples = samples_of(answer.text)
    assert served.returncode == 0, served.output
    assert value(samples, "sokka_http_requests_total", call="metrics", status="401") == 2
    assert value(samples, "sokka_http_requests_total", call="create_tasks", status="200") == 1
    assert value(samples, "sokka_http_requests_total", call="health", status="200") >= 1
    assert value(samples, "sokka_http_request_duration_seconds_count", call="create_tasks") == 1
    # The queue, counted by the store at the scrape.
    assert value(samples, "sokka_queue_counted") == 1
    assert value(samples, "sokka_queue_tasks", topic="mail", status="starting") == 2
    assert value(samples, "sokka_queue_tasks", topic="mail", status="running") == 0
    assert ("sokka_queue_oldest_ready_age_seconds", frozenset({("topic", "mail")})) in samples
    # --log-format json: every line the server wrote is an object of its own.
    lines = [json.loads(line) for line in served.output.splitlines()]
    assert any("token required" in line["message"] for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)


APP = """
import os

import sokka

app = sokka.App(os.environ["SOKKA_DB"])
app.handler("emails")(lambda task, ctx: sokka.ok())
app.handler("reports")(lambda task, ctx: sokka.ok())
"""


def test_an_apps_worker_serves_every_topic_and_its_supervisor_on_one_endpoint(
    tmp_path: Path,
) -> None:
    (tmp_path / "myapp.py").write_text(APP)
    db = f"sqlite:///{tmp_path / 'app.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with SQLStore(db) as store:
        store.create_tasks([TaskSpec(topic="emails") for _ in range(3)])
        store.create_tasks([TaskSpec(topic="reports") for _ in range(2)])
        worker = _start("worker", "--app", "myapp:app", "--supervise", "--metrics-port", "0",
                        "--log-format", "json", cwd=tmp_path, env={"SOKKA_DB": db})  # fmt: skip
        try:
            url = _url(_json_lines(worker, until="metrics on "))

            def succeeded(topic: str) -> float:
                return value(scrape(url), "sokka_worker_outcomes_total", topic=topic,
                             outcome="succeeded")  # fmt: skip

            _until(lambda: (succeeded("emails"), succeeded("reports")) == (3, 2))
            samples = scrape(url)
        finally:
            code, rest = _stop(worker)
    assert code == 0, rest
    assert value(samples, "sokka_worker_leases_held", topic="emails") == 0
    assert value(samples, "sokka_supervisor_cycle_duration_seconds_count") >= 1


# -- a metrics endpoint beyond loopback needs a token -----------------------------------------

METRICS_TOKEN = "metrics-endpoint-token-0123456789"


def test_metrics_on_every_interface_without_a_token_is_a_usage_error(tmp_path: Path) -> None:
    """Before anything runs: nothing is reserved, nothing listens."""
    (tmp_path / "handlers.py").write_text(HANDLERS)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    assert sokka("task", "create", "--db", db, "--topic", "mail", "--id", "t1").returncode == 0
    for command in (
        ("worker", "--topic", "mail", "--handler", "handlers:handle"),
        ("supervise", "--topic", "mail"),
    ):
        run = sokka(*command, "--db", db, "--metrics-port", "0", "--metrics-host", "0.0.0.0",
                    cwd=tmp_path)  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert "refusing to serve metrics on 0.0.0.0 without a token" in run.stderr
        assert "--metrics-token-file" in run.stderr
        assert "--metrics-allow-no-token" in run.stderr
    # A token file that is too short is refused as serve refuses its own.
    (tmp_path / "short").write_text("tiny\n")
    run = sokka("supervise", "--db", db, "--metrics-port", "0", "--metrics-host", "0.0.0.0",
                "--metrics-token-file", str(tmp_path / "short"))  # fmt: skip
    assert run.returncode == 1
    assert "--metrics-token-file: must be at least 16 characters" in run.stderr
    # And a token file without a metrics endpoint guards nothing: said so.
    (tmp_path / "token").write_text(METRICS_TOKEN)
    run = sokka("supervise", "--db", db, "--metrics-token-file", str(tmp_path / "token"))
    assert run.returncode == 2
    assert "--metrics-token-file guards the metrics endpoint: it needs --metrics-port" in (
        run.stderr
    )
    with SQLStore(db) as store:
        assert store.get_task("t1").attempt == 0


def test_a_worker_on_every_interface_with_a_token_file_answers_metrics_only_with_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    (tmp_path / "token").write_text(f"  {METRICS_TOKEN}\n")  # stripped, as serve's
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    with SQLStore(db) as store:
        store.create_tasks([TaskSpec(topic="mail", data={"do": "ok"}) for _ in range(2)])
        worker = _start(
            "worker", "--db", db, "--topic", "mail", "--handler", "handlers:handle",
            "--metrics-port", "0", "--metrics-host", "0.0.0.0",
            "--metrics-token-file", str(tmp_path / "token"), "--log-format", "json",
            cwd=tmp_path,
        )  # fmt: skip
        try:
            url = _url(_json_lines(worker, until="metrics on "))
            assert url.startswith("http://0.0.0.0:")
            url = url.replace("0.0.0.0", "127.0.0.1")
            refused = httpx.get(url)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith('Bearer realm="sokka-metrics"')
            assert "sokka_worker" not in refused.text
            wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token-at-all"})
            assert wrong.status_code == 401
            assert "sokka_worker" not in wrong.text
            right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            _until(lambda: value(samples_of(httpx.get(url, headers=right).text),
                                 "sokka_worker_outcomes_total", topic="mail",
                                 outcome="succeeded") == 2)  # fmt: skip
            answer = httpx.get(url, headers=right)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
            # Wrong tokens are limited here too: the fifth locks this address out.
            for i in range(4):
                guess = {"Authorization": f"Bearer guess-{i}"}
                assert httpx.get(url, headers=guess).status_code == 401
            locked = httpx.get(url, headers=right)
            assert locked.status_code == 429
            assert 0 < int(locked.headers["retry-after"]) <= 60
        finally:
            code, rest = _stop(worker)
    assert code == 0, rest
    (lockout,) = [line for line in rest if "wrong tokens from 127.0.0.1" in line["message"]]
    assert (lockout["level"], lockout["logger"]) == ("WARNING", "sokka.metrics")


def test_metrics_allow_no_token_serves_every_interface_and_warns(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q.db'}"
    assert sokka("init", "--db", db).returncode == 0
    supervisor = _start(
        "supervise", "--db", db, "--metrics-port", "0", "--metrics-host", "0.0.0.0",
        "--metrics-allow-no-token", "--log-format", "json", cwd=tmp_path,
    )  # fmt: skip
    try:
        lines = _json_lines(supervisor, until="no token on the metrics endpoint")
        url = _url(lines).replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(url).status_code == 200
    finally:
        code, rest = _stop(supervisor)
    assert code == 0, rest
    (warning,) = [line for line in lines if "no token on the metrics endpoint" in line["message"]]
    assert warning["level"] == "WARNING"
    assert "http://0.0.0.0:" in warning["message"]
