"""Reading cProfile and py-spy results the same way in every benchmark."""

from __future__ import annotations

import cProfile
import threading

from bench.profiling import (
    by_area,
    cumulative,
    is_wait,
    label,
    own_time,
    py_spy_samples,
    stats_of,
    threads_profiled,
)


def spin(n: int) -> int:
    """Busy work that a profile must see."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def outer() -> int:
    return spin(200_000) + spin(1)


def test_own_time_and_cumulative_name_the_functions_that_ran():
    profiler = cProfile.Profile()
    profiler.runcall(outer)
    stats = stats_of(profiler)
    top_own = [label(func) for func, _row in own_time(stats, 1)]
    assert top_own == [f"bench/test_profiling.py:{spin.__code__.co_firstlineno}(spin)"]
    ranked = [func[2] for func, _row in cumulative(stats, 2)]
    assert ranked == ["outer", "spin"]
    (spin_row,) = [row for func, row in stats.items() if func[2] == "spin"]
    assert spin_row[1] == 2  # called twice
    left_out = own_time(stats, 10, skip=lambda func: func[2] == "spin")
    assert all(func[2] != "spin" for func, _row in left_out)


def test_by_area_sums_own_time_by_the_first_matching_needle():
    profiler = cProfile.Profile()
    profiler.runcall(outer)
    stats = stats_of(profiler)
    areas = dict(by_area(stats, [("test_profiling.py", "this test")], lambda func: "elsewhere"))
    total = sum(row[2] for row in stats.values())
    assert set(areas) <= {"this test", "elsewhere"}
    assert abs(sum(areas.values()) - total) < 1e-9
    assert areas["this test"] >= stats_of(profiler)[next(f for f in stats if f[2] == "spin")][2]


def test_label_of_a_builtin_is_its_name_and_of_generated_code_its_file():
    assert label(("~", 0, "<built-in method time.sleep>")) == "<built-in method time.sleep>"
    assert label(("<string>", 1, "<lambda>")) == "<string>:1(<lambda>)"
    assert is_wait(("~", 0, "<built-in method time.sleep>"))
    assert not is_wait(("/x/sokka/core/holding.py", 10, "due"))


def test_threads_profiled_merges_the_threads_started_inside(tmp_path):
    path = str(tmp_path / "run.prof")
    with threads_profiled(path):
        worker = threading.Thread(target=spin, args=(100_000,))
        worker.start()
        worker.join()
    merged = {func[2] for func in stats_of(path)}
    main_only = {func[2] for func in stats_of(path + ".main")}
    assert "spin" in merged  # run on the other thread
    assert "spin" not in main_only


def test_threads_profiled_without_a_path_profiles_nothing(tmp_path):
    with threads_profiled(None):
        spin(10)
    assert list(tmp_path.iterdir()) == []


def test_py_spy_samples_count_one_thread_below_one_frame(tmp_path):
    run = "Worker.run (sokka/shell/worker.py)"
    raw = tmp_path / "samples.txt"
    raw.write_text(
        "\n".join(
            [
                # before the run: not counted
                "process 1:MainThread;<module> (x.py:1);main (x.py:5) 7",
                f"process 1:MainThread;main (x.py:5);{run[:-1]}:40);wait (psycopg.py:9) 6",
                f"process 1:MainThread;main (x.py:5);{run[:-1]}:41);step (core.py:3);f (a.py:2) 3",
                f"process 1:MainThread;main (x.py:5);{run[:-1]}:41);step (core.py:4) 1",
                # another thread: not counted
                f"process 1:handler-1;{run[:-1]}:40);wait (psycopg.py:9) 50",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    samples = py_spy_samples(str(raw), "MainThread", run)
    assert samples.total == 10
    assert samples.inclusive == {"wait (psycopg.py)": 6, "step (core.py)": 4, "f (a.py)": 3}
    assert samples.own == {"wait (psycopg.py)": 6, "f (a.py)": 3, "step (core.py)": 1}
