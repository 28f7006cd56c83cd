"""``sokka topic pause|resume|list`` and ``sokka task cancel`` of a running task,
run as a user runs them: a subprocess on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sokka.adapters.sql import SQLStore
from sokka.core.errors import TaskCancelled
from sokka.core.task import Status, TaskSpec
from tests.shell.test_cli import sokka


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'topics.db'}"
    with SQLStore(url) as store:
        store.create_schema()
        store.create_task(TaskSpec(topic="emails", task_id="e1"))
    return url


def test_pause_list_and_resume_a_topic(db: str) -> None:
    assert sokka("topic", "list", "--db", db).stdout == "no paused topics\n"
    assert sokka("topic", "pause", "emails", "--db", db).stdout == "topic emails paused\n"
    again = sokka("topic", "pause", "emails", "--db", db)
    assert (again.returncode, again.stdout) == (0, "topic emails was paused already\n")
    sokka("topic", "pause", "alerts", "--db", db)
    assert sokka("topic", "list", "--db", db).stdout == "alerts\nemails\n"
    listed = json.loads(sokka("topic", "list", "--db", db, "--json").stdout)
    assert listed == {"paused_topics": ["alerts", "emails"]}
    with SQLStore(db) as store:
        assert store.reserve_tasks("emails", "w") == []
    resumed = json.loads(sokka("topic", "resume", "emails", "--db", db, "--json").stdout)
    assert resumed == {"topic": "emails", "paused": False, "changed": True}
    assert sokka("topic", "resume", "emails", "--db", db).stdout == (
        "topic emails was not paused already\n"
    )
    with SQLStore(db) as store:
        assert [t.task_id for t in store.reserve_tasks("emails", "w")] == ["e1"]


def test_a_bad_topic_is_one_clear_line(db: str) -> None:
    done = sokka("topic", "pause", "x" * 500, "--db", db)
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "topic:" in done.stderr
    assert sokka("topic", "list", "--db", db).stdout == "no paused topics\n"


def test_cancel_a_running_task_says_what_its_worker_will_do(db: str) -> None:
    with SQLStore(db) as store:
        (task,) = store.reserve_tasks("emails", "w1")
    done = sokka("task", "cancel", "e1", "--reason", "wrong recipient", "--json", "--db", db)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["tasks"][0]
    assert (shown["status"], shown["error"]) == ("failed", "cancelled: wrong recipient")
    assert "was running (worker w1, attempt 1)" in done.stderr
    assert "stops its handler at its next keepalive and reports nothing" in done.stderr
    with SQLStore(db) as store:
        assert store.get_task("e1").status is Status.FAILED
        with pytest.raises(TaskCancelled):
            store.terminate("e1", "w1", task.attempt)
