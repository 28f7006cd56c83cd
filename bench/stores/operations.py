"""The operations measured on each store, and its supervisor cycle.

Operations per second of:

* ``create_task`` one at a time, and ``create_tasks`` in batches of 100;
* reserve+terminate one at a time (``reserve_tasks(limit=1)`` + ``terminate``);
* reserve+terminate in batches of 100 (``reserve_tasks(limit=100)`` +
  ``finish_many`` of 100 ``Terminate`` outcomes);
* ``extend_leases`` of one lease, and of 100 leases;
* one page (1000 tasks) of ``list_leased_tasks``;

and the time of one full supervisor cycle (``Supervisor.run_once()``: every
page of leased tasks, mark, sweep) over the leased tasks, with nothing changed
between cycles and with 1% of the leases extended between cycles. Every
measured call is checked: every reserved task ended terminated, every batch
element succeeded, every page was full.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from typing import Any

from returns.result import Success

from bench.harness import check, timed
from bench.stores.backends import Backend
from bench.stores.common import (
    BATCH,
    CREATE_TOPIC,
    PAGE,
    PID,
    POLICY,
    TOPIC,
    Settings,
    payload,
    payload_json,
    terminations,
)
from bench.stores.measure import Case
from sokka.core.task import Status, TaskSpec
from sokka.shell.supervisor import Supervisor


def build_cases(backend: Backend) -> list[Case]:
    """The operations measured on ``backend``: the store's side, and for a SQL store
    the ceiling's and (reserve+terminate) the minimal loop's."""
    store = backend.store
    raw, minimal = backend.raw, backend.minimal
    tokens = backend.tokens
    leases = [(t.task_id, t.attempt) for t in tokens]
    inputs: dict[str, Any] = {}

    # -- create
    def prepare_create(calls_times: int) -> Callable[[int], None]:
        def prepare(calls: int) -> None:
            count = calls * calls_times
            inputs["specs"] = [TaskSpec(topic=CREATE_TOPIC, data=payload(i)) for i in range(count)]
            inputs["datas"] = [payload_json(i) for i in range(count)]

        return prepare

    def store_create_one(calls: int) -> int:
        for spec in inputs["specs"][:calls]:
            store.create_task(spec)
        return calls

    def store_create_batch(calls: int) -> int:
        specs = inputs["specs"]
        done = 0
        for i in range(0, calls * BATCH, BATCH):
            results = store.create_tasks(specs[i : i + BATCH])
            done += sum(isinstance(r, Success) for r in results)
        return done

    # -- reserve + terminate
    def prepare_ready(per_call: int) -> Callable[[int], None]:
        return lambda calls: backend.add("starting", TOPIC, calls * per_call)

    def store_reserve_one(calls: int) -> int:
        done = 0
        for _ in range(calls):
            tasks = store.reserve_tasks(TOPIC, PID, 1)
            check(len(tasks) == 1, "store: reserved nothing")
            task = tasks[0]
            if store.terminate(task.task_id, PID, task.attempt).status is Status.TERMINATED:
                done += 1
        return done

    def store_reserve_batch(calls: int) -> int:
        done = 0
        for _ in range(calls):
            tasks = store.reserve_tasks(TOPIC, PID, BATCH)
            results = store.finish_many(terminations(tasks))
            done += sum(isinstance(r, Success) for r in results)
        return done

    def verify_reserved() -> None:
        for side in backend.sides:
            counts = backend.counts(side, TOPIC)
            left = counts.get("starting", 0) + counts.get("running", 0)
            check(left == 0, f"{backend.name} {side}: {left} tasks of {TOPIC!r} not terminated")

    # -- extend
    def store_extend(size: int) -> Callable[[int], int]:
        batches = [tokens[i : i + size] for i in range(0, len(tokens) - size + 1, size)]
        offset = [0]

        def run(calls: int) -> int:
            done = 0
            start = offset[0]
            for i in range(start, start + calls):
                results = store.extend_leases(PID, batches[i % len(batches)])
                done += sum(isinstance(r, Success) for r in results)
            offset[0] = start + calls
            return done

        return run

    # -- list
    def store_list(calls: int) -> int:
        done = 0
        for _ in range(calls):
            page = store.list_leased_tasks(None, None, PAGE)
            check(page.next_cursor is not None, "list_leased_tasks: expected more pages")
            done += len(page.tasks) == PAGE
        return done

    cases = [
        Case("create1", "create_task (one at a time)", "tasks/s", 1, 30,
             {"store": store_create_one}, prepare_create(1)),
        Case("create100", "create_tasks (batches of 100)", "tasks/s", BATCH, 3,
             {"store": store_create_batch}, prepare_create(BATCH)),
        Case("rt1", "reserve+terminate (one at a time)", "tasks/s", 1, 30,
             {"store": store_reserve_one}, prepare_ready(1), verify_reserved, goal=True),
        Case("rt100", "reserve+terminate (batches of 100)", "tasks/s", BATCH, 3,
             {"store": store_reserve_batch}, prepare_ready(BATCH), verify_reserved, goal=True),
        Case("ext1", "extend_leases (1 lease)", "calls/s", 1, 30,
             {"store": store_extend(1)}),
        Case("ext100", "extend_leases (100 leases)", "leases/s", BATCH, 3,
             {"store": store_extend(BATCH)}),
        Case("list", "list_leased_tasks (page of 1000)", "pages/s", 1, 5,
             {"store": store_list}),
    ]  # fmt: skip
    if raw is None or minimal is None:
        return cases

    def raw_create(size: int) -> Callable[[int], int]:
        def run(calls: int) -> int:
            datas = inputs["datas"]
            return sum(
                raw.create(CREATE_TOPIC, datas[i : i + size]) for i in range(0, calls * size, size)
            )

        return run

    def raw_reserve(limit: int) -> Callable[[int], int]:
        def run(calls: int) -> int:
            done = 0
            for _ in range(calls):
                taken = raw.reserve(TOPIC, PID, limit)
                check(len(taken) == limit, "raw: reserved too few")
                done += raw.terminate(PID, taken)
            return done

        return run

    def minimal_reserve(limit: int) -> Callable[[int], int]:
        def run(calls: int) -> int:
            done = 0
            for _ in range(calls):
                taken = minimal.claim(TOPIC, PID, limit)
                check(len(taken) == limit, "minimal: claimed too few")
                done += minimal.finish(PID, taken)
            return done

        return run

    def raw_extend(size: int) -> Callable[[int], int]:
        batches = [leases[i : i + size] for i in range(0, len(leases) - size + 1, size)]
        offset = [0]

        def run(calls: int) -> int:
            done = 0
            start = offset[0]
            for i in range(start, start + calls):
                done += raw.extend(PID, batches[i % len(batches)])
            offset[0] = start + calls
            return done

        return run

    def raw_list(calls: int) -> int:
        return sum(len(raw.list_leased(PAGE)) == PAGE for _ in range(calls))

    extra: dict[str, dict[str, Callable[[int], int]]] = {
        "create1": {"ceiling": raw_create(1)},
        "create100": {"ceiling": raw_create(BATCH)},
        "rt1": {"ceiling": raw_reserve(1), "minimal": minimal_reserve(1)},
        "rt100": {"ceiling": raw_reserve(BATCH), "minimal": minimal_reserve(BATCH)},
        "ext1": {"ceiling": raw_extend(1)},
        "ext100": {"ceiling": raw_extend(BATCH)},
        "list": {"ceiling": raw_list},
    }
    for case in cases:
        case.sides.update(extra[case.key])
    return cases


def supervisor_cycles(backend: Backend, settings: Settings, changed: bool) -> float:
    """Median ms of ``Supervisor.run_once()``.

    With ``changed``, 1% of the leases are extended (untimed) before each cycle.
    """
    store = backend.store
    tokens = backend.tokens
    supervisor = Supervisor(store, None, POLICY)
    supervisor.run_once()  # the first cycle meets every lease
    step = max(1, len(tokens) // 100)
    times = []
    for cycle in range(settings.cycles):
        if changed:
            first = (cycle * step) % (len(tokens) - step + 1)
            results = store.extend_leases(PID, tokens[first : first + step])
            check(all(isinstance(r, Success) for r in results), "supervisor: extend failed")
        gc.collect()
        report, seconds = timed(supervisor.run_once)
        times.append(seconds * 1000)
        check(
            report.complete and report.listed == len(tokens) and report.monitored == len(tokens),
            f"{backend.name} supervisor listed {report.listed} of {len(tokens)} "
            f"(complete={report.complete}, monitored={report.monitored})",
        )
        check(
            not (report.revoked or report.failed or report.woken or report.conflicts),
            f"{backend.name} supervisor revoked something: {report}",
        )
    return statistics.median(times)
