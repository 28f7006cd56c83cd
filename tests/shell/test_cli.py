"""The ``sokka`` command, run as a user runs it: the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from sokka.shell.demo import run_demo


def sokka(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("sokka")
    command = [exe] if exe else [sys.executable, "-m", "sokka.shell.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, check=False
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
