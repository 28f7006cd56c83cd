"""Lease supervision by observed record versions: ``mark``, ``sweep``, ``settle``.

This is sokka's mark-and-sweep (``verbo.sokka.supervisor``) as pure functions.
The supervisor never compares timestamps written by other machines. For each
leased task it remembers the last ``record_ver`` it saw and a projected
expiry on **its own** clock: ``now_ms + lease`` for a running task,
``now_ms + snooze time`` for a snoozed one, where ``now_ms`` is the moment
the supervisor saw that version. A worker keeping its lease alive bumps
``record_ver``; if the version is still the same after the projected
expiry, nobody touched the task for a whole lease, and the lease is revoked
with a compare-and-set on that version.

Time is an ``int`` of milliseconds from the caller's monotonic clock. The
functions read no clock, do no I/O and never mutate their arguments.

``Monitored`` is an immutable mapping ``task_id -> Observation``: a private
``dict`` that is never mutated after its ``Monitored`` is built (a change
builds a new one: copy on write), and its earliest expiry, cached. It is not
a pyrsistent ``PMap``, on purpose: ``mark`` looks up every listed task on
every cycle, and a ``PMap`` lookup costs about four times a whole plain-dict
mark step (see ``bench/core_supervision.py``), while copying a 100k-entry
dict costs about 10 ns per entry in C and only happens on a cycle where
something changed. ``monitored.observations`` gives a ``PMap`` copy for
callers that want one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn, Protocol

from pyrsistent import PMap, pmap

from sokka.core.commands import RevokeLease, RevokeOutcome, is_retry_worthy
from sokka.core.task import Status, require_positive_ms

__all__ = [
    "EMPTY",
    "LeasePolicy",
    "Leased",
    "Monitored",
    "Observation",
    "mark",
    "next_expiry",
    "settle",
    "sweep",
]


@dataclass(frozen=True, slots=True)
class Observation:
    """What the supervisor last saw of a task, and when it will call it stale.

    ``expiry_ms`` is on the supervisor's own clock.
    """

    record_ver: int
    status: Status
    expiry_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LeasePolicy:
    """How long an untouched lease lives, and how long a snooze without a time lasts.

    >>> LeasePolicy(lease_time_ms=30_000, default_snooze_ms=60_000).lease_time_ms
    30000
    """

    lease_time_ms: int
    default_snooze_ms: int

    def __post_init__(self) -> None:
        require_positive_ms("lease_time_ms", self.lease_time_ms)
        require_positive_ms("default_snooze_ms", self.default_snooze_ms)


class Leased(Protocol):
    """What ``mark`` reads of a leased task (``core.task.Task`` has all of it)."""

    @property
    def task_id(self) -> str: ...
    @property
    def record_ver(self) -> int: ...
    @property
    def status(self) -> Status: ...
    @property
    def lease_time_ms(self) -> int | None: ...
    @property
    def snooze_time_ms(self) -> int | None: ...


class Monitored(Mapping[str, Observation]):
    """The supervisor's memory: an immutable mapping ``task_id -> Observation``.

    >>> m = Monitored({"t1": Observation(3, Status.RUNNING, 1_000)})
    >>> m["t1"].record_ver, len(m), next_expiry(m)
    (3, 1, 1000)
    >>> m.observations
    pmap({'t1': Observation(record_ver=3, status=<Status.RUNNING: 'running'>, expiry_ms=1000)})
    """

    __slots__ = ("_earliest", "_index")
    _index: dict[str, Observation]
    _earliest: int | None

    def __init__(self, observations: Mapping[str, Observation] | None = None) -> None:
        index = dict(observations or {})
        _init(self, index, _earliest_of(index))

    @property
    def observations(self) -> PMap[str, Observation]:
        """The observations as a pyrsistent ``PMap``: a copy, made when asked for."""
        return pmap(self._index)

    def __getitem__(self, task_id: str) -> Observation:
        return self._index[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Monitored):
            return self._index == other._index
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]  # equal by value, like a dict

    def __repr__(self) -> str:
        return f"Monitored({self._index!r})"

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Monitored is immutable")

    def __reduce__(self) -> tuple[type[Monitored], tuple[dict[str, Observation]]]:
        return (Monitored, (dict(self._index),))


def _init(target: Monitored, index: dict[str, Observation], earliest: int | None) -> Monitored:
    """Monitored's constructor, shared by ``__init__`` and ``_rebuilt``: the one
    place its two slots are set."""
    object.__setattr__(target, "_index", index)
    object.__setattr__(target, "_earliest", earliest)
    return target


def _earliest_of(index: Mapping[str, Observation]) -> int | None:
    return min((o.expiry_ms for o in index.values()), default=None)


def _rebuilt(
    monitored: Monitored,
    changed: Mapping[str, Observation],
    removed: Sequence[str],
    earliest: int | None,
    *,
    recompute: bool = False,
) -> Monitored:
    """A new ``Monitored``: ``monitored`` with ``changed`` set and ``removed`` dropped.

    ``earliest`` is the new earliest expiry, when the caller knows it; with
    ``recompute`` it is found by looking at every entry.
    """
    index = dict(monitored._index)
    index.update(changed)
    for task_id in removed:
        del index[task_id]
    if recompute:
        earliest = _earliest_of(index)
    return _init(object.__new__(Monitored), index, earliest)


EMPTY: Final = Monitored()


def _hold_ms(task: Leased, policy: LeasePolicy) -> int:
    if task.status is Status.SNOOZED:
        return task.snooze_time_ms or policy.default_snooze_ms
    return task.lease_time_ms or policy.lease_time_ms


def mark(
    monitored: Monitored,
    leased_tasks: Iterable[Leased],
    now_ms: int,
    policy: LeasePolicy,
    *,
    complete: bool = True,
) -> Monitored:
    """Record what the supervisor sees at ``now_ms`` on its own clock.

    * a task not seen before gets an observation expiring at
      ``now_ms + lease`` (running; the task's own ``lease_time_ms`` when it
      has one) or ``now_ms + snooze time`` (snoozed);
    * a task whose ``record_ver`` changed gets a fresh observation likewise;
    * a task with the same ``record_ver`` keeps its entry exactly as it is:
      its expiry never moves;
    * with ``complete=True`` (the listing covered every leased task), entries
      of tasks no longer listed are dropped; with ``complete=False`` nothing
      is dropped.

    Tasks that are not running or snoozed are ignored (they hold no lease).
    A listing should name each task once (pages of a keyset listing never
    overlap); a task it names twice counts once.

    >>> policy = LeasePolicy(lease_time_ms=100, default_snooze_ms=500)
    >>> from sokka.core.task import Task
    >>> t = Task(task_id="t1", task_group_id="t1", topic="q", status=Status.RUNNING,
    ...          record_ver=1)
    >>> m = mark(EMPTY, [t], now_ms=1_000, policy=policy)
    >>> m["t1"].expiry_ms
    1100
    >>> mark(m, [t], now_ms=1_050, policy=policy)["t1"].expiry_ms  # unchanged: stays
    1100
    """
    tasks = leased_tasks if isinstance(leased_tasks, Sequence) else tuple(leased_tasks)
    index = monitored._index
    get = index.get
    changed: dict[str, Observation] = {}
    seen: set[str] = set()  # the monitored tasks listed, each once however often listed
    # Earliest expiry among the entries this listing confirmed unchanged; with a
    # complete listing that and the changed entries are all that remains.
    earliest: int | None = None
    for task in tasks:
        status = task.status
        if status is not Status.RUNNING and status is not Status.SNOOZED:
            continue
        task_id = task.task_id
        old = get(task_id)
        if old is not None:
            seen.add(task_id)
            if old.record_ver == task.record_ver:
                expiry = old.expiry_ms
                if earliest is None or expiry < earliest:
                    earliest = expiry
                continue
        changed[task_id] = Observation(task.record_ver, status, now_ms + _hold_ms(task, policy))

    removed: list[str] = []
    if complete and len(seen) < len(index):
        # Some monitored tasks were not listed: they no longer hold a lease.
        listed = {t.task_id for t in tasks if t.status.is_leased}
        removed = [task_id for task_id in index if task_id not in listed]
    if not changed and not removed:
        return monitored
    for observation in changed.values():
        if earliest is None or observation.expiry_ms < earliest:
            earliest = observation.expiry_ms
    # With an incomplete listing, entries it did not visit keep their expiries
    # and may hold the earliest: look at all of them.
    return _rebuilt(monitored, changed, removed, earliest, recompute=not complete)


def sweep(monitored: Monitored, now_ms: int) -> tuple[RevokeLease, ...]:
    """One ``RevokeLease`` per entry whose expiry has passed (``now_ms > expiry_ms``).

    Ordered oldest expiry first (then by task id), so the result is
    deterministic. Costs nothing when ``next_expiry`` says nothing can have
    lapsed.

    >>> m = Monitored({"a": Observation(4, Status.RUNNING, 100),
    ...                "b": Observation(9, Status.SNOOZED, 50)})
    >>> [(c.task_id, c.overdue_ms) for c in sweep(m, now_ms=120)]
    [('b', 70), ('a', 20)]
    >>> sweep(m, now_ms=50)
    ()
    """
    earliest = monitored._earliest
    if earliest is None or now_ms <= earliest:
        return ()
    due = sorted(
        (obs.expiry_ms, task_id, obs)
        for task_id, obs in monitored._index.items()
        if now_ms > obs.expiry_ms
    )
    return tuple(
        RevokeLease(
            task_id=task_id,
            record_ver=obs.record_ver,
            status=obs.status,
            overdue_ms=now_ms - expiry,
        )
        for expiry, task_id, obs in due
    )


def next_expiry(monitored: Monitored) -> int | None:
    """The earliest ``expiry_ms`` in the map (``None`` when empty).

    The shell sleeps until then: before it, ``sweep`` cannot find anything.
    """
    return monitored._earliest


def settle(monitored: Monitored, outcomes: Iterable[RevokeOutcome]) -> Monitored:
    """Forget the entries whose revoke reached a final outcome.

    Final: revoked, conflict (stale record_ver or a status that moved on),
    not found. An entry whose revoke failed with a retryable error is kept
    as it is, so the next ``sweep`` retries it at once instead of waiting
    another lease. An outcome for an older ``record_ver`` than the entry's
    (the task was re-marked since) leaves the entry alone.
    """
    index = monitored._index
    removed = [
        o.command.task_id
        for o in outcomes
        if not is_retry_worthy(o.result)
        and (entry := index.get(o.command.task_id)) is not None
        and entry.record_ver == o.command.record_ver
    ]
    if not removed:
        return monitored
    removed = list(dict.fromkeys(removed))
    earliest_gone = any(index[task_id].expiry_ms == monitored._earliest for task_id in removed)
    return _rebuilt(monitored, {}, removed, monitored._earliest, recompute=earliest_gone)
