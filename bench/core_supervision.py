"""Benchmark one supervisor cycle (``mark`` + ``sweep``) of ``sokka.core.supervision``.

Steady state: N leased tasks (real ``sokka.core.task.Task`` objects, status
running) are listed completely on every cycle; between two cycles 1% of them
(different ones each cycle, chosen by a seeded permutation) are replaced by a
copy whose ``record_ver`` is one higher, as keepalives would do. ``now_ms``
advances by 100 ms per cycle against a 30 s lease, so no lease lapses during
the measurement and ``sweep`` finds nothing.

Three variants run interleaved on the same listings:

* ``core``: ``sokka.core.supervision.mark`` + ``sweep`` (immutable ``Monitored``);
* ``reference``: the same algorithm over a plain mutable ``dict``
  (``task_id -> (record_ver, status, expiry_ms)``), written the natural way;
* ``naive PMap``: the reference algorithm over a pyrsistent ``PMap`` (lookups
  with ``.get``, updates through an evolver, sweep by scanning ``.items()``),
  returning a new ``PMap``: why the core keeps a ``dict`` index beside its ``PMap``.

Per-cycle listings are prepared before timing; the timed region of a cycle is
``mark`` + ``sweep`` only. Each variant gets a warm-up cycle, then at least
5 cycles and at least 0.5 s of timed cycles (unless ``--cycles`` says how
many); the median per-cycle time is reported. The garbage collector stays on
(it is part of the real cost); ``gc.collect()`` runs before each size.

Run: ``python bench/core_supervision.py [--sizes 1000,10000,100000] [--cycles N] [--quick]``
(or ``python -m bench.core_supervision ...``).
Exits 0 unless a correctness check fails (it is a benchmark, not a test).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: bench's parent first, not bench/ itself
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import dataclasses
import gc
import math
import random
import statistics
import uuid
from collections.abc import Sequence
from typing import Final, Protocol

from pyrsistent import PMap, pmap

from bench.harness import (
    BenchFailure,
    Column,
    Table,
    add_quick,
    check,
    fmt_times,
    parser_for,
    positive_int,
    positive_ints,
    rotated,
    timed,
    verdict,
)
from sokka.core.commands import RevokeLease
from sokka.core.supervision import EMPTY, LeasePolicy, Monitored, mark, sweep
from sokka.core.task import Status, Task

LEASE_MS: Final = 30_000
SNOOZE_MS: Final = 60_000
STEP_MS: Final = 100
START_MS: Final = 1_000_000
CHANGED_PERCENT: Final = 1
SEED: Final = 20_240_601

DEFAULT_SIZES: Final = (1_000, 10_000, 100_000)
QUICK_SIZES: Final = (1_000, 10_000)
TARGET_SECONDS: Final = 0.5
QUICK_TARGET_SECONDS: Final = 0.05
MIN_CYCLES: Final = 5
#: Cycles run from one starting state before starting over from it. With 1%
#: changed per cycle, 100 cycles touch every task once; 100 * STEP_MS stays far
#: below LEASE_MS, so no lease lapses within a round.
CYCLES_PER_ROUND: Final = 100

GOAL_SIZE: Final = 100_000
GOAL_RATIO: Final = 5.0

POLICY: Final = LeasePolicy(lease_time_ms=LEASE_MS, default_snooze_ms=SNOOZE_MS)

#: What the reference and the naive variant remember of a task:
#: ``(record_ver, status, expiry_ms)``.
Entry = tuple[int, Status, int]


def _hold_ms(task: Task, policy: LeasePolicy) -> int:
    if task.status is Status.SNOOZED:
        return task.snooze_time_ms or policy.default_snooze_ms
    return task.lease_time_ms or policy.lease_time_ms


# --- reference: the same algorithm over a plain mutable dict -----------------


def reference_mark(
    entries: dict[str, Entry],
    tasks: Sequence[Task],
    now_ms: int,
    policy: LeasePolicy,
    *,
    complete: bool = True,
) -> None:
    """Update ``entries`` in place from a listing of leased tasks."""
    known = len(entries)
    seen = 0
    for task in tasks:
        status = task.status
        if status is not Status.RUNNING and status is not Status.SNOOZED:
            continue
        entry = entries.get(task.task_id)
        if entry is not None:
            seen += 1
            if entry[0] == task.record_ver:
                continue
        entries[task.task_id] = (task.record_ver, status, now_ms + _hold_ms(task, policy))
    if complete and seen < known:
        listed = {t.task_id for t in tasks if t.status.is_leased}
        for task_id in [task_id for task_id in entries if task_id not in listed]:
            del entries[task_id]


def reference_sweep(entries: dict[str, Entry], now_ms: int) -> list[RevokeLease]:
    """The entries whose expiry has passed, oldest expiry first."""
    due = sorted(
        (expiry, task_id, record_ver, status)
        for task_id, (record_ver, status, expiry) in entries.items()
        if now_ms > expiry
    )
    return [
        RevokeLease(
            task_id=task_id, record_ver=record_ver, status=status, overdue_ms=now_ms - expiry
        )
        for expiry, task_id, record_ver, status in due
    ]


# --- naive PMap: the reference algorithm over a pyrsistent PMap --------------


def naive_mark(
    observations: PMap[str, Entry],
    tasks: Sequence[Task],
    now_ms: int,
    policy: LeasePolicy,
    *,
    complete: bool = True,
) -> PMap[str, Entry]:
    """The reference ``mark`` over a ``PMap``: returns a new map."""
    evolver = observations.evolver()
    seen = 0
    for task in tasks:
        status = task.status
        if status is not Status.RUNNING and status is not Status.SNOOZED:
            continue
        entry = observations.get(task.task_id)
        if entry is not None:
            seen += 1
            if entry[0] == task.record_ver:
                continue
        evolver[task.task_id] = (task.record_ver, status, now_ms + _hold_ms(task, policy))
    if complete and seen < len(observations):
        listed = {t.task_id for t in tasks if t.status.is_leased}
        for task_id in observations:
            if task_id not in listed:
                evolver.remove(task_id)
    return evolver.persistent()


def naive_sweep(observations: PMap[str, Entry], now_ms: int) -> list[RevokeLease]:
    """The reference ``sweep`` over a ``PMap``."""
    due = sorted(
        (expiry, task_id, record_ver, status)
        for task_id, (record_ver, status, expiry) in observations.items()
        if now_ms > expiry
    )
    return [
        RevokeLease(
            task_id=task_id, record_ver=record_ver, status=status, overdue_ms=now_ms - expiry
        )
        for expiry, task_id, record_ver, status in due
    ]


# --- the three variants behind one interface ---------------------------------


class Variant(Protocol):
    name: str

    def reset(self) -> None:
        """Go back to the state after the initial mark (untimed)."""

    def cycle(self, tasks: Sequence[Task], now_ms: int) -> int:
        """One supervisor cycle (mark + sweep); returns how many revokes sweep found."""

    def observed(self) -> dict[str, Entry]:
        """The current observations, for the correctness check."""


class CoreVariant:
    name = "core"

    def __init__(self, listing: Sequence[Task]) -> None:
        self.initial = mark(EMPTY, listing, START_MS, POLICY)
        self.state: Monitored = self.initial

    def reset(self) -> None:
        self.state = self.initial

    def cycle(self, tasks: Sequence[Task], now_ms: int) -> int:
        self.state = mark(self.state, tasks, now_ms, POLICY)
        return len(sweep(self.state, now_ms))

    def observed(self) -> dict[str, Entry]:
        return {task_id: (o.record_ver, o.status, o.expiry_ms) for task_id, o in self.state.items()}


class ReferenceVariant:
    name = "reference"

    def __init__(self, listing: Sequence[Task]) -> None:
        self.initial: dict[str, Entry] = {}
        reference_mark(self.initial, listing, START_MS, POLICY)
        self.entries = dict(self.initial)

    def reset(self) -> None:
        self.entries = dict(self.initial)

    def cycle(self, tasks: Sequence[Task], now_ms: int) -> int:
        reference_mark(self.entries, tasks, now_ms, POLICY)
        return len(reference_sweep(self.entries, now_ms))

    def observed(self) -> dict[str, Entry]:
        return dict(self.entries)


class NaivePMapVariant:
    name = "naive PMap"

    def __init__(self, listing: Sequence[Task]) -> None:
        self.initial = naive_mark(pmap(), listing, START_MS, POLICY)
        self.state = self.initial

    def reset(self) -> None:
        self.state = self.initial

    def cycle(self, tasks: Sequence[Task], now_ms: int) -> int:
        self.state = naive_mark(self.state, tasks, now_ms, POLICY)
        return len(naive_sweep(self.state, now_ms))

    def observed(self) -> dict[str, Entry]:
        return dict(self.state)


# --- workload ----------------------------------------------------------------


def base_listing(size: int, rng: random.Random) -> list[Task]:
    """``size`` running tasks with random (seeded) UUID ids."""
    tasks = []
    for _ in range(size):
        task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        tasks.append(
            Task(
                task_id=task_id,
                task_group_id=task_id,
                topic="bench",
                status=Status.RUNNING,
                pid="worker-1",
                record_ver=1,
                attempt=1,
            )
        )
    return tasks


def cycle_listings(base: list[Task], cycles: int, rng: random.Random) -> list[list[Task]]:
    """Listings for cycles 1..``cycles``; each bumps ``record_ver`` of 1% of the previous one.

    The 1% are consecutive slices of a seeded permutation: different tasks each
    cycle (every task once per 100 cycles).
    """
    size = len(base)
    per_cycle = max(1, size * CHANGED_PERCENT // 100)
    order = rng.sample(range(size), size)
    listings = []
    current = base
    for c in range(cycles):
        current = list(current)
        for j in range(per_cycle):
            i = order[(c * per_cycle + j) % size]
            current[i] = dataclasses.replace(current[i], record_ver=current[i].record_ver + 1)
        listings.append(current)
    return listings


def now_of(cycle: int) -> int:
    """``now_ms`` of cycle ``cycle`` (1-based) of a round."""
    return START_MS + cycle * STEP_MS


# --- correctness ---------------------------------------------------------------


def check_agree(variants: Sequence[Variant], listing: Sequence[Task], size: int) -> None:
    """Core, reference and naive hold the same observations, matching ``listing``."""
    core, *others = variants
    expected = core.observed()
    check(len(expected) == size, f"core holds {len(expected)} observations, expected {size}")
    for other in others:
        got = other.observed()
        check(got.keys() == expected.keys(), f"{other.name}: task ids differ from core")
        diff = [k for k in expected if got[k] != expected[k]]
        if diff:
            first = diff[0]
            raise BenchFailure(
                f"{other.name}: {len(diff)} observations differ from core, e.g. "
                f"{first}: {got[first]} != {expected[first]}"
            )
    stale = [t.task_id for t in listing if expected[t.task_id][0] != t.record_ver]
    check(not stale, f"{len(stale)} observations lag the listing's record_ver")


# --- measurement ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Result:
    size: int
    cycles: int
    median_s: dict[str, float]

    def per_task_us(self, name: str) -> float:
        return self.median_s[name] / self.size * 1e6

    def ratio(self, name: str, to: str = "reference") -> float:
        return self.median_s[name] / self.median_s[to]


def timed_cycle(variant: Variant, tasks: Sequence[Task], now_ms: int) -> tuple[float, int]:
    found, elapsed = timed(variant.cycle, tasks, now_ms)
    return elapsed, found


def measure(size: int, cycles: int | None, target_s: float) -> Result:
    rng = random.Random(f"{SEED}:{size}")
    base = base_listing(size, rng)
    variants: list[Variant] = [
        CoreVariant(base),
        ReferenceVariant(base),
        NaivePMapVariant(base),
    ]
    check_agree(variants, base, size)

    # Warm-up: cycle 1 from the starting state, untimed for the result; it
    # also sizes the run when --cycles is not given.
    warm_listing = cycle_listings(base, 1, random.Random(f"{SEED}:{size}:warm"))[0]
    gc.collect()
    warm: list[float] = []
    for variant in variants:
        elapsed, found = timed_cycle(variant, warm_listing, now_of(1))
        check(found == 0, f"{variant.name}: warm-up sweep found {found} lapsed leases")
        warm.append(elapsed)
    del warm_listing
    if cycles is None:
        cycles = max(MIN_CYCLES, math.ceil(target_s / max(min(warm), 1e-9)))

    per_round = min(cycles, CYCLES_PER_ROUND)
    listings = cycle_listings(base, per_round, random.Random(f"{SEED}:{size}:cycles"))
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    gc.collect()

    done = 0
    while done < cycles:
        for variant in variants:
            variant.reset()
        in_round = min(per_round, cycles - done)
        for c in range(in_round):
            now_ms = now_of(c + 1)
            tasks = listings[c]
            # Rotate the order each cycle so no variant always runs first or
            # always runs right after another one's garbage.
            for variant in rotated(variants, done + c):
                elapsed, found = timed_cycle(variant, tasks, now_ms)
                check(found == 0, f"{variant.name}: sweep found {found} lapsed leases")
                times[variant.name].append(elapsed)
        check_agree(variants, listings[in_round - 1], size)
        done += in_round

    return Result(
        size=size,
        cycles=cycles,
        median_s={name: statistics.median(ts) for name, ts in times.items()},
    )


# --- report ----------------------------------------------------------------------


#: One row per size: the core's time, each variant's per task, and the ratios to the reference.
TABLE: Final = Table(
    (
        Column("size", 8),
        Column("cycles", 6),
        Column("core ms/cyc", 11),
        Column("core us/task", 12),
        Column("ref us/task", 11),
        Column("naive us/task", 13),
        Column("core/ref", 8),
        Column("naive/ref", 9),
    ),
    sep="  ",
)


def print_table(results: Sequence[Result]) -> None:
    print(TABLE.header())
    print(TABLE.rule())
    for r in results:
        print(
            TABLE.row(
                str(r.size),
                str(r.cycles),
                f"{r.median_s['core'] * 1e3:.3f}",
                f"{r.per_task_us('core'):.4f}",
                f"{r.per_task_us('reference'):.4f}",
                f"{r.per_task_us('naive PMap'):.4f}",
                fmt_times(r.median_s["core"], r.median_s["reference"]),
                fmt_times(r.median_s["naive PMap"], r.median_s["reference"]),
            )
        )


def goal_line(results: Sequence[Result]) -> str:
    goal = (
        f"goal: cycle over {GOAL_SIZE // 1000}k tasks: core <= {GOAL_RATIO:g}x "
        "the plain-dict reference"
    )
    at_goal = [r for r in results if r.size == GOAL_SIZE]
    if not at_goal:
        return f"{goal}: not measured ({GOAL_SIZE} not among the sizes)"
    ratio = at_goal[0].ratio("core")
    return f"{goal}: {verdict(ratio <= GOAL_RATIO, 'NOT MET')} (core/reference = {ratio:.2f}x)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument(
        "--sizes",
        type=positive_ints,
        default=None,
        help="comma-separated numbers of leased tasks (default: 1000,10000,100000)",
    )
    parser.add_argument(
        "--cycles",
        type=positive_int,
        default=None,
        help=f"timed cycles per variant and size (default: >= {TARGET_SECONDS:g} s "
        f"and >= {MIN_CYCLES} cycles)",
    )
    add_quick(parser, "fast smoke run with small sizes (CI)")
    args = parser.parse_args(argv)
    sizes: tuple[int, ...] = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    target_s = QUICK_TARGET_SECONDS if args.quick else TARGET_SECONDS

    print(
        f"one supervisor cycle (mark + sweep), complete listing, {CHANGED_PERCENT}% of tasks "
        f"re-versioned per cycle, lease {LEASE_MS} ms, step {STEP_MS} ms, no lease lapses; "
        "median per cycle"
    )
    results = []
    for size in sizes:
        gc.collect()
        results.append(measure(size, args.cycles, target_s))
    print_table(results)
    print(goal_line(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
