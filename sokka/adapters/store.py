"""The port every store implements (``TaskStore``), and the command interpreter.

Every store (memory, SQL, HTTP) passes one contract suite
(``tests/adapters``). The docstrings below are that contract in words.

Common rules:

* Every error is one of ``sokka.core.errors``; a driver's exception never
  leaks. ``Throttled`` and ``Unavailable`` (``RetryableError``) mean the call
  changed nothing and may be retried.
* Bad input raises ``ValidationError`` naming the field and the rule, and
  leaves the store as it was.
* Owner calls (``extend_leases``, ``terminate``, ``snooze``, ``fail``,
  ``finish_many``) quote the lease ``(pid, attempt)``; a caller who lost the
  lease gets a ``LeaseLost`` (``NotRunning``, ``StaleAttempt``,
  ``WrongOwner``) and changes nothing.
* Batch calls return one ``Result`` per element, in order; each element
  succeeds or fails on its own and is never half-applied.
* Listings are paged with an opaque cursor (keyset, never OFFSET); a page
  is in creation order, and following ``next_cursor`` until it is ``None``
  visits every matching task that existed throughout, once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from returns.result import Failure, Result, Success

from sokka.core.commands import Finish, LeaseToken, RevokeLease
from sokka.core.errors import RetryableError, SokkaError, ValidationError
from sokka.core.task import MAX_INT, Status, Task, TaskSpec, require_name, shown
from sokka.core.transitions import (
    Cancel,
    Event,
    Extend,
    Fail,
    Requeue,
    Revoke,
    Snooze,
    Terminate,
)

__all__ = [
    "DEFAULT_FAILED_WITHIN_MS",
    "DEFAULT_PAGE_SIZE",
    "MAX_BATCH",
    "MAX_PAGE_SIZE",
    "PURGEABLE",
    "Counts",
    "EventCalls",
    "Page",
    "Purged",
    "ReservesAndFinishes",
    "TaskFilter",
    "TaskStore",
    "TopicCounts",
    "capture",
    "check_counting",
    "check_leased_listing",
    "check_listing",
    "check_purge",
    "check_topic",
    "decode_cursor",
    "encode_cursor",
    "execute",
    "require_batch",
    "require_limit",
    "require_spec",
    "reserve_and_finish",
]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
#: The most elements one batch call (create_tasks, reserve_tasks, extend_leases,
#: finish_many) may carry.
MAX_BATCH: Final = 1000
#: ``count_tasks`` counts the failures of the last hour unless told otherwise.
DEFAULT_FAILED_WITHIN_MS: Final = 3_600_000

_T = TypeVar("_T")

#: The statuses ``purge`` may delete: a task that will never change again.
#: Running and snoozed tasks hold a lease, and a starting one has yet to run.
PURGEABLE: Final = frozenset({Status.TERMINATED, Status.FAILED})


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilter:
    """Which tasks ``list_tasks`` returns; every given field must match.

    ``created_from``/``created_before`` are store-clock milliseconds
    (``created_from <= created_at < created_before``).
    """

    topic: str | None = None
    sub_topic: str | None = None
    status: Status | None = None
    task_group_id: str | None = None
    created_from: int | None = None
    created_before: int | None = None

    def __post_init__(self) -> None:
        for name in ("topic", "sub_topic", "task_group_id"):
            value = getattr(self, name)
            if value is not None:
                require_name(name, value)
        if self.status is not None:
            object.__setattr__(self, "status", Status.parse(self.status))
        for name in ("created_from", "created_before"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValidationError(name, "must be an integer of milliseconds or None")
            if value is not None and abs(value) > MAX_INT:
                raise ValidationError(name, f"must be between -{MAX_INT} and {MAX_INT}")

    def matches(self, task: Task) -> bool:
        """Whether ``task`` passes every field of the filter that is set."""
        return (
            (self.topic is None or task.topic == self.topic)
            and (self.sub_topic is None or task.sub_topic == self.sub_topic)
            and (self.status is None or task.status == self.status)
            and (self.task_group_id is None or task.task_group_id == self.task_group_id)
            and (self.created_from is None or task.created_at >= self.created_from)
            and (self.created_before is None or task.created_at < self.created_before)
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; pass ``next_cursor`` back for the next (``None``: done)."""

    tasks: tuple[Task, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicCounts:
    """What ``count_tasks`` found in one topic.

    One count per status; ``oldest_ready_at``: the smallest ``updated_at``
    among the topic's starting tasks (when the task that has waited longest
    became ready), None when none is ready; ``failed_recently``: the failed
    tasks whose ``updated_at`` is within the call's ``failed_within_ms``.
    """

    topic: str
    starting: int = 0
    running: int = 0
    snoozed: int = 0
    failed: int = 0
    terminated: int = 0
    oldest_ready_at: int | None = None
    failed_recently: int = 0

    @property
    def leased(self) -> int:
        """Running and snoozed: the tasks a worker holds a lease on."""
        return self.running + self.snoozed

    @property
    def total(self) -> int:
        return self.starting + self.running + self.snoozed + self.failed + self.terminated

    def count(self, status: Status) -> int:
        """The count of one status.

        >>> TopicCounts(topic="t", failed=2).count(Status.FAILED)
        2
        """
        return int(getattr(self, status.value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """The answer of ``count_tasks``: the store clock when it counted (``now``,
    milliseconds), the window of ``failed_recently``, and one ``TopicCounts``
    per topic that has a matching task, by topic name."""

    now: int
    failed_within_ms: int
    topics: tuple[TopicCounts, ...]

    def oldest_ready_age_ms(self, topic: TopicCounts) -> int | None:
        """How long ``topic``'s longest-waiting ready task has waited, on the store
        clock (both ends are the store's own readings); None when none is ready.

        >>> counts = Counts(now=5_000, failed_within_ms=1, topics=())
        >>> counts.oldest_ready_age_ms(TopicCounts(topic="t", starting=1, oldest_ready_at=2_000))
        3000
        """
        if topic.oldest_ready_at is None:
            return None
        return max(0, self.now - topic.oldest_ready_at)


def check_counting(
    topic: object, status: object, failed_within_ms: object
) -> tuple[str | None, Status | None, int]:
    """Validate ``count_tasks``'s arguments (``ValidationError`` naming the field)."""
    name = None if topic is None else require_name("topic", topic)
    wanted = None if status is None else Status.parse(status)
    if isinstance(failed_within_ms, bool) or not isinstance(failed_within_ms, int):
        raise ValidationError(
            "failed_within_ms",
            f"must be an integer of milliseconds (got {type(failed_within_ms).__name__})",
        )
    if not 1 <= failed_within_ms <= MAX_INT:
        raise ValidationError(
            "failed_within_ms", f"must be between 1 and {MAX_INT} (got {shown(failed_within_ms)})"
        )
    return name, wanted, failed_within_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class Purged:
    """The answer of ``purge``: how many tasks one call deleted, and whether it
    stopped at its ``limit`` (``more``: call again, there may be more to delete)."""

    deleted: int
    more: bool


def check_purge(
    statuses: object, older_than_ms: object, topic: object, limit: object
) -> tuple[frozenset[Status], int, str | None, int]:
    """Validate ``purge``'s arguments (``ValidationError`` naming the field).

    >>> check_purge(["failed"], 0, None, 10)
    (frozenset({<Status.FAILED: 'failed'>}), 0, None, 10)
    >>> check_purge(["running"], 0, None, 10)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: statuses: may hold only final statuses \
(terminated, failed), never a leased or starting task (got running)
    """
    if isinstance(statuses, str | bytes) or not isinstance(
        statuses, list | tuple | set | frozenset
    ):
        raise ValidationError(
            "statuses", f"must be a list of statuses (got {type(statuses).__name__})"
        )
    if not statuses:
        raise ValidationError("statuses", "must name at least one status (terminated, failed)")
    wanted = frozenset(Status.parse(value, "statuses") for value in statuses)
    refused = sorted(s.value for s in wanted - PURGEABLE)
    if refused:
        raise ValidationError(
            "statuses",
            "may hold only final statuses (terminated, failed), never a leased or "
            f"starting task (got {', '.join(refused)})",
        )
    if isinstance(older_than_ms, bool) or not isinstance(older_than_ms, int):
        raise ValidationError(
            "older_than_ms",
            f"must be an integer of milliseconds (got {type(older_than_ms).__name__})",
        )
    if not 0 <= older_than_ms <= MAX_INT:
        raise ValidationError(
            "older_than_ms", f"must be between 0 and {MAX_INT} (got {shown(older_than_ms)})"
        )
    name = None if topic is None else require_name("topic", topic)
    return wanted, older_than_ms, name, require_limit("limit", limit, MAX_BATCH)


_CURSOR_VERSION = 1


def encode_cursor(position: int) -> str:
    """An opaque cursor for "after ``position``" in a store's creation order.

    >>> decode_cursor(encode_cursor(42))
    42
    """
    raw = json.dumps({"v": _CURSOR_VERSION, "after": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> int:
    """The position a cursor from ``encode_cursor`` stands for.

    >>> decode_cursor("not a cursor")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: cursor: is not a cursor this store issued \
(pass back next_cursor unchanged)
    """
    malformed = ValidationError(
        "cursor", "is not a cursor this store issued (pass back next_cursor unchanged)"
    )
    if not isinstance(cursor, str) or not cursor or len(cursor) > 200:
        raise malformed
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        raise malformed from None
    if (
        not isinstance(body, dict)
        or type(body.get("v")) is not int
        or body["v"] != _CURSOR_VERSION
        or set(body) != {"v", "after"}
        or isinstance(body["after"], bool)
        or not isinstance(body["after"], int)
        or not 0 <= body["after"] <= MAX_INT
    ):
        raise malformed
    return int(body["after"])


def check_topic(topic: object) -> str:
    """Validate the ``topic`` of ``pause_topic``/``resume_topic`` (a name)."""
    return require_name("topic", topic)


def require_spec(spec: object) -> TaskSpec:
    """Check that a create call was given a ``TaskSpec`` (which validated itself)."""
    if not isinstance(spec, TaskSpec):
        raise ValidationError("spec", f"must be a TaskSpec (got {type(spec).__name__})")
    return spec


def require_limit(field: str, value: object, maximum: int) -> int:
    """Check a page size or batch size: an int from 1 to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer (got {type(value).__name__})")
    if not 1 <= value <= maximum:
        raise ValidationError(field, f"must be between 1 and {maximum} (got {shown(value)})")
    return value


def require_batch(field: str, items: object, kind: type[_T] | None = None) -> Sequence[_T]:
    """Check a batch argument: a list or tuple of at most ``MAX_BATCH`` elements,
    each of ``kind`` when given. An empty batch is fine (it does nothing)."""
    if not isinstance(items, list | tuple):
        raise ValidationError(field, f"must be a list (got {type(items).__name__})")
    if len(items) > MAX_BATCH:
        raise ValidationError(field, f"must hold at most {MAX_BATCH} elements (got {len(items)})")
    if kind is not None:
        for item in items:
            if not isinstance(item, kind):
                raise ValidationError(
                    field, f"must hold {kind.__name__} values (got {type(item).__name__})"
                )
    return items


def check_listing(
    filter: TaskFilter | None, cursor: str | None, limit: int
) -> tuple[TaskFilter, int]:
    """Validate ``list_tasks``'s arguments: the filter to apply, and the position
    (in creation order) the page starts after."""
    wanted = TaskFilter() if filter is None else filter
    if not isinstance(wanted, TaskFilter):
        raise ValidationError("filter", "must be a TaskFilter")
    require_limit("limit", limit, MAX_PAGE_SIZE)
    return wanted, 0 if cursor is None else decode_cursor(cursor)


def check_leased_listing(topic: str | None, cursor: str | None, limit: int) -> int:
    """Validate ``list_leased_tasks``'s arguments; return the position to start after."""
    if topic is not None:
        require_name("topic", topic)
    require_limit("limit", limit, MAX_PAGE_SIZE)
    return 0 if cursor is None else decode_cursor(cursor)


def capture(call: Callable[[], _T]) -> Result[_T, SokkaError]:
    """Run ``call``; its ``SokkaError`` becomes a ``Failure`` (other exceptions are bugs)."""
    try:
        return Success(call())
    except SokkaError as error:
        return Failure(error)


@runtime_checkable
class TaskStore(Protocol):
    """Durable storage of tasks; every transition goes through ``core.transitions.apply``."""

    def create_task(self, spec: TaskSpec) -> Task:
        """Store a new task in ``starting`` (record_ver 0, attempt 0) and return it;
        with ``spec.delay_ms`` > 0, in ``snoozed`` with ``snooze_time_ms`` the
        delay, so no worker reserves it before a supervisor wakes it.

        Without ``spec.task_id`` the store makes a unique id. A task with the
        same id already stored: ``AlreadyExists``, and the stored one is kept
        as it was.
        """
        ...

    def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        """Create many tasks in one call; each element succeeds or fails on its own.

        A repeated id within the batch fails its later occurrences with
        ``AlreadyExists``; an element that is not a ``TaskSpec`` fails on its
        own. At most ``MAX_BATCH`` specs; an empty list does nothing.
        """
        ...

    def get_task(self, task_id: str) -> Task:
        """The task with this id, or ``NotFound``."""
        ...

    def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        """The first ``limit`` (1..``MAX_PAGE_SIZE``) tasks of the group, in creation
        order (empty if none).

        A store may answer fewer than ``limit`` when their size would pass its
        answer budget (``HTTPStore``: the server bounds every answer by bytes);
        to read every task of a group of any size, page through
        ``list_tasks(TaskFilter(task_group_id=...))``.
        """
        ...

    def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        """One page of at most ``limit`` (1..``MAX_PAGE_SIZE``) matching tasks.

        A cursor this store did not issue: ``ValidationError`` on ``cursor``.
        """
        ...

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        """Lease up to ``limit`` starting tasks of ``topic`` to ``pid``, oldest first.

        Each returned task is running, owned by ``pid``, with ``attempt``
        increased by one. A task is never handed to two callers for the same
        attempt. An empty list when nothing is ready, or when ``topic`` is
        paused (``pause_topic``).
        """
        ...

    def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        """Keep leases alive: bump the record_ver of each running task ``pid`` owns.

        Per element: the extended task, or ``LeaseLost`` (``NotRunning``,
        ``StaleAttempt``, ``WrongOwner``) or ``NotFound``.
        """
        ...

    def terminate(self, task_id: str, pid: str, attempt: int, result: Any = None) -> Task:
        """The owner finished the task: it becomes terminated, keeping ``result``.

        ``result``: a JSON value of at most ``MAX_RESULT_BYTES`` encoded, kept
        as the task's ``result`` (``None``: no result). A value that is not
        JSON or is too large: ``ValidationError`` naming ``result``, and the
        task is left as it was.
        """
        ...

    def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task:
        """The owner puts the task to sleep; a supervisor wakes it after ``snooze_ms``."""
        ...

    def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task:
        """The owner's attempt failed: retried after ``retry_after_ms`` if attempts are
        left within ``max_attempts``, failed otherwise."""
        ...

    def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]:
        """Apply many owner outcomes (terminate / snooze / fail / release), each on its own.

        ``Release`` gives a running task back unfinished: it is ready again at
        once and the attempt does not count as a failure (a graceful shutdown).
        A ``Terminate`` keeps its ``result`` on the task, as ``terminate`` does.
        """
        ...

    def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        """Take a lease back if the task still has ``record_ver`` (compare-and-set).

        A running task goes back to starting (or fails, when that expiry spent
        its last attempt); a snoozed one wakes up to starting. A different
        record_ver: ``StaleRecord``; a task that is not running or snoozed:
        ``InvalidTransition``; nothing is changed in either case.
        """
        ...

    def requeue(self, task_id: str) -> Task:
        """Administrator: give a failed task a fresh failure budget, back to starting."""
        ...

    def cancel(self, task_id: str, reason: str) -> Task:
        """Administrator: fail a starting, snoozed or running task ("cancelled: <reason>").

        A running task needs no lease: its ``record_ver`` moves and its pid is
        cleared, so its owner's next keepalive or outcome is refused with
        ``TaskCancelled`` (the worker stops the handler and reports nothing).
        A failed or terminated task: ``InvalidTransition``.
        """
        ...

    def pause_topic(self, topic: str) -> bool:
        """Administrator: from now on ``reserve_tasks(topic, ...)`` returns nothing.

        Leases already held run on: their keepalives and outcomes work as
        ever, and a supervisor still revokes and wakes the topic's tasks (they
        wait, starting, until the topic is resumed). A topic need not have any
        task to be paused. True if this call paused it; False if it was paused
        already (nothing changes).
        """
        ...

    def resume_topic(self, topic: str) -> bool:
        """Administrator: undo ``pause_topic``; workers may reserve again, and those
        waiting for the topic are woken (as a new task wakes them).

        True if the topic was paused; False if it was not (nothing changes).
        """
        ...

    def paused_topics(self) -> list[str]:
        """The paused topics, sorted by name."""
        ...

    def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        """One page of running and snoozed tasks of ``topic`` (all topics with ``None``)."""
        ...

    def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts:
        """Count the tasks per topic and status, without listing them (an operator's view).

        Only ``topic`` (all topics with ``None``) and only ``status`` (every
        status with ``None``; the other counts are then 0) are counted. A topic
        with no matching task is absent. ``failed_recently`` counts the failed
        tasks whose ``updated_at`` is at or after ``now - failed_within_ms``
        (1..``MAX_INT``, one hour by default).

        ``now``, ``oldest_ready_at`` and the recent-failure window are the
        store's own clock (the one that writes ``created_at``/``updated_at``):
        good for telling an operator how old things are, never for a lease
        decision, which reads no store timestamp. The counts are a snapshot;
        tasks keep moving while an answer travels.

        An unknown ``status``, a malformed ``topic`` or a ``failed_within_ms``
        out of range: ``ValidationError`` naming the field.
        """
        ...

    def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged:
        """Delete at most ``limit`` (1..``MAX_BATCH``) finished tasks that have not
        changed for ``older_than_ms``: retention, so finished tasks do not pile up.

        Only final statuses may be named (``terminated``, ``failed``): a
        running or snoozed task holds a lease and a starting one has yet to
        run, so asking for any of them is a ``ValidationError`` on
        ``statuses`` and nothing is deleted. A task is deleted when its status
        is one of ``statuses``, its topic is ``topic`` (any with ``None``) and
        ``now - updated_at >= older_than_ms`` (0..``MAX_INT``). Age is measured
        on the store's own clock, the one that writes ``updated_at``: both ends
        are that clock's readings, which is fine for retention, and no lease
        decision ever reads them.

        One call is one short batch (one statement on SQL, so it never holds
        a lock for long); the oldest-created matching tasks go first.
        ``Purged.more`` is ``deleted == limit``: there may be more, call
        again until it is False. A task group may be purged in part: the
        group's other tasks stay as they are.

        An unknown or non-final status, a negative age or a ``limit`` out of
        range: ``ValidationError`` naming the field, and nothing is deleted.
        """
        ...


@runtime_checkable
class ReservesAndFinishes(Protocol):
    """A store that can reserve the next tasks and record outcomes in one call.

    A worker that reserves one task at a time pays two round trips and two
    commits per task: a claim, then its outcome. This call carries both, so a
    worker's next claim travels with its last outcomes. Optional: a worker
    uses it where the store offers it (``SQLStore``) and otherwise keeps the
    two calls apart.
    """

    def reserve_and_finish(
        self, topic: str, pid: str, limit: int, outcomes: Sequence[Finish]
    ) -> tuple[list[Task], list[Result[Task, SokkaError]]]:
        """``reserve_tasks(topic, pid, limit)`` then ``finish_many(outcomes)``.

        The answer is what those two calls would answer, in that order: the
        reservation sees the queue as it was before these outcomes (a task one
        of them makes ready again is not among the tasks reserved). Each
        outcome is atomic on its own, as in ``finish_many``; the tasks
        reserved are the caller's even when an outcome fails, which then
        carries its error (a retryable one included) as its result. The
        arguments are checked as those calls check them, before anything is
        written: a ``ValidationError`` names the field and changes nothing.
        """
        ...


def reserve_and_finish(
    store: TaskStore, topic: str, pid: str, limit: int, outcomes: Sequence[Finish]
) -> tuple[list[Task], list[Result[Task, SokkaError]]]:
    """``store.reserve_and_finish`` where the store has it, else its two calls in
    that order (a retryable failure of the second then becomes every outcome's
    result, as the one call answers it)."""
    if isinstance(store, ReservesAndFinishes):
        return store.reserve_and_finish(topic, pid, limit, outcomes)
    require_batch("outcomes", outcomes, Finish)
    tasks = store.reserve_tasks(topic, pid, limit)
    try:
        results = store.finish_many(outcomes)
    except RetryableError as error:
        results = [Failure(error) for _ in outcomes]
    return tasks, results


class EventCalls:
    """The ``TaskStore`` calls that are one core event per task, written once.

    A store that can apply a batch of events, each on its own
    (``_apply_events``: read, ``core.transitions.apply``, persist with a
    compare-and-set), gets extend, terminate, snooze, fail, finish_many,
    revoke, requeue and cancel from here.
    """

    def _apply_events(
        self, items: Sequence[tuple[str, Event]]
    ) -> list[Result[Task, SokkaError]]:  # pragma: no cover - every store defines it
        raise NotImplementedError

    def _apply_event(self, task_id: str, event: Event) -> Task:
        require_name("task_id", task_id)
        (result,) = self._apply_events([(task_id, event)])
        if isinstance(result, Failure):
            raise result.failure()
        return result.unwrap()

    def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        require_name("pid", pid)
        require_batch("leases", leases, LeaseToken)
        return self._apply_events(
            [(lease.task_id, Extend(pid=pid, attempt=lease.attempt)) for lease in leases]
        )

    def terminate(self, task_id: str, pid: str, attempt: int, result: Any = None) -> Task:
        return self._apply_event(task_id, Terminate(pid=pid, attempt=attempt, result=result))

    def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task:
        return self._apply_event(task_id, Snooze(pid=pid, attempt=attempt, snooze_ms=snooze_ms))

    def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task:
        event = Fail(pid=pid, attempt=attempt, error=error, retry_after_ms=retry_after_ms)
        return self._apply_event(task_id, event)

    def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]:
        require_batch("outcomes", outcomes, Finish)
        return self._apply_events([(o.task_id, o.event) for o in outcomes])

    def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        return self._apply_event(task_id, Revoke(record_ver=record_ver))

    def requeue(self, task_id: str) -> Task:
        return self._apply_event(task_id, Requeue())

    def cancel(self, task_id: str, reason: str) -> Task:
        return self._apply_event(task_id, Cancel(reason=reason))


def execute(store: TaskStore, command: RevokeLease) -> Result[Task, SokkaError]:
    """Carry out a core command against a store; its errors come back as ``Failure``.

    An exception that is not a ``SokkaError`` is a bug and propagates.
    """
    match command:
        case RevokeLease(task_id=task_id, record_ver=record_ver):
            return capture(lambda: store.revoke_lease(task_id, record_ver))
