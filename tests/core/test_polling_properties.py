"""What a worker serving several topics reserves next (``sokka.core.polling``),
as hypothesis tests over random runs.

A run is a worker with a few topics, each with its own capacity, batch and
handlers (how many of its tasks run at once), some fetching ahead by time
instead (their capacity and batch follow their handlers' run times),
against a store that answers each reserve with any number of tasks up to the
limit asked (or fails), and handlers that settle leases at random. The shell
in these tests does what both runtimes do: each round it reserves what
``to_reserve`` offers, folds each answer in with ``reserved``, and sleeps
``wait_ms`` unless a hint or a settled lease wakes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sokka.core import polling
from sokka.core.backoff import Backoff, Jitter
from sokka.core.errors import ValidationError
from sokka.core.polling import FetchAhead, Polls

BACKOFF = Backoff(base_ms=20, cap_ms=2_000, jitter=Jitter.EQUAL)


@dataclass
class Run:
    lanes: list[tuple[str, int, int, int]]  #: (topic, capacity, batch, handlers)
    steps: list[tuple[str, int, float, int]]  #: per step: what happens, a number, a draw, ms
    ahead: dict[str, FetchAhead]  #: the topics that fetch ahead by time, and how


def fetch_ahead() -> st.SearchStrategy[FetchAhead]:
    return st.builds(FetchAhead, st.integers(0, 200), st.integers(1, 40))


@st.composite
def runs(draw: st.DrawFn) -> Run:
    n = draw(st.integers(1, 4))
    lanes = []
    ahead = {}
    for i in range(n):
        capacity = draw(st.integers(1, 12))
        batch, handlers = draw(st.integers(1, 12)), draw(st.integers(1, capacity))
        lanes.append((f"topic{i}", capacity, batch, handlers))
        if draw(st.booleans()):
            ahead[f"topic{i}"] = draw(fetch_ahead())
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["round", "round", "settle", "ran", "hint", "fail"]),
                st.integers(0, 50),
                st.floats(0, 0.999),
                st.integers(0, 500),
            ),
            max_size=60,
        )
    )
    return Run(lanes=lanes, steps=steps, ahead=ahead)


@dataclass
class Round:
    before: Polls
    after: Polls
    held_before: dict[str, int]
    held_after: dict[str, int]
    now: int
    plan: tuple[polling.Reserve, ...]


def drive(run: Run, check: Callable[[Round], None] | None = None) -> None:
    """Drive ``run``; after every round, call ``check`` with what it saw."""
    polls = polling.polls(run.lanes, BACKOFF, run.ahead)
    held = dict.fromkeys(polls.topics, 0)
    now = 0
    for what, number, draw, elapsed in run.steps:
        now += elapsed
        topic = run.lanes[number % len(run.lanes)][0]
        if what == "settle":
            held[topic] = max(0, held[topic] - 1 - number % 3)
            continue
        if what == "ran":  # a handler returned after ``elapsed`` ms: its lease settles
            held[topic] = max(0, held[topic] - 1)
            polls = polling.ran(polls, topic, elapsed)
            continue
        if what == "hint":
            polls = polling.hinted(polls, topic)
            continue
        plan = polling.to_reserve(polls, held, now)
        before, held_before = polls, dict(held)
        for reserve in plan:
            # a failed call, or any number of tasks the store may answer with
            got = None if what == "fail" else number % (reserve.limit + 1)
            held[reserve.topic] += got or 0
            assert held[reserve.topic] <= polls.lane(reserve.topic).capacity
            polls = polling.reserved(polls, reserve.topic, got, now, draw)
        if check is not None:
            check(Round(before, polls, held_before, dict(held), now, plan))


@given(runs())
def test_a_topic_never_holds_more_than_its_capacity(run: Run) -> None:
    """However the store answers, each reserve asks for at most the topic's free
    slots (and its batch): a topic never holds more than its capacity."""

    def check(r: Round) -> None:
        for reserve in r.plan:
            lane = r.before.lane(reserve.topic)
            assert 1 <= reserve.limit <= min(lane.batch, lane.free(r.held_before[lane.topic]))

    drive(run, check)


@given(runs())
def test_every_round_offers_every_topic_that_asks_and_has_no_backoff(run: Run) -> None:
    """Fairness: a busy topic cannot starve another. Each round offers every topic
    that asks (the refill rule, below) and whose backoff is over, each once,
    whatever the others hold or got; a topic that does not ask, or is backing
    off, is not offered."""

    def check(r: Round) -> None:
        offered = [reserve.topic for reserve in r.plan]
        assert len(offered) == len(set(offered))
        expected = {
            lane.topic
            for lane in r.before.lanes
            if lane.asks(r.held_before[lane.topic])
            and (lane.poll_at_ms is None or lane.poll_at_ms <= r.now)
        }
        assert set(offered) == expected

    drive(run, check)


@given(runs())
def test_a_topic_refills_when_a_handler_is_idle_or_half_a_batch_is_free(run: Run) -> None:
    """The refill rule. A topic with an idle handler (it holds fewer leases
    undecided than it has handlers) and no backoff pending is always offered,
    for up to a batch and its free slots. While every handler has a task, it is
    offered only once at least half a batch of slots is free: a topic that
    fetches ahead is refilled by claims of half a batch or more, never by a
    claim of one task each time a handler returns."""

    def check(r: Round) -> None:
        limits = {reserve.topic: reserve.limit for reserve in r.plan}
        for lane in r.before.lanes:
            held = r.held_before[lane.topic]
            free = lane.free(held)
            due = lane.poll_at_ms is None or lane.poll_at_ms <= r.now
            if held < lane.handlers and due:
                assert limits[lane.topic] == min(lane.batch, free)
            elif lane.topic in limits:
                assert 2 * free >= lane.batch
                assert limits[lane.topic] == min(lane.batch, free)

    drive(run, check)


@given(runs())
def test_a_topic_that_fetches_ahead_wakes_its_worker_as_it_starts_to_ask(run: Run) -> None:
    """``refills`` says when a settled lease makes a topic that fetches ahead
    (batch larger than its handlers) ask again, and only then: the worker wakes
    at once instead of after ``linger_ms``. A topic that does not fetch ahead
    never says so (its freed slots are gathered for ``linger_ms``)."""
    polls = polling.polls(run.lanes, BACKOFF, run.ahead)
    for what, number, _draw, elapsed in run.steps:
        if what == "ran":
            polls = polling.ran(polls, run.lanes[number % len(run.lanes)][0], elapsed)
    for lane in polls.lanes:
        for held in range(lane.capacity):
            starts = bool(lane.asks(held)) and not lane.asks(held + 1)
            fetches_ahead = lane.batch > lane.handlers
            assert polling.refills(polls, lane.topic, held) is (starts and fetches_ahead)


@given(st.integers(2, 5), st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_the_first_topic_of_a_round_moves_on(n: int, answers: list[int]) -> None:
    """The topic after the last one reserved goes first in the next round, so no
    topic is always served last."""
    polls = polling.polls([(f"t{i}", 4, 4) for i in range(n)], BACKOFF)
    for got in answers:
        plan = polling.to_reserve(polls, {}, now_ms=0)
        if not plan:
            break
        first = plan[0].topic
        polls = polling.reserved(polls, first, got, 0, 0.5)
        following = polls.topics[(polls.topics.index(first) + 1) % n]
        assert polls.lanes[polls.first].topic == following


@given(runs())
def test_the_shell_may_sleep_wait_ms_without_missing_a_reserve(run: Run) -> None:
    """Nothing can be offered before ``wait_ms`` has passed, unless a hint or a
    settled lease changes the state: sleeping that long misses nothing."""

    def check(r: Round) -> None:
        wait = polling.wait_ms(r.after, r.held_after, r.now, linger_ms=10)
        if wait == 0:
            assert polling.to_reserve(r.after, r.held_after, r.now) != ()
        for early in range(0, wait, max(1, wait // 7)):
            assert polling.to_reserve(r.after, r.held_after, r.now + early) == ()
        if any(not lane.asks(r.held_after[lane.topic]) for lane in r.after.lanes):
            assert wait <= 10  # a topic that does not ask: a settled lease may change that

    drive(run, check)


def test_an_empty_topic_backs_off_on_its_own() -> None:
    """An empty topic waits out its growing backoff; a busy one is offered at once."""
    polls = polling.polls([("busy", 2, 2), ("empty", 2, 2)], BACKOFF)
    for now in range(0, 100, 10):
        plan = polling.to_reserve(polls, {}, now)
        assert "busy" in [r.topic for r in plan]
        for reserve in plan:
            got = 2 if reserve.topic == "busy" else 0
            polls = polling.reserved(polls, reserve.topic, got, now, 0.5)
    empty = polls.lane("empty")
    assert empty.empty_polls >= 2
    assert empty.poll_at_ms is not None
    assert empty.poll_at_ms > 90
    assert polling.hinted(polls, "empty").lane("empty").poll_at_ms is None


# -- fetching ahead by time ----------------------------------------------------------------


@given(st.integers(1, 16), fetch_ahead(), st.lists(st.integers(0, 300), max_size=40))
def test_a_topic_fetches_ahead_only_what_its_handlers_start_within_the_budget(
    handlers: int, rule: FetchAhead, runs_ms: list[int]
) -> None:
    """A topic that fetches ahead by time holds one lease per handler, plus the
    tasks its handlers are expected to start within ``within_ms`` (by the
    moving average of their run times), and at most ``most`` leases in all
    (never fewer than its handlers); it reserves up to that many at once.
    Before any handler has returned, it holds one lease per handler only."""
    polls = polling.polls([("q", handlers, handlers, handlers)], BACKOFF, {"q": rule})
    assert (polls.lane("q").capacity, polls.lane("q").batch) == (handlers, handlers)
    for ran_ms in runs_ms:
        polls = polling.ran(polls, "q", ran_ms)
        lane = polls.lane("q")
        assert lane.run_ms is not None
        assert lane.batch == lane.capacity
        assert handlers <= lane.capacity <= max(rule.most, handlers)
        ahead = lane.capacity - handlers
        assert ahead * max(lane.run_ms, 0.05) <= handlers * rule.within_ms
        if lane.run_ms > rule.within_ms:
            assert ahead == 0  # handlers slower than the budget: nothing waits for one


@given(st.integers(1, 16), fetch_ahead(), st.floats(0, 1_000), st.floats(0, 1_000))
def test_slower_handlers_never_fetch_more_ahead(
    handlers: int, rule: FetchAhead, a_ms: float, b_ms: float
) -> None:
    """The fetch-ahead capacity only falls as the handlers' run time grows."""
    fast, slow = sorted((a_ms, b_ms))
    assert rule.capacity(handlers, fast) >= rule.capacity(handlers, slow)


def test_a_topic_whose_handlers_turn_slow_stops_fetching_ahead_within_a_few_runs() -> None:
    """After no-op runs the topic holds ``most`` leases; a few runs of a second
    each bring it back to one per handler."""
    polls = polling.polls([("q", 2, 2, 2)], BACKOFF, {"q": FetchAhead(within_ms=50, most=100)})
    polls = polling.ran(polls, "q", 0)
    assert polls.lane("q").capacity == 100
    for _ in range(4):
        polls = polling.ran(polls, "q", 1_000)
    assert polls.lane("q").capacity == 2


@given(runs())
def test_a_topic_with_a_batch_of_its_own_does_not_follow_run_times(run: Run) -> None:
    """``ran`` changes only the topics that fetch ahead by time."""
    polls = polling.polls(run.lanes, BACKOFF)
    for what, number, _draw, elapsed in run.steps:
        if what == "ran":
            assert polling.ran(polls, run.lanes[number % len(run.lanes)][0], elapsed) == polls


@pytest.mark.parametrize(
    ("rule", "field"), [({"within_ms": -1}, "within_ms"), ({"most": 0}, "most")]
)
def test_a_bad_fetch_ahead_is_refused_naming_the_field(rule: dict, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        FetchAhead(**rule)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("lanes", "field"),
    [
        ([], "topics"),
        ([("a", 1, 1), ("a", 2, 2)], "topics"),
        ([("", 1, 1)], "topic"),
        ([("a", 0, 1)], "capacity"),
        ([("a", 1, True)], "batch"),
    ],
)
def test_bad_lanes_are_refused_naming_the_field(lanes: list, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        polling.polls(lanes, BACKOFF)
    assert raised.value.field == field
