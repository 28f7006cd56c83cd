"""Measuring one operation on every side of a store, in interleaved rounds.

Method: ``time.perf_counter``; per operation a warm-up and three sizing runs
(the best of them sizes the rounds to about ``target`` seconds of the slowest
side), then ``rounds`` rounds; in each round every side (store, ceiling,
minimal; or in-process and over HTTP) runs the same number of calls on its
own table, in an order that rotates from round to round so machine noise hits
all sides alike; each side's median round is reported, and the ratio to the
ceiling is the median of the rounds' ratios (store and ceiling ran back to
back within a round). Every measured call is checked by the case itself.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.harness import check, median_ratio, rotated, round_ratios, timed
from bench.stores.common import MAX_CALLS, Settings


@dataclass
class Case:
    """One operation, measured on every side of a store."""

    key: str
    label: str
    unit: str
    units_per_call: int
    warmup_calls: int
    sides: dict[str, Callable[[int], int]]  #: run(calls) -> units done (checked)
    prepare: Callable[[int], None] = lambda calls: None  #: untimed, before a round
    verify: Callable[[], None] = lambda: None  #: after a round
    goal: bool = False  #: the ratio goal applies


@dataclass
class Measured:
    backend: str
    key: str
    label: str
    unit: str
    units_per_call: int
    goal: bool
    calls: int
    rates: dict[str, float]  #: side -> median units per second
    spread: dict[str, float]  #: side -> (max - min) / median over the rounds
    #: store / ceiling in each round (the two ran back to back, so a slow
    #: spell of the machine mostly hits both)
    round_ratios: list[float]
    #: side -> units per second in each round, in round order
    samples: dict[str, list[float]] = field(default_factory=dict)

    def ratio(self) -> float | None:
        """The median of the per-round ratios store / ceiling."""
        if not self.round_ratios:
            return None
        return statistics.median(self.round_ratios)


def measure(backend: str, case: Case, settings: Settings) -> Measured:
    """Measure ``case`` on every side of ``backend``, in rounds (see the module's docstring)."""
    names = list(case.sides)
    # Warm-up (statement caches, prepared statements), then three sizing runs
    # per side: the best of them, so that one slow spell cannot shrink the rounds.
    warm = case.warmup_calls
    case.prepare(4 * warm)
    slowest = 0.0
    for name in names:
        run = case.sides[name]
        run(warm)
        best = float("inf")
        for _ in range(3):
            units, seconds = timed(run, warm)
            check(units == warm * case.units_per_call, f"{case.label} {name}: {units} units")
            best = min(best, seconds / warm)
        slowest = max(slowest, best)
    case.verify()
    calls = max(warm, min(MAX_CALLS, round(settings.target_s / slowest)))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.rounds):
        case.prepare(calls)
        gc.collect()
        for name in rotated(names, r):
            units, seconds = timed(case.sides[name], calls)
            check(
                units == calls * case.units_per_call,
                f"{backend} {case.label} {name}: {units} units, expected "
                f"{calls * case.units_per_call}",
            )
            samples[name].append(units / seconds)
        case.verify()
    rates = {name: statistics.median(s) for name, s in samples.items()}
    paired = "ceiling" in samples
    ratios = round_ratios(samples["store"], samples["ceiling"]) if paired else []
    spread = {name: (max(s) - min(s)) / rates[name] for name, s in samples.items()}
    return Measured(
        backend,
        case.key,
        case.label,
        case.unit,
        case.units_per_call,
        case.goal,
        calls,
        rates,
        spread,
        ratios,
        samples,
    )


@dataclass
class Results:
    """Everything measured in a run, for the summaries at its end."""

    measured: list[Measured] = field(default_factory=list)
    cycles: dict[str, tuple[float, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    http: list[Measured] = field(default_factory=list)  #: the HTTP comparison
    http_cycles: list[HttpCycles] = field(default_factory=list)  #: its supervisor cycles
    http_skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class HttpCycles:
    """One ``Supervisor.run_once()`` per side per round, over the same leased tasks."""

    backend: str
    leased: int  #: running tasks in each side's store, all of them listed every cycle
    pages: int  #: list_leased_tasks pages a cycle reads (HTTP requests, over HTTP)
    samples: dict[str, list[float]]  #: side -> ms of its cycle in each round, in round order

    def ms(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def round_ratios(self, name: str) -> list[float]:
        """``name`` / in-process, each round (the sides ran back to back)."""
        return round_ratios(self.samples[name], self.samples["direct"])

    def ratio(self, name: str) -> float:
        """The median of the rounds' ratios: how many times the in-process cycle's time."""
        return median_ratio(self.samples[name], self.samples["direct"])

    def added_ms(self, name: str) -> float:
        """Milliseconds added per page (HTTP request), from the two sides' medians."""
        return (self.ms(name) - self.ms("direct")) / self.pages
