"""Every program in ``examples/`` runs as a user runs it: a real process
(``python -m examples.NAME``, or ``sokka worker`` on its handlers) from the
repository's root, on a fresh SQLite file named by ``SOKKA_DB``, with a
timeout; the tests assert on what it printed and on what it left in the store.

``test_every_example_is_run_by_a_test`` keeps the list honest: an example
added without a test here (or in tests/e2e/test_aio_examples.py, which runs
the asyncio ones, or tests/examples/test_recipes.py) fails it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sokka import SQLStore, Status, TaskSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: Every example and the test module that runs it.
RUN_BY = {
    "app.py": "tests/examples/test_examples.py",
    "asyncio_script.py": "tests/e2e/test_aio_examples.py",
    "emails.py": "tests/examples/test_examples.py",
    "enqueue.py": "tests/examples/test_examples.py",
    "failed_tasks.py": "tests/examples/test_examples.py",
    "fencing.py": "tests/examples/test_examples.py",
    "lease_timeline.py": "tests/examples/test_examples.py",
    "outcomes.py": "tests/examples/test_examples.py",
    "run_worker.py": "tests/examples/test_examples.py",
    "slow.py": "tests/examples/test_examples.py",
    "starlette_app.py": "tests/e2e/test_aio_examples.py",
    "recipes/flask_app.py": "tests/examples/test_recipes.py",
    "recipes/fastapi_app.py": "tests/examples/test_recipes.py",
    "recipes/django_site": "tests/examples/test_recipes.py",
}
TIMEOUT_S = 60


def test_every_example_is_run_by_a_test() -> None:
    found = {p.name for p in EXAMPLES.glob("*.py")}
    found |= {f"recipes/{p.name}" for p in (EXAMPLES / "recipes").iterdir()}
    found -= {"recipes/__init__.py", "recipes/__pycache__"}
    assert found == set(RUN_BY), "add the example's test, and list it in RUN_BY"
    for example, test in RUN_BY.items():
        stem = Path(example).stem
        assert stem in (ROOT / test).read_text(), f"{test} does not run {example}"


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh SQLite store with its schema, as `sokka init` makes it."""
    url = f"sqlite:///{tmp_path / 'examples.db'}"
    init = subprocess.run(
        [sys.executable, "-m", "sokka", "init", "--db", url],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    return url


def environment(db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOKKA_")}
    env.update(SOKKA_DB=db, PYTHONUNBUFFERED="1", **extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def example(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"examples.{name}", *args]


def sokka(*args: str) -> list[str]:
    return [sys.executable, "-m", "sokka", *args]


def serve_until(
    args: list[str], env: dict[str, str], done: Callable[[], bool], stop: int = signal.SIGTERM
) -> tuple[int, str]:
    """Start a long-running example, wait until ``done()``, stop it with ``stop``;
    its exit status and everything it printed."""
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not done():
            assert process.poll() is None, f"{args} ended early:\n{process.communicate()[0]}"
            assert time.monotonic() < deadline, f"{args}: not done in {TIMEOUT_S} s"
            time.sleep(0.1)
        process.send_signal(stop)
        output, _ = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, output


def statuses(db: str, topic: str) -> dict[str, Status]:
    with SQLStore(db, create_file=False) as store:
        return {t.task_id: t.status for t in store.list_tasks().tasks if t.topic == topic}


def all_final(db: str, topic: str, n: int) -> Callable[[], bool]:
    def check() -> bool:
        found = statuses(db, topic)
        return len(found) == n and all(s.is_final for s in found.values())

    return check


# -- the App --------------------------------------------------------------------


def test_app_enqueues_and_one_worker_serves_every_topic_with_a_delay(db: str) -> None:
    env = environment(db)
    printed = run(example("app", "welcome", "ann@example.com"), env).stdout
    assert printed == "welcome-ann@example.com: starting (max_attempts 5)\n"
    again = run(example("app", "welcome", "ann@example.com"), env).stdout
    assert again == "welcome-ann@example.com: already enqueued\n"
    delayed = run(example("app", "report", "2024-05", "--delay", "2s"), env).stdout
    assert delayed == "report-2024-05: snoozed (max_attempts 2)\n"
    bad = subprocess.run(
        example("app", "report", "2024-06", "--delay", "soon"),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "delay" in bad.stderr.splitlines()[-1], bad.stderr
    assert statuses(db, "reports") == {"report-2024-05": Status.SNOOZED}  # nothing else

    started = time.monotonic()
    code, output = serve_until(
        sokka("worker", "--app", "examples.app:app", "--supervise"),
        env,
        lambda: (
            statuses(db, "emails") == {"welcome-ann@example.com": Status.TERMINATED}
            and statuses(db, "reports") == {"report-2024-05": Status.TERMINATED}
        ),
    )
    assert code == 0, output
    # The supervisor counts the 2 s delay from when it first sees the task.
    assert time.monotonic() - started >= 2.0
    assert "sent 'Welcome!' to ann@example.com" in output
    assert "report 2024-05: built (attempt 1)" in output
    # One worker served both topics: one line of its counters, both tasks in them.
    starts = re.findall(r"worker (\S+) on topic '(\w+)'", output)
    assert sorted(topic for _, topic in starts) == ["emails", "reports"], output
    assert len({worker for worker, _ in starts}) == 1, output
    stopped = [line for line in output.splitlines() if "stopped:" in line]
    assert len(stopped) == 1, output
    assert "worker stopped: WorkerStats(reserved=2, succeeded=2," in stopped[0], output
    with SQLStore(db, create_file=False) as store:
        report = store.get_task("report-2024-05")
    # The handler's lease and timeout were written on the task by enqueue.
    assert (report.lease_time_ms, report.timeout_ms) == (120_000, 1_800_000)


# -- the lower layers -----------------------------------------------------------


def test_enqueue_creates_tasks_one_by_one_and_in_a_batch(db: str) -> None:
    printed = run(example("enqueue"), environment(db)).stdout.splitlines()
    assert printed == [
        "starting 0 {'to': 'ann@example.com', 'name': 'Ann'}",
        "created welcome-bob",
        "task 'welcome-bob' already exists",
        "created reader0@example.com in newsletter-42",
        "created reader1@example.com in newsletter-42",
        "created reader2@example.com in newsletter-42",
        "3 tasks in newsletter-42",
    ]
    assert len(statuses(db, "emails")) == 5


def test_emails_handlers_under_sokka_worker_send_and_refuse(db: str) -> None:
    with SQLStore(db, create_file=False) as store:
        store.create_task(TaskSpec(topic="emails", task_id="ok", data={"to": "ann@example.com"}))
        store.create_task(TaskSpec(topic="emails", task_id="bad", data="ann@example.com"))
        store.create_task(
            TaskSpec(topic="emails", task_id="down", data={"to": "x@down.example"}, max_attempts=1)
        )
    code, output = serve_until(
        sokka("worker", "--topic", "emails", "--handler", "examples.emails:send_welcome"),
        environment(db),
        all_final(db, "emails", 3),
    )
    assert code == 0, output
    assert "sent 'Welcome!' to ann@example.com" in output
    assert statuses(db, "emails") == {
        "ok": Status.TERMINATED, "bad": Status.FAILED, "down": Status.FAILED
    }  # fmt: skip
    with SQLStore(db, create_file=False) as store:
        assert store.get_task("bad").error == "data must be an object with a 'to' address"
        assert (store.get_task("down").error or "").startswith(
            "ConnectionRefusedError: mail server for x@down.example refused the connection"
        )


def test_run_worker_works_until_sigint_and_prints_its_stats(db: str) -> None:
    with SQLStore(db, create_file=False) as store:
        for n in range(3):
            store.create_task(TaskSpec(topic="emails", data={"to": f"u{n}@example.com"}))
    code, output = serve_until(
        example("run_worker"), environment(db), all_final(db, "emails", 3), signal.SIGINT
    )
    assert code == 0, output
    assert "got signal 2, stopping" in output
    assert output.splitlines()[-1].startswith("WorkerStats(reserved=3, succeeded=3, failed=0,")


def test_failed_tasks_lists_every_failure_with_its_errors(db: str) -> None:
    with SQLStore(db, create_file=False) as store:
        store.create_task(TaskSpec(topic="emails", task_id="e1", max_attempts=1))
        store.create_task(TaskSpec(topic="emails", task_id="e2"))
        (task,) = store.reserve_tasks("emails", pid="me", limit=1)
        store.fail(task.task_id, "me", task.attempt, "the server said no")
    printed = run(example("failed_tasks"), environment(db)).stdout.splitlines()
    assert printed == [
        "e1 (emails): 1 failures: the server said no",
        "    attempt 1: the server said no",
    ]


def test_outcomes_records_what_each_handler_answer_becomes() -> None:
    printed = run(example("outcomes"), environment("memory://")).stdout.splitlines()
    firsts = {line.split()[0]: " ".join(line.split()[1:]) for line in printed if line[:1] != " "}
    assert firsts["returns-ok"] == "terminated None"
    assert firsts["returns-snoozed"] == "snoozed None"
    assert firsts["raises"] == "failed KeyError: 'to'"
    assert firsts["returns-none"].startswith("failed the handler returned None")


def test_lease_timeline_gives_the_lease_up_before_the_supervisor_could() -> None:
    printed = run(example("lease_timeline"), environment("memory://")).stdout
    assert "handler starts attempt 1" in printed
    assert "keepalive (the store does not answer)" in printed
    assert "handler cancelled: " in printed
    assert "lost=1" in printed.splitlines()[-1]


def test_fencing_writes_the_invoice_of_the_attempt(db: str, tmp_path: Path) -> None:
    invoices = tmp_path / "invoices.db"
    with SQLStore(db, create_file=False) as store:
        store.create_task(
            TaskSpec(topic="invoices", task_id="order-1", data={"lines": [{"cents": 250}] * 3})
        )
    code, output = serve_until(
        sokka("worker", "--topic", "invoices", "--handler", "examples.fencing:make_invoice"),
        environment(db, INVOICES_DB=str(invoices)),
        all_final(db, "invoices", 1),
    )
    assert code == 0, output
    assert "order-1: attempt 1 wrote 750 cents" in output
    import sqlite3

    with sqlite3.connect(invoices) as rows:
        assert rows.execute("SELECT order_id, total_cents, fence FROM invoices").fetchall() == [
            ("order-1", 750, 1)
        ]


def test_slow_crunch_finishes_and_a_timeout_cancels_it(db: str) -> None:
    with SQLStore(db, create_file=False) as store:
        store.create_task(TaskSpec(topic="reports", task_id="short", data={"seconds": 0.3}))
        store.create_task(
            TaskSpec(topic="reports", task_id="long", data={"seconds": 30}, max_attempts=1)
        )
    code, output = serve_until(
        sokka("worker", "--topic", "reports", "--handler", "examples.slow:crunch",
              "--concurrency", "2", "--timeout", "1s"),
        environment(db),
        all_final(db, "reports", 2),
    )  # fmt: skip
    assert code == 0, output
    assert "short: done" in output
    assert "long: cancelled (" in output
    assert statuses(db, "reports") == {"short": Status.TERMINATED, "long": Status.FAILED}
