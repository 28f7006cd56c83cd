"""Which topics a worker reserves from next, and how many tasks of each.

A worker may serve several topics, each with its own handler and its own
slots: ``capacity`` leases held at once (waiting or running), reserved at
most ``batch`` at a time. The worker's ``Polls`` value keeps, per topic (a
``Lane``), how many polls in a row came back empty and so when the topic
may be polled again (the poll backoff). The shell asks ``to_reserve`` what
to reserve now, makes those calls, and folds each answer in with
``reserved``; it sleeps ``wait_ms``, or until a hint (``hinted``) or a
handler's return wakes it.

Two rules live here, so that every runtime keeps them alike:

* **slots**: a topic is never asked for more tasks than its free slots
  (``capacity`` less the leases it holds undecided), so a topic never holds
  more than its capacity, however the store answers;
* **fairness**: every round offers every topic that asks (below) and has no
  backoff pending its reserve, starting with the topic after the one that
  went first last time; a topic that always has work cannot starve another,
  and a topic that is empty backs off on its own, without slowing the rest;
* **refill**: a topic asks when one of its ``handlers`` is idle (it holds
  fewer leases undecided than it has handlers), or when at least half a
  batch of slots is free; then for up to a batch. A topic whose batch is
  larger than its handlers (tasks fetched ahead) is thus refilled by claims
  of half a batch or more, not by a claim of one or two tasks each time a
  handler returns (a statement, and a round trip, each); a topic whose batch
  is no larger than its handlers asks as soon as a slot frees, as before.
* **fetch ahead by time** (a lane with a ``FetchAhead``: a worker's default,
  when no batch size is given): a topic holds, beyond one lease per handler,
  only as many tasks as its handlers are expected to start within
  ``FetchAhead.within_ms``, judged by how long its handlers have been taking
  (``ran``: a moving average of their run times), and at most
  ``FetchAhead.most`` in all. Until a handler has returned, and while they
  take ``within_ms`` or longer, that is none: the topic reserves only what
  its handlers can start at once. Many short tasks are thus claimed, and
  their outcomes recorded, in batches, while a slow topic leaves its waiting
  tasks to other workers.

Pure: time (``now_ms``) and the random draw of the backoff's jitter are
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from sokka.core.backoff import Backoff
from sokka.core.errors import ValidationError
from sokka.core.task import require_name

__all__ = [
    "FetchAhead", "Lane", "Polls", "Reserve", "hinted", "polls", "ran", "refills", "reserved",
    "to_reserve", "wait_ms",
]

#: Empty polls beyond this many do not lengthen the backoff further (its cap rules).
_MAX_STREAK = 30

#: How far one handler run moves a lane's run-time estimate (a moving average):
#: a topic whose handlers turn slow stops fetching ahead after a few runs.
_RUN_WEIGHT = 0.25

#: Below this estimate (ms) a handler counts as taking this long: run times are
#: whole milliseconds of the worker's clock, mostly 0 for very short handlers.
_FASTEST_RUN_MS = 0.05


@dataclass(frozen=True, slots=True)
class FetchAhead:
    """Fetch ahead by time: hold, beyond one lease per handler, the tasks the
    handlers are expected to start within ``within_ms``, and at most ``most``
    leases (waiting or running) in all.

    >>> rule = FetchAhead(within_ms=50, most=100)
    >>> rule.capacity(1, None), rule.capacity(1, 10.0), rule.capacity(4, 10.0)
    (1, 6, 24)
    >>> rule.capacity(1, 0.0), rule.capacity(1, 60.0), rule.capacity(200, 0.0)
    (100, 1, 200)
    """

    within_ms: int = 50
    most: int = 100

    def __post_init__(self) -> None:
        for name, value, least in (("within_ms", self.within_ms, 0), ("most", self.most, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValidationError(
                    name, f"must be an integer of at least {least} (got {value!r})"
                )

    def capacity(self, handlers: int, run_ms: float | None) -> int:
        """Leases to hold at once for ``handlers`` whose runs take ``run_ms`` on
        average (None: none has returned yet): one per handler, plus those they
        start within ``within_ms``, at most ``most`` (never fewer than ``handlers``)."""
        if run_ms is None or self.most <= handlers:
            return handlers
        ahead = int(handlers * self.within_ms / max(run_ms, _FASTEST_RUN_MS))
        if ahead < handlers:  # a handler would wait for a whole run: none ahead
            return handlers
        return min(self.most, handlers + ahead)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lane:
    """One topic's slots and poll state.

    ``capacity``: leases of the topic held at once, waiting or running;
    ``batch``: the most tasks one reserve asks for; ``handlers``: how many of
    them run at once (at most ``capacity``); ``empty_polls``: polls in a row
    that found nothing (or failed); ``poll_at_ms``: not polled before this
    instant of the worker's clock. With ``fetch_ahead``, ``capacity`` and
    ``batch`` follow ``run_ms``, the moving average of the topic's handler
    run times (``ran``).
    """

    topic: str
    capacity: int
    batch: int
    handlers: int
    empty_polls: int = 0
    poll_at_ms: int | None = None  #: None: at once
    fetch_ahead: FetchAhead | None = None
    run_ms: float | None = None  #: None: no handler has returned yet

    def free(self, unsettled: int) -> int:
        """Free slots, given the leases of this topic held undecided."""
        return max(0, self.capacity - unsettled)

    def asks(self, unsettled: int) -> int:
        """How many tasks this topic asks for, given the leases it holds
        undecided (the refill rule): none while every handler has a task and
        less than half a batch of slots is free; else up to a batch, at most
        its free slots.

        >>> lane = Lane(topic="a", capacity=100, batch=100, handlers=8)
        >>> lane.asks(99), lane.asks(51), lane.asks(50), lane.asks(7), lane.asks(0)
        (0, 0, 50, 93, 100)
        >>> Lane(topic="b", capacity=8, batch=8, handlers=8).asks(7)
        1
        """
        free = self.free(unsettled)
        if unsettled >= self.handlers and 2 * free < self.batch:
            return 0
        return min(self.batch, free)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserve:
    """Reserve up to ``limit`` tasks of ``topic`` now."""

    topic: str
    limit: int


@dataclass(frozen=True, slots=True)
class Polls:
    """Every lane of a worker, the poll backoff, and whose turn is first.

    >>> p = polls([("a", 2, 2), ("b", 1, 1)], Backoff(base_ms=20, cap_ms=2_000))
    >>> [(r.topic, r.limit) for r in to_reserve(p, {"a": 1}, now_ms=0)]
    [('a', 1), ('b', 1)]
    """

    lanes: tuple[Lane, ...]
    backoff: Backoff
    first: int = 0  #: the index of the lane offered first in the next round

    def lane(self, topic: str) -> Lane:
        for lane in self.lanes:
            if lane.topic == topic:
                return lane
        raise ValidationError("topic", f"{topic!r} is not served by this worker")

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(lane.topic for lane in self.lanes)


def polls(
    lanes: Sequence[tuple[str, int, int] | tuple[str, int, int, int]],
    backoff: Backoff,
    fetch_ahead: Mapping[str, FetchAhead] | None = None,
) -> Polls:
    """A worker's poll state: one lane per ``(topic, capacity, batch[, handlers])``,
    in order (``handlers``: by default the capacity, so a topic asks as soon as
    a slot frees). A topic in ``fetch_ahead`` fetches ahead by time (its
    capacity and batch start at its handlers and then follow ``ran``).

    The topics must be distinct; capacity, batch and handlers positive, and
    handlers at most the capacity.
    """
    if not lanes:
        raise ValidationError("topics", "a worker serves at least one topic")
    seen: set[str] = set()
    made = []
    for topic, capacity, batch, *rest in lanes:
        require_name("topic", topic)
        if topic in seen:
            raise ValidationError("topics", f"{topic!r} is served twice")
        seen.add(topic)
        handlers = rest[0] if rest else capacity
        for name, value in (("capacity", capacity), ("batch", batch), ("handlers", handlers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(name, f"must be a positive integer (got {value!r})")
        if handlers > capacity:
            raise ValidationError(
                "handlers", f"must be at most the capacity, {capacity} (got {handlers})"
            )
        rule = (fetch_ahead or {}).get(topic)
        if rule is not None:
            capacity = batch = handlers
        made.append(Lane(
            topic=topic, capacity=capacity, batch=batch, handlers=handlers, fetch_ahead=rule,
        ))  # fmt: skip
    return Polls(tuple(made), backoff)


def _due(lane: Lane, now_ms: int) -> bool:
    return lane.poll_at_ms is None or lane.poll_at_ms <= now_ms


def to_reserve(polls: Polls, unsettled: Mapping[str, int], now_ms: int) -> tuple[Reserve, ...]:
    """What to reserve now: every topic with free slots whose backoff is over, in
    this round's order, each for at most its batch and its free slots.

    ``unsettled``: the leases each topic holds undecided (missing: none).
    """
    lanes = polls.lanes
    count = len(lanes)
    plan = []
    for step in range(count):
        lane = lanes[(polls.first + step) % count]
        asks = lane.asks(unsettled.get(lane.topic, 0))
        if asks and _due(lane, now_ms):
            plan.append(Reserve(topic=lane.topic, limit=asks))
    return tuple(plan)


def reserved(polls: Polls, topic: str, got: int | None, now_ms: int, rand: float) -> Polls:
    """Fold in the answer of a reserve of ``topic``: ``got`` tasks (None: it failed).

    Tasks: the topic may be polled again at once. None or failure: one more
    empty poll, and the topic waits the backoff's delay for that streak
    (``rand`` its jitter draw). The next round starts after this topic.

    >>> p = polls([("a", 1, 1)], Backoff(base_ms=100, cap_ms=1_000))
    >>> p = reserved(p, "a", 0, now_ms=50, rand=0.5)
    >>> p.lane("a").poll_at_ms, to_reserve(p, {}, now_ms=149)   # 50 + 200 * 0.5
    (150, ())
    """
    lanes = list(polls.lanes)
    index = polls.topics.index(topic) if topic in polls.topics else -1
    if index < 0:
        raise ValidationError("topic", f"{topic!r} is not served by this worker")
    lane = lanes[index]
    if got:
        lanes[index] = replace(lane, empty_polls=0, poll_at_ms=None)
    else:
        streak = lane.empty_polls + 1
        delay = polls.backoff.delay_ms(min(streak, _MAX_STREAK), rand)
        lanes[index] = replace(lane, empty_polls=streak, poll_at_ms=now_ms + delay)
    return Polls(tuple(lanes), polls.backoff, (index + 1) % len(lanes))


def ran(polls: Polls, topic: str, ran_ms: int) -> Polls:
    """Fold in one handler run of ``topic`` that took ``ran_ms`` (returned,
    raised, timed out or cancelled: the time its handler was busy). A topic
    that fetches ahead by time moves its run-time estimate toward it, and its
    capacity and batch follow (``FetchAhead.capacity``); any other is as it was.

    >>> p = polls([("a", 1, 1)], Backoff(base_ms=20, cap_ms=2_000), {"a": FetchAhead(50, 100)})
    >>> p = ran(p, "a", 0)
    >>> p.lane("a").capacity, p.lane("a").batch
    (100, 100)
    >>> for _ in range(3):
    ...     p = ran(p, "a", 2_000)
    >>> p.lane("a").capacity, round(p.lane("a").run_ms)
    (1, 1156)
    """
    lane = polls.lane(topic)
    rule = lane.fetch_ahead
    if rule is None:
        return polls
    before = lane.run_ms
    run_ms = float(ran_ms) if before is None else before + (ran_ms - before) * _RUN_WEIGHT
    capacity = rule.capacity(lane.handlers, run_ms)
    changed = replace(lane, run_ms=run_ms, capacity=capacity, batch=capacity)
    lanes = tuple(changed if other.topic == topic else other for other in polls.lanes)
    return Polls(lanes, polls.backoff, polls.first)


def refills(polls: Polls, topic: str, unsettled: int) -> bool:
    """Whether ``topic``, which fetches ahead (its batch is larger than its
    handlers), asks again now that one of its leases was settled
    (``unsettled``: the leases it holds undecided after it): the shell then
    wakes its dispatcher at once, instead of leaving it asleep until
    ``linger_ms`` while the tasks fetched ahead run out. (A topic that does
    not fetch ahead is refilled after ``linger_ms``, which gathers the slots
    freed meanwhile into one claim.)

    >>> p = polls([("a", 100, 100, 8), ("b", 8, 8, 8)], Backoff(base_ms=20, cap_ms=2_000))
    >>> refills(p, "a", 51), refills(p, "a", 50), refills(p, "a", 49), refills(p, "b", 7)
    (False, True, False, False)
    """
    lane = polls.lane(topic)
    if lane.batch <= lane.handlers:
        return False
    return bool(lane.asks(unsettled)) and not lane.asks(unsettled + 1)


def hinted(polls: Polls, topic: str) -> Polls:
    """The store hints that ``topic`` has a task ready: poll it at once (its
    streak of empty polls stands, so a false hint backs off further)."""
    lanes = tuple(
        replace(lane, poll_at_ms=None) if lane.topic == topic else lane for lane in polls.lanes
    )
    return Polls(lanes, polls.backoff, polls.first)


def wait_ms(polls: Polls, unsettled: Mapping[str, int], now_ms: int, linger_ms: int) -> int:
    """How long the shell may sleep before ``to_reserve`` can offer something.

    Until the earliest backoff of a topic that asks ends; at most
    ``linger_ms`` while some topic does not ask (full, or waiting to refill:
    a return frees a slot without a hint); 0 if something may be reserved now.

    >>> p = polls([("a", 1, 1), ("b", 1, 1)], Backoff(base_ms=100, cap_ms=1_000))
    >>> p = reserved(reserved(p, "a", 0, now_ms=0, rand=0.5), "b", 0, now_ms=0, rand=0.9)
    >>> wait_ms(p, {}, now_ms=10, linger_ms=5), wait_ms(p, {"a": 1}, now_ms=10, linger_ms=5)
    (90, 5)
    """
    wait: int | None = None
    for lane in polls.lanes:
        if not lane.asks(unsettled.get(lane.topic, 0)):
            until = linger_ms
        elif lane.poll_at_ms is None:
            return 0
        else:
            until = max(0, lane.poll_at_ms - now_ms)
        if wait is None or until < wait:
            wait = until
    return 0 if wait is None else wait
