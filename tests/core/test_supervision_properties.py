"""The lease properties of DESIGN.md §3, stated as hypothesis tests.

Time in these tests is the supervisor's own monotonic clock. Every task also
carries ``created_at``/``updated_at`` from a worker's wall clock with an
arbitrary offset (hours either way): the properties hold whatever those say,
because no lease decision reads them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from returns.result import Failure, Success

from sokka.core.commands import RevokeLease, RevokeOutcome
from sokka.core.errors import (
    InvalidTransition,
    NotFound,
    StaleRecord,
    Throttled,
    Unavailable,
)
from sokka.core.supervision import (
    EMPTY,
    LeasePolicy,
    Monitored,
    Observation,
    mark,
    next_expiry,
    settle,
    sweep,
)
from sokka.core.task import Status, Task

HOUR_MS = 3_600_000
LEASE_MS = 1_000
POLICY = LeasePolicy(lease_time_ms=LEASE_MS, default_snooze_ms=3 * LEASE_MS)

task_ids = st.sampled_from([f"t{i}" for i in range(12)])
wall_offsets = st.integers(min_value=-HOUR_MS, max_value=HOUR_MS)
leased_statuses = st.sampled_from([Status.RUNNING, Status.SNOOZED])
optional_ms = st.none() | st.integers(min_value=1, max_value=5 * LEASE_MS)


def leased(
    task_id: str,
    record_ver: int,
    status: Status = Status.RUNNING,
    *,
    lease_time_ms: int | None = None,
    snooze_time_ms: int | None = None,
    wall_ms: int = 0,
) -> Task:
    """A leased task as a store would list it; ``wall_ms`` is some worker's wall clock."""
    return Task(
        task_id=task_id,
        task_group_id=task_id,
        topic="q",
        status=status,
        pid="w",
        record_ver=record_ver,
        attempt=1,
        lease_time_ms=lease_time_ms,
        snooze_time_ms=snooze_time_ms if status is Status.SNOOZED else None,
        created_at=wall_ms,
        updated_at=wall_ms,
    )


def hold_ms(task: Task) -> int:
    """How long the supervisor waits on an unchanged version of ``task`` (DESIGN.md §3)."""
    if task.status is Status.SNOOZED:
        return task.snooze_time_ms or POLICY.default_snooze_ms
    return task.lease_time_ms or POLICY.lease_time_ms


@st.composite
def listings(draw: st.DrawFn) -> list[Task]:
    """A listing of distinct leased tasks with arbitrary versions, settings and wall clocks."""
    ids = draw(st.lists(task_ids, unique=True, max_size=10))
    return [
        leased(
            task_id,
            draw(st.integers(min_value=0, max_value=50)),
            draw(leased_statuses),
            lease_time_ms=draw(optional_ms),
            snooze_time_ms=draw(optional_ms),
            wall_ms=draw(wall_offsets),
        )
        for task_id in ids
    ]


@st.composite
def monitored_maps(draw: st.DrawFn) -> Monitored:
    """A supervisor memory reached by marking a few listings at increasing times."""
    monitored = EMPTY
    now = draw(st.integers(min_value=0, max_value=10 * LEASE_MS))
    for listing in draw(st.lists(listings(), max_size=4)):
        monitored = mark(monitored, listing, now, POLICY, complete=draw(st.booleans()))
        now += draw(st.integers(min_value=0, max_value=2 * LEASE_MS))
    return monitored


def snapshot(monitored: Monitored) -> tuple[dict[str, Observation], object, int | None]:
    return dict(monitored), monitored.observations, next_expiry(monitored)


# -- safety ------------------------------------------------------------------


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=LEASE_MS), min_size=1, max_size=40),
    extra_changes=st.lists(st.booleans(), min_size=40, max_size=40),
    walls=st.lists(wall_offsets, min_size=40, max_size=40),
    start=st.integers(min_value=0, max_value=10**12),
)
def test_safety_a_task_changed_within_every_lease_is_never_revoked(
    gaps: list[int], extra_changes: list[bool], walls: list[int], start: int
) -> None:
    """If every version of a task is replaced within one lease of the supervisor first
    seeing it, no sweep ever revokes it, whatever wall-clock times the task carries."""
    monitored = EMPTY
    now = start
    version, first_seen = 0, start
    for i, gap in enumerate([0, *gaps]):
        now += gap
        # The worker's keepalive must land before this cycle if the version the
        # supervisor would see is about to be a whole lease old; it may land anyway.
        if now - first_seen > LEASE_MS or extra_changes[i % 40]:
            version, first_seen = version + 1, now
        alive = leased("alive", version, wall_ms=walls[i % 40] + now)
        stale = leased("stale", 0, wall_ms=-walls[i % 40])  # never kept alive
        monitored = mark(monitored, [alive, stale], now, POLICY)
        revoked = {c.task_id for c in sweep(monitored, now)}
        assert "alive" not in revoked
        monitored = settle(
            monitored,
            [
                RevokeOutcome(command=c, result=Failure(StaleRecord(c.task_id, 0, 1)))
                for c in sweep(monitored, now)
            ],
        )


# -- liveness ----------------------------------------------------------------


@given(
    status=leased_statuses,
    own_ms=optional_ms,
    first_cycle=st.integers(min_value=0, max_value=5),
    gaps=st.lists(st.integers(min_value=1, max_value=2 * LEASE_MS), min_size=30, max_size=30),
    wall=wall_offsets,
)
def test_liveness_an_unchanged_task_is_revoked_at_the_first_sweep_after_its_lease(
    status: Status, own_ms: int | None, first_cycle: int, gaps: list[int], wall: int
) -> None:
    """An unchanged running task is revoked at the first sweep after first-seen + lease
    (its own lease_time_ms when it has one); a snoozed one after first-seen + its snooze
    time (or the default snooze), and not at any sweep before."""
    task = leased("t", 7, status, lease_time_ms=own_ms, snooze_time_ms=own_ms, wall_ms=wall)
    due_after = None
    monitored = EMPTY
    now = 0
    revoked_at = None
    for cycle, gap in enumerate(gaps):
        now += gap
        listing = [task] if cycle >= first_cycle else []
        if cycle == first_cycle:
            due_after = now + hold_ms(task)
        monitored = mark(monitored, listing, now, POLICY)
        commands = sweep(monitored, now)
        if commands:
            assert due_after is not None
            assert [(c.task_id, c.record_ver, c.status) for c in commands] == [("t", 7, status)]
            assert commands[0].overdue_ms == now - due_after
            revoked_at = now
            break
    assert due_after is not None
    if now > due_after:
        assert revoked_at is not None
        # ... and at the first cycle past the expiry: the one before was not past it.
        assert revoked_at - gaps[cycle] <= due_after < revoked_at
    else:
        assert revoked_at is None


# -- expiry stability -----------------------------------------------------------


@given(
    monitored=monitored_maps(),
    later=st.integers(min_value=0, max_value=100 * LEASE_MS),
    changed=st.sets(task_ids),
)
def test_expiry_stability_remarking_an_unchanged_record_never_moves_its_expiry(
    monitored: Monitored, later: int, changed: set[str]
) -> None:
    """Marking a task with the record_ver already observed leaves its entry exactly as it
    was, however much later the mark happens and whatever else changed."""
    listing = [
        leased(task_id, obs.record_ver + (1 if task_id in changed else 0), obs.status)
        for task_id, obs in monitored.items()
    ]
    remarked = mark(monitored, listing, later, POLICY)
    for task_id, obs in monitored.items():
        if task_id not in changed:
            assert remarked[task_id] == obs
        else:
            assert remarked[task_id].expiry_ms == later + hold_ms(leased(task_id, 0, obs.status))


# -- pruning -------------------------------------------------------------------


@given(monitored=monitored_maps(), listing=listings(), now=st.integers(0, 10**6))
def test_pruning_a_complete_listing_drops_vanished_tasks(
    monitored: Monitored, listing: list[Task], now: int
) -> None:
    """With complete=True, exactly the listed tasks remain monitored."""
    marked = mark(monitored, listing, now, POLICY, complete=True)
    assert set(marked) == {t.task_id for t in listing}


@given(monitored=monitored_maps(), listing=listings(), now=st.integers(0, 10**6))
def test_pruning_an_incomplete_listing_drops_nothing(
    monitored: Monitored, listing: list[Task], now: int
) -> None:
    """With complete=False, every monitored task stays, and the listed ones are added."""
    marked = mark(monitored, listing, now, POLICY, complete=False)
    assert set(marked) == set(monitored) | {t.task_id for t in listing}
    for task_id, obs in monitored.items():
        if task_id not in {t.task_id for t in listing}:
            assert marked[task_id] == obs


@given(monitored=monitored_maps(), listing=listings(), now=st.integers(0, 10**6), data=st.data())
def test_pruning_a_task_listed_twice_counts_once(
    monitored: Monitored, listing: list[Task], now: int, data: st.DataObject
) -> None:
    """A listing that names some tasks twice (a topic listed twice, say) marks
    and prunes exactly as the listing that names each once (issue 11: a repeat
    was counted twice, so a vanished task was never dropped)."""
    repeats = data.draw(st.lists(st.sampled_from(listing), max_size=4)) if listing else []
    twice = mark(monitored, [*listing, *repeats], now, POLICY, complete=True)
    once = mark(monitored, listing, now, POLICY, complete=True)
    assert dict(twice) == dict(once)
    assert next_expiry(twice) == next_expiry(once)


def test_pruning_ignores_tasks_that_hold_no_lease() -> None:
    """A listed task that is starting, failed or terminated holds no lease: not monitored."""
    monitored = mark(EMPTY, [leased("a", 1)], 0, POLICY)
    gone = [leased("a", 2, s) for s in (Status.STARTING, Status.FAILED, Status.TERMINATED)]
    for task in gone:
        assert "a" not in mark(monitored, [task], 10, POLICY)


# -- settle ------------------------------------------------------------------

outcome_results = st.sampled_from(
    [
        ("revoked", lambda c: Success(leased(c.task_id, c.record_ver + 1, Status.STARTING))),
        ("conflict", lambda c: Failure(StaleRecord(c.task_id, c.record_ver, c.record_ver + 1))),
        ("moved on", lambda c: Failure(InvalidTransition(c.task_id, "terminated", "revoke"))),
        ("not found", lambda c: Failure(NotFound(c.task_id))),
        ("throttled", lambda c: Failure(Throttled("busy"))),
        ("unavailable", lambda c: Failure(Unavailable("down"))),
    ]
)
RETRYABLE = {"throttled", "unavailable"}


@given(monitored=monitored_maps(), data=st.data())
def test_settle_forgets_final_outcomes_and_keeps_retryable_ones(
    monitored: Monitored, data: st.DataObject
) -> None:
    """After settle, a revoke that was final (revoked, conflict, not found) is forgotten;
    one that failed with a retryable error keeps its entry unchanged, so the very next
    sweep retries it without waiting another lease."""
    now = max((o.expiry_ms for o in monitored.values()), default=0) + 1
    commands = sweep(monitored, now)
    assert {c.task_id for c in commands} == set(monitored)  # everything is due
    kinds = {c.task_id: data.draw(outcome_results) for c in commands}
    outcomes = [RevokeOutcome(command=c, result=kinds[c.task_id][1](c)) for c in commands]
    settled = settle(monitored, outcomes)
    kept = {t for t, (kind, _) in kinds.items() if kind in RETRYABLE}
    assert set(settled) == kept
    for task_id in kept:
        assert settled[task_id] == monitored[task_id]
    assert {c.task_id for c in sweep(settled, now)} == kept
    assert next_expiry(settled) == min((o.expiry_ms for o in settled.values()), default=None)


def test_settle_leaves_an_entry_that_was_remarked_since_the_sweep() -> None:
    """An outcome for an older record_ver than the entry's does not drop the newer entry."""
    monitored = mark(EMPTY, [leased("a", 1)], 0, POLICY)
    (command,) = sweep(monitored, LEASE_MS + 1)
    remarked = mark(monitored, [leased("a", 2)], LEASE_MS + 2, POLICY)
    outcome = RevokeOutcome(command=command, result=Failure(StaleRecord("a", 1, 2)))
    assert settle(remarked, [outcome]) == remarked


# -- purity --------------------------------------------------------------------


@given(
    monitored=monitored_maps(),
    listing=listings(),
    now=st.integers(0, 10**6),
    complete=st.booleans(),
)
def test_purity_mark_sweep_settle_leave_their_inputs_unchanged(
    monitored: Monitored, listing: list[Task], now: int, complete: bool
) -> None:
    """mark, sweep and settle return new values, never change their arguments, and give
    equal results for equal arguments."""
    before = snapshot(monitored)
    listing_before = copy.deepcopy(listing)
    marked = mark(monitored, listing, now, POLICY, complete=complete)
    assert marked == mark(monitored, listing, now, POLICY, complete=complete)
    commands = sweep(marked, now + LEASE_MS * 10)
    assert commands == sweep(marked, now + LEASE_MS * 10)
    marked_before = snapshot(marked)
    outcomes = [RevokeOutcome(command=c, result=Failure(NotFound(c.task_id))) for c in commands]
    settle(marked, outcomes)
    assert snapshot(monitored) == before
    assert snapshot(marked) == marked_before
    assert listing == listing_before


def test_purity_monitored_cannot_be_mutated() -> None:
    monitored = mark(EMPTY, [leased("a", 1)], 0, POLICY)
    try:
        monitored._index = {}  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("Monitored accepted an attribute write")
    assert "a" in monitored


# -- a model: the whole supervisor memory, step by step -------------------------


@dataclass
class Seen:
    record_ver: int
    status: Status
    first_seen: int
    hold: int


class SupervisionModel(RuleBasedStateMachine):
    """Random marks (complete or not), sweeps and settles against a plain model.

    The model keeps, per task, the version seen and when it was first seen.
    Invariants: every entry's expiry is first-seen + hold; next_expiry is the
    exact minimum; a sweep returns exactly the entries past their expiry.
    """

    @initialize()
    def start(self) -> None:
        self.monitored = EMPTY
        self.model: dict[str, Seen] = {}
        self.now = 0

    @rule(gap=st.integers(min_value=0, max_value=3 * LEASE_MS))
    def time_passes(self, gap: int) -> None:
        self.now += gap

    @rule(listing=listings(), complete=st.booleans())
    def mark_a_listing(self, listing: list[Task], complete: bool) -> None:
        note(f"mark at {self.now}: {[(t.task_id, t.record_ver) for t in listing]}, {complete}")
        self.monitored = mark(self.monitored, listing, self.now, POLICY, complete=complete)
        listed = {t.task_id for t in listing}
        if complete:
            self.model = {k: v for k, v in self.model.items() if k in listed}
        for task in listing:
            seen = self.model.get(task.task_id)
            if seen is None or seen.record_ver != task.record_ver:
                self.model[task.task_id] = Seen(
                    task.record_ver, task.status, self.now, hold_ms(task)
                )

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def sweep_and_settle(self, data: st.DataObject) -> None:
        commands = sweep(self.monitored, self.now)
        due = sorted(
            (s.first_seen + s.hold, k)
            for k, s in self.model.items()
            if self.now > s.first_seen + s.hold
        )
        assert [c.task_id for c in commands] == [k for _, k in due]
        outcomes = [
            RevokeOutcome(command=c, result=data.draw(outcome_results)[1](c)) for c in commands
        ]
        self.monitored = settle(self.monitored, outcomes)
        for outcome in outcomes:
            if not isinstance(outcome.result, Failure) or not isinstance(
                outcome.result.failure(), Throttled | Unavailable
            ):
                del self.model[outcome.command.task_id]

    @invariant()
    def entries_match_the_model(self) -> None:
        assert set(self.monitored) == set(self.model)
        for task_id, seen in self.model.items():
            assert self.monitored[task_id] == Observation(
                seen.record_ver, seen.status, seen.first_seen + seen.hold
            )
        assert dict(self.monitored.observations) == dict(self.monitored)

    @invariant()
    def next_expiry_is_the_earliest_expiry(self) -> None:
        expected = min((s.first_seen + s.hold for s in self.model.values()), default=None)
        assert next_expiry(self.monitored) == expected
        if expected is not None:
            assert sweep(self.monitored, expected) == ()


TestSupervisionModel = SupervisionModel.TestCase


def test_sweep_orders_commands_by_expiry_then_task_id() -> None:
    monitored = Monitored(
        {
            "b": Observation(1, Status.RUNNING, 10),
            "a": Observation(1, Status.RUNNING, 10),
            "c": Observation(1, Status.SNOOZED, 5),
        }
    )
    assert sweep(monitored, 11) == (
        RevokeLease(task_id="c", record_ver=1, status=Status.SNOOZED, overdue_ms=6),
        RevokeLease(task_id="a", record_ver=1, status=Status.RUNNING, overdue_ms=1),
        RevokeLease(task_id="b", record_ver=1, status=Status.RUNNING, overdue_ms=1),
    )
