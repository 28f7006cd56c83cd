"""``bench/throughput.py --workers``: several worker processes drain one queue.

The exactly-once check across processes (``check_exactly_once``) and sokka's
own check (``check_sokka``) are pure and tested on made-up ids and counters;
the drain itself runs for real on PostgreSQL: two worker processes in this
process's hands, and the command line with ``--workers 1,2`` as a user runs it.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import subprocess
import sys

import pytest
import sqlalchemy as sa
from returns.result import Success

from bench.drain import TOPIC, Row, check_exactly_once, drain
from bench.harness import ROOT
from bench.throughput import check_sokka, scaling_lines, sokka_peer_lines
from tests.databases import postgres_engine, postgres_url

# -- the exactly-once check, across processes


def test_each_id_once_in_any_process_passes():
    assert check_exactly_once(["a", "b", "c"], [["c", "a"], [], ["b"]]) == []


def test_an_id_done_by_two_processes_is_reported_with_both():
    problems = check_exactly_once(["a", "b", "c"], [["a", "b"], ["c", "b"]])
    assert problems == [
        "3 tasks created, handlers ran 4 times on 3 distinct ids in 2 processes",
        "1 ids done more than once (e.g. 'b' 2 times, by process 0, 1)",
    ]


def test_an_id_done_twice_by_one_process_is_reported_too():
    problems = check_exactly_once(["a", "b"], [["a", "b", "a"]])
    assert "1 ids done more than once (e.g. 'a' 2 times, by process 0, 0)" in problems


def test_ids_missing_and_ids_never_created_are_reported():
    problems = check_exactly_once(["a", "b", "c"], [["a"], ["b", "z"]])
    assert problems == [
        "3 tasks created, handlers ran 3 times on 3 distinct ids in 2 processes",
        "1 ids never done (e.g. 'c')",
        "1 ids done that were never created (e.g. 'z')",
    ]


def test_ids_compare_as_strings_after_their_trip_through_json():
    # pgqueuer and procrastinate number their jobs; the parent holds ints, and so
    # do the children's JSON files, but a str id from a child must match too.
    assert check_exactly_once([1, 2, 3], [[1, "2"], [3]]) == []


# -- sokka's own check: statuses, the workers' counters, reattempts


def _stats(succeeded: int = 0, failed: int = 0, lost: int = 0, fenced: int = 0) -> dict[str, int]:
    return {"succeeded": succeeded, "failed": failed, "lost": lost, "fenced": fenced}


def test_sokka_check_adds_up_the_processes_counters():
    assert check_sokka(10, {"terminated": 10}, 0, [_stats(4), _stats(6)]) == ([], [])
    problems, _ = check_sokka(10, {"terminated": 10}, 0, [_stats(4), _stats(5, failed=1)])
    assert problems == ["workers recorded 9 successes and 1 failures, not 10 and 0"]


def test_sokka_check_wants_every_task_terminated():
    problems, _ = check_sokka(3, {"terminated": 2, "running": 1}, 0, [_stats(3)])
    assert problems == ["statuses {'terminated': 2, 'running': 1}, not {'terminated': 3}"]


def test_a_task_reserved_twice_fails_unless_a_lost_lease_explains_it():
    problems, notes = check_sokka(5, {"terminated": 5}, 1, [_stats(5)])
    assert problems == ["1 tasks reserved more than once"]
    assert notes == []
    # One process lost a lease (before its handler ran): the task was reserved again.
    problems, notes = check_sokka(5, {"terminated": 5}, 1, [_stats(2, lost=1), _stats(3)])
    assert problems == []
    assert notes == ["1 leases lost (0 outcomes fenced), 1 tasks reserved again"]
    # Two reattempts, one lost lease reported: one is unexplained.
    problems, _ = check_sokka(5, {"terminated": 5}, 2, [_stats(5, lost=1)])
    assert problems == ["2 tasks reserved more than once (1 lost leases reported)"]


# -- the summaries


def _row(system: str, key: tuple[object, ...], processes: int, drain_s: float) -> Row:
    return Row(system, "postgres", "configuration", 100, 1.0, drain_s, [], key, processes)


def test_scaling_is_each_configurations_rate_against_its_own_on_one_process():
    rows = [
        _row("sokka", ("sokka", "postgres", 8, 250), 1, 0.10),  # 1,000 jobs/s
        _row("pgqueuer", ("pgqueuer", 250), 1, 0.05),  # 2,000
        _row("sokka", ("sokka", "postgres", 8, 250), 2, 0.04),  # 2,500
        _row("pgqueuer", ("pgqueuer", 250), 2, 0.04),  # 2,500
    ]
    _, header, sokka, pgqueuer = scaling_lines(rows, (1, 2))
    assert header.split() == ["system", "configuration", "1", "proc", "2", "procs"]
    assert sokka.split()[-3:] == ["1,000", "2,500", "2.50x"]
    assert pgqueuer.split()[-3:] == ["2,000", "2,500", "1.25x"]


def test_a_failed_run_is_left_out_of_the_summaries():
    failed = _row("sokka", ("sokka", "postgres", 8, 10), 2, 0.01)
    failed.problems.append("1 ids done more than once")
    rows = [
        _row("sokka", ("sokka", "postgres", 8, 10), 1, 0.10),
        _row("pgqueuer", ("pgqueuer", 10), 1, 0.20),
        failed,
        _row("pgqueuer", ("pgqueuer", 10), 2, 0.10),
    ]
    _, _, sokka, _ = scaling_lines(rows, (1, 2))
    assert sokka.split()[-2:] == ["1,000", "-"]
    lines = sokka_peer_lines(rows, (1, 2))
    best = next(line for line in lines if line.startswith("sokka's best"))
    assert best.split()[-2:] == ["1,000", "-"]
    versus = next(line for line in lines if line.startswith("vs pgqueuer"))
    assert versus.split()[-2:] == ["2.00x", "-"]


def test_sokka_peer_takes_sokkas_best_runtime_at_each_count():
    rows = [
        _row("sokka", ("sokka", "postgres", 8, 250), 1, 0.10),  # 1,000
        _row("sokka asyncio", ("sokka asyncio", "postgres", 8, 10), 1, 0.08),  # 1,250
        _row("procrastinate", ("procrastinate", None), 1, 1.00),  # 100
    ]
    lines = sokka_peer_lines(rows, (1,))
    assert [line.split()[-1] for line in lines[2:]] == ["1,250", "asyncio", "8/10", "12.50x"]


# -- for real, on PostgreSQL


def test_two_processes_drain_one_queue_and_their_ids_are_all_collected():
    """The ids come back from every child; a duplicate among them is caught."""
    from sokka.adapters.sql import SQLStore
    from sokka.core.task import TaskSpec

    postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES) when not reachable
    prefix = f"bench_{secrets.token_hex(4)}_"
    store = SQLStore(postgres_url(), prefix=prefix)
    try:
        store.create_schema()
        results = store.create_tasks([TaskSpec(topic=TOPIC) for _ in range(120)])
        created = [r.unwrap().task_id for r in results if isinstance(r, Success)]
        assert len(created) == 120
        left = sa.text(f"SELECT count(*) FROM {prefix}tasks WHERE status <> 'terminated'")

        def remaining() -> int:
            with store.engine.connect() as conn:
                return int(conn.execute(left).scalar_one())

        config = {
            "role": "sokka", "url": postgres_url(), "prefix": prefix, "concurrency": 2,
            "batch": 5, "profile": None,
        }  # fmt: skip
        done = drain(config, remaining, len(created), processes=2)
    finally:
        store.drop_schema()
        store.close()
    assert len(done.ids) == len(done.results) == 2
    assert sum(result["stats"]["succeeded"] for result in done.results) == 120
    assert check_exactly_once(created, done.ids) == []
    # One id done again by the other process: the check says so.
    twice = next(task_id for ids in done.ids for task_id in ids)
    process = 1 if twice in done.ids[0] else 0
    done.ids[process].append(twice)
    problems = check_exactly_once(created, done.ids)
    assert problems[1] == f"1 ids done more than once (e.g. {twice!r} 2 times, by process 0, 1)"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "bench/throughput.py", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_workers_1_2_runs_each_count_checks_exactly_once_and_prints_the_scaling():
    postgres_engine()
    done = _run(
        "--workers", "1,2", "--quick", "--tasks", "200", "--runtimes", "threads",
        "--skip-peers", "--postgres-url", postgres_url(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "drained by 1, 2 worker processes" in out
    assert "check: every created id done exactly once across the processes" in out
    rows = re.findall(
        r"^sokka\s+concurrency\s+8, batch\s+250\s+(\d)\s+200\s.*\s(\d+\.\d\dx)\s+ok$",
        out, re.MULTILINE,
    )  # fmt: skip
    assert [count for count, _ in rows] == ["1", "2"], out
    assert rows[0][1] == "1.00x"
    assert re.search(r"^sokka\s+concurrency\s+8, batch\s+250\s+[\d,]+\s+[\d,]+\s+\d+\.\d\dx$", out,
                     re.MULTILINE), out  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("pgqueuer") is None
    or importlib.util.find_spec("procrastinate") is None,
    reason="the peers are in the bench extra (pip install -e '.[bench]')",
)
def test_the_peers_run_on_two_processes_and_are_compared_at_each_count():
    postgres_engine()
    done = _run(
        "--workers", "2", "--quick", "--tasks", "200", "--runtimes", "threads",
        "--postgres-url", postgres_url(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for system in ("sokka", "pgqueuer", "procrastinate"):
        assert re.search(rf"^{system}\s.*\s2\s+200\s.*\sok$", done.stdout, re.MULTILINE), (
            done.stdout
        )
    assert re.search(r"^vs pgqueuer batch\s+250\s+\d+\.\d\dx$", done.stdout, re.MULTILINE)
    assert re.search(r"^vs procrastinate defaults \(concurrency 1\)\s+\d+\.\d\dx$", done.stdout,
                     re.MULTILINE)  # fmt: skip


def test_workers_refuses_to_run_without_postgres_naming_the_flag():
    done = _run("--workers", "1,2", "--postgres-url", "")
    assert done.returncode == 2
    assert "--workers: the scale-out runs on PostgreSQL; give a --postgres-url" in done.stderr
    bad = _run("--workers", "1,0")
    assert bad.returncode == 2
    assert "argument --workers: sizes must be positive ints: '1,0'" in bad.stderr
