"""The worker core's lease properties (DESIGN.md §3, "The worker's side"), as
hypothesis tests over random schedules.

A schedule is: some tasks reserved at once, handlers that start and finish at
random instants, keepalive answers that come back late, never, or refused,
and a network that may fail from some instant on. The shell in these tests
does only what a real runtime does: it wakes at ``next_wakeup`` (or earlier,
at any event), calls ``tick`` and ``due``, and folds answers back in. Time
is the worker's own clock in milliseconds, except in the joint tests, where a
worker clock runs at its own rate against the supervisor's.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from pyrsistent import pmap
from returns.result import Failure, Result, Success

from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import execute
from sokka.core import holding
from sokka.core.commands import ExtendLeases, Finish, RevokeOutcome, Why
from sokka.core.errors import LeaseLost, NotRunning, SokkaError, TaskCancelled, Unavailable
from sokka.core.holding import Discarded, Holdings, Phase, TopicPolicy, WorkerPolicy
from sokka.core.outcomes import FailedOutcome, OkOutcome, SnoozedOutcome
from sokka.core.supervision import EMPTY, LeasePolicy, mark, settle, sweep
from sokka.core.task import Status, Task, TaskSpec
from sokka.core.transitions import Release

LEASE_MS = 1_000
POLICY = WorkerPolicy(lease_time_ms=LEASE_MS, keepalive_ratio=0.7, fence_ratio=0.9)


def running_task(n: int, topic: str = "q", **fields: int | None) -> Task:
    task_id = f"t{n}"
    return Task(
        task_id=task_id, task_group_id=task_id, topic=topic, status=Status.RUNNING,
        pid="w", attempt=1, record_ver=1, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


#: The topics of a schedule: one worker holds leases of all of them at once.
TOPICS = ("q", "r", "s")


# -- a schedule against the core alone ------------------------------------------------

Answer = str  # "ok" | "refused" | "lost" | "error"


@dataclass
class Schedule:
    tasks: list[Task]
    starts: list[int]  #: when each handler starts (worker clock)
    durations: list[int]
    outcomes: list[object]
    answers: list[tuple[Answer, int]]  #: per keepalive call in turn: answer and delay
    timeouts: list[int | None]
    policy: WorkerPolicy = POLICY  #: with a lease and timeout of its own for some topics


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    n = draw(st.integers(min_value=1, max_value=4))
    timeouts = draw(st.lists(st.none() | st.integers(100, 3_000), min_size=n, max_size=n))
    lease_times = draw(st.lists(st.none() | st.integers(200, 3_000), min_size=n, max_size=n))
    topics = draw(st.lists(st.sampled_from(TOPICS), min_size=n, max_size=n))
    tasks = [
        running_task(i, topics[i], timeout_ms=timeouts[i], lease_time_ms=lease_times[i])
        for i in range(n)
    ]
    return Schedule(
        policy=draw(policies()),
        tasks=tasks,
        starts=draw(st.lists(st.integers(0, 1_500), min_size=n, max_size=n)),
        durations=draw(st.lists(st.integers(1, 6_000), min_size=n, max_size=n)),
        outcomes=draw(
            st.lists(
                st.sampled_from(
                    [OkOutcome(), FailedOutcome("boom"), SnoozedOutcome(500), "not an outcome"]
                ),
                min_size=n,
                max_size=n,
            )
        ),
        answers=draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["ok", "ok", "ok", "refused", "lost", "error"]),
                    st.integers(0, 800),
                ),
                max_size=40,
            )
        ),
        timeouts=timeouts,
    )


@st.composite
def policies(draw: st.DrawFn) -> WorkerPolicy:
    """``POLICY``, with a lease and timeout of their own for some of the topics."""
    own = draw(
        st.dictionaries(
            st.sampled_from(TOPICS),
            st.builds(
                TopicPolicy,
                lease_time_ms=st.integers(200, 3_000),
                timeout_ms=st.none() | st.integers(100, 3_000),
            ),
        )
    )
    return replace(POLICY, topics=pmap(own))


@dataclass
class Trace:
    """What the core said during one run, for the properties to read."""

    holdings: Holdings
    given_up: dict[tuple[str, int], int] = field(default_factory=dict)  #: lease -> when
    timed_out: set[tuple[str, int]] = field(default_factory=set)
    finishes: list[tuple[int, Finish]] = field(default_factory=list)
    discarded: list[Discarded] = field(default_factory=list)
    extends: list[ExtendLeases] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def run_schedule(schedule: Schedule, *, skip_wakeups: bool = False) -> Trace:
    """Drive the core through ``schedule``, as a runtime would, and record what it said."""
    trace = Trace(holding.take(holding.holdings("w", schedule.policy), schedule.tasks, 0))
    events: list[tuple[int, int, Callable[[int], None]]] = []
    seq = itertools.count()
    answers = iter(schedule.answers)

    def at(t: int, action: Callable[[int], None]) -> None:
        heapq.heappush(events, (t, next(seq), action))

    def step(now: int) -> None:
        before = trace.holdings
        h, cancels = holding.tick(before, now)
        for cancel in cancels:
            if cancel.why.loses_lease:
                trace.given_up[cancel.lease] = now
            if cancel.why is Why.FENCED:
                check_a_keepalive_was_sent_in_time(trace, before, cancel.lease)
            if cancel.why is Why.TIMED_OUT:
                trace.timed_out.add(cancel.lease)
        h, command = holding.due(h, now)
        trace.holdings = h
        check_one_pass_covers_every_due_lease(trace, now)
        if command is not None:
            trace.extends.append(command)
            answer, delay = next(answers, ("ok", 0))
            if answer != "lost":
                at(now + delay, lambda t, c=command, a=answer: ack(t, c, a))
        record(now)

    def ack(now: int, command: ExtendLeases, answer: Answer) -> None:
        result: Result[Task, SokkaError]
        if answer == "ok":
            result = Success(schedule.tasks[0])
        elif answer == "refused":
            result = Failure(LeaseLost("t0", "revoked"))
        else:
            result = Failure(Unavailable("down"))
        h, cancels = holding.acknowledged(trace.holdings, command, [result] * len(command.leases))
        for cancel in cancels:
            trace.given_up[cancel.lease] = now
        trace.holdings = h

    def record(now: int) -> None:
        decided = [k for k, v in trace.holdings.leases.items() if v.phase is Phase.DECIDED]
        h, recording = holding.record(trace.holdings, decided, now)
        trace.holdings = h
        for finish in recording.finishes:
            trace.finishes.append((now, finish))
        if recording:
            ok = [Success(schedule.tasks[0])] * len(recording)
            trace.holdings, _ = holding.recorded(h, recording, ok)

    def start(now: int, key: tuple[str, int]) -> None:
        trace.holdings, _ = holding.started(trace.holdings, key, now)

    def finish(now: int, key: tuple[str, int], outcome: object) -> None:
        h, verdict = holding.finished(trace.holdings, key, outcome, now)
        trace.holdings = h
        if isinstance(verdict, Discarded):
            trace.discarded.append(verdict)
            if verdict.gave_up:
                trace.given_up[key] = now
        record(now)  # a decided outcome is sent at once (and lands in trace.finishes)

    for task, begin, duration, outcome in zip(
        schedule.tasks, schedule.starts, schedule.durations, schedule.outcomes, strict=True
    ):
        key = (task.task_id, task.attempt)
        at(begin, lambda t, k=key: start(t, k))
        at(begin + duration, lambda t, k=key, o=outcome: finish(t, k, o))

    now = 0
    for _ in range(100_000):  # a bound, so a core that never settles fails instead of hanging
        if not (events or trace.holdings):
            break
        wakeup = holding.next_wakeup(trace.holdings)
        if wakeup is not None and (not events or wakeup < events[0][0]) and not skip_wakeups:
            now = max(now, wakeup)
            step(now)
            continue
        if not events:
            break
        now, _, action = heapq.heappop(events)
        action(now)
        check_held_leases_are_within_their_fence(trace, now)
        if now > 60_000:
            break
    else:
        raise AssertionError("the schedule did not settle")
    return trace


def check_a_keepalive_was_sent_in_time(
    trace: Trace, before: Holdings, key: tuple[str, int]
) -> None:
    """A lease given up by the fence had a keepalive sent after its last
    successful one, within the keepalive interval: it was tried, and failed."""
    held = before.leases[key]
    sent = [
        c.sent_ms
        for c in trace.extends
        if any((t.task_id, t.attempt) == key for t in c.leases)
        and held.ok_sent_ms < c.sent_ms <= held.ok_sent_ms + held.keepalive_ms
    ]
    if not sent:
        trace.violations.append(f"{key} fenced without a keepalive sent in time")


def check_one_pass_covers_every_due_lease(trace: Trace, now: int) -> None:
    """After ``due``, no lease of any topic is left due: one call covered them all."""
    for key, held in trace.holdings.leases.items():
        if held.extend_at_ms <= now and now <= held.fence_at_ms:
            trace.violations.append(f"{key} ({held.task.topic}) due at {now}, left out")


def check_held_leases_are_within_their_fence(trace: Trace, now: int) -> None:
    for key, held in trace.holdings.leases.items():
        if now > held.fence_at_ms + 1:
            trace.violations.append(f"{key} held at {now}, past its fence {held.fence_at_ms}")


@given(schedules())
def test_a_held_lease_is_extended_before_its_fence_or_given_up_by_then(schedule) -> None:
    """Woken at ``next_wakeup``, the core never holds a lease past its fence: every
    lease it still holds had a successful keepalive sent within ``fence_ratio`` of
    its lease, and each keepalive goes out by ``keepalive_ratio`` of the lease."""
    trace = run_schedule(schedule)
    note(repr(trace.violations))
    assert trace.violations == []


@given(schedules())
def test_no_finish_for_a_lease_given_up_refused_or_timed_out(schedule) -> None:
    """A lease given up (fence), refused (keepalive) or timed out never gets its
    handler's outcome recorded; a timed-out one gets only the timeout's failure."""
    trace = run_schedule(schedule)
    for when, finish in trace.finishes:
        key = (finish.task_id, finish.event.attempt)
        gone = trace.given_up.get(key)
        assert gone is None or when < gone, f"{finish} at {when}, given up at {gone}"
        if key in trace.timed_out:
            assert "timed out after" in getattr(finish.event, "error", "")
    # each lease is finished at most once
    keys = [(f.task_id, f.event.attempt) for _, f in trace.finishes]
    assert len(keys) == len(set(keys))


@given(schedules(), st.integers(0, 8_000))
def test_next_wakeup_is_never_later_than_the_next_decision(schedule, probe) -> None:
    """Before ``next_wakeup``, ``due`` sends nothing and ``tick`` cancels nothing, and
    ``live`` does not change: sleeping until then misses no decision."""
    trace = run_schedule(schedule, skip_wakeups=True)
    h = holding.take(holding.holdings("w", schedule.policy), schedule.tasks, 0)
    for key in list(h.leases)[: len(h.leases) // 2]:
        h, _ = holding.started(h, key, 0)
    for state in (h, trace.holdings):
        wakeup = holding.next_wakeup(state)
        if wakeup is None:
            assert not state.leases
            continue
        before = min(probe, wakeup - 1)
        if before < 0:
            continue
        assert holding.due(state, before)[1] is None
        assert holding.tick(state, before)[1] == ()
        for key in state.leases:
            assert holding.live(state, key, before) == holding.live(state, key, wakeup - 1)


@given(schedules(), st.integers(0, 8_000))
def test_next_wakeup_without_keepalives_misses_no_tick(schedule, probe) -> None:
    """For a shell with a keepalive in flight (it does not call ``due``): before
    ``next_wakeup(keepalives=False)``, ``tick`` cancels nothing and ``live`` does
    not change; and it is never earlier than ``next_wakeup``."""
    trace = run_schedule(schedule, skip_wakeups=True)
    h = holding.take(holding.holdings("w", schedule.policy), schedule.tasks, 0)
    for key in list(h.leases)[: len(h.leases) // 2]:
        h, _ = holding.started(h, key, 0)
    for state in (h, trace.holdings):
        wakeup = holding.next_wakeup(state, keepalives=False)
        if wakeup is None:
            assert not state.leases
            continue
        assert wakeup >= (holding.next_wakeup(state) or 0)
        before = min(probe, wakeup - 1)
        if before < 0:
            continue
        assert holding.tick(state, before)[1] == ()
        for key in state.leases:
            assert holding.live(state, key, before) == holding.live(state, key, wakeup - 1)


@given(schedules())
def test_every_held_lease_of_every_topic_is_kept_alive_by_the_one_keepalive_pass(
    schedule,
) -> None:
    """Leases of several topics, each with its own lease: when every keepalive is
    answered at once and well, no lease of any topic is ever given up (only
    timeouts end a handler early), and each round is ONE call (never two sent
    at one instant) that holds every lease then due, whatever its topic."""
    schedule.answers = []  # every keepalive answered "ok" at once
    trace = run_schedule(schedule)
    note(repr(trace.violations))
    assert trace.violations == []
    lost = {key for key in trace.given_up if key not in trace.timed_out}
    assert lost == set()
    sent = [command.sent_ms for command in trace.extends]
    assert len(sent) == len(set(sent))


@given(schedules())
def test_a_lease_and_timeout_are_the_tasks_else_its_topics_else_the_workers(schedule) -> None:
    policy = schedule.policy
    h = holding.take(holding.holdings("w", policy), schedule.tasks, 0)
    for task in schedule.tasks:
        held = h.leases[(task.task_id, task.attempt)]
        own = policy.topics.get(task.topic)
        assert held.lease_ms == (
            task.lease_time_ms or (own.lease_time_ms if own else policy.lease_time_ms)
        )
        assert held.timeout_ms == (task.timeout_ms or (own.timeout_ms if own else None))
        assert held.fence_ms == policy.fence_ms(held.lease_ms)


def test_a_refusal_for_a_lease_being_recorded_is_not_a_loss() -> None:
    """The keepalive that raced the worker's own finish is refused (the task is
    terminated by then): the outcome's answer decides, not the keepalive's."""
    h = holding.take(holding.holdings("w", POLICY), [running_task(0)], 0)
    h, _ = holding.started(h, ("t0", 1), 0)
    h, command = holding.due(h, 700)
    assert command is not None
    h, finish = holding.finished(h, ("t0", 1), OkOutcome(), 710)
    assert isinstance(finish, Finish)
    h, recording = holding.record(h, [("t0", 1)], 710)
    assert recording.finishes == (finish,)
    assert holding.due(h, 2_000)[1] is None  # a lease being recorded is not extended
    h, cancels = holding.acknowledged(h, command, [Failure(LeaseLost("t0", "terminated"))])
    assert cancels == ()
    h, again = holding.recorded(h, recording, [Success(running_task(0))])
    assert (again, len(h)) == ((), 0)


def test_a_keepalive_refused_because_an_operator_cancelled_the_task_says_so() -> None:
    """The store's TaskCancelled cancels the handler for Why.CANCELLED, and what
    the handler returns afterwards is discarded for that reason, not as a loss."""
    h = holding.take(holding.holdings("w", POLICY), [running_task(0), running_task(1)], 0)
    h, _ = holding.started(h, ("t0", 1), 0)
    h, command = holding.due(h, 700)
    assert command is not None
    refusals = [
        Failure(TaskCancelled("t0", "an operator cancelled the task")),
        Failure(NotRunning("t1", "revoked")),
    ]
    h, cancels = holding.acknowledged(h, command, refusals)
    assert [(c.lease, c.why) for c in cancels] == [
        (("t0", 1), Why.CANCELLED),
        (("t1", 1), Why.REFUSED),
    ]
    assert not Why.CANCELLED.loses_lease  # nobody will run it again: not a lost lease
    assert len(h) == 0
    assert not holding.live(h, ("t0", 1), 701)
    h, (verdict,) = holding.finished_many(h, [(("t0", 1), OkOutcome(), 800)])
    assert isinstance(verdict, Discarded)
    assert verdict.why is Why.CANCELLED
    assert "operator" in verdict.reason
    assert h.outrun == {}


def test_live_turns_false_at_the_fence_without_a_tick() -> None:
    h = holding.take(holding.holdings("w", POLICY), [running_task(0)], 0)
    h, _ = holding.started(h, ("t0", 1), 0)
    assert holding.live(h, ("t0", 1), 900)
    assert not holding.live(h, ("t0", 1), 901)


def test_stopping_releases_what_waits_and_after_the_grace_what_runs() -> None:
    policy = WorkerPolicy(lease_time_ms=LEASE_MS, grace_ms=300)
    h = holding.take(holding.holdings("w", policy), [running_task(0), running_task(1)], 0)
    h, _ = holding.started(h, ("t0", 1), 0)
    h, released = holding.stopping(h, 100)
    assert released == (("t1", 1),)
    assert holding.tick(h, 400)[1] == ()
    assert holding.next_wakeup(h) == 401
    h, cancels = holding.tick(h, 401)
    assert [(c.lease, c.why, c.decided) for c in cancels] == [(("t0", 1), Why.STOPPING, True)]
    # the handler returning after the grace period changes nothing
    assert holding.finished(h, ("t0", 1), OkOutcome(), 402)[1] == Discarded(
        lease=("t0", 1), why=Why.STOPPING, reason="the attempt was stopping"
    )
    h, recording = holding.record(h, [("t0", 1), ("t1", 1)], 401)
    assert len(recording) == 2
    assert all(isinstance(f.event, Release) for f in recording.finishes)
    assert not h.leases  # both releases are on their way


# -- jointly with the supervision core ----------------------------------------------------


@dataclass(frozen=True)
class World:
    """A worker whose clock runs at ``rate`` of the supervisor's, one store whose
    writes land when sent, and a supervisor that marks on every write."""

    rate: float
    offset: int
    durations: tuple[int, ...]
    answer_delays: tuple[int, ...]
    partition_at: int | None
    crash_at: int | None
    interval_ms: int


@st.composite
def worlds(draw: st.DrawFn) -> World:
    n = draw(st.integers(1, 3))
    return World(
        # at least keepalive_ratio (0.7) and fence_ratio (0.9) with room for rounding
        rate=draw(st.floats(min_value=0.92, max_value=2.5)),
        offset=draw(st.integers(-3_600_000, 3_600_000)),
        durations=tuple(draw(st.lists(st.integers(1, 8_000), min_size=n, max_size=n))),
        answer_delays=tuple(draw(st.lists(st.integers(0, 400), min_size=1, max_size=8))),
        partition_at=draw(st.none() | st.integers(0, 6_000)),
        crash_at=draw(st.none() | st.integers(0, 6_000)),
        interval_ms=draw(st.integers(50, 500)),
    )


def run_world(world: World) -> tuple[list[str], dict[str, int], dict[str, int], list[Task]]:
    """Returns (violations, last write per task, revocation time per task, final tasks)."""
    t = 0
    store = MemoryStore(clock=lambda: t)
    n = len(world.durations)
    store.create_tasks([TaskSpec(topic="q", task_id=f"t{i}") for i in range(n)])
    policy = LeasePolicy(lease_time_ms=LEASE_MS, default_snooze_ms=LEASE_MS)
    monitored = EMPTY
    tasks = store.reserve_tasks("q", "w", limit=n)

    def wclock(now: int) -> int:
        return world.offset + math.floor(world.rate * now)

    def when(local: int) -> int:
        """The first supervisor instant at which the worker's clock reads ``local``."""
        t = max(0, math.ceil((local - world.offset) / world.rate) - 1)
        while wclock(t) < local:
            t += 1
        return t

    worker = holding.take(holding.holdings("w", POLICY), tasks, wclock(0))
    for task in tasks:
        worker, _ = holding.started(worker, task.lease, wclock(0))
    last_write = {task.task_id: 0 for task in tasks}
    monitored = mark(monitored, store.list_leased_tasks("q").tasks, 0, policy)
    revoked_at: dict[str, int] = {}
    violations: list[str] = []
    pending: list[tuple[int, int, str, object]] = []  # answers: (time, seq, kind, payload)
    seq = itertools.count()
    delays = itertools.cycle(world.answer_delays)
    ends = {task.lease: world.durations[i] for i, task in enumerate(tasks)}

    def observe() -> None:
        nonlocal monitored
        monitored = mark(monitored, store.list_leased_tasks("q").tasks, t, policy)

    def dead(now: int) -> bool:
        return world.crash_at is not None and now >= world.crash_at

    def cut(now: int) -> bool:
        return world.partition_at is not None and now >= world.partition_at

    horizon = 20_000
    next_sweep = world.interval_ms
    last_record = -(10**9)
    sent_before: set[tuple[str, int]] = set()
    for _ in range(1_000_000):  # a bound: a stuck schedule fails instead of hanging
        if t > horizon or (not monitored and not worker.leases):
            break  # the end, or nothing is leased or held any more
        candidates = [next_sweep]
        if not dead(t):
            wake = holding.next_wakeup(worker)
            if wake is not None:
                candidates.append(when(wake))
            candidates += [end for end in ends.values() if end >= t]
            if pending:
                candidates.append(pending[0][0])
        t = max(t, min(candidates))
        if t > horizon:
            break
        if not dead(t):
            while pending and pending[0][0] <= t:
                _, _, kind, payload = heapq.heappop(pending)
                command, results = payload  # type: ignore[misc]
                if kind == "extend":
                    worker, _ = holding.acknowledged(worker, command, results)
                else:
                    worker, _ = holding.recorded(worker, command, results)
            now = wclock(t)
            worker, _ = holding.tick(worker, now)
            for key, end in list(ends.items()):
                if end <= t:
                    del ends[key]
                    worker, _ = holding.finished(worker, key, OkOutcome(), now)
            worker, command = holding.due(worker, now)
            if command is not None:
                if cut(t):
                    results = [Failure(Unavailable("partitioned"))] * len(command.leases)
                else:
                    results = store.extend_leases("w", list(command.leases))
                    for token in command.leases:
                        last_write[token.task_id] = t
                    observe()
                heapq.heappush(pending, (t + next(delays), next(seq), "extend", (command, results)))
            decided = [k for k, v in worker.leases.items() if v.phase is Phase.DECIDED]
            # outcomes go out at once, but a failed send is retried only 50 ms later
            if t - last_record < 50:
                decided = [k for k in decided if k not in sent_before]
            worker, recording = holding.record(worker, decided, now)
            if recording:
                last_record = t
                sent_before.update((f.task_id, f.event.attempt) for f in recording.finishes)
                if cut(t):
                    outcome = [Failure(Unavailable("partitioned"))] * len(recording)
                else:
                    outcome = store.finish_many(list(recording.finishes))
                    for finish in recording.finishes:
                        last_write[finish.task_id] = t
                    observe()
                heapq.heappush(
                    pending, (t + next(delays), next(seq), "finish", (recording, outcome))
                )
        if t >= next_sweep:
            observe()
            for command in sweep(monitored, t):
                result = execute(store, command)
                monitored_outcome = RevokeOutcome(command=command, result=result)
                if isinstance(result, Success) and command.status is Status.RUNNING:
                    revoked_at[command.task_id] = t
                    key = (command.task_id, 1)
                    if not dead(t) and holding.live(worker, key, wclock(t)):
                        violations.append(f"revoked live lease {key} at {t}")
                monitored = settle(monitored, [monitored_outcome])
            next_sweep = t + world.interval_ms
    final = [store.get_task(f"t{i}") for i in range(n)]
    return violations, last_write, revoked_at, final


@given(worlds())
def test_jointly_a_supervisor_never_revokes_a_lease_its_worker_still_holds(world) -> None:
    """With keepalives at ``keepalive_ratio`` of the lease, and a worker clock
    running at least ``fence_ratio`` times as fast as the supervisor's, a
    supervisor that sees every write never revokes a lease the worker still
    counts as live: a live worker's writes keep it, and a partitioned worker
    gives its lease up (the self-fence) before any supervisor can revoke it.
    Wall-clock offsets (hours) change nothing."""
    violations, _, _, _ = run_world(world)
    assert violations == []


@given(worlds())
def test_jointly_a_lease_nobody_keeps_alive_is_revoked_within_lease_plus_one_interval(
    world,
) -> None:
    """Once its worker has crashed or been cut off, a task's lease is revoked within
    a lease and one supervisor interval of the last write that reached the store."""
    _, last_write, revoked_at, final = run_world(world)
    for task_id, revoked in revoked_at.items():
        assert revoked <= last_write[task_id] + LEASE_MS + world.interval_ms + 1
    # the run lasts many leases: no task is left running, each was either
    # finished by its worker or revoked
    for task in final:
        assert task.status is not Status.RUNNING
        assert (task.status is Status.TERMINATED) != (task.task_id in revoked_at)
    # A worker that is never cut off, whose keepalive answers come back well
    # within the time between keepalive and fence, keeps every lease to the end.
    prompt = max(world.answer_delays) * world.rate < (0.9 - 0.7) * LEASE_MS * 0.75
    if world.crash_at is None and world.partition_at is None and prompt:
        assert revoked_at == {}


@given(
    st.lists(st.integers(0, 5), max_size=8),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2_000)), max_size=8),
    st.integers(0, 2_000),
)
def test_ran_is_started_many_then_finished_many(start_ids, return_ids, start_at) -> None:
    """Folding queued starts and returns in one step (``ran``) gives the same
    verdicts, and the same leases in the same phases, as ``started_many`` then
    ``finished_many``; only a start whose handler already returned is not written."""
    policy = WorkerPolicy(lease_time_ms=1_000)
    h = holding.take(holding.holdings("w", policy), [running_task(i) for i in range(4)], 0)
    starts = [((f"t{i}", 1), start_at) for i in start_ids]
    returns = [((f"t{i}", 1), OkOutcome(), when) for i, when in return_ids]
    one, verdicts = holding.ran(h, starts, returns)
    two, expected = holding.finished_many(holding.started_many(h, starts), returns)
    assert verdicts == expected
    assert {k: v.phase for k, v in one.leases.items()} == {
        k: v.phase for k, v in two.leases.items()
    }


@pytest.mark.parametrize("why", [Why.TIMED_OUT, Why.STOPPING])
def test_a_handler_that_returns_after_its_outcome_was_recorded_says_why(why) -> None:
    """A handler cancelled by a timeout or a stop's end may return after the
    core's own outcome (a failure, a release) was recorded and the lease left
    the map: its return is discarded as timed out or stopping, not as a lost
    lease (the worker counted such a release as fenced)."""
    policy = WorkerPolicy(lease_time_ms=10_000, timeout_ms=100, grace_ms=50)
    h = holding.take(holding.holdings("w", policy), [running_task(0)], 0)
    h, _ = holding.started(h, ("t0", 1), 0)
    if why is Why.STOPPING:
        h, _ = holding.stopping(h, 10)
        now = 61
    else:
        now = 101
    h, (cancel,) = holding.tick(h, now)
    assert cancel.why is why
    h, recording = holding.record(h, [("t0", 1)], now)
    h, again = holding.recorded(h, recording, [Success(running_task(0))])
    assert (again, len(h)) == ((), 0)
    h, (verdict,) = holding.ran(h, [], [(("t0", 1), OkOutcome(), now + 500)])
    assert isinstance(verdict, Discarded)
    assert verdict.why is why
    assert not verdict.gave_up
    assert len(h.outrun) == 0  # forgotten once the handler has returned
