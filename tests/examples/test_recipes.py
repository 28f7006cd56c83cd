"""The recipes of docs/recipes.md work inside their frameworks: each drives
its web app through the framework's own request handling (Flask's test
client, FastAPI's TestClient, Django's test client) in a fresh process, as
a user's test would, then reads the store.

Flask and FastAPI share the request's SQLAlchemy session with sokka: a
committed request leaves its row and its task, a rolled-back one neither;
on SQLite and on PostgreSQL (a database of its own in the test server, as
the app's own tables have fixed names). Django enqueues on commit.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sokka import SQLStore, Status
from tests.databases import postgres_engine

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120


def drive(script: str, env: dict[str, str]) -> Any:
    """Run ``script`` in a fresh Python from the repository's root; the JSON it printed last."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SOKKA_")}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT, env=full, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def init(url: str) -> None:
    with SQLStore(url) as store:
        store.create_schema()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    # An absolute path: Flask-SQLAlchemy reads a relative one against its instance folder.
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of its own in the test server, dropped afterwards."""
    engine = postgres_engine()
    name = f"sokka_recipe_{os.getpid()}_{secrets.token_hex(3)}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield engine.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tasks_in(url: str) -> dict[str, tuple[str, Any]]:
    with SQLStore(url, create_file=False) as store:
        return {t.task_id: (t.topic, t.data) for t in store.list_tasks().tasks}


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


FLASK = """
    import json
    from examples.recipes.flask_app import app
    client = app.test_client()
    answers = []
    for email in ["ann@example.com", "bob@example.invalid", "carol@example.com"]:
        answer = client.post("/signups", json={"email": email})
        answers.append([answer.status_code, answer.get_json()])
    print(json.dumps(answers))
"""


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_flask_commits_the_signup_and_its_task_together(
    where: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{where}_url")
    init(url)
    answers = drive(FLASK, {"DATABASE_URL": url})
    assert [code for code, _ in answers] == [201, 422, 201]
    assert answers[1][1] == {"error": "cannot sign up 'bob@example.invalid'"}
    created = {answers[0][1]["task_id"], answers[2][1]["task_id"]}
    found = tasks_in(url)
    assert set(found) == created  # nothing for the refused address
    assert sorted(data["to"] for _, data in found.values()) == [
        "ann@example.com", "carol@example.com"
    ]  # fmt: skip
    assert sorted(rows(url, "SELECT email FROM signups")) == [
        ("ann@example.com",), ("carol@example.com",)
    ]  # fmt: skip


FASTAPI = """
    import json, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # the test client's own
    from fastapi.testclient import TestClient
    from examples.recipes.fastapi_app import app
    client = TestClient(app)
    answers = []
    for order_id, cents in [("o-1", 1250), ("o-2", 0), ("o-3", 99)]:
        answer = client.post("/orders", json={"order_id": order_id, "cents": cents})
        answers.append([answer.status_code, answer.json()])
    print(json.dumps(answers))
"""


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_fastapi_commits_the_order_and_its_task_together(
    where: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{where}_url")
    init(url)
    answers = drive(FASTAPI, {"DATABASE_URL": url})
    assert answers == [
        [201, {"order_id": "o-1", "task_id": "invoice-o-1"}],
        [422, {"detail": "order o-2: the total must be positive"}],
        [201, {"order_id": "o-3", "task_id": "invoice-o-3"}],
    ]
    assert tasks_in(url) == {
        "invoice-o-1": ("invoices", {"order_id": "o-1"}),
        "invoice-o-3": ("invoices", {"order_id": "o-3"}),
    }
    assert sorted(rows(url, "SELECT order_id, cents FROM orders")) == [("o-1", 1250), ("o-3", 99)]


def test_fastapi_tasks_are_worked_by_sokka_worker_app(sqlite_url: str) -> None:
    init(sqlite_url)
    drive(FASTAPI, {"DATABASE_URL": sqlite_url})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOKKA_")}
    env.update(DATABASE_URL=sqlite_url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "sokka", "worker", "--app",
         "examples.recipes.fastapi_app:tasks", "--stats-file", "/dev/stdout"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with SQLStore(sqlite_url, create_file=False) as store:
            deadline = time.monotonic() + TIMEOUT_S
            while not all(t.status is Status.TERMINATED for t in store.list_tasks().tasks):
                assert worker.poll() is None, worker.communicate()[0]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        worker.terminate()
        output, _ = worker.communicate(timeout=TIMEOUT_S)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, output
    assert "invoice for o-1" in output
    assert "invoice for o-3" in output


DJANGO = """
    import json, django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", run_syncdb=True, verbosity=0)
    from django.test import Client
    client = Client()
    answers = []
    for email in ["ann@example.com", "bob@example.invalid", "ann@example.com"]:
        answer = client.post("/signups", data={"email": email}, content_type="application/json")
        answers.append([answer.status_code, answer.json()])
    print(json.dumps(answers))
"""


def test_django_enqueues_on_commit_and_not_on_rollback(tmp_path: Path) -> None:
    # Django and sokka on one SQLite file, as a small site would.
    path = tmp_path / "site.db"
    url = f"sqlite:///{path}"
    init(url)
    answers = drive(DJANGO, {
        "DJANGO_SETTINGS_MODULE": "examples.recipes.django_site.settings",
        "DJANGO_DB": str(path),
        "SOKKA_DB": url,
    })  # fmt: skip
    assert answers == [
        [201, {"email": "ann@example.com", "task_id": "welcome-ann@example.com"}],
        [422, {"error": "cannot sign up 'bob@example.invalid'"}],
        [409, {"error": "'ann@example.com' has signed up already"}],
    ]
    assert tasks_in(url) == {
        "welcome-ann@example.com": ("welcome-emails", {"to": "ann@example.com"})
    }
    assert rows(url, "SELECT email FROM django_site_signup") == [("ann@example.com",)]
