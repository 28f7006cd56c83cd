"""The PostgreSQL store while its server goes away and comes back.

A private server (``tests/private_postgres.py``; never the shared one) is
stopped twice under load, once with ``pg_ctl stop -m fast`` and once with
``-m immediate`` (a crash, recovered on the next start), and kept down about
two seconds each time. Meanwhile a worker reserves and terminates tasks and a
supervisor revokes the leases nobody keeps alive.

What must hold:

* while the server is down, store calls fail with ``RetryableError``
  (``Unavailable``) and nothing else: no driver exception escapes, and the
  supervisor records its failed listings instead of raising;
* once the server is back, the engine's pool recovers and work resumes;
* no task is lost (all end terminated) and none is terminated twice.

A terminate whose COMMIT was in flight when the server died may or may not
have committed; the client gets ``Unavailable`` either way. The worker then
re-reads the task (retrying while the server is down): terminated with its
attempt means the commit made it; otherwise it did not, and the worker walks
away from the task: the supervisor revokes the lapsed lease (500 ms) and the
task is reserved again with the next attempt (a rescue, not a duplicate).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import pytest

from sokka.adapters.sql import SQLStore
from sokka.adapters.store import Page, TaskFilter
from sokka.core.errors import (
    InvalidTransition,
    LeaseLost,
    RetryableError,
    StaleRecord,
)
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.supervisor import Supervisor
from tests.private_postgres import PrivatePostgres, private_postgres

TOPIC = "faults"
PID = "worker-1"
TASKS = 300
WORK_S = 0.01  # each task "works" this long, so the run spans both outages
DOWN_S = 2.0
RESUME_TIMEOUT_S = 20.0
POLICY = LeasePolicy(lease_time_ms=500, default_snooze_ms=500)

_T = TypeVar("_T")


@pytest.fixture
def server() -> Iterator[PrivatePostgres]:
    pytest.importorskip("psycopg")
    with private_postgres() as made:
        yield made


@dataclass
class Outage:
    mode: str
    down_at: float = 0.0  # monotonic: pg_ctl stop began
    up_at: float = 0.0  # monotonic: pg_ctl start -w returned

    def covers(self, at: float) -> bool:
        return self.down_at <= at <= self.up_at

    def overlaps(self, started: float, ended: float) -> bool:
        return started <= self.up_at and ended >= self.down_at


@dataclass(repr=False)
class Record:
    """What the two loops saw; the lists are appended from their threads."""

    stop: threading.Event = field(default_factory=threading.Event)
    unexpected: list[str] = field(default_factory=list)  # tracebacks
    # (when, call, error) for every RetryableError the worker met
    worker_errors: list[tuple[float, str, RetryableError]] = field(default_factory=list)
    terminated: list[tuple[str, int]] = field(default_factory=list)  # (task_id, attempt)
    in_doubt_committed: int = 0  # terminate raised Unavailable, but it had committed
    in_doubt_abandoned: int = 0  # terminate raised Unavailable and had not committed
    leases_lost: int = 0
    # (started, ended, listing_errors, retryable revoke errors) per supervisor cycle
    cycles: list[tuple[float, float, tuple[str, ...], int]] = field(default_factory=list)
    # (when, method, error) for every exception a store call of the supervisor raised
    supervisor_errors: list[tuple[float, str, Exception]] = field(default_factory=list)
    revoked: int = 0

    def fail(self, where: str) -> None:
        self.unexpected.append(f"{where}:\n{traceback.format_exc()}")


class RecordingStore:
    """Passes the supervisor's calls to the store, noting every exception they raise."""

    def __init__(self, inner: SQLStore, record: Record) -> None:
        self._inner = inner
        self._record = record

    def _call(self, method: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except Exception as error:
            self._record.supervisor_errors.append((time.monotonic(), method, error))
            raise

    def list_leased_tasks(
        self, topic: str | None = None, cursor: str | None = None, limit: int = 1000
    ) -> Page:
        return self._call(
            "list_leased_tasks", lambda: self._inner.list_leased_tasks(topic, cursor, limit)
        )

    def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        return self._call("revoke_lease", lambda: self._inner.revoke_lease(task_id, record_ver))


def _retrying(record: Record, call: Callable[[], _T], what: str) -> _T | None:
    """``call()`` until it does not raise RetryableError; None when asked to stop."""
    while not record.stop.is_set():
        try:
            return call()
        except RetryableError as error:
            record.worker_errors.append((time.monotonic(), what, error))
            record.stop.wait(0.05)
    return None


def _finish(store: SQLStore, record: Record, task: Task) -> None:
    """Terminate one reserved task, settling a terminate whose outcome is unknown."""
    try:
        store.terminate(task.task_id, PID, task.attempt)
    except LeaseLost:
        record.leases_lost += 1  # revoked meanwhile: it will be reserved again
        return
    except RetryableError as error:
        record.worker_errors.append((time.monotonic(), "terminate", error))
        seen = _retrying(record, lambda: store.get_task(task.task_id), "get_task")
        if seen is not None and seen.status is Status.TERMINATED and seen.attempt == task.attempt:
            record.in_doubt_committed += 1  # the COMMIT made it before the connection died
            record.terminated.append((task.task_id, task.attempt))
        else:
            record.in_doubt_abandoned += 1  # left to the supervisor: revoked, reserved again
        return
    record.terminated.append((task.task_id, task.attempt))


def _worker(store: SQLStore, record: Record) -> None:
    try:
        while not record.stop.is_set():
            try:
                batch = store.reserve_tasks(TOPIC, PID, limit=5)
            except RetryableError as error:
                record.worker_errors.append((time.monotonic(), "reserve_tasks", error))
                record.stop.wait(0.05)
                continue
            if not batch:
                record.stop.wait(0.02)
                continue
            for task in batch:
                time.sleep(WORK_S)  # the task's work
                _finish(store, record, task)
    except BaseException:
        record.fail("worker")


def _supervise(supervisor: Supervisor, record: Record) -> None:
    try:
        while not record.stop.is_set():
            started = time.monotonic()
            report = supervisor.run_once()
            record.cycles.append(
                (started, time.monotonic(), report.listing_errors, report.retryable_errors)
            )
            record.revoked += len(report.revoked)
            record.stop.wait(0.1)
    except BaseException:
        record.fail("supervisor")


def _count_terminated(store: SQLStore) -> int | None:
    try:
        page = store.list_tasks(TaskFilter(topic=TOPIC, status=Status.TERMINATED), limit=1000)
    except RetryableError:
        return None
    return len(page.tasks)


def _at_least(record: Record, count: int) -> bool:
    return len(record.terminated) >= count


def _wait_for(predicate: Callable[[], bool], timeout_s: float, record: Record) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate() or record.unexpected:
            return predicate()
        time.sleep(0.05)
    return predicate()


def test_work_survives_server_restarts(server: PrivatePostgres) -> None:
    began = time.monotonic()
    store = SQLStore(server.url, connect_timeout_s=2, lock_timeout_ms=1_000, pool_size=4)
    record = Record()
    threads: list[threading.Thread] = []
    try:
        store.create_schema()
        created = store.create_tasks(
            [TaskSpec(topic=TOPIC, task_id=f"t{i:03d}", data={"i": i}) for i in range(TASKS)]
        )
        assert all(r.unwrap() for r in created)
        all_ids = {f"t{i:03d}" for i in range(TASKS)}
        supervisor = Supervisor(RecordingStore(store, record), TOPIC, POLICY, interval_ms=100)  # type: ignore[arg-type]
        threads = [
            threading.Thread(target=_worker, args=(store, record), name="faults-worker"),
            threading.Thread(target=_supervise, args=(supervisor, record), name="faults-sup"),
        ]
        for thread in threads:
            thread.start()

        outages = [Outage("fast"), Outage("immediate")]
        for outage, done_before in zip(outages, (TASKS // 5, TASKS // 2), strict=True):
            reached = _wait_for(partial(_at_least, record, done_before), 15, record)
            if record.unexpected:
                break  # reported below, after the threads stop
            assert reached, (
                f"work stalled before the {outage.mode} outage: "
                f"{len(record.terminated)} of {TASKS} tasks terminated"
            )
            assert len(record.terminated) < TASKS, "the work ended before the outage"
            outage.down_at = time.monotonic()
            server.stop(outage.mode)
            time.sleep(DOWN_S)
            server.start()
            outage.up_at = time.monotonic()

        resumed = not record.unexpected and _wait_for(
            lambda: _count_terminated(store) == TASKS, RESUME_TIMEOUT_S, record
        )
        finished_at = time.monotonic()
    finally:
        record.stop.set()
        for thread in threads:
            thread.join(10)
        hung = [t.name for t in threads if t.is_alive()]
    try:
        assert not hung, f"threads did not stop: {hung}"
        final = {t.task_id: t for t in store.list_tasks(TaskFilter(topic=TOPIC), limit=1000).tasks}
    finally:
        store.close()
    print(_summary(record, outages, final, finished_at - began))
    assert record.unexpected == [], "\n".join(record.unexpected)

    # While the server was down, both loops saw retryable errors, and only those.
    for outage in outages:
        worker_seen = [e for at, _, e in record.worker_errors if outage.covers(at)]
        assert worker_seen, f"the worker saw no error while the server was down ({outage})"
        supervisor_seen = [
            cycle
            for cycle in record.cycles
            if outage.overlaps(cycle[0], cycle[1]) and (cycle[2] or cycle[3])
        ]
        assert supervisor_seen, f"the supervisor saw no error during the outage ({outage})"
    assert all(isinstance(e, RetryableError) for _, _, e in record.worker_errors)
    assert any(method == "list_leased_tasks" for _, method, _ in record.supervisor_errors)
    wrong = [
        repr(e)
        for _, method, e in record.supervisor_errors
        if not isinstance(e, RetryableError)
        and not (method == "revoke_lease" and isinstance(e, StaleRecord | InvalidTransition))
    ]
    assert wrong == [], f"the supervisor's store calls raised non-retryable errors: {wrong}"

    # Work resumed after the restarts; no task lost, none terminated twice.
    assert resumed, (
        f"{RESUME_TIMEOUT_S:.0f} s after the last restart, not every task is terminated: "
        f"{Counter(t.status.value for t in final.values())}"
    )
    assert set(final) == all_ids
    assert all(t.status is Status.TERMINATED for t in final.values())
    twice = {k: n for k, n in Counter(i for i, _ in record.terminated).items() if n > 1}
    assert twice == {}, f"tasks terminated more than once: {twice}"
    assert {i for i, _ in record.terminated} == all_ids
    # Each task ended on the attempt whose terminate the worker saw succeed.
    assert {(t.task_id, t.attempt) for t in final.values()} == set(record.terminated)


def _summary(record: Record, outages: list[Outage], final: dict[str, Task], took_s: float) -> str:
    def errors_in(outage: Outage) -> str:
        worker = sum(1 for at, _, _ in record.worker_errors if outage.covers(at))
        cycles = [c for c in record.cycles if outage.overlaps(c[0], c[1])]
        listing = sum(len(c[2]) for c in cycles)
        revoke = sum(c[3] for c in cycles)
        return (
            f"  stop -m {outage.mode:<9}: down {outage.up_at - outage.down_at:.2f} s; worker "
            f"{worker} retryable errors; supervisor {listing} listing errors, "
            f"{revoke} retryable revoke errors"
        )

    kinds = Counter(f"{what}:{type(e).__name__}" for _, what, e in record.worker_errors)
    late = [at for at, _, _ in record.worker_errors if at > outages[-1].up_at + 1]
    done = Counter(t.status.value for t in final.values())
    rescued = sum(1 for t in final.values() if t.attempt > 1)
    return (
        f"\nsql faults: {len(final)} tasks ({dict(done)}), "
        f"{len(record.terminated)} successful terminates, {took_s:.1f} s in all\n"
        + "\n".join(errors_in(o) for o in outages)
        + f"\n  worker errors by call: {dict(kinds)}"
        f"\n  worker errors more than 1 s after the last restart: {len(late)}"
        f"\n  terminates in doubt: {record.in_doubt_committed} had committed, "
        f"{record.in_doubt_abandoned} had not (left to lapse); leases lost: {record.leases_lost}"
        f"\n  supervisor: {len(record.cycles)} cycles, {record.revoked} leases revoked; "
        f"rescued tasks (attempt > 1): {rescued}; unexpected exceptions: {len(record.unexpected)}"
    )
