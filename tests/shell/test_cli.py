"""The ``sokka`` command, run as a user runs it: the installed console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sokka.adapters.sql import SCHEMA_VERSION, SQLStore
from sokka.shell.demo import run_demo


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


def test_demo_shows_a_rescue_in_plain_words() -> None:
    run = sokka("demo")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "hangs" in out
    assert "revoked its lease" in out
    assert "(rescued)" in out
    assert "refused" in out
    assert "lost:    0" in out
    assert "done:    12 of 12 tasks" in out


def test_demo_rejects_bad_options_with_a_clear_error() -> None:
    run = sokka("demo", "--lease-ms", "-5")
    assert run.returncode == 2
    assert "must be positive" in run.stderr
    assert "Traceback" not in run.stderr


def test_version() -> None:
    run = sokka("--version")
    assert run.returncode == 0
    assert run.stdout.startswith("sokka ")


@pytest.mark.parametrize("workers", [2, 4])
def test_demo_finishes_every_task_once_whatever_the_worker_count(workers: int) -> None:
    lines: list[str] = []
    result = run_demo(tasks=8, workers=workers, lease_ms=300, work_ms=50, say=lines.append)
    assert result.ok, lines
    assert result.done == 8
    assert all(len(who) == 1 for who in result.finished_by.values())
    assert result.fenced == result.rescued


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


def test_demo_runs_on_a_sqlite_file(tmp_path: Path) -> None:
    run = sokka("demo", "--db", f"sqlite:///{tmp_path / 'demo.db'}")
    assert run.returncode == 0, run.stderr
    assert "lost:    0" in run.stdout
    assert "(rescued)" in run.stdout
