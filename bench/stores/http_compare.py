"""The HTTP comparison: HTTPStore -> uvicorn on 127.0.0.1 -> a store, against the same
store called in-process.

Reserve+terminate, one at a time and in batches of 100, through each side's
client, measured with the same rounds as the stores (``bench.stores.measure``);
the ratio is the median of the rounds' HTTP / in-process. The checks: every
call reserved and terminated its full count, as answered over HTTP, and after
every round no task of the topic is left ``starting`` or ``running`` in any
side's store (read from the store itself, not over HTTP, except for a child's
in-memory store), and at the end every side's store holds exactly the tasks it
was given, all terminated.

Then the supervisor cycle over HTTP: every side's store is given the same
10,000 running tasks (2,000 with ``--quick``, as the output says), and one
``Supervisor.run_once()`` (every page of ``list_leased_tasks``, mark, sweep;
nothing changed between cycles) runs through each side's client. After a
warm-up cycle per side, each round runs one cycle per side, in an order that
rotates from round to round; each side's median is reported, and the ratio is
the median of the rounds' HTTP / in-process time. Every cycle is checked
(complete, every lease listed and monitored, nothing revoked: the lease is an
hour long), and at the end every side's store still holds exactly those
tasks, all running.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Callable, Sequence
from typing import Final

from returns.result import Success

from bench.harness import (
    Column,
    Table,
    check,
    fmt_percent,
    fmt_rate,
    median_ratio,
    rotated,
    round_ratios,
    timed,
    version_of,
)
from bench.stores.common import (
    BATCH,
    FULL,
    LEASED_TOPIC,
    PID,
    POLICY,
    TOPIC,
    Settings,
    terminations,
)
from bench.stores.http_setup import HTTP_LABELS, HTTP_MODES, HTTP_REQUESTS_PER_CALL, HttpBackend
from bench.stores.measure import Case, HttpCycles, Measured, Results, measure
from sokka.adapters.store import MAX_PAGE_SIZE
from sokka.core.task import Status
from sokka.shell.supervisor import Supervisor

#: The summaries' first column: the store behind the server.
BACKING: Final = (Column("backing", 9, "<"),)


def http_cases(backend: HttpBackend) -> list[Case]:
    """Reserve+terminate, one at a time and in batches, through each side's client."""

    def reserve_terminate(name: str, limit: int) -> Callable[[int], int]:
        store = backend.clients[name]
        where = f"http {backend.kind} {name}"

        def run(calls: int) -> int:
            done = 0
            for _ in range(calls):
                tasks = store.reserve_tasks(TOPIC, PID, limit)
                check(len(tasks) == limit, f"{where}: reserved {len(tasks)} of {limit}")
                if limit == 1:
                    task = tasks[0]
                    if store.terminate(task.task_id, PID, task.attempt).status is Status.TERMINATED:
                        done += 1
                    continue
                results = store.finish_many(terminations(tasks))
                done += sum(
                    isinstance(r, Success) and r.unwrap().status is Status.TERMINATED
                    for r in results
                )
            return done

        return run

    def prepare(per_call: int) -> Callable[[int], None]:
        return lambda calls: backend.add("starting", TOPIC, calls * per_call)

    def verify() -> None:
        for name in backend.names:
            left = sum(backend.counts(name, unfinished=True).values())
            check(left == 0, f"http {backend.kind} {name}: {left} of {TOPIC!r} not terminated")

    return [
        # Warm-up: 10 calls (the connection is kept alive after the first; psycopg
        # prepares after 5), not 30: at ~1 ms a request, --quick stays short.
        Case("http1", "reserve+terminate (one at a time)", "tasks/s", 1, 10,
             {name: reserve_terminate(name, 1) for name in backend.names}, prepare(1), verify),
        Case("http100", "reserve+terminate (batches of 100)", "tasks/s", BATCH, 3,
             {name: reserve_terminate(name, BATCH) for name in backend.names}, prepare(BATCH),
             verify),
    ]  # fmt: skip


def http_ratio(m: Measured, name: str) -> float:
    """The median of the rounds' ratios ``name`` / in-process (they ran in the same round)."""
    return median_ratio(m.samples[name], m.samples["direct"])


def http_added_us(m: Measured, name: str) -> float:
    """Microseconds added per HTTP request, from the two sides' median rates."""
    per_call = m.units_per_call / m.rates[name] - m.units_per_call / m.rates["direct"]
    return per_call / HTTP_REQUESTS_PER_CALL * 1e6


def http_supervisor_cycles(backend: HttpBackend, settings: Settings) -> HttpCycles:
    """``Supervisor.run_once()`` through each side's client, in interleaved rounds.

    Every side's store is given the same ``settings.http_leased`` running tasks on
    LEASED_TOPIC (the only leased tasks in it: every task of TOPIC was checked
    terminated). One warm-up cycle per side meets every lease; then in each of
    ``settings.cycles`` rounds every side runs one cycle, in an order that rotates
    from round to round. Every cycle is checked: complete, every lease listed and
    monitored, nothing revoked (the lease is an hour long). At the end every side's
    store still holds exactly those tasks, all running.
    """
    leased = settings.http_leased
    backend.add("running", LEASED_TOPIC, leased)
    backend.analyze()
    names = list(backend.names)
    direct = backend.clients["direct"]
    pages, cursor = 0, None
    while True:  # the pages one cycle reads (untimed, on the in-process store)
        page = direct.list_leased_tasks(None, cursor, MAX_PAGE_SIZE)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    supervisors = {name: Supervisor(backend.clients[name], None, POLICY) for name in names}

    def cycle(name: str) -> float:
        gc.collect()
        report, seconds = timed(supervisors[name].run_once)
        where = f"http {backend.kind} {name} supervisor"
        check(
            report.complete and report.listed == leased and report.monitored == leased,
            f"{where} listed {report.listed}, monitored {report.monitored} of {leased} "
            f"(complete={report.complete}, listing errors: {report.listing_errors})",
        )
        check(
            not (report.revoked or report.failed or report.woken or report.conflicts
                 or report.retryable_errors),
            f"{where} revoked something: {report}",
        )  # fmt: skip
        return seconds * 1000

    gc.collect()
    gc.freeze()  # the leased tasks just made, as run_http froze the set-up's
    for name in names:
        cycle(name)  # the first cycle meets every lease
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(settings.cycles):
        for name in rotated(names, r):
            samples[name].append(cycle(name))
    for name in names:
        counts = backend.counts(name, topic=LEASED_TOPIC)
        check(
            counts == {"running": leased},
            f"http {backend.kind} {name}: {counts} on {LEASED_TOPIC!r} after the supervisor "
            f"cycles, expected {leased} running",
        )
    return HttpCycles(backend.kind, leased, pages, samples)


def _cycle_table(modes: Sequence[str], leading: tuple[Column, ...] = ()) -> Table:
    """The supervisor cycle's time: in-process, and per server its time, ratio and ms added."""
    columns = [*leading, Column("in-process", 10)]
    for name in modes:
        columns += [Column(HTTP_LABELS[name], 11, before="  "), Column("ratio", 6),
                    Column("+ms/req", 7)]  # fmt: skip
    return Table(tuple(columns))


def _cycle_cells(c: HttpCycles) -> list[str]:
    cells = [f"{c.ms('direct'):.1f} ms"]
    for name in HTTP_MODES:
        if name in c.samples:
            cells += [f"{c.ms(name):.1f} ms", f"{c.ratio(name):.1f}x", f"{c.added_ms(name):.1f}"]
    return cells


def _leased_note(settings: Settings) -> str:
    if settings.http_leased == FULL.http_leased:
        return ""
    return f" (--quick: {settings.http_leased:,} leased tasks, not {FULL.http_leased:,})"


def _http_modes(m: Measured) -> list[str]:
    return [name for name in HTTP_MODES if name in m.rates]


def _http_table(modes: Sequence[str], leading: tuple[Column, ...] = ()) -> Table:
    """An operation's rate: in-process, and per server its rate, ratio and us added."""
    columns = [*leading, Column("operation", 38, "<"), Column("unit", 9, "<"),
               Column("in-process", 10)]  # fmt: skip
    for name in modes:
        columns += [Column(HTTP_LABELS[name], 11, before="  "), Column("ratio", 6),
                    Column("+us/req", 7)]  # fmt: skip
    return Table(tuple(columns))


def _http_cells(m: Measured) -> list[str]:
    cells = [m.label, m.unit, fmt_rate(m.rates["direct"])]
    for name in _http_modes(m):
        cells += [fmt_rate(m.rates[name]), fmt_percent(http_ratio(m, name), 1),
                  f"{http_added_us(m, name):.0f}"]  # fmt: skip
    return cells


def run_http(
    backend: HttpBackend, settings: Settings, results: Results, out: Callable[[str], None]
) -> None:
    """One backing store's section: reserve+terminate, then the supervisor cycle, checked."""
    out(f"\n== HTTP: HTTPStore -> uvicorn on 127.0.0.1 -> {backend.label}; against the same "
        "store called in-process ==")  # fmt: skip
    gc.collect()
    gc.freeze()
    sides = ", ".join(HTTP_LABELS[name] for name in backend.names)
    out(f"set-up: {settings.finished:,} terminated tasks on topic {TOPIC!r}, in each of "
        f"{len(backend.names)} identical stores ({sides}), servers started "
        f"({backend.setup_s:.1f} s)")  # fmt: skip
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    versions = {n: version_of(n) for n in ("uvicorn", "starlette", "httpx")}
    out(f"servers: uvicorn {versions['uvicorn']} ({loop}, {http}), Starlette "
        f"{versions['starlette']}; client: HTTPStore on httpx {versions['httpx']}, one "
        "kept-alive connection")  # fmt: skip
    for name, how in backend.servers.items():
        out(f"  {HTTP_LABELS[name]}: {how}")
    modes = [n for n in HTTP_MODES if n in backend.names]
    rounds = (Column("calls/round", 11, before="   "), Column("spread", 6, before="  "))
    table = _http_table(modes) + Table(rounds)
    out(f"  {table.header()}")
    for case in http_cases(backend):
        m = measure(backend.kind, case, settings)
        results.http.append(m)
        spread = fmt_percent(max(m.spread.values()), 1)
        out(f"  {table.row(*_http_cells(m), f'{m.calls:,}', spread)}")
    out("  ratio: median of the rounds' HTTP / in-process; +us/req: time added per HTTP "
        f"request ({HTTP_REQUESTS_PER_CALL} per call: reserve_tasks, then terminate or "
        "finish_many)")  # fmt: skip
    for name in backend.names:  # every task each store was given ended terminated
        counts = backend.counts(name)
        check(
            counts == {"terminated": backend.added},
            f"http {backend.kind} {name}: {counts} on {TOPIC!r}, expected "
            f"{backend.added} terminated",
        )
    out(f"  checked: every side's store holds its {backend.added:,} tasks of {TOPIC!r}, all "
        "terminated")  # fmt: skip

    c = http_supervisor_cycles(backend, settings)
    results.http_cycles.append(c)
    out(f"  supervisor cycle: Supervisor.run_once() over {c.leased:,} leased tasks on "
        f"{LEASED_TOPIC!r} ({c.pages} pages of list_leased_tasks), nothing changed; median "
        f"of {settings.cycles} rounds, one cycle per side per round"
        f"{_leased_note(settings)}")  # fmt: skip
    out(f"    {_cycle_table(modes).header()}")
    out(f"    {_cycle_table(modes).row(*_cycle_cells(c))}")
    out("    ratio: median of the rounds' HTTP / in-process cycle time; +ms/req: time added "
        "per page (one HTTP request each)")  # fmt: skip
    out(f"  checked: every cycle complete, listed and monitored all {c.leased:,} leases, "
        f"revoked nothing; every side's store still holds them, all running")  # fmt: skip


def summary_http(results: Results, out: Callable[[str], None]) -> None:
    """The HTTP comparison's summary: every backing store, every server, with ranges."""
    out("\n== HTTP summary (medians over the rounds; ratio: median of the rounds' HTTP / "
        "in-process, with its range) ==")  # fmt: skip
    modes = [n for n in HTTP_MODES if any(n in m.rates for m in results.http)]
    out(_http_table(modes, BACKING).header())
    for m in results.http:
        out(_http_table(_http_modes(m), BACKING).row(m.backend, *_http_cells(m)))
    for m in results.http:
        for name in _http_modes(m):
            ratios = round_ratios(m.samples[name], m.samples["direct"])
            out(f"  {m.backend:<9} {m.label:<38} {HTTP_LABELS[name]:<11} "
                f"{100 * http_ratio(m, name):5.1f}% (rounds {100 * min(ratios):.1f}-"
                f"{100 * max(ratios):.1f}%)")  # fmt: skip
    if results.http_cycles:
        leased = sorted({c.leased for c in results.http_cycles})
        out(f"\nsupervisor cycle over HTTP: Supervisor.run_once() over "
            f"{'/'.join(f'{n:,}' for n in leased)} leased tasks, nothing changed (median of "
            "the rounds; ratio: median of the rounds' HTTP / in-process time, with its "
            "range)" + ("" if leased == [FULL.http_leased] else
                        f"; --quick: not {FULL.http_leased:,} leased tasks"))  # fmt: skip
        out(_cycle_table(modes, BACKING).header())
        for c in results.http_cycles:
            modes_of_c = [n for n in HTTP_MODES if n in c.samples]
            out(_cycle_table(modes_of_c, BACKING).row(c.backend, *_cycle_cells(c)))
        for c in results.http_cycles:
            for name in HTTP_MODES:
                if name in c.samples:
                    low, high = min(c.round_ratios(name)), max(c.round_ratios(name))
                    out(f"  {c.backend:<9} supervisor cycle {HTTP_LABELS[name]:<11} "
                        f"{c.ratio(name):5.1f}x (rounds {low:.1f}-{high:.1f}x)")  # fmt: skip
    if "thread" in modes:
        out("HTTP thread: the server on a thread of this process, sharing the GIL with the "
            "client")  # fmt: skip
    if "process" in modes:
        out("HTTP child: the server in a child process (python -c uvicorn): no GIL shared")
    for name, why in results.http_skipped.items():
        out(f"  {name}: not measured ({why})")
