"""The task state machine: ``apply(task, event, now_ms) -> Result[Task, SokkaError]``.

Rule 1: everything that decides whether a task may change lives in this file.
Stores call ``apply`` and persist its result with a compare-and-set on
``record_ver``; they never decide a transition themselves, so the state
machine exists exactly once.

The table (``TRANSITIONS``) says which event may move a task from which
status, and where to. Two events have a second destination decided by the
task's failure budget (``max_attempts``), noted in the table's comments.
Owner events (``OWNER_EVENTS``) also need the caller to quote the lease:
its ``pid`` **and** its ``attempt``. A worker whose lease was revoked and
reserved again, even by the same pid, quotes a stale attempt and is refused
(fencing). ``Revoke`` instead quotes the ``record_ver`` it observed
(compare-and-set): a task that changed since is never overwritten.

An operator may ``Cancel`` a running task: no lease is needed, the task
fails at once ("cancelled: <reason>") and its ``record_ver`` moves, so the
owner's next keepalive or outcome is refused. That refusal is
``TaskCancelled`` (a ``NotRunning``) when the owner's attempt is the one that
was cancelled, so a worker can tell "an operator stopped this" from "my
lease expired" and say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from returns.result import Failure, Result, Success

from sokka.core.errors import (
    InvalidTransition,
    NotRunning,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    TaskCancelled,
    ValidationError,
    WrongOwner,
)
from sokka.core.task import (
    MAX_ATTEMPTS,
    MAX_ERROR_HISTORY,
    MAX_ERROR_LENGTH,
    Status,
    Task,
    encode_result,
    evolve,
    require_at_most_max_int,
    require_name,
    require_positive_ms,
    shown,
)

__all__ = [
    "CANCELLED_PREFIX",
    "OWNER_EVENTS",
    "PLAIN_EFFECTS",
    "TRANSITIONS",
    "Cancel",
    "Effect",
    "Event",
    "Extend",
    "Fail",
    "FromEvent",
    "Increment",
    "Release",
    "Requeue",
    "Reserve",
    "Revoke",
    "SetRule",
    "Snooze",
    "Terminate",
    "apply",
    "set_rule",
    "was_cancelled",
]

#: How the error of a cancelled task begins (``Cancel``). Every other event that
#: records an error begins it with "attempt N: ", so the two never collide.
CANCELLED_PREFIX: Final = "cancelled: "


def _require_attempt(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("attempt", f"must be an integer (got {type(value).__name__})")
    if value < 1:
        raise ValidationError("attempt", f"must be at least 1 (got {shown(value)})")
    return require_at_most_max_int("attempt", value, MAX_ATTEMPTS)


def _clip_error(text: object, field: str) -> str:
    if not isinstance(text, str):
        raise ValidationError(field, f"must be a string (got {type(text).__name__})")
    # An error message comes from arbitrary code: make it storable, don't refuse it.
    text = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if len(text) <= MAX_ERROR_LENGTH:
        return text
    return text[: MAX_ERROR_LENGTH - 14] + " ... (clipped)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserve:
    """A worker takes the lease of a task that is starting."""

    name: ClassVar[str] = "reserve"
    pid: str

    def __post_init__(self) -> None:
        require_name("pid", self.pid)


@dataclass(frozen=True, slots=True, kw_only=True)
class _OwnerEvent:
    pid: str
    attempt: int

    def __post_init__(self) -> None:
        require_name("pid", self.pid)
        _require_attempt(self.attempt)


@dataclass(frozen=True, slots=True, kw_only=True)
class Extend(_OwnerEvent):
    """The owner keeps its lease alive (bumps record_ver and nothing else)."""

    name: ClassVar[str] = "extend"


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminate(_OwnerEvent):
    """The owner finished the task successfully, with an optional ``result``.

    ``result`` is a JSON value (``None``: no result) of at most
    ``MAX_RESULT_BYTES`` encoded, checked and encoded here (``result_json``):
    a bad one is a ``ValidationError`` naming ``result``, so no store ever
    sees it. The terminated task keeps ``result_json``.
    """

    name: ClassVar[str] = "terminate"
    result: Any = field(default=None, compare=False, hash=False)
    result_json: str | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        _OwnerEvent.__post_init__(self)
        if self.result is not None:
            object.__setattr__(self, "result_json", encode_result(self.result))


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(_OwnerEvent):
    """The owner gives the lease back unfinished (a graceful shutdown): the task
    is ready again at once, and this attempt does not count as a failure."""

    name: ClassVar[str] = "release"


@dataclass(frozen=True, slots=True, kw_only=True)
class Snooze(_OwnerEvent):
    """The owner asks to be woken again after ``snooze_ms`` (not a failure)."""

    name: ClassVar[str] = "snooze"
    snooze_ms: int

    def __post_init__(self) -> None:
        _OwnerEvent.__post_init__(self)
        require_positive_ms("snooze_ms", self.snooze_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fail(_OwnerEvent):
    """The owner's attempt failed with ``error``.

    With ``retry_after_ms`` and failures left within ``max_attempts``, the
    task is snoozed for that long and then runs again; otherwise it fails.
    """

    name: ClassVar[str] = "fail"
    error: str
    retry_after_ms: int | None = None

    def __post_init__(self) -> None:
        _OwnerEvent.__post_init__(self)
        object.__setattr__(self, "error", _clip_error(self.error, "error"))
        if self.retry_after_ms is not None:
            require_positive_ms("retry_after_ms", self.retry_after_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class Revoke:
    """A supervisor takes a lease back, if the task still has ``record_ver``.

    A running task's lease expired: it goes back to starting, or fails when
    that expiry spent its last attempt. A snoozed task is woken: it goes back
    to starting and never fails.
    """

    name: ClassVar[str] = "revoke"
    record_ver: int

    def __post_init__(self) -> None:
        if isinstance(self.record_ver, bool) or not isinstance(self.record_ver, int):
            raise ValidationError("record_ver", "must be an integer")
        if self.record_ver < 0:
            raise ValidationError(
                "record_ver", f"must not be negative (got {shown(self.record_ver)})"
            )
        require_at_most_max_int("record_ver", self.record_ver)


@dataclass(frozen=True, slots=True, kw_only=True)
class Requeue:
    """An administrator gives a failed task a fresh failure budget."""

    name: ClassVar[str] = "requeue"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """An administrator gives up on a task: starting, snoozed or running.

    A running task fails without its owner's lease; the owner learns it from
    the refusal of its next keepalive or outcome (``TaskCancelled``).
    """

    name: ClassVar[str] = "cancel"
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", _clip_error(self.reason, "reason"))


Event = Reserve | Extend | Terminate | Snooze | Fail | Release | Revoke | Requeue | Cancel

S = Status
#: (from status, event) -> destination. Nothing else is allowed.
TRANSITIONS: Final[Mapping[tuple[Status, type[Event]], Status]] = {
    (S.STARTING, Reserve): S.RUNNING,
    (S.STARTING, Cancel): S.FAILED,
    (S.RUNNING, Extend): S.RUNNING,
    (S.RUNNING, Revoke): S.STARTING,  # or FAILED when the expiry spends the last attempt
    (S.RUNNING, Snooze): S.SNOOZED,
    (S.RUNNING, Fail): S.FAILED,  # or SNOOZED when it asks for a retry and attempts are left
    (S.RUNNING, Terminate): S.TERMINATED,
    (S.RUNNING, Release): S.STARTING,  # the owner gives it back; not a failure
    (S.RUNNING, Cancel): S.FAILED,  # an operator; the owner's next call is refused
    (S.SNOOZED, Revoke): S.STARTING,  # waking up; never fails
    (S.SNOOZED, Fail): S.FAILED,  # or SNOOZED, as from running
    (S.SNOOZED, Terminate): S.TERMINATED,
    (S.SNOOZED, Cancel): S.FAILED,
    (S.FAILED, Requeue): S.STARTING,
}
#: Events that need the caller's pid and attempt to match the task's.
OWNER_EVENTS: Final[frozenset[type[Event]]] = frozenset({Extend, Terminate, Snooze, Fail, Release})


@dataclass(frozen=True, slots=True)
class FromEvent:
    """An effect: the column takes the value of the event's field ``field``."""

    field: str


@dataclass(frozen=True, slots=True)
class Increment:
    """An effect: the column takes the task's own value plus ``by``."""

    by: int = 1


#: What an event writes into one column: an event field, the old value plus a
#: constant, or ``None`` (the column is cleared).
Effect = FromEvent | Increment | None

#: The effects (besides status, record_ver and updated_at) of the events whose
#: effects are the same data for every task they apply to: no branch on the
#: task, no text built from it. ``apply`` evaluates this table itself, and the
#: SQL store compiles the same table into one set-based UPDATE (``set_rule``),
#: so these effects are written once, here.
PLAIN_EFFECTS: Final[Mapping[type[Event], Mapping[str, Effect]]] = {
    Reserve: {"pid": FromEvent("pid"), "attempt": Increment(1), "snooze_time_ms": None},
    Extend: {},
    Terminate: {"result_json": FromEvent("result_json")},  # None: no result
    Release: {"pid": None, "snooze_time_ms": None},
    Snooze: {"snooze_time_ms": FromEvent("snooze_ms")},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRule:
    """One kind of event as data: when ``apply`` accepts it and what it writes.

    ``apply(task, event, now)`` succeeds exactly when ``task.status`` is in
    ``from_statuses`` and, if ``owner``, ``task.pid == event.pid`` and
    ``task.attempt == event.attempt``; the new task then has ``status =
    to_status``, each column of ``effects`` evaluated (``FromEvent``: the
    event's field; ``Increment``: the old value plus ``by``; ``None``: cleared),
    ``record_ver + 1`` and ``updated_at = now``, and every other field
    unchanged. A store may so apply a batch of such events as one guarded
    UPDATE (the guard: the statuses and the owner check), and must send the
    tasks that UPDATE did not change through ``apply`` for their exact errors.
    """

    event: type[Event]
    from_statuses: tuple[Status, ...]
    to_status: Status
    owner: bool
    effects: Mapping[str, Effect]


def _set_rules() -> dict[type[Event], SetRule]:
    rules = {}
    for kind, effects in PLAIN_EFFECTS.items():
        moves = {source: target for (source, k), target in TRANSITIONS.items() if k is kind}
        targets = set(moves.values())
        if len(targets) != 1:  # pragma: no cover - a destination that depends on the source
            continue
        rules[kind] = SetRule(
            event=kind,
            from_statuses=tuple(sorted(moves, key=lambda s: s.value)),
            to_status=targets.pop(),
            owner=kind in OWNER_EVENTS,
            effects=effects,
        )
    return rules


_SET_RULES: Final = _set_rules()


def set_rule(kind: type[Event]) -> SetRule | None:
    """The ``SetRule`` of an event kind, or None when its effects depend on the
    task (fail, revoke, requeue and cancel go one task at a time through ``apply``).

    >>> rule = set_rule(Terminate)
    >>> ([s.value for s in rule.from_statuses], rule.to_status.value, rule.owner)
    (['running', 'snoozed'], 'terminated', True)
    >>> set_rule(Fail) is None
    True
    """
    return _SET_RULES.get(kind)


def _evaluate(effect: Effect, old: Task, event: Event, column: str) -> Any:
    if effect is None:
        return None
    if isinstance(effect, Increment):
        return getattr(old, column) + effect.by
    return getattr(event, effect.field)
def was_cancelled(task: Task) -> bool:
    """True when ``task`` is failed because an operator cancelled it (``Cancel``).

    >>> t = Task(task_id="t1", task_group_id="t1", topic="q")
    >>> was_cancelled(t), was_cancelled(apply(t, Cancel(reason="no"), 1).unwrap())
    (False, True)
    """
    errors = task.errors
    return (
        task.status is Status.FAILED and bool(errors) and errors[-1].startswith(CANCELLED_PREFIX)
    )


def _remember(task: Task, error: str) -> tuple[str, ...]:
    return (*task.errors, error)[-MAX_ERROR_HISTORY:]


def _check_owner(task: Task, event: _OwnerEvent) -> SokkaError | None:
    if task.attempt != event.attempt:
        return StaleAttempt(
            task.task_id,
            f"attempt {event.attempt} is stale: the task is on attempt {task.attempt} "
            "(its lease was revoked and reserved again)",
        )
    if task.pid != event.pid:
        return WrongOwner(task.task_id, f"leased by {task.pid!r}, not {event.pid!r}")
    return None


def apply(task: Task, event: Event, now_ms: int) -> Result[Task, SokkaError]:
    """Apply ``event`` to ``task`` at store time ``now_ms``; never mutates ``task``.

    On success the new task has ``record_ver + 1`` and ``updated_at = now_ms``.

    >>> t = Task(task_id="t1", task_group_id="t1", topic="emails")
    >>> running = apply(t, Reserve(pid="w1"), 5).unwrap()
    >>> (running.status, running.pid, running.attempt, running.record_ver)
    (<Status.RUNNING: 'running'>, 'w1', 1, 1)
    >>> apply(running, Terminate(pid="w1", attempt=2), 6).failure()
    StaleAttempt("task 't1': attempt 2 is stale: the task is on attempt 1 (its lease was \
revoked and reserved again)")
    """
    kind = type(event)
    target = TRANSITIONS.get((task.status, kind))
    if isinstance(event, Revoke) and event.record_ver != task.record_ver:
        return Failure(StaleRecord(task.task_id, event.record_ver, task.record_ver))
    if target is None:
        if isinstance(event, _OwnerEvent) and event.attempt == task.attempt and was_cancelled(task):
            return Failure(
                TaskCancelled(
                    task.task_id,
                    f"cannot {event.name}: an operator cancelled the task ({task.error}), "
                    "so the caller's lease is gone",
                )
            )
        if kind in OWNER_EVENTS:
            return Failure(
                NotRunning(
                    task.task_id,
                    f"cannot {event.name}: the task is {task.status}, "
                    "so the caller's lease is gone",
                )
            )
        return Failure(InvalidTransition(task.task_id, task.status, event.name))
    if isinstance(event, _OwnerEvent):
        refused = _check_owner(task, event)
        if refused is not None:
            return Failure(refused)
    changes = _effects(task, event)
    changes.setdefault("status", target)
    changes["record_ver"] = task.record_ver + 1
    changes["updated_at"] = now_ms
    # One new task per transition: the hottest line of every store (evolve, not replace).
    return Success(evolve(task, changes))


def _effects(old: Task, event: Event) -> dict[str, Any]:
    """What each event changes besides record_ver and updated_at.

    ``status`` is given only where it differs from the table's destination.
    """
    plain = PLAIN_EFFECTS.get(type(event))
    if plain is not None:
        return {column: _evaluate(e, old, event, column) for column, e in plain.items()}
    match event:
        case Fail(error=error, retry_after_ms=retry_after_ms):
            failures = old.failures + 1
            changes: dict[str, Any] = {
                "failures": failures,
                "snooze_time_ms": None,
                "error": error,
                "errors": _remember(old, f"attempt {old.attempt}: {error}"),
            }
            left = old.max_attempts is None or failures < old.max_attempts
            if retry_after_ms is not None and left:
                changes["status"] = Status.SNOOZED
                changes["snooze_time_ms"] = retry_after_ms
            return changes
        case Revoke():
            if old.status is Status.SNOOZED:
                return {"pid": None, "snooze_time_ms": None}
            failures = old.failures + 1
            entry = f"attempt {old.attempt}: lease expired"
            if old.max_attempts is not None and failures >= old.max_attempts:
                error = f"attempt {failures} of {old.max_attempts}: lease expired"
                if old.attempt != failures:  # snoozes in between: say which reservation
                    error += f" (reservation {old.attempt})"
                return {
                    "status": Status.FAILED,
                    "pid": None,
                    "failures": failures,
                    "error": error,
                    "errors": _remember(old, entry),
                }
            return {
                "pid": None,
                "failures": failures,
                "error": entry,
                "errors": _remember(old, entry),
            }
        case Requeue():
            return {"pid": None, "failures": 0, "snooze_time_ms": None}
        case Cancel(reason=reason):
            error = f"{CANCELLED_PREFIX}{reason}"
            return {
                "pid": None,
                "snooze_time_ms": None,
                "error": error,
                "errors": _remember(old, error),
            }
        case _:  # pragma: no cover - every other kind is in PLAIN_EFFECTS
            raise AssertionError(f"no effects for {type(event).__name__}")
