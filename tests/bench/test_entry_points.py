"""The benchmarks' command lines, run as the docs and CI run them: real processes.

Quick runs on the smallest workloads: each must exit 0 and print its table and
its ratio lines. They need only the ``test`` extra (no peers of throughput.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import ROOT
from tests.databases import postgres_engine, postgres_url

pytestmark = pytest.mark.slow


def run(
    args: list[str], cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_core_supervision_quick_as_ci_runs_it():
    done = run(["bench/core_supervision.py", "--quick"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == [
        "size", "cycles", "core", "ms/cyc", "core", "us/task", "ref", "us/task",
        "naive", "us/task", "core/ref", "naive/ref",
    ]  # fmt: skip
    rows = [line for line in lines if re.fullmatch(r"\s+(1000|10000)\s.*x\s+\d+\.\d\dx", line)]
    assert len(rows) == 2, done.stdout  # one per quick size, with both ratios
    assert lines[-1].startswith("goal: cycle over 100k tasks")


def test_core_supervision_as_a_module_from_anywhere(tmp_path):
    as_module = run(["-m", "bench.core_supervision", "--sizes", "300", "--cycles", "5"])
    assert as_module.returncode == 0, as_module.stderr
    assert re.search(r"^\s+300\s+5\s.*x\s*$", as_module.stdout, re.MULTILINE), as_module.stdout
    # As a file, from another directory: the script finds bench and sokka itself.
    as_file = run([str(ROOT / "bench" / "core_supervision.py"), "--sizes", "300"], cwd=tmp_path)
    assert as_file.returncode == 0, as_file.stderr


def test_core_supervision_refuses_bad_sizes_naming_the_flag():
    done = run(["bench/core_supervision.py", "--sizes", "100,none"])
    assert done.returncode == 2
    assert "argument --sizes: not a comma-separated list of ints: '100,none'" in done.stderr


def test_store_ops_quick_on_sqlite_prints_its_audit_and_ratios():
    done = run(["bench/store_ops.py", "--quick", "--stores", "sqlite"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    out = done.stdout
    assert "== sqlite (files in " in out
    assert "  same: reserve_tasks (100) + finish_many (100)" in out  # the statement audit passed
    # Every operation against its ceiling, in the section and in the summary.
    ratios = re.findall(r"^sqlite\s+(.+?)\s{2,}\S+/s\s+[\d,]+\s+[\d,]+\s+(\d+)%", out, re.MULTILINE)
    assert [label for label, _ in ratios] == [
        "create_task (one at a time)", "create_tasks (batches of 100)",
        "reserve+terminate (one at a time)", "reserve+terminate (batches of 100)",
        "extend_leases (1 lease)", "extend_leases (100 leases)",
        "list_leased_tasks (page of 1000)",
    ]  # fmt: skip
    goals = re.findall(r"^  sqlite\s+reserve\+terminate .* of the ceiling .*: (MET|MISSED)$", out,
                       re.MULTILINE)  # fmt: skip
    assert len(goals) == 2
    assert re.search(r"^total \d+ s$", out, re.MULTILINE)


def test_store_ops_quick_on_postgres_passes_its_audit():
    """The ceiling must follow the store on PostgreSQL too (its creates are one
    autocommit statement each; the ceiling once still committed them)."""
    postgres_engine()  # skips, or fails under SOKKA_REQUIRE_POSTGRES=1, without it
    done = run(["bench/store_ops.py", "--quick", "--stores", "postgres",
                "--postgres-url", postgres_url()])  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "  same: create (one)" in done.stdout
    assert "  same: reserve_tasks (100) + finish_many (100)" in done.stdout
    # Traced at the driver: the hot calls are autocommit statements (psycopg sends
    # no BEGIN before them), a listing one transaction.
    shapes = dict(re.findall(r"^  same: (.+?)\s{2,}(.+)$", done.stdout, re.MULTILINE))
    assert shapes["reserve_tasks (1) + terminate"].startswith("UPDATE claim"), shapes
    assert "BEGIN" not in shapes["reserve_tasks (100) + finish_many (100)"]
    assert shapes["list_leased_tasks (1000)"] == "BEGIN / SELECT leased / COMMIT"


def test_against_measures_a_revision_beside_this_tree():
    """``bench/against.py``: the revision's own code drains, then this tree's, taking
    turns; both pass their checks, and the ratio of the medians is printed."""
    postgres_engine()
    done = run(["bench/against.py", "HEAD", "--tasks", "40", "--rounds", "2",
                "--postgres-url", postgres_url()], timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    turns = re.findall(r"^  round (\d): (HEAD|this tree)\s", done.stdout, re.MULTILINE)
    assert turns == [("1", "HEAD"), ("1", "this tree"), ("2", "this tree"), ("2", "HEAD")]
    assert re.search(r"^this tree / HEAD: \d+\.\d\dx \(medians\)", done.stdout, re.MULTILINE)


def test_against_names_a_revision_git_does_not_know():
    done = run(["bench/against.py", "no-such-revision", "--rounds", "1"])
    assert done.returncode == 1
    assert "FAILED: git archive no-such-revision:" in done.stderr


def test_store_ops_as_a_module_on_memory():
    done = run(["-m", "bench.store_ops", "--quick", "--stores", "memory"])
    assert done.returncode == 0, done.stderr
    assert "== memory ==" in done.stdout
    assert re.search(r"^  memory\s+\d+ ms unchanged\s+\d+ ms with 1% extended$", done.stdout,
                     re.MULTILINE)  # fmt: skip


def test_store_ops_refuses_an_unknown_store_naming_it():
    done = run(["bench/store_ops.py", "--stores", "memory,mongo"])
    assert done.returncode == 2
    assert "unknown store(s) ['mongo']; choose from memory,sqlite,postgres,http" in done.stderr
    assert done.stdout == ""  # refused before anything ran


def test_throughput_quick_on_sqlite_without_the_peers():
    """The worker runs in a child process (this script again): it must find bench too."""
    done = run(
        ["bench/throughput.py", "--quick", "--skip-peers", "--postgres-url", "", "--tasks", "200"]
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    config = r"concurrency\s+\d, (?:batch\s+\d+|defaults)\s+200\s.*\sok$"
    rows = re.findall(rf"^sokka\s+sqlite\s+{config}", done.stdout, re.MULTILINE)
    # concurrency 1 and 8; no batch size (the defaults), batch 10 and 250; the best again
    assert len(rows) == 2 * 3 + 1
    aio_rows = re.findall(rf"^sokka asyncio\s+sqlite\s+{config}", done.stdout, re.MULTILINE)
    assert len(aio_rows) == 2 * 3 + 1  # the asyncio worker's rows, at the same configurations
    assert len(re.findall(r"^sokka .*concurrency  1, defaults ", done.stdout, re.MULTILINE)) >= 2
    assert "best per store (*):" in done.stdout
    assert "asyncio/threads on sqlite: best of each " in done.stdout
