"""Where the time goes: cProfile and py-spy for the benchmarks, and reading their results.

* ``threads_profiled(path)``: cProfile this thread and every thread started
  inside, into one stats file (and this thread's alone beside it);
* ``stats_of``, ``own_time``, ``cumulative``, ``by_area``, ``label``: the rows
  of a cProfile run, sorted and named the same way by every benchmark;
* ``py_spy_record``, ``py_spy_samples``: py-spy sampling a child process from
  outside (raw collapsed stacks), and the samples of one thread below one frame.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import re
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

#: A profiled function, as pstats keys it: (file, line, function name).
Func = tuple[str, int, str]
#: What pstats keeps of it: (primitive calls, calls, own s, cumulative s, callers).
Row = tuple[int, int, float, float, dict[Any, Any]]
#: Where an idle thread blocks (cProfile counts it as time spent in these).
WAITS: Final = (
    "acquire' of '_thread.lock",
    "__enter__' of '_thread.lock",
    "get' of '_queue.SimpleQueue",
    "time.sleep",
)


def stats_of(source: cProfile.Profile | str) -> dict[Func, Row]:
    """The rows of a profile, or of a stats file, by function."""
    stats = pstats.Stats(source, stream=io.StringIO())
    rows: dict[Func, Row] = stats.stats  # type: ignore[attr-defined]
    return rows


def label(func: Func) -> str:
    """``adapters/sql.py:120(_write)``; a built-in by its own name."""
    file, line, function = func
    if not line:
        return function
    path = Path(file)
    where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return f"{where}:{line}({function})"


def is_wait(func: Func) -> bool:
    """Whether ``func`` is where an idle thread blocks (a lock, a queue, a sleep)."""
    return any(wait in func[2] for wait in WAITS)


def own_time(
    stats: dict[Func, Row], top: int, skip: Callable[[Func], bool] = lambda func: False
) -> list[tuple[Func, Row]]:
    """The ``top`` functions by own time (tottime), those ``skip`` says left out."""
    kept = [(func, row) for func, row in stats.items() if not skip(func)]
    return sorted(kept, key=lambda item: -item[1][2])[:top]


def cumulative(stats: dict[Func, Row], top: int) -> list[tuple[Func, Row]]:
    """The ``top`` functions by cumulative time (cumtime)."""
    return sorted(stats.items(), key=lambda item: -item[1][3])[:top]


def by_area(
    stats: dict[Func, Row], areas: Sequence[tuple[str, str]], other: Callable[[Func], str]
) -> list[tuple[str, float]]:
    """Own time summed by area, most first.

    ``areas``: ``(needle, area)`` pairs, the first whose needle is in the
    function's ``file name`` wins; ``other(func)`` names the area of the rest.
    """
    spent: dict[str, float] = {}
    for func, row in stats.items():
        filename, _, name = func
        where = filename.replace("\\", "/") + " " + name
        area = next((a for needle, a in areas if needle in where), None) or other(func)
        spent[area] = spent.get(area, 0.0) + row[2]
    return sorted(spent.items(), key=lambda item: -item[1])


@contextlib.contextmanager
def threads_profiled(path: str | None) -> Iterator[None]:
    """cProfile every thread started inside, and this one; dump to ``path``.

    This thread's profile goes to ``path + '.main'``, all threads' merged to
    ``path``. With no ``path``, nothing is profiled.
    """
    if not path:
        yield
        return
    others: list[cProfile.Profile] = []

    def boot(*_: object) -> None:  # the first event of each new thread
        sys.setprofile(None)
        profiler = cProfile.Profile()
        others.append(profiler)
        profiler.enable()

    main = cProfile.Profile()
    threading.setprofile(boot)
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.setprofile(None)
        pstats.Stats(main).dump_stats(path + ".main")
        merged = pstats.Stats(main)
        for profiler in others:
            merged.add(profiler)
        merged.dump_stats(path)


# -- py-spy ------------------------------------------------------------------------------


def py_spy_executable() -> str:
    """py-spy beside this interpreter (a virtualenv's), else on ``PATH``."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else (shutil.which("py-spy") or "py-spy")


def py_spy_record(output: str, rate: int = 250) -> list[str]:
    """The command that runs a command under py-spy (append the command after it).

    ``--idle``: samples of waiting threads too, so a thread's wall time splits
    into its waits and the rest; ``--nonblocking``: never pause the process.
    """
    return [
        py_spy_executable(), "record", "--format", "raw", "--rate", str(rate), "--idle",
        "--nonblocking", "--threads", "--output", output, "--",
    ]  # fmt: skip


@dataclass
class Samples:
    """py-spy samples below one frame: inclusive and own, by frame (line numbers dropped)."""

    total: int = 0
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)


def py_spy_samples(path: str, thread: str, below: str) -> Samples:
    """The samples of ``thread`` whose stack passes through frame ``below`` (e.g.
    ``Worker.run (sokka/shell/worker.py)``), counted from the frame under it."""
    samples = Samples()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            stack, _, weight = line.rstrip("\n").rpartition(" ")
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            if thread not in stack or below not in frames:
                continue  # another thread, or before (or after) the frame of interest
            frames = frames[frames.index(below) + 1 :]
            if not frames:
                continue
            count = int(weight)
            samples.total += count
            for frame in set(frames):
                samples.inclusive[frame] += count
            samples.own[frames[-1]] += count
    return samples
