"""The table of calls: every ``TaskStore`` call as ``POST /v1/<call>``, its
arguments (each with its JSON Schema and its decoder) and its answers;
``invoke`` runs one against a store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Final

from returns.result import Failure, Result, Success

from sokka.adapters.store import (
    DEFAULT_FAILED_WITHIN_MS,
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    PURGEABLE,
    TaskStore,
    capture,
    require_batch,
)
from sokka.adapters.wire.budget import (
    DEFAULT_MAX_ANSWER_BYTES,
    bounded_group,
    bounded_leased,
    bounded_listing,
    bounded_reserve,
)
from sokka.adapters.wire.codec import (
    _each,
    _object,
    answer_text,
    filter_from_json,
    lease_from_json,
    outcome_from_json,
    spec_from_json,
)
from sokka.adapters.wire.schema import (
    _ATTEMPT,
    _CURSOR,
    _MS,
    _NAME,
    _RECORD_VER,
    _RESULT,
    _STATUS,
    _TEXT,
    _limit,
    _nullable,
    _ref,
)
from sokka.adapters.wire.values import JSONObject, Returns
from sokka.core.errors import (
    SokkaError,
    ValidationError,
)
from sokka.core.task import (
    MAX_INT,
    Task,
)

# -- the operations ---------------------------------------------------------------------

#: The longest a ``reserve_tasks`` call may ask the server to hold it (``wait_ms``):
#: well below ``HTTPStore``'s default timeout of 30 s, so the answer comes first.
MAX_WAIT_MS: Final = 20_000


def wait_ms_from_json(value: object) -> int:
    """``reserve_tasks``'s ``wait_ms``: an int of milliseconds, 0 to ``MAX_WAIT_MS``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WAIT_MS:
        raise ValidationError(
            "wait_ms", f"must be an integer of milliseconds from 0 to {MAX_WAIT_MS}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of an operation: its JSON Schema, and how its JSON becomes the
    store's argument (``None``: passed as it came; the store checks it)."""

    name: str
    schema: JSONObject
    required: bool = True
    decode: Callable[[object], object] | None = None
    #: An argument of the HTTP call only, not of the ``TaskStore`` method: the
    #: server carries it out itself (``reserve_tasks``'s ``wait_ms``).
    wire_only: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """A ``TaskStore`` call as an endpoint: ``POST /v1/<name>``."""

    name: str
    summary: str
    params: tuple[Param, ...]
    returns: Returns
    #: The store errors this call can answer with (besides protocol and retryable ones).
    errors: tuple[str, ...] = ("invalid-input",)

    @property
    def path(self) -> str:
        return f"/v1/{self.name}"


_WAIT_MS: Final[JSONObject] = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_WAIT_MS,
    "default": 0,
    "description": "milliseconds the server may hold an empty answer, waiting for a "
    "task to become ready (0: answer at once)",
}
_OWNER = (
    "invalid-input",
    "not-found",
    "not-running",
    "task-cancelled",
    "stale-attempt",
    "wrong-owner",
)
_TASK_ID = Param("task_id", _NAME)
_PID = Param("pid", _NAME)
_ATTEMPT_PARAM = Param("attempt", _ATTEMPT)


def _array(items: JSONObject) -> JSONObject:
    return {"type": "array", "items": items, "maxItems": MAX_BATCH}


_ANY_SPEC: Final[JSONObject] = {
    "anyOf": [_ref("TaskSpec"), {}],
    "description": "a TaskSpec; an element that is not a valid one is not created: "
    "its Result is an invalid-input problem, and the other elements go ahead",
}


#: Every ``TaskStore`` call, in the protocol's order.
OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        "create_task",
        "Create a task (starting, record_ver 0)",
        (Param("spec", _ref("TaskSpec"), decode=spec_from_json),),
        "task",
        ("invalid-input", "already-exists"),
    ),
    Operation(
        "create_tasks",
        "Create many tasks; each element succeeds or fails on its own",
        # Decoded element by element (see invoke): an element that is not a valid
        # TaskSpec fails on its own, in its Result, so the array takes any element.
        (Param("specs", _array(_ANY_SPEC)),),
        "results",
    ),
    Operation("get_task", "Read one task", (_TASK_ID,), "task", ("invalid-input", "not-found")),
    Operation(
        "tasks_in_group",
        "The first tasks of a group, in creation order",
        (
            Param("task_group_id", _NAME),
            Param("limit", _limit(MAX_PAGE_SIZE, MAX_PAGE_SIZE), False),
        ),
        "tasks",
    ),
    Operation(
        "list_tasks",
        "One page of the tasks matching a filter, in creation order",
        (
            Param("filter", _nullable(_ref("TaskFilter")), False, filter_from_json),
            Param("cursor", _CURSOR, False),
            Param("limit", _limit(MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE), False),
        ),
        "page",
    ),
    Operation(
        "reserve_tasks",
        "Lease up to limit starting tasks of a topic, oldest first; with wait_ms, "
        "an empty answer waits up to wait_ms for a task to become ready (a long poll)",
        (
            Param("topic", _NAME),
            _PID,
            Param("limit", _limit(MAX_BATCH, 1), False),
            Param("wait_ms", _WAIT_MS, False, wait_ms_from_json, wire_only=True),
        ),
        "tasks",
    ),
    Operation(
        "extend_leases",
        "Keep leases alive (bump record_ver); each lease answered on its own",
        (_PID, Param("leases", _array(_ref("Lease")), decode=_each(lease_from_json))),
        "results",
    ),
    Operation(
        "terminate",
        "The owner finished the task, keeping an optional result on it",
        (_TASK_ID, _PID, _ATTEMPT_PARAM, Param("result", _RESULT, False)),
        "task",
        _OWNER,
    ),
    Operation(
        "snooze",
        "The owner puts the task to sleep for snooze_ms",
        (_TASK_ID, _PID, _ATTEMPT_PARAM, Param("snooze_ms", _MS)),
        "task",
        _OWNER,
    ),
    Operation(
        "fail",
        "The owner's attempt failed (retried after retry_after_ms if attempts are left)",
        (
            _TASK_ID,
            _PID,
            _ATTEMPT_PARAM,
            Param("error", _TEXT),
            Param("retry_after_ms", _nullable(_MS), False),
        ),
        "task",
        _OWNER,
    ),
    Operation(
        "finish_many",
        "Apply many owner outcomes, each on its own",
        (Param("outcomes", _array(_ref("Outcome")), decode=_each(outcome_from_json)),),
        "results",
    ),
    Operation(
        "revoke_lease",
        "Take a lease back if the task still has record_ver (compare-and-set)",
        (_TASK_ID, Param("record_ver", _RECORD_VER)),
        "task",
        ("invalid-input", "not-found", "stale-record", "invalid-transition"),
    ),
    Operation(
        "requeue",
        "Administrator: give a failed task a fresh failure budget",
        (_TASK_ID,),
        "task",
        ("invalid-input", "not-found", "invalid-transition"),
    ),
    Operation(
        "cancel",
        "Administrator: fail a task that is starting, snoozed or running (its owner's "
        "next keepalive or outcome is then refused: task-cancelled)",
        (_TASK_ID, Param("reason", _TEXT)),
        "task",
        ("invalid-input", "not-found", "invalid-transition"),
    ),
    Operation(
        "pause_topic",
        "Administrator: workers reserve nothing from the topic until it is resumed "
        "(leases already held run on)",
        (Param("topic", _NAME),),
        "changed",
    ),
    Operation(
        "resume_topic",
        "Administrator: workers may reserve from the topic again (waiting ones are woken)",
        (Param("topic", _NAME),),
        "changed",
    ),
    Operation("paused_topics", "The paused topics, sorted by name", (), "topics"),
    Operation(
        "list_leased_tasks",
        "One page of running and snoozed tasks (of one topic, or all)",
        (
            Param("topic", _nullable(_NAME), False),
            Param("cursor", _CURSOR, False),
            Param("limit", _limit(MAX_PAGE_SIZE, MAX_PAGE_SIZE), False),
        ),
        "page",
    ),
    Operation(
        "count_tasks",
        "Count the tasks per topic and status (an operator's view, on the store clock)",
        (
            Param("topic", _nullable(_NAME), False),
            Param("status", _nullable(_STATUS), False),
            Param("failed_within_ms", {**_MS, "default": DEFAULT_FAILED_WITHIN_MS}, False),
        ),
        "counts",
    ),
    Operation(
        "purge",
        "Delete at most limit finished tasks unchanged for older_than_ms (store clock)",
        (
            Param(
                "statuses",
                {
                    "type": "array",
                    "items": {"type": "string", "enum": sorted(s.value for s in PURGEABLE)},
                    "minItems": 1,
                    "description": "final statuses only: a leased or starting task is never "
                    "purged",
                },
            ),
            Param("older_than_ms", {"type": "integer", "minimum": 0, "maximum": MAX_INT}),
            Param("topic", _nullable(_NAME), False),
            Param("limit", _limit(MAX_BATCH, MAX_BATCH), False),
        ),
        "purged",
    ),
)

OPERATIONS_BY_NAME: Final[Mapping[str, Operation]] = {op.name: op for op in OPERATIONS}


#: The calls that answer with tasks they read, each bounded by bytes (``budget``).
_BOUNDED: Final[Mapping[str, Callable[..., str]]] = {
    "tasks_in_group": bounded_group,
    "list_tasks": bounded_listing,
    "list_leased_tasks": bounded_leased,
    "reserve_tasks": bounded_reserve,
}


def invoke(
    store: TaskStore,
    operation: Operation,
    body: object,
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
) -> str:
    """Carry out one request: decode ``body`` (the parsed JSON), call the store, and
    return the answer as JSON text. Bad input raises ``ValidationError`` before the
    store is touched; the store's own errors propagate. The tasks of a read
    answer take at most ``max_answer_bytes`` (``budget``)."""
    names = [p.name for p in operation.params]
    required = [p.name for p in operation.params if p.required]
    given = _object("body", body, names, required)
    kwargs: dict[str, object] = {}
    for param in operation.params:
        if param.name in given:
            value = given[param.name]
            kwargs[param.name] = value if param.decode is None else param.decode(value)
    if operation.name == "create_tasks":
        return answer_text("results", _create_tasks(store, kwargs["specs"]))
    for param in operation.params:
        if param.wire_only:  # the server's to carry out (see sokka.shell.http.app)
            kwargs.pop(param.name, None)
    bounded = _BOUNDED.get(operation.name)
    if bounded is not None:
        return bounded(store, max_answer_bytes, **kwargs)
    return answer_text(operation.returns, getattr(store, operation.name)(**kwargs))


def _create_tasks(store: TaskStore, specs: object) -> list[Result[Task, SokkaError]]:
    # An element that is not a valid spec fails on its own, as a store fails an
    # element that is not a TaskSpec; the batch limit counts every element.
    require_batch("specs", specs)
    assert isinstance(specs, list | tuple)
    decoded = [capture(partial(spec_from_json, item)) for item in specs]
    made = iter(store.create_tasks([r.unwrap() for r in decoded if isinstance(r, Success)]))
    results: list[Result[Task, SokkaError]] = []
    for spec in decoded:
        match spec:
            case Success():
                results.append(next(made))
            case Failure(error):
                results.append(Failure(error))
    return results
