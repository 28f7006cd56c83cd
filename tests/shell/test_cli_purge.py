"""``sokka purge`` and ``sokka task requeue --status failed``, run as a user runs
them: a subprocess on a real SQLite file."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sokka.adapters.memory import wall_clock_ms
from sokka.adapters.sql import SQLStore
from sokka.core.task import Status, TaskSpec
from tests.shell.test_cli import _sokka_process, _stop, _until, sokka

DAY_MS = 86_400_000


def _finish(store: SQLStore, topic: str, prefix: str, count: int, *, fail: bool) -> None:
    for i in range(count):
        store.create_task(TaskSpec(topic=topic, task_id=f"{prefix}{i}", max_attempts=1))
        (task,) = store.reserve_tasks(topic, "w1")
        if fail:
            store.fail(task.task_id, "w1", 1, "boom")
        else:
            store.terminate(task.task_id, "w1", 1)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """emails: 3 terminated and 2 failed 10 days ago, 1 terminated now, 1 running and
    1 starting (both 10 days old); reports: 2 failed 10 days ago."""
    url = f"sqlite:///{tmp_path / 'purge.db'}"
    ten_days_ago = wall_clock_ms() - 10 * DAY_MS
    with SQLStore(url, clock=lambda: ten_days_ago) as old:
        old.create_schema()
        _finish(old, "emails", "done-", 3, fail=False)
        _finish(old, "emails", "failed-", 2, fail=True)
        _finish(old, "reports", "report-", 2, fail=True)
        old.create_task(TaskSpec(topic="emails", task_id="busy"))
        old.reserve_tasks("emails", "w1")
        old.create_task(TaskSpec(topic="emails", task_id="waiting"))
    with SQLStore(url) as now:
        _finish(now, "other", "fresh-", 1, fail=False)
    return url


def _ids(url: str) -> set[str]:
    with SQLStore(url) as store:
        return {t.task_id for t in store.list_tasks(limit=1000).tasks}


def test_purge_deletes_old_finished_tasks_batch_after_batch(db: str) -> None:
    done = sokka("purge", "--db", db, "--older-than", "7d", "--batch", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "deleted 7 terminated/failed tasks unchanged for 7d or more"
    )
    # The young finished task, the running one and the starting one are left.
    assert _ids(db) == {"fresh-0", "busy", "waiting"}


def test_purge_one_status_of_one_topic(db: str) -> None:
    done = sokka("purge", "--db", db, "--older-than", "1d", "--status", "failed",
                 "--topic", "emails", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"deleted": 2}
    left = _ids(db)
    assert {"failed-0", "failed-1"}.isdisjoint(left)
    assert {"done-0", "report-0", "report-1"} <= left


def test_a_dry_run_counts_and_deletes_nothing(db: str) -> None:
    before = _ids(db)
    done = sokka("purge", "--db", db, "--older-than", "7d", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "would delete 7 terminated/failed tasks unchanged for 7d or more"
    )
    # Younger than 11 days: nothing would go.
    quiet = sokka("purge", "--db", db, "--older-than", "11d", "--dry-run", "--json")
    assert json.loads(quiet.stdout) == {"would_delete": 0}
    assert _ids(db) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--status", "running"), "--status"),
        (("--status", "terminated,snoozed"), "never a leased or starting task"),
        (("--status", "starting"), "--status"),
        (("--status", "done"), "must be one of"),
        (("--status", ""), "at least one status"),
        (("--topic", ""), "--topic"),
        (("--batch", "0"), "--batch"),
    ],
)
def test_bad_options_are_refused_and_nothing_is_deleted(
    db: str, args: tuple[str, ...], says: str
) -> None:
    before = _ids(db)
    done = sokka("purge", "--db", db, "--older-than", "1d", *args)
    assert done.returncode == 2, done.stdout
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert _ids(db) == before


def test_the_age_needs_a_duration(db: str) -> None:
    done = sokka("purge", "--db", db, "--older-than", "7")
    assert done.returncode == 2
    assert "has no unit" in done.stderr
    missing = sokka("purge", "--db", db)
    assert missing.returncode == 2
    assert "--older-than" in missing.stderr


def test_requeue_every_failed_task_of_a_topic(db: str) -> None:
    done = sokka("task", "requeue", "--db", db, "--status", "failed", "--topic", "emails")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "requeued 2 failed tasks of topic 'emails' (0 had moved on)"
    with SQLStore(db) as store:
        assert store.get_task("failed-0").status is Status.STARTING
        assert store.get_task("failed-1").status is Status.STARTING
        assert store.get_task("report-0").status is Status.FAILED  # another topic
    again = sokka("task", "requeue", "--db", db, "--status", "failed", "--topic", "emails",
                  "--json")  # fmt: skip
    assert json.loads(again.stdout) == {"requeued": 0, "moved_on": 0}


@pytest.mark.parametrize(
    "args",
    [
        ("--status", "failed"),
        ("--topic", "emails"),
        ("failed-0", "--status", "failed", "--topic", "emails"),
        (),
    ],
)
def test_requeue_wants_an_id_or_a_status_and_a_topic(db: str, args: tuple[str, ...]) -> None:
    done = sokka("task", "requeue", "--db", db, *args)
    assert done.returncode == 2
    assert "TASK_ID" in done.stderr
    with SQLStore(db) as store:
        assert store.get_task("failed-0").status is Status.FAILED


def test_requeue_of_one_task_still_works(db: str) -> None:
    done = sokka("task", "requeue", "--db", db, "report-1", "--json")
    assert done.returncode == 0, done.stderr
    (shown,) = json.loads(done.stdout)["tasks"]
    assert shown["status"] == "starting"


# -- the periodic purge of sokka supervise and sokka serve -----------------------------


def _gone(url: str, task_ids: set[str]) -> bool:
    return task_ids.isdisjoint(_ids(url))


OLD_FINISHED = {"done-0", "done-1", "done-2", "failed-0", "failed-1", "report-0", "report-1"}


@pytest.mark.parametrize("runtime", ["threads", "asyncio"])
def test_supervise_purges_in_the_background_when_asked(
    db: str, tmp_path: Path, runtime: str
) -> None:
    process = _sokka_process(
        "supervise", "--db", db, "--runtime", runtime, "--purge-after", "7d",
        "--purge-every", "1h", "--log-level", "info", cwd=tmp_path,
    )  # fmt: skip
    _until(lambda: _gone(db, OLD_FINISHED), process)
    status, output = _stop(process)
    assert status == 0, output
    assert "retention: purged 7 terminated/failed tasks older than 604800000 ms" in output
    assert _ids(db) == {"fresh-0", "busy", "waiting"}


def test_supervise_purges_nothing_by_default(db: str, tmp_path: Path) -> None:
    before = _ids(db)
    log = tmp_path / "supervise.log"
    exe = shutil.which("sokka")
    with log.open("w") as out:
        process = subprocess.Popen(
            [*([exe] if exe else [sys.executable, "-m", "sokka"]), "supervise", "--db", db,
             "--log-level", "info"],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        )  # fmt: skip
        # Its first cycle has run (a SIGTERM before it installs its handlers
        # would kill it: on a loaded machine that can take seconds).
        _until(lambda: "supervisor" in log.read_text(), process)
        time.sleep(1)  # a purge at start would have run by now
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
    output = log.read_text()
    assert status == 0, output
    assert "retention" not in output
    assert _ids(db) == before


def test_serve_purges_in_the_background_when_asked(db: str, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = _sokka_process(
        "serve", "--db", db, "--port", str(port), "--purge-after", "7d", "--log-level", "info",
        cwd=tmp_path,
    )  # fmt: skip
    _until(lambda: _gone(db, OLD_FINISHED), process)
    status, output = _stop(process)
    assert status == 0, output
    assert "retention: purged 7" in output


def test_a_bad_purge_interval_is_refused(db: str) -> None:
    done = sokka("supervise", "--db", db, "--purge-after", "7d", "--purge-every", "0s")
    assert done.returncode == 2
    assert "--purge-every" in done.stderr
