"""``sokka scheduler --app`` and ``sokka worker --app --scheduler``, run as a user
runs them: real processes on a real SQLite file, stopped by a real signal; with
a ``sokka.asyncio.App`` too, on SQLite and on PostgreSQL.

The schedule fires every second (a seconds field), so the tests wait for a
few slots; they check which slots got a task, never how long anything took.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from sokka import SQLStore, Status, TaskFilter
from tests import databases
from tests.shell.test_cli import _sokka_process, _stop, _until, sokka

APP = """
import os
from pathlib import Path

import sokka

app = sokka.App(os.environ["SOKKA_DB"])


@app.periodic("* * * * * *", topic="ticks", data={"from": "cron"}, catch_up=2)
@app.handler("ticks", lease="5s")
def tick(task, ctx):
    Path("ran-" + task.task_id.replace(":", "_")).touch()
    return sokka.ok()
"""

BAD_CRON = """
import sokka

app = sokka.App("memory://")
app.handler("ticks")(lambda task, ctx: sokka.ok())
app.periodic("*/5 * 32 * *", topic="ticks")
"""

NO_SCHEDULE = """
import sokka

app = sokka.App("memory://")
app.handler("ticks")(lambda task, ctx: sokka.ok())
"""


ASYNC_APP = """
import os
from pathlib import Path

import sokka.asyncio

app = sokka.asyncio.App(os.environ["SOKKA_DB"], prefix=os.environ["APP_PREFIX"])


@app.periodic("* * * * * *", topic="ticks", data={"from": "cron"}, catch_up=2)
@app.handler("ticks", lease="5s")
async def tick(task, ctx):
    Path("ran-" + task.task_id.replace(":", "_")).touch()
    return sokka.asyncio.ok()
"""

ASYNC_BAD_CRON = """
import sokka.asyncio

app = sokka.asyncio.App("memory://")
app.handler("ticks")(lambda task, ctx: sokka.asyncio.ok())
app.periodic("*/5 * 32 * *", topic="ticks")
"""

ASYNC_NO_SCHEDULE = """
import sokka.asyncio

app = sokka.asyncio.App("memory://")
app.handler("ticks")(lambda task, ctx: sokka.asyncio.ok())
"""

ASYNC_NO_HANDLER = """
import sokka.asyncio

app = sokka.asyncio.App("memory://")
app.handler("ticks")(lambda task, ctx: sokka.asyncio.ok())
app.periodic("* * * * *", topic="tocks")
"""
_prefix_numbers = itertools.count()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in (("myapp", APP), ("badcron", BAD_CRON), ("noschedule", NO_SCHEDULE)):
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.setenv("SOKKA_DB", f"sqlite:///{tmp_path / 'app.db'}")
    assert sokka("init").returncode == 0
    return tmp_path


def slots(store: SQLStore) -> list[int]:
    """The seconds that got a tick task, in Unix-epoch ms, sorted."""
    found = []
    for task in store.list_tasks(TaskFilter(topic="ticks"), limit=1000).tasks:
        stamp = task.task_id.removeprefix("periodic:ticks:").replace("Z", "+00:00")
        found.append(int(datetime.fromisoformat(stamp).timestamp() * 1000))
    return sorted(found)


def test_two_scheduler_processes_create_each_second_once_and_stop_on_sigterm(project):
    with SQLStore(f"sqlite:///{project / 'app.db'}") as store:
        a = _sokka_process("scheduler", "--app", "myapp:app", cwd=project)
        b = _sokka_process("scheduler", "--app", "myapp:app", cwd=project)
        _until(lambda: len(slots(store)) >= 5, a)
        code_a, output_a = _stop(a, signal.SIGTERM)
        code_b, output_b = _stop(b, signal.SIGINT)
        assert (code_a, code_b) == (0, 0), output_a + output_b
        seconds = slots(store)
        # Task ids are unique in a store; what the two processes show is that
        # neither skipped a second the other made, and both ran the same schedule.
        assert seconds == list(range(seconds[0], seconds[-1] + 1, 1_000))
        task = store.get_task(store.list_tasks(TaskFilter(topic="ticks")).tasks[0].task_id)
        assert (task.data, task.lease_time_ms, task.status) == (
            {"from": "cron"}, 5_000, Status.STARTING,
        )  # fmt: skip
    for output in (output_a, output_b):
        assert "schedule 'ticks': * * * * * * on topic 'ticks' (catch-up 2 slot(s))" in output
        assert "Traceback" not in output


def test_worker_app_scheduler_creates_and_runs_the_periodic_tasks(project):
    with SQLStore(f"sqlite:///{project / 'app.db'}") as store:
        worker = _sokka_process("worker", "--app", "myapp:app", "--scheduler", cwd=project)

        def ran() -> list[str]:
            return [
                t.task_id
                for t in store.list_tasks(TaskFilter(topic="ticks", status=Status.TERMINATED)).tasks
            ]

        _until(lambda: len(ran()) >= 3, worker)
        code, output = _stop(worker, signal.SIGTERM)
        assert code == 0, output
        for task_id in ran():
            assert (project / ("ran-" + task_id.replace(":", "_"))).exists()


def test_bad_cron_line_missing_schedules_and_misused_flags_are_one_clear_line(project):
    bad = sokka("scheduler", "--app", "badcron:app", cwd=project)
    assert bad.returncode != 0
    assert "cron: '*/5 * 32 * *': the day-of-month field '32' is not valid" in bad.stderr
    assert "Traceback" not in bad.stderr
    none = sokka("scheduler", "--app", "noschedule:app", cwd=project)
    assert none.returncode != 0
    assert "this app has no periodic schedule (@app.periodic)" in none.stderr
    misused = sokka("worker", "--handler", "myapp:tick", "--topic", "ticks", "--scheduler",
                    cwd=project)  # fmt: skip
    assert misused.returncode == 2
    assert "--scheduler runs an app's schedules: it needs --app MODULE:APP" in misused.stderr
    with SQLStore(f"sqlite:///{project / 'app.db'}") as store:
        assert slots(store) == []


# -- a sokka.asyncio.App ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def async_project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, SQLStore]]:
    """A directory with the asyncio app modules, its database initialised, and a
    store to look at it with."""
    if request.param == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'app.db'}", "sokka_"
    else:
        databases.postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES=1)
        url = databases.postgres_url()
        prefix = databases.test_prefix(f"clisched{next(_prefix_numbers)}")
    for name, text in (("asyncapp", ASYNC_APP), ("asyncbadcron", ASYNC_BAD_CRON),
                       ("asyncnoschedule", ASYNC_NO_SCHEDULE),
                       ("asyncnohandler", ASYNC_NO_HANDLER)):  # fmt: skip
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.setenv("SOKKA_DB", url)
    monkeypatch.setenv("APP_PREFIX", prefix)
    assert sokka("init", "--prefix", prefix).returncode == 0
    store = SQLStore(url, prefix=prefix)
    try:
        yield tmp_path, store
    finally:
        if request.param == "postgres":
            store.drop_schema()
        store.close()


def test_two_asyncio_app_scheduler_processes_create_each_second_once_and_stop_on_sigterm(
    async_project,
):
    project, store = async_project
    a = _sokka_process("scheduler", "--app", "asyncapp:app", cwd=project)
    b = _sokka_process("scheduler", "--app", "asyncapp:app", cwd=project)
    _until(lambda: len(slots(store)) >= 4, a)
    code_a, output_a = _stop(a, signal.SIGTERM)
    code_b, output_b = _stop(b, signal.SIGINT)
    assert (code_a, code_b) == (0, 0), output_a + output_b
    seconds = slots(store)
    assert seconds == list(range(seconds[0], seconds[-1] + 1, 1_000))
    task = store.get_task(store.list_tasks(TaskFilter(topic="ticks")).tasks[0].task_id)
    assert (task.data, task.lease_time_ms, task.status) == (
        {"from": "cron"}, 5_000, Status.STARTING,
    )  # fmt: skip
    for output in (output_a, output_b):
        assert "scheduler for 1 schedule(s) of asyncapp:app" in output
        assert "schedule 'ticks': * * * * * * on topic 'ticks' (catch-up 2 slot(s))" in output
        assert "stopping the scheduler" in output
        assert "Traceback" not in output


def test_worker_asyncio_app_scheduler_creates_and_runs_the_periodic_tasks(async_project):
    project, store = async_project
    worker = _sokka_process("worker", "--app", "asyncapp:app", "--scheduler", cwd=project)

    def ran() -> list[str]:
        return [
            t.task_id
            for t in store.list_tasks(TaskFilter(topic="ticks", status=Status.TERMINATED)).tasks
        ]

    _until(lambda: len(ran()) >= 3, worker)
    code, output = _stop(worker, signal.SIGTERM)
    assert code == 0, output
    assert "(asyncio, concurrency 1, lease 5000 ms)" in output
    assert "Traceback" not in output
    for task_id in ran():
        assert (project / ("ran-" + task_id.replace(":", "_"))).exists()


def test_an_asyncio_apps_bad_schedules_are_one_clear_line_and_write_nothing(async_project):
    project, store = async_project
    for command in (("scheduler",), ("worker", "--scheduler")):
        bad = sokka(*command, "--app", "asyncbadcron:app", cwd=project)
        assert bad.returncode != 0
        assert "cron: '*/5 * 32 * *': the day-of-month field '32' is not valid" in bad.stderr
        none = sokka(*command, "--app", "asyncnoschedule:app", cwd=project)
        assert none.returncode != 0
        assert "this app has no periodic schedule (@app.periodic)" in none.stderr
        orphan = sokka(*command, "--app", "asyncnohandler:app", cwd=project)
        assert orphan.returncode != 0
        assert (
            "topic: schedule 'tocks' creates tasks of 'tocks', which has no handler in this "
            "app (its topics: 'ticks')" in orphan.stderr
        )
        for run in (bad, none, orphan):
            assert "Traceback" not in run.stderr
    assert store.list_tasks().tasks == ()
