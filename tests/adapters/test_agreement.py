"""Agreement: every store answers a random sequence of calls exactly as the
reference (``MemoryStore``) does.

A hypothesis state machine applies each step to the memory store, to SQLite,
to PostgreSQL and to an ``HTTPStore`` (a real server fronting SQLite), and to
the async stores (``AsyncSQLStore`` on SQLite and on PostgreSQL, an
``AsyncHTTPStore``), all on one ``ManualClock``, and checks that every
answer is the same: the same tasks (every field, timestamps included) or
the same error (type and message), the same batch results element by
element, the same pages followed to the end.
The contract suite checks behaviours one at a time; this checks that no
sequence of them, however odd, tells the stores apart.

``SOKKA_HYPOTHESIS_PROFILE=long`` runs many more sequences.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from returns.result import Failure, Success

from sokka.adapters.store import Page, TaskFilter, TaskStore, reserve_and_finish
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import SokkaError
from sokka.core.task import Status, TaskSpec
from sokka.core.transitions import Fail, Release, Snooze, Terminate
from sokka.shell.clock import ManualClock
from tests.adapters.conftest import (
    START_MS,
    StoreEnv,
    http_async_store,
    http_store,
    memory_store,
    postgres_async_store,
    postgres_store,
    sqlite_async_store,
    sqlite_store,
)

IDS = st.sampled_from(["a1", "a2", "a3", "b1", "b2", "ghost"])
TOPICS = st.sampled_from(["alpha", "beta"])
PIDS = st.sampled_from(["p1", "p2"])
ATTEMPTS = st.integers(1, 3)
RESULTS = st.sampled_from([None, 0, "done", {"sent": [1, 2.5]}, "x" * 70_000])  # the last: refused
STATUSES = st.sampled_from([None, *Status])

#: The stores compared with the reference, by name.
OTHERS: dict[str, Callable[[StoreEnv], Any]] = {
    "sqlite": sqlite_store,
    "postgres": postgres_store,
    "http-sqlite": http_store(sqlite_store),
    "sqlite-async": sqlite_async_store,
    "postgres-async": postgres_async_store,
    "http-async": http_async_store(sqlite_store),
}


def answer(call: Callable[[TaskStore], Any], store: TaskStore) -> object:
    """What a call gives, in a form two stores' answers can be compared in."""
    try:
        value = call(store)
    except SokkaError as error:
        return ("error", type(error).__name__, str(error))
    return normalise(value)


def normalise(value: object) -> object:
    match value:
        case list():
            return [normalise(v) for v in value]
        case Success(inner):
            return ("ok", normalise(inner))
        case Failure(error):
            return ("error", type(error).__name__, str(error))
        case Page():
            raise AssertionError("pages are compared by following them (all_pages)")
        case _:
            return value


def all_pages(list_page: Callable[[str | None], Page]) -> list[object]:
    tasks: list[object] = []
    cursor: str | None = None
    for _ in range(100):
        page = list_page(cursor)
        tasks.extend(page.tasks)
        if page.next_cursor is None:
            return tasks
        cursor = page.next_cursor
    raise AssertionError("a listing did not end")


class StoresAgree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(start_ms=START_MS)
        self.cleanup = ExitStack()
        root = Path(self.cleanup.enter_context(tempfile.TemporaryDirectory()))
        self.reference = self.cleanup.enter_context(
            memory_store(StoreEnv(clock=self.clock, tmp_path=root))
        )
        self.others: dict[str, TaskStore] = {}
        for name, factory in OTHERS.items():
            (root / name).mkdir()
            env = StoreEnv(clock=self.clock, tmp_path=root / name)
            self.others[name] = self.cleanup.enter_context(factory(env))

    def teardown(self) -> None:
        self.cleanup.close()

    def agree(self, call: Callable[[TaskStore], Any]) -> None:
        expected = answer(call, self.reference)
        for name, store in self.others.items():
            got = answer(call, store)
            assert got == expected, f"{name}: {got}\nthe reference: {expected}"

    @initialize()
    def start(self) -> None:
        pass

    # -- steps --------------------------------------------------------------------------

    @rule(task_id=IDS, topic=TOPICS, max_attempts=st.sampled_from([None, 1, 2, 3]),
          data=st.sampled_from([None, {"n": 1}, ["x", 2.5]]))  # fmt: skip
    def create(self, task_id: str, topic: str, max_attempts: int | None, data: object) -> None:
        spec = TaskSpec(topic=topic, task_id=task_id, max_attempts=max_attempts, data=data)
        self.agree(lambda s: s.create_task(spec))

    @rule(task_ids=st.lists(IDS, max_size=3), topic=TOPICS)
    def create_many(self, task_ids: list[str], topic: str) -> None:
        specs = [TaskSpec(topic=topic, task_id=t, task_group_id="grp") for t in task_ids]
        self.agree(lambda s: s.create_tasks(specs))

    @rule(topic=TOPICS, pid=PIDS, limit=st.integers(1, 3))
    def reserve(self, topic: str, pid: str, limit: int) -> None:
        self.agree(lambda s: s.reserve_tasks(topic, pid, limit))

    @rule(pid=PIDS, leases=st.lists(st.tuples(IDS, ATTEMPTS), max_size=3))
    def extend(self, pid: str, leases: list[tuple[str, int]]) -> None:
        tokens = [LeaseToken(task_id, attempt) for task_id, attempt in leases]
        self.agree(lambda s: s.extend_leases(pid, tokens))

    @rule(task_id=IDS, pid=PIDS, attempt=ATTEMPTS, result=RESULTS)
    def terminate(self, task_id: str, pid: str, attempt: int, result: object) -> None:
        self.agree(lambda s: s.terminate(task_id, pid, attempt, result))

    @rule(task_id=IDS, pid=PIDS, attempt=ATTEMPTS, ms=st.integers(1, 5_000))
    def snooze(self, task_id: str, pid: str, attempt: int, ms: int) -> None:
        self.agree(lambda s: s.snooze(task_id, pid, attempt, ms))

    @rule(task_id=IDS, pid=PIDS, attempt=ATTEMPTS, retry=st.sampled_from([None, 500]))
    def fail(self, task_id: str, pid: str, attempt: int, retry: int | None) -> None:
        self.agree(lambda s: s.fail(task_id, pid, attempt, "boom", retry))

    @rule(
        outcomes=st.lists(
            st.tuples(
                IDS, PIDS, ATTEMPTS, st.sampled_from(["terminate", "release", "fail", "snooze"])
            ),
            max_size=3,
        )
    )
    def finish_many(self, outcomes: list[tuple[str, str, int, str]]) -> None:
        events: dict[str, Callable[[str, int], Terminate | Release | Fail | Snooze]] = {
            "terminate": lambda p, a: Terminate(pid=p, attempt=a, result={"by": p}),
            "release": lambda p, a: Release(pid=p, attempt=a),
            "fail": lambda p, a: Fail(pid=p, attempt=a, error="bad", retry_after_ms=100),
            "snooze": lambda p, a: Snooze(pid=p, attempt=a, snooze_ms=250),
        }
        batch = [Finish(task_id=t, event=events[kind](p, a)) for t, p, a, kind in outcomes]
        self.agree(lambda s: s.finish_many(batch))

    @rule(
        kinds=st.lists(st.sampled_from(["terminate", "release", "snooze", "fail"]),
                       min_size=1, max_size=4),
        stale=st.sampled_from([None, "pid", "attempt", "ghost"]),
    )  # fmt: skip
    def finish_held(self, kinds: list[str], stale: str | None) -> None:
        """The set-based paths: a batch of distinct tasks, quoting the leases they
        really hold (read from the reference), so most of it takes one guarded
        UPDATE per kind; ``stale`` spoils one element so the rest of the batch
        also meets the fallback's exact errors."""
        batch = self.held_batch(kinds, stale)
        if batch:
            self.agree(lambda s: s.finish_many(batch))

    @rule(
        topic=TOPICS, pid=PIDS, limit=st.integers(1, 3),
        kinds=st.lists(st.sampled_from(["terminate", "release", "snooze", "fail"]),
                       max_size=4),
        stale=st.sampled_from([None, "pid", "attempt", "ghost"]),
    )  # fmt: skip
    def reserve_and_finish_held(
        self, topic: str, pid: str, limit: int, kinds: list[str], stale: str | None
    ) -> None:
        """A claim with a batch of outcomes in one call (SQL stores: one statement
        on PostgreSQL, one transaction on SQLite) answers as ``reserve_tasks``
        then ``finish_many`` do on the reference: the same tasks claimed, the
        same result per outcome. A released task is not claimed back at once."""
        batch = self.held_batch(kinds, stale) if kinds else []
        self.agree(lambda s: list(reserve_and_finish(s, topic, pid, limit, batch or [])))

    def held_batch(self, kinds: list[str], stale: str | None) -> list[Finish] | None:
        """Outcomes for the leases held (read from the reference), one per kind."""
        held = self.reference.list_leased_tasks(None, None, 1000).tasks
        if not held:
            return None
        batch: list[Finish] = []
        for task, kind in zip(held, kinds, strict=False):
            p, a = task.pid or "p1", task.attempt
            events: dict[str, Terminate | Release | Snooze | Fail] = {
                "terminate": Terminate(pid=p, attempt=a),
                "release": Release(pid=p, attempt=a),
                "snooze": Snooze(pid=p, attempt=a, snooze_ms=300),
                "fail": Fail(pid=p, attempt=a, error="held", retry_after_ms=100),
            }
            batch.append(Finish(task_id=task.task_id, event=events[kind]))
        first = batch[0].event
        if stale == "pid":
            batch[0] = Finish(
                task_id=batch[0].task_id, event=Terminate(pid="p9", attempt=first.attempt)
            )
        elif stale == "attempt":
            batch[0] = Finish(task_id=batch[0].task_id, event=Terminate(pid=first.pid, attempt=9))
        elif stale == "ghost":
            batch.append(Finish(task_id="ghost", event=Terminate(pid="p1", attempt=1)))
        return batch

    @rule(stale=st.booleans())
    def extend_held(self, stale: bool) -> None:
        """extend_leases of every lease held (one guarded UPDATE), one maybe stale."""
        held = self.reference.list_leased_tasks(None, None, 1000).tasks
        by_pid: dict[str, list[LeaseToken]] = {}
        for task in held:
            by_pid.setdefault(task.pid or "p1", []).append(LeaseToken(task.task_id, task.attempt))
        for pid, tokens in sorted(by_pid.items()):
            if stale:
                tokens[0] = LeaseToken(tokens[0].task_id, tokens[0].attempt + 1)
            self.agree(lambda s: s.extend_leases(pid, tokens))  # noqa: B023 - called at once

    @rule(task_id=IDS, record_ver=st.integers(0, 6))
    def revoke(self, task_id: str, record_ver: int) -> None:
        self.agree(lambda s: s.revoke_lease(task_id, record_ver))

    @rule(task_id=IDS)
    def requeue(self, task_id: str) -> None:
        self.agree(lambda s: s.requeue(task_id))

    @rule(task_id=IDS)
    def cancel(self, task_id: str) -> None:
        self.agree(lambda s: s.cancel(task_id, "operator"))

    @rule(topic=TOPICS, paused=st.booleans())
    def pause_or_resume(self, topic: str, paused: bool) -> None:
        self.agree(lambda s: s.pause_topic(topic) if paused else s.resume_topic(topic))
        self.agree(lambda s: s.paused_topics())

    @rule(task_id=IDS)
    def get(self, task_id: str) -> None:
        self.agree(lambda s: s.get_task(task_id))

    @rule()
    def group(self) -> None:
        self.agree(lambda s: s.tasks_in_group("grp"))

    @rule(topic=st.sampled_from([None, "alpha", "beta"]), status=STATUSES, limit=st.integers(1, 4))
    def list_tasks(self, topic: str | None, status: Status | None, limit: int) -> None:
        wanted = TaskFilter(topic=topic, status=status)
        self.agree(lambda s: all_pages(lambda c: s.list_tasks(wanted, c, limit)))

    @rule(topic=st.sampled_from([None, "alpha", "beta"]), limit=st.integers(1, 3))
    def list_leased(self, topic: str | None, limit: int) -> None:
        self.agree(lambda s: all_pages(lambda c: s.list_leased_tasks(topic, c, limit)))

    @rule(ms=st.integers(1, 5_000))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)

    @invariant()
    def every_task_is_the_same_everywhere(self) -> None:
        self.agree(lambda s: all_pages(lambda c: s.list_tasks(None, c, 1000)))


StoresAgree.TestCase.settings = settings(
    settings(),  # the active profile (ci or long), with fewer, longer runs
    max_examples=max(settings().max_examples // 4, 10),
    stateful_step_count=30,
)
test_stores_agree_with_the_reference = StoresAgree.TestCase
