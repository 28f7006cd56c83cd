"""``sokka worker --app module:app``, run as a user runs it: a real process on a
real SQLite file, stopped by a real signal."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from sokka import SQLStore, Status, TaskFilter
from tests.shell.test_cli import _sokka_process, _stop, _until, sokka

#: The user's module: two topics; a task whose data says "slow" writes a file
#: when it starts, so the test knows it is in flight, then takes a while.
APP = """
import os, time
from pathlib import Path

import sokka

app = sokka.App(os.environ["SOKKA_DB"])


def work(task, ctx):
    if (task.data or {}).get("slow"):
        Path(f"started-{task.task_id}").touch()
        time.sleep(1)
    return sokka.ok()


app.handler("emails", concurrency=2, lease="5s")(work)
app.handler("reports", lease="5s", timeout="1m")(work)
not_an_app = 42
"""

#: The same app on asyncio: an ``async def`` handler and a plain one, two topics.
AIO_APP = """
import asyncio, os
from pathlib import Path

import sokka
import sokka.asyncio

app = sokka.asyncio.App(os.environ["SOKKA_DB"])


@app.handler("emails", concurrency=2, lease="5s")
async def send(task, ctx):
    if (task.data or {}).get("slow"):
        Path(f"started-{task.task_id}").touch()
        await asyncio.sleep(1)
    return sokka.ok()


@app.handler("reports", lease="5s")
def report(task, ctx):
    return sokka.ok()
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the user's app module and an initialised SQLite store."""
    (tmp_path / "myapp.py").write_text(APP)
    (tmp_path / "myaioapp.py").write_text(AIO_APP)
    db = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("SOKKA_DB", db)  # the app and every command read it
    assert sokka("init").returncode == 0
    return tmp_path


def tasks(store: SQLStore, topic: str) -> list[Status]:
    return [t.status for t in store.list_tasks(TaskFilter(topic=topic)).tasks]


def test_worker_app_serves_two_topics_and_sigterm_drains_both(project: Path) -> None:
    from sokka.shell.app import App

    store = SQLStore(f"sqlite:///{project / 'app.db'}")
    app = App(store)
    for topic in ("emails", "reports"):  # the same topics as the module's, to enqueue
        app.handler(topic)(lambda task, ctx: None)
    with store:
        for n in range(4):
            app.enqueue("emails", {"n": n})
            app.enqueue("reports", {"n": n})
        stats_file = project / "stats.json"
        worker = _sokka_process(
            "worker", "--app", "myapp:app", "--grace", "20s", "--stats-file", str(stats_file),
            cwd=project,
        )  # fmt: skip
        _until(lambda: tasks(store, "emails") == [Status.TERMINATED] * 4, worker)
        _until(lambda: tasks(store, "reports") == [Status.TERMINATED] * 4, worker)
        # One slow task in flight on each topic when the signal comes: both finish.
        app.enqueue("emails", {"slow": True}, task_id="slow-email")
        app.enqueue("reports", {"slow": True}, task_id="slow-report")
        _until(
            lambda: all((project / f"started-{t}").exists() for t in ("slow-email", "slow-report")),
            worker,
        )
        code, output = _stop(worker, signal.SIGTERM)
        assert code == 0, output
        assert store.get_task("slow-email").status is Status.TERMINATED, output
        assert store.get_task("slow-report").status is Status.TERMINATED, output
    # One worker (one pid, one keepalive for every lease) serves both topics.
    (emails,) = re.findall(
        r"worker (\S+) on topic 'emails' \(threads, concurrency 2, lease 5000 ms\)", output
    )
    (reports,) = re.findall(
        r"worker (\S+) on topic 'reports' \(threads, concurrency 1, lease 5000 ms\)", output
    )
    assert emails == reports
    assert f"worker {emails}: got signal {int(signal.SIGTERM)}, stopping" in output
    assert "Traceback" not in output
    stats = json.loads(stats_file.read_text())
    assert stats["succeeded"] == 10  # one worker for both topics: one set of counters


def test_worker_app_runs_an_asyncio_app_on_asyncio_in_one_worker(project: Path) -> None:
    from sokka import TaskSpec

    with SQLStore(f"sqlite:///{project / 'app.db'}") as store:
        store.create_tasks(
            [
                TaskSpec(topic=topic, data={"n": n})
                for topic in ("emails", "reports")
                for n in range(3)
            ]
        )
        stats_file = project / "stats.json"
        worker = _sokka_process(
            "worker", "--app", "myaioapp:app", "--stats-file", str(stats_file), cwd=project
        )
        _until(lambda: tasks(store, "emails") == [Status.TERMINATED] * 3, worker)
        _until(lambda: tasks(store, "reports") == [Status.TERMINATED] * 3, worker)
        store.create_task(TaskSpec(topic="emails", task_id="slow", data={"slow": True}))
        _until(lambda: (project / "started-slow").exists(), worker)
        code, output = _stop(worker, signal.SIGTERM)
        assert code == 0, output
        assert store.get_task("slow").status is Status.TERMINATED, output  # drained
    (emails,) = re.findall(
        r"worker (\S+) on topic 'emails' \(asyncio, concurrency 2, lease 5000 ms\)", output
    )
    (reports,) = re.findall(
        r"worker (\S+) on topic 'reports' \(asyncio, concurrency 1, lease 5000 ms\)", output
    )
    assert emails == reports
    assert "Traceback" not in output
    assert json.loads(stats_file.read_text())["succeeded"] == 7


def test_worker_app_with_topics_serves_those_only(project: Path) -> None:
    with SQLStore(f"sqlite:///{project / 'app.db'}") as store:
        from sokka import TaskSpec

        store.create_tasks([TaskSpec(topic="emails"), TaskSpec(topic="reports")])
        worker = _sokka_process(
            "worker", "--app", "myapp:app", "--topic", "reports", "--supervise", cwd=project
        )
        _until(lambda: tasks(store, "reports") == [Status.TERMINATED], worker)
        code, output = _stop(worker, signal.SIGINT)
        assert code == 0, output
        assert tasks(store, "emails") == [Status.STARTING]
    assert "topic 'emails'" not in output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--app", "myapp:app", "--handler", "myapp:work"), "--app and --handler are exclusive"),
        (("--app", "myapp:app", "--concurrency", "3"), "--concurrency cannot be given with it"),
        (("--app", "myapp:app", "--db", "sqlite:///x.db"), "--db cannot be given with it"),
        (("--app", "myapp:not_an_app"), "--app myapp:not_an_app is a int, not a sokka.App"),
        (
            ("--app", "myapp:app", "--runtime", "asyncio"),
            "it is a sokka.App, which runs on threads",
        ),
        (("--handler", "myapp:work"), "give exactly one --topic (got 0)"),
        (("--handler", "myapp:work", "--topic", "a", "--topic", "b"), "exactly one --topic"),
        (("--topic", "emails"), "give --handler MODULE:FUNCTION with one --topic, or --app"),
    ],
)
def test_worker_usage_errors(project: Path, args: tuple[str, ...], says: str) -> None:
    run = sokka("worker", *args, cwd=project)
    assert run.returncode == 2, run.stderr
    assert says in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--app", "myapp"), "sokka: app: 'myapp' is not of the form package.module:app"),
        (("--app", "nomodule:app"), "sokka: app: cannot import 'nomodule'"),
        (("--app", "myapp:app", "--topic", "nope"), "sokka: topics: 'nope' has no handler"),
    ],
)
def test_worker_app_errors_name_the_field(project: Path, args: tuple[str, ...], says: str) -> None:
    run = sokka("worker", *args, cwd=project)
    assert run.returncode == 1, run.stderr
    assert says in run.stderr
    assert "Traceback" not in run.stderr
