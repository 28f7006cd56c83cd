"""One store's section of the output, the stores' summary, and ``--profile``."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Final

from bench.harness import (
    Column,
    Table,
    check,
    fmt_percent,
    fmt_rate,
    timed,
    verdict,
)
from bench.profiling import by_area, label, own_time, stats_of
from bench.stores.audit import audit
from bench.stores.backends import Backend, PostgresBackend, SqlBackend
from bench.stores.common import (
    GOAL_CYCLE_MS,
    GOAL_RATIO,
    LEASED_TOPIC,
    PLAN_READY,
    TOPIC,
    Settings,
)
from bench.stores.measure import Case, Measured, Results, measure
from bench.stores.operations import build_cases, supervisor_cycles

_OPERATION: Final = (Column("operation", 38, "<"), Column("unit", 9, "<"), Column("store", 10))
_CEILING: Final = (Column("ceiling", 10), Column("ratio", 6), Column("minimal*", 10))
_ROUNDS: Final = (Column("calls/round", 11, before="   "), Column("spread", 6, before="  "))
#: The stores' summary: every operation of every store, against its ceiling.
SUMMARY: Final = Table((Column("store", 9, "<"), *_OPERATION, *_CEILING))


def _operations_table(sql: bool) -> Table:
    """A store's operations (with the ceiling's and the minimal loop's for a SQL store)."""
    return Table((*_OPERATION, *(_CEILING if sql else ()), *_ROUNDS), indent="  ")


def _against_ceiling(m: Measured) -> list[str]:
    """The ceiling's rate, the store's ratio to it, the minimal loop's rate: as cells."""
    return [
        fmt_rate(m.rates.get("ceiling")),
        fmt_percent(m.ratio()),
        fmt_rate(m.rates.get("minimal")),
    ]


def run_backend(
    backend: Backend, settings: Settings, results: Results, out: Callable[[str], None]
) -> None:
    """One store's section: set-up, query plans and audit (SQL), operations, supervisor."""
    out(f"\n== {backend.label} ==")
    started = time.perf_counter()
    backend.add("terminated", TOPIC, settings.finished)
    backend.add("running", LEASED_TOPIC, settings.leased)
    if isinstance(backend, SqlBackend):
        backend.tokens = backend.leased_tokens()
    check(len(backend.tokens) == settings.leased, "set-up: leased tasks missing")
    # Collections during the timed loops need not re-traverse the set-up's objects
    # (the memory store's tasks, the lease tokens): the same for every side.
    gc.collect()
    gc.freeze()
    out(f"set-up: {settings.finished:,} terminated tasks on topic {TOPIC!r}, "
        f"{settings.leased:,} running on {LEASED_TOPIC!r}"
        + (", in each of 3 identical tables (store, ceiling, minimal)"
           if isinstance(backend, SqlBackend) else "")
        + f" ({time.perf_counter() - started:.1f} s)")  # fmt: skip

    if isinstance(backend, SqlBackend):
        backend.add("starting", TOPIC, PLAN_READY)
        if isinstance(backend, PostgresBackend):
            backend.analyze()
        analyzed = " after ANALYZE" if isinstance(backend, PostgresBackend) else ""
        out(f"query plans (store table, {PLAN_READY:,} ready tasks on {TOPIC!r} behind the "
            f"{settings.finished:,} terminated ones{analyzed}):")  # fmt: skip
        for label, sql, lines in backend.plans():
            where = sql[sql.index("WHERE") :].replace("\n", "")
            out(f"  {label}: ... {' '.join(where.split())}")
            for line in lines:
                out(f"      {line}")
        backend.finish_plan_rows()
        out("statement audit (each operation once on the store and on the ceiling; the "
            "statements sent to the driver must match):")  # fmt: skip
        for line in audit(backend):
            out(f"  same: {line}")

    table = _operations_table(isinstance(backend, SqlBackend))
    out(table.header())
    measured_here = []
    cases = build_cases(backend)
    for case in cases:
        m = measure(backend.name, case, settings)
        measured_here.append(m)
        results.measured.append(m)
        cells = [case.label, case.unit, fmt_rate(m.rates["store"])]
        if isinstance(backend, SqlBackend):
            cells += _against_ceiling(m)
        out(table.row(*cells, f"{m.calls:,}", fmt_percent(max(m.spread.values()), 1)))
    if isinstance(backend, SqlBackend):
        out("  * minimal: the one-statement claim + one-statement finish loop; a different, "
            "smaller set of statements, NOT the ceiling")  # fmt: skip

    for side in backend.sides:  # every task ever reserved on TOPIC ended terminated
        counts = backend.counts(side, TOPIC)
        check(set(counts) <= {"terminated"}, f"{backend.name} {side}: {counts} on {TOPIC!r}")

    steady = supervisor_cycles(backend, settings, changed=False)
    changing = supervisor_cycles(backend, settings, changed=True)
    results.cycles[backend.name] = (steady, changing)
    out(f"  supervisor cycle (run_once over {len(backend.tokens):,} leased tasks, median of "
        f"{settings.cycles}): {steady:.0f} ms unchanged, {changing:.0f} ms with 1% of the leases "
        "extended between cycles")  # fmt: skip

    if settings.profile and isinstance(backend, SqlBackend):
        # The lowest ratio to the ceiling, and every goal operation that missed.
        with_ratio = [m for m in measured_here if m.ratio() is not None]
        chosen = [min(with_ratio, key=lambda m: m.ratio() or 0.0)]
        chosen += [m for m in with_ratio
                   if m.goal and (m.ratio() or 0.0) < GOAL_RATIO and m not in chosen]  # fmt: skip
        for m in chosen:
            (case,) = (c for c in cases if c.key == m.key)
            profile_case(backend, case, m.calls, out)


def summary_stores(results: Results, settings: Settings, out: Callable[[str], None]) -> None:
    """The stores' summary: every operation of every store, the cycles, the goals."""
    out("\n== summary (medians over the rounds; ratio: median of the rounds' store / ceiling) ==")
    out(SUMMARY.header())
    for m in results.measured:
        out(
            SUMMARY.row(
                m.backend, m.label, m.unit, fmt_rate(m.rates["store"]), *_against_ceiling(m)
            )
        )
    if any("minimal" in m.rates for m in results.measured):
        out("* minimal: one UPDATE ... RETURNING claims, one UPDATE finishes: a different, "
            "smaller set of statements, NOT the ceiling")  # fmt: skip
    if results.cycles:
        out(f"\nsupervisor cycle, Supervisor.run_once() over {settings.leased:,} leased tasks "
            f"(median of {settings.cycles} cycles):")  # fmt: skip
        for name, (steady, changing) in results.cycles.items():
            out(f"  {name:<9} {steady:7.0f} ms unchanged   {changing:7.0f} ms with 1% extended")
    out("\ngoals:")
    for m in results.measured:
        ratio = m.ratio()
        if m.goal and ratio is not None:
            low, high = min(m.round_ratios), max(m.round_ratios)
            out(f"  {m.backend:<9} {m.label:<38} {100 * ratio:5.1f}% of the ceiling "
                f"(rounds {100 * low:.0f}-{100 * high:.0f}%; {fmt_rate(m.rates['store'])} vs "
                f"{fmt_rate(m.rates['ceiling'])} {m.unit}); goal >= {100 * GOAL_RATIO:.0f}%: "
                f"{verdict(ratio >= GOAL_RATIO)}")  # fmt: skip
    if "postgres" in results.cycles:
        for variant, ms in zip(("unchanged", "1% extended"), results.cycles["postgres"],
                               strict=True):  # fmt: skip
            out(f"  postgres  supervisor cycle, {variant:<28} {ms:4.0f} ms; goal < "
                f"{GOAL_CYCLE_MS:.0f} ms: {verdict(ms < GOAL_CYCLE_MS)}")  # fmt: skip
    for name, why in results.skipped.items():
        out(f"  {name}: not measured ({why})")


#: Where a store's time goes, by the file (or name) of the function that spends it.
AREAS: Final = (
    ("sqlalchemy/", "SQLAlchemy (Core execution, pool, result rows)"),
    ("psycopg", "psycopg (driver, incl. waiting for the server)"),
    ("sqlite3.", "sqlite3 (driver + SQLite engine)"),
    ("sokka/core/transitions.py", "sokka core: apply (transitions.py)"),
    ("sokka/core/task.py", "sokka core: Task / validation (task.py)"),
    ("sokka/core/", "sokka core: other"),
    ("sokka/adapters/sql.py", "sokka SQLStore (sql.py: _task, _write, _changed_columns ...)"),
    ("sokka/adapters/", "sokka adapters: other"),
    ("dataclasses", "dataclasses (replace)"),
    ("returns/", "returns (Result)"),
    ("json/", "json"),
    ("uuid", "uuid"),
    ("threading", "threading"),
)


def _other_area(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    if name.startswith(("<built-in", "<method", "<function")):
        return "Python built-ins (getattr, isinstance, ...)"
    return "other Python: " + os.path.basename(filename)


def profile_case(backend: Backend, case: Case, calls: int, out: Callable[[str], None]) -> None:
    """cProfile ``calls`` calls of the store side of ``case``; print where the time went."""
    import cProfile

    case.prepare(calls)
    profiler = cProfile.Profile()
    gc.collect()
    units, seconds = timed(profiler.runcall, case.sides["store"], calls)
    for name, run in case.sides.items():  # the other tables got the same tasks: use them up
        if name != "store":
            run(calls)
    case.verify()
    check(units == calls * case.units_per_call, "profile: wrong unit count")
    stats = stats_of(profiler)
    total = sum(row[2] for row in stats.values())
    out(f"profile: {backend.name} store, {case.label}: {calls} calls, {seconds:.2f} s under "
        f"cProfile (its overhead inflates Python-heavy parts)")  # fmt: skip
    out("  self time by area:")
    for area, spent in by_area(stats, AREAS, _other_area)[:12]:
        out(f"    {100 * spent / total:5.1f}%  {area}")
    out("  top functions by self time (tottime; cumtime):")
    for func, row in own_time(stats, 15):
        out(f"    {100 * row[2] / total:5.1f}%  {row[2] * 1e6 / calls:7.1f} us/call  "
            f"cum {row[3] * 1e6 / calls:7.1f} us/call  {label(func)[:90]}")  # fmt: skip
