"""``sokka status``, run as a user runs it: a subprocess on a real SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sokka.adapters.sql import SQLStore
from sokka.core.task import TaskSpec
from tests.shell.test_cli import sokka


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store with emails: 2 starting, 1 running, 1 failed; reports: 1 starting."""
    url = f"sqlite:///{tmp_path / 'status.db'}"
    with SQLStore(url) as store:
        store.create_schema()
        for i in range(4):
            store.create_task(TaskSpec(topic="emails", task_id=f"e{i}", max_attempts=1))
        store.create_task(TaskSpec(topic="reports", task_id="r0"))
        first, _ = store.reserve_tasks("emails", "w1", limit=2)
        store.fail(first.task_id, "w1", 1, "boom")
    return url


def test_status_shows_a_row_per_topic_and_a_total(db: str) -> None:
    done = sokka("status", "--db", db)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "TOPIC", "STARTING", "RUNNING", "SNOOZED", "FAILED", "TERMINATED", "LEASED",
        "OLDEST", "READY", "FAILED", "1H",
    ]  # fmt: skip
    emails, reports, total = (line.split() for line in lines[1:])
    assert emails[:7] == ["emails", "2", "1", "0", "1", "0", "1"]
    assert emails[8] == "1"  # the failure is recent
    assert emails[7].endswith("s")  # an age in seconds
    assert reports[:7] == ["reports", "1", "0", "0", "0", "0", "0"]
    assert total[:7] == ["(all)", "3", "1", "0", "1", "0", "1"]


def test_status_json_and_one_topic(db: str) -> None:
    done = sokka("status", "--db", db, "--json", "--topic", "emails")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["failed_within_ms"] == 3_600_000
    (emails,) = body["topics"]
    assert emails["topic"] == "emails"
    assert emails["counts"] == {
        "starting": 2, "running": 1, "snoozed": 0, "failed": 1, "terminated": 0,
    }  # fmt: skip
    assert emails["leased"] == 1
    assert emails["failed_recently"] == 1
    assert emails["oldest_ready_age_ms"] == body["now"] - emails["oldest_ready_at"] >= 0


def test_status_failure_window_is_an_option(db: str) -> None:
    time.sleep(0.05)
    done = sokka("status", "--db", db, "--json", "--failed-within", "1ms")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["failed_within_ms"] == 1
    assert body["topics"][0]["failed_recently"] == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--topic", ""), "topic: must not be empty"),
        (("--failed-within", "0s"), "must be longer than 0 ms"),
        (("--every", "soon"), "is not a duration"),
    ],
)
def test_status_bad_input_is_one_clear_line(db: str, args: tuple[str, ...], says: str) -> None:
    done = sokka("status", "--db", db, *args)
    assert done.returncode != 0
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_status_of_an_empty_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with SQLStore(url) as store:
        store.create_schema()
    done = sokka("status", "--db", url)
    assert (done.returncode, done.stdout) == (0, "no tasks\n")


def test_status_watch_refreshes_until_ctrl_c_and_exits_0(db: str) -> None:
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    watcher = subprocess.Popen(
        [*command, "status", "--db", db, "--watch", "--every", "100ms", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        frames = [json.loads(watcher.stdout.readline()) for _ in range(2)]
        # Each frame is a fresh count, on the store's clock.
        assert frames[1]["now"] > frames[0]["now"]
        assert [t["topic"] for t in frames[1]["topics"]] == ["emails", "reports"]
    finally:
        watcher.send_signal(signal.SIGINT)
        _, stderr = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_status_watch_table_frames_carry_a_header_line(db: str) -> None:
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka"]
    watcher = subprocess.Popen(
        [*command, "status", "--db", db, "--watch", "--every", "100ms"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watcher.stdout is not None
        headers = 0
        while headers < 2:
            line = watcher.stdout.readline()
            assert line, "the watch ended by itself"
            headers += line.startswith("-- ") and "(Ctrl-C to stop)" in line
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=20)
    assert watcher.returncode == 0


def test_status_shows_the_paused_topics(db: str) -> None:
    paused = sokka("topic", "pause", "reports", "--db", db)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == "topic reports paused\n"
    done = sokka("status", "--db", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "paused: reports (workers reserve nothing from it: sokka topic resume TOPIC)"
    )
    body = json.loads(sokka("status", "--db", db, "--json").stdout)
    assert body["paused_topics"] == ["reports"]
    assert {t["topic"]: t["paused"] for t in body["topics"]} == {"emails": False, "reports": True}
    only = json.loads(sokka("status", "--db", db, "--json", "--topic", "emails").stdout)
    assert only["paused_topics"] == []
