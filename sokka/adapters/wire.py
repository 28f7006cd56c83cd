"""The JSON wire format shared by the HTTP API (``sokka.shell.http_api``) and
``HTTPStore`` (``sokka.adapters.http``): one module, so the two cannot drift.

It holds three things, all pure (no I/O):

* ``OPERATIONS``: every ``TaskStore`` call as an endpoint, ``POST
  /v1/<call>``, whose JSON body holds the call's arguments by name. Each
  argument carries its JSON Schema (served in the OpenAPI document) and the
  function that turns its JSON into what the store takes (``TaskSpec``,
  ``TaskFilter``, ``LeaseToken``, ``Finish``). Scalars are passed to the
  store as they came: the store is the one place that validates them, so a
  refusal over HTTP names the same field with the same rule as in-process.
* Tasks, pages and batch results as JSON, both ways.
* ``PROBLEM_TYPES``: the RFC 9457 problem type of every error of the
  taxonomy, with its HTTP status and the members that rebuild the exception
  on the client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, Final, Literal

from returns.result import Failure, Result, Success

from sokka.adapters.store import (
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Page,
    TaskFilter,
    TaskStore,
    capture,
    require_batch,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    AlreadyExists,
    InvalidTransition,
    LeaseLost,
    NotFound,
    NotRunning,
    RetryableError,
    SchemaError,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    StoreError,
    Throttled,
    Unavailable,
    ValidationError,
    WrongOwner,
)
from sokka.core.task import (
    MAX_ATTEMPTS,
    MAX_DATA_DEPTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_INT,
    MAX_NAME_LENGTH,
    Status,
    Task,
    TaskSpec,
)
from sokka.core.transitions import Fail, Release, Snooze, Terminate

__all__ = [
    "OPERATIONS",
    "OPERATIONS_BY_NAME",
    "PROBLEM_JSON",
    "PROBLEM_TYPES",
    "SCHEMAS",
    "Operation",
    "Param",
    "ProblemType",
    "answer_text",
    "error_from_problem",
    "filter_to_json",
    "invoke",
    "lease_to_json",
    "outcome_to_json",
    "page_from_json",
    "problem",
    "problem_for",
    "problem_type_uri",
    "results_from_json",
    "spec_to_json",
    "task_from_json",
    "task_json_text",
    "task_to_json",
]

PROBLEM_JSON: Final = "application/problem+json"
JSONObject = dict[str, Any]

# -- problem types ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One problem type: ``/problems/<code>``, its status, and how to rebuild its error.

    ``members`` are the problem's extension members, in the order the
    exception's constructor takes them (``error_from_problem``).
    """

    code: str
    status: int
    title: str
    members: tuple[str, ...] = ()
    error: type[SokkaError] | None = None  #: None: a protocol problem, not a store error
    #: The detail the server sends instead of the error's own message (which may
    #: name tables, hosts or driver text that must not leave the server).
    fixed_detail: str | None = None


def problem_type_uri(code: str) -> str:
    """The ``type`` member of a problem: a relative URI the server resolves.

    >>> problem_type_uri("not-found")
    '/problems/not-found'
    """
    return f"/problems/{code}"


_TYPES: tuple[ProblemType, ...] = (
    ProblemType("invalid-input", 422, "Invalid input", ("field", "rule"), ValidationError),
    ProblemType("not-found", 404, "Task not found", ("task_id",), NotFound),
    ProblemType("already-exists", 409, "Task already exists", ("task_id",), AlreadyExists),
    ProblemType(
        "stale-record",
        409,
        "Stale record version",
        ("task_id", "expected", "actual"),
        StaleRecord,
    ),
    ProblemType(
        "invalid-transition",
        409,
        "Transition not allowed",
        ("task_id", "task_status", "event"),
        InvalidTransition,
    ),
    ProblemType("not-running", 409, "Task not running", ("task_id", "reason"), NotRunning),
    ProblemType("stale-attempt", 403, "Stale attempt", ("task_id", "reason"), StaleAttempt),
    ProblemType("wrong-owner", 403, "Wrong lease owner", ("task_id", "reason"), WrongOwner),
    ProblemType("lease-lost", 409, "Lease lost", ("task_id", "reason"), LeaseLost),
    ProblemType(
        "throttled",
        429,
        "Store busy",
        error=Throttled,
        fixed_detail="the store is busy; nothing was changed, try again later",
    ),
    ProblemType(
        "unavailable",
        503,
        "Store unavailable",
        error=Unavailable,
        fixed_detail="the store cannot be reached; nothing was changed, try again later",
    ),
    ProblemType(
        "retryable",
        503,
        "Try again later",
        error=RetryableError,
        fixed_detail="the store could not answer; nothing was changed, try again later",
    ),
    ProblemType(
        "schema-error",
        500,
        "Store schema missing or too new",
        error=SchemaError,
        fixed_detail="the store's schema is missing or newer than the server "
        "(run `sokka init` against the server's database)",
    ),
    ProblemType(
        "store-error",
        500,
        "Store failed",
        error=StoreError,
        fixed_detail="the store failed; the server's log has the details",
    ),
    # Protocol problems: raised by the HTTP layer, never by a store.
    ProblemType("malformed-request", 400, "Malformed request", ("field", "rule")),
    ProblemType("unauthorized", 401, "Unauthorized"),
    ProblemType("unknown-endpoint", 404, "No such endpoint"),
    ProblemType("method-not-allowed", 405, "Method not allowed"),
    ProblemType("misdirected-request", 421, "Host not served here"),
    ProblemType("request-too-large", 413, "Request body too large", ("max_bytes",)),
    ProblemType("unsupported-media-type", 415, "Unsupported media type"),
    ProblemType(
        "internal-error",
        500,
        "Internal server error",
        fixed_detail="the server failed; its log has the details",
    ),
)

#: code -> problem type, for every problem the API can answer with.
PROBLEM_TYPES: Final[Mapping[str, ProblemType]] = {t.code: t for t in _TYPES}
_BY_ERROR: Final = {t.error: t for t in _TYPES if t.error is not None}


def _problem_type_of(error: SokkaError) -> ProblemType:
    for cls in type(error).__mro__:
        found = _BY_ERROR.get(cls)
        if found is not None:
            return found
    return PROBLEM_TYPES["store-error"]


def _members_of(error: SokkaError) -> JSONObject:
    match error:
        case ValidationError():
            return {"field": error.field, "rule": error.rule}
        case StaleRecord():
            return {"task_id": error.task_id, "expected": error.expected, "actual": error.actual}
        case InvalidTransition():
            return {"task_id": error.task_id, "task_status": error.status, "event": error.event}
        case LeaseLost():
            _, (task_id, reason) = error.__reduce__()
            return {"task_id": task_id, "reason": reason}
        case NotFound() | AlreadyExists():
            return {"task_id": error.task_id}
        case _:
            return {}


def problem_for(error: SokkaError) -> JSONObject:
    """The RFC 9457 problem document for a store error.

    >>> problem_for(NotFound("t1"))["status"]
    404
    """
    kind = _problem_type_of(error)
    return problem(kind.code, kind.fixed_detail or str(error), **_members_of(error))


def problem(code: str, detail: str, **members: Any) -> JSONObject:
    """The RFC 9457 problem document of type ``code``.

    >>> problem("unauthorized", "wrong token")["type"]
    '/problems/unauthorized'
    """
    kind = PROBLEM_TYPES[code]
    return {
        "type": problem_type_uri(code),
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        **members,
    }


def error_from_problem(problem: object, status: int) -> SokkaError:
    """The exception a problem document stands for (the one the store raised).

    Answers that are not store errors (a proxy's page, a protocol problem)
    become the error a caller can act on: a 429 ``Throttled`` and any other 5xx
    ``Unavailable`` (retry), an over-large body ``ValidationError``, any other
    refusal ``StoreError`` (fix the setup).
    """
    doc: Mapping[str, Any] = problem if isinstance(problem, dict) else {}
    type_uri = doc.get("type")
    code = type_uri.removeprefix("/problems/") if isinstance(type_uri, str) else ""
    detail = doc.get("detail") if isinstance(doc.get("detail"), str) else None
    kind = PROBLEM_TYPES.get(code)
    if kind is not None and kind.error is not None:
        try:
            args = [doc[name] for name in kind.members] if kind.members else [detail or code]
            return kind.error(*args)
        except (KeyError, TypeError):
            pass  # a problem of a known type without its members: fall through
    if code == "request-too-large":
        limit = doc.get("max_bytes")
        return ValidationError("body", f"must be at most {limit} bytes (the server's limit)")
    if status == 429:
        return Throttled(f"the server answered 429: {detail or 'too many requests'}")
    if status >= 500:
        return Unavailable(f"the server answered {status}: {detail or 'no detail'}")
    return StoreError(f"the server refused the request ({status}): {detail or 'no detail'}")


# -- tasks, pages and batch results --------------------------------------------------

_TASK_FIELDS: Final = tuple(f.name for f in fields(Task))
_WIRE_TASK_FIELDS: Final = frozenset(("data", *(f for f in _TASK_FIELDS if f != "data_json")))


# Shared encoders: json.dumps with options builds a new encoder on every call.
#: Canonical JSON, as ``core.task.encode_data`` writes ``data_json``.
_canonical_json: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode
_STATUSES: Final = {status.value: status for status in Status}


def task_to_json(task: Task) -> JSONObject:
    """A task as a JSON object: every field, ``data`` as the JSON value itself."""
    record = task.as_record()
    record["data"] = task.data
    return record


_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_HEAD_FIELDS: Final = tuple(name for name in _TASK_FIELDS if name != "data_json")


def task_json_text(task: Task) -> str:
    """``task_to_json(task)`` written as JSON text, with the stored ``data_json``
    spliced in as it is (the server's path: no decoding and re-encoding of data).

    >>> from sokka.core.task import TaskSpec
    >>> text = task_json_text(TaskSpec(topic="t", data={"n": [1, 2.5]}).to_task("t1", 5))
    >>> json.loads(text) == task_to_json(TaskSpec(topic="t", data={"n": [1, 2.5]}).to_task("t1", 5))
    True
    """
    head = {name: getattr(task, name) for name in _HEAD_FIELDS}
    head["status"] = task.status.value
    return f'{_dumps(head)[:-1]},"data":{task.data_json}}}'


def answer_text(returns: Returns, answer: Any) -> str:
    """A store's answer of kind ``returns`` as the JSON text the server sends."""
    if returns == "task":
        return task_json_text(answer)
    if returns == "tasks":
        return f"[{','.join(task_json_text(t) for t in answer)}]"
    if returns == "page":
        tasks = ",".join(task_json_text(t) for t in answer.tasks)
        return f'{{"tasks":[{tasks}],"next_cursor":{_dumps(answer.next_cursor)}}}'
    items = []
    for result in answer:
        match result:
            case Success(task):
                items.append(f'{{"task":{task_json_text(task)}}}')
            case Failure(error):
                items.append(_dumps({"error": problem_for(error)}))
    return f"[{','.join(items)}]"


def task_from_json(value: object) -> Task:
    """The task a JSON object from ``task_to_json`` describes (``StoreError`` if it is not one).

    ``data`` is re-encoded canonically, which gives back the store's
    ``data_json`` exactly: stores only ever hold canonical JSON.
    """
    if not isinstance(value, dict) or value.keys() != _WIRE_TASK_FIELDS:
        raise StoreError("the server sent something that is not a task")
    try:
        record = dict(value)
        record["data_json"] = _canonical_json(record.pop("data"))
        record["status"] = _STATUSES[record["status"]]
        record["errors"] = tuple(record["errors"])
        return Task(**record)
    except (KeyError, TypeError, ValueError) as error:
        raise StoreError(f"the server sent a malformed task: {error!r}") from None


def page_from_json(value: object) -> Page:
    if not isinstance(value, dict) or not isinstance(value.get("tasks"), list):
        raise StoreError("the server sent something that is not a page")
    cursor = value.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise StoreError("the server sent a page with a malformed cursor")
    return Page(tasks=tuple(task_from_json(t) for t in value["tasks"]), next_cursor=cursor)


def results_from_json(value: object) -> list[Result[Task, SokkaError]]:
    if not isinstance(value, list):
        raise StoreError("the server sent something that is not a list of results")
    results: list[Result[Task, SokkaError]] = []
    for item in value:
        if isinstance(item, dict) and "task" in item:
            results.append(Success(task_from_json(item["task"])))
        elif isinstance(item, dict) and "error" in item:
            problem = item["error"]
            status = problem.get("status", 500) if isinstance(problem, dict) else 500
            results.append(Failure(error_from_problem(problem, status)))
        else:
            raise StoreError("the server sent a malformed batch result")
    return results


# -- arguments: JSON in, store arguments out -----------------------------------------


def _json_type(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
        case _:
            return type(value).__name__


def _object(
    what: str, value: object, allowed: Sequence[str], required: Sequence[str]
) -> JSONObject:
    """Check a JSON object's keys: only ``allowed`` ones, and every ``required`` one.

    An unknown or missing key is a ``ValidationError`` naming that key.
    """
    if not isinstance(value, dict):
        raise ValidationError(what, f"must be a JSON object (got {_json_type(value)})")
    for key in value:
        if key not in allowed:
            raise ValidationError(
                key, f"is not a field of {what} (allowed: {', '.join(allowed) or 'none'})"
            )
    for key in required:
        if key not in value:
            raise ValidationError(key, f"is required in {what}")
    return value


_SPEC_FIELDS: Final = tuple(f.name for f in fields(TaskSpec) if f.init)
_FILTER_FIELDS: Final = tuple(f.name for f in fields(TaskFilter))


def spec_from_json(value: object) -> TaskSpec:
    """A ``TaskSpec`` from its JSON object (the spec's own checks name the field)."""
    return TaskSpec(**_object("spec", value, _SPEC_FIELDS, ("topic",)))


def spec_to_json(spec: TaskSpec) -> JSONObject:
    return {name: getattr(spec, name) for name in _SPEC_FIELDS}


def filter_from_json(value: object) -> TaskFilter | None:
    if value is None:
        return None
    return TaskFilter(**_object("filter", value, _FILTER_FIELDS, ()))


def filter_to_json(filter: TaskFilter) -> JSONObject:
    return {name: getattr(filter, name) for name in _FILTER_FIELDS}


def lease_from_json(value: object) -> LeaseToken:
    body = _object("lease", value, ("task_id", "attempt"), ("task_id", "attempt"))
    return LeaseToken(body["task_id"], body["attempt"])


def lease_to_json(lease: LeaseToken) -> JSONObject:
    return {"task_id": lease.task_id, "attempt": lease.attempt}


_OUTCOME_EVENTS: Final[Mapping[str, type[Terminate | Snooze | Fail | Release]]] = {
    "terminate": Terminate,
    "snooze": Snooze,
    "fail": Fail,
    "release": Release,
}
_OUTCOME_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "terminate": ("pid", "attempt"),
    "release": ("pid", "attempt"),
    "snooze": ("pid", "attempt", "snooze_ms"),
    "fail": ("pid", "attempt", "error", "retry_after_ms"),
}


def outcome_from_json(value: object) -> Finish:
    """A ``Finish`` from ``{"task_id", "outcome": terminate|snooze|fail|release, ...}``."""
    if not isinstance(value, dict):
        raise ValidationError("outcome", f"must be a JSON object (got {_json_type(value)})")
    kind = value.get("outcome")
    if not isinstance(kind, str) or kind not in _OUTCOME_EVENTS:
        raise ValidationError("outcome", f"must be one of {', '.join(_OUTCOME_EVENTS)}")
    allowed = ("task_id", "outcome", *_OUTCOME_FIELDS[kind])
    required = ("task_id", *(f for f in _OUTCOME_FIELDS[kind] if f != "retry_after_ms"))
    body = _object(f"a {kind} outcome", value, allowed, required)
    event_args = {k: v for k, v in body.items() if k not in ("task_id", "outcome")}
    return Finish(task_id=body["task_id"], event=_OUTCOME_EVENTS[kind](**event_args))


def outcome_to_json(outcome: Finish) -> JSONObject:
    event = outcome.event
    body: JSONObject = {"task_id": outcome.task_id, "outcome": event.name}
    for name in _OUTCOME_FIELDS[event.name]:
        body[name] = getattr(event, name)
    return body


def _each(decode: Callable[[object], object]) -> Callable[[object], object]:
    """Decode every element of a JSON array; anything else goes to the store as it
    came, so the store's own check names the field."""

    def decode_all(value: object) -> object:
        return [decode(item) for item in value] if isinstance(value, list) else value

    return decode_all


# -- JSON Schemas (served in the OpenAPI document) -----------------------------------


def _ref(name: str) -> JSONObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: JSONObject) -> JSONObject:
    return {"anyOf": [schema, {"type": "null"}]}


_NAME: Final[JSONObject] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME_LENGTH,
    "pattern": "^[^\\u0000-\\u001f\\u007f]+$",
    "description": f"1 to {MAX_NAME_LENGTH} characters, no control characters",
}
_MS: Final[JSONObject] = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
_ATTEMPT: Final[JSONObject] = {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS}
_RECORD_VER: Final[JSONObject] = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
_TEXT: Final[JSONObject] = {"type": "string", "description": "clipped to 4000 characters"}
_CURSOR: Final[JSONObject] = _nullable(
    {"type": "string", "description": "next_cursor of the previous page, unchanged"}
)


def _limit(maximum: int, default: int) -> JSONObject:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}


def _closed(properties: JSONObject, required: Sequence[str] = ()) -> JSONObject:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _outcome_schema(kind: str) -> JSONObject:
    properties: JSONObject = {
        "task_id": _NAME,
        "outcome": {"const": kind},
        "pid": _NAME,
        "attempt": _ATTEMPT,
    }
    if kind == "snooze":
        properties["snooze_ms"] = _MS
    if kind == "fail":
        properties["error"] = _TEXT
        properties["retry_after_ms"] = _nullable(_MS)
    required = ["task_id", "outcome", *(p for p in _OUTCOME_FIELDS[kind] if p != "retry_after_ms")]
    return _closed(properties, required)


_STATUS: Final[JSONObject] = {"type": "string", "enum": [s.value for s in Status]}
_INT: Final[JSONObject] = {"type": "integer"}
_TIMESTAMP: Final[JSONObject] = {"type": "integer", "minimum": -MAX_INT, "maximum": MAX_INT}

#: The named schemas of the OpenAPI document's ``components``.
SCHEMAS: Final[Mapping[str, JSONObject]] = {
    "TaskSpec": _closed(
        {
            "topic": _NAME,
            "data": {"description": f"any JSON value, at most 256 KiB, {MAX_DATA_DEPTH} deep"},
            "task_id": _nullable(_NAME),
            "task_group_id": _nullable(_NAME),
            "sub_topic": {**_NAME, "default": "default"},
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION_LENGTH},
            "max_attempts": _nullable(_ATTEMPT),
            "lease_time_ms": _nullable(_MS),
            "timeout_ms": _nullable(_MS),
        },
        ["topic"],
    ),
    "TaskFilter": _closed(
        {
            "topic": _nullable(_NAME),
            "sub_topic": _nullable(_NAME),
            "status": _nullable(_STATUS),
            "task_group_id": _nullable(_NAME),
            "created_from": _nullable(_TIMESTAMP),
            "created_before": _nullable(_TIMESTAMP),
        }
    ),
    "Lease": _closed({"task_id": _NAME, "attempt": _ATTEMPT}, ["task_id", "attempt"]),
    "Outcome": {"oneOf": [_outcome_schema(kind) for kind in _OUTCOME_EVENTS]},
    "Task": _closed(
        {
            "task_id": {"type": "string"},
            "task_group_id": {"type": "string"},
            "topic": {"type": "string"},
            "sub_topic": {"type": "string"},
            "description": {"type": "string"},
            "data": {},
            "status": _STATUS,
            "pid": _nullable({"type": "string"}),
            "record_ver": _INT,
            "attempt": _INT,
            "failures": _INT,
            "max_attempts": _nullable(_INT),
            "lease_time_ms": _nullable(_INT),
            "timeout_ms": _nullable(_INT),
            "snooze_time_ms": _nullable(_INT),
            "error": _nullable({"type": "string"}),
            "errors": {"type": "array", "items": {"type": "string"}},
            "created_at": _INT,
            "updated_at": _INT,
        },
        sorted(_WIRE_TASK_FIELDS),
    ),
    "Page": _closed(
        {"tasks": {"type": "array", "items": _ref("Task")}, "next_cursor": _CURSOR},
        ["tasks", "next_cursor"],
    ),
    "Result": {
        "oneOf": [
            _closed({"task": _ref("Task")}, ["task"]),
            _closed({"error": _ref("Problem")}, ["error"]),
        ]
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; type is /problems/<code>",
        "properties": {
            "type": {"type": "string", "enum": [problem_type_uri(c) for c in PROBLEM_TYPES]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {"type": "string"},
            "rule": {"type": "string"},
            "task_id": {"type": "string"},
            "expected": _INT,
            "actual": _INT,
            "task_status": {"type": "string"},
            "event": {"type": "string"},
            "reason": {"type": "string"},
            "max_bytes": _INT,
        },
        "required": ["type", "title", "status", "detail"],
    },
}


# -- the operations ---------------------------------------------------------------------

Returns = Literal["task", "tasks", "page", "results"]


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of an operation: its JSON Schema, and how its JSON becomes the
    store's argument (``None``: passed as it came; the store checks it)."""

    name: str
    schema: JSONObject
    required: bool = True
    decode: Callable[[object], object] | None = None


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


_OWNER = ("invalid-input", "not-found", "not-running", "stale-attempt", "wrong-owner")
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
        "Every task of a group, in creation order",
        (Param("task_group_id", _NAME),),
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
        "Lease up to limit starting tasks of a topic, oldest first",
        (Param("topic", _NAME), _PID, Param("limit", _limit(MAX_BATCH, 1), False)),
        "tasks",
    ),
    Operation(
        "extend_leases",
        "Keep leases alive (bump record_ver); each lease answered on its own",
        (_PID, Param("leases", _array(_ref("Lease")), decode=_each(lease_from_json))),
        "results",
    ),
    Operation(
        "terminate", "The owner finished the task", (_TASK_ID, _PID, _ATTEMPT_PARAM), "task", _OWNER
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
        "Administrator: fail a task nobody is running",
        (_TASK_ID, Param("reason", _TEXT)),
        "task",
        ("invalid-input", "not-found", "invalid-transition"),
    ),
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
)

OPERATIONS_BY_NAME: Final[Mapping[str, Operation]] = {op.name: op for op in OPERATIONS}


def invoke(store: TaskStore, operation: Operation, body: object) -> str:
    """Carry out one request: decode ``body`` (the parsed JSON), call the store, and
    return the answer as JSON text. Bad input raises ``ValidationError`` before the
    store is touched; the store's own errors propagate."""
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
