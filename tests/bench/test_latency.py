"""``bench/latency.py``: its quick sokka-only SQLite run as a real process (no
peers: CI installs only the ``test`` extra), and its pure helpers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench.harness import ROOT
from bench.latency import Row, goals


@pytest.mark.slow
def test_the_quick_sqlite_run_measures_idle_and_loaded_pickups() -> None:
    done = subprocess.run(
        [sys.executable, "bench/latency.py", "--quick", "--stores", "sqlite", "--skip-peers",
         "--postgres-url", ""],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(r"^(sokka|sokka asyncio)\s+sqlite\s+(idle|load)\s+(\d+)\s.*\s(ok|FAILED.*)$",
                      done.stdout, re.MULTILINE)  # fmt: skip
    assert rows == [
        ("sokka", "idle", "8", "ok"), ("sokka", "load", "50", "ok"),
        ("sokka asyncio", "idle", "8", "ok"), ("sokka asyncio", "load", "50", "ok"),
    ], done.stdout  # fmt: skip
    for system in ("sokka", "sokka asyncio"):
        assert re.search(
            rf"^goal: idle: {system} sqlite p50 [\d.]+ ms; goal p50 <= 10 ms: (MET|MISSED)$",
            done.stdout, re.MULTILINE,
        ), done.stdout  # fmt: skip


def test_percentiles_are_nearest_rank() -> None:
    row = Row("sokka", "sqlite", "idle", [float(v) for v in range(1, 101)])
    assert [row.percentile(p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert Row("sokka", "sqlite", "idle", [7.0]).percentile(99) == 7.0


def test_goals_compare_sokka_with_pgqueuer_in_the_same_run() -> None:
    rows = [
        Row("sokka", "postgres", "idle", [3.0, 4.0, 5.0]),
        Row("pgqueuer", "postgres", "idle", [8.0, 8.0, 8.0]),
        Row("sokka", "sqlite", "idle", [20.0]),
    ]
    lines = goals(rows)
    assert lines[0] == (
        "idle: sokka postgres p50 4.0 ms = 0.50x pgqueuer's (8.0 ms); p99 5.0 ms; "
        "goal p50 <= pgqueuer's and p99 <= 25 ms: MET"
    )
    assert lines[1].endswith("goal p50 <= 10 ms: MISSED")
