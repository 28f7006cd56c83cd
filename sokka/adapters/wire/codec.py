"""Tasks, pages, batch results and call arguments as JSON, both ways."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, Final

from returns.result import Failure, Result, Success

from sokka.adapters.store import (
    Counts,
    Page,
    Purged,
    TaskFilter,
    TopicCounts,
)
from sokka.adapters.wire.problems import error_from_problem, printable, problem_for
from sokka.adapters.wire.values import JSONObject, Returns
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    SokkaError,
    StoreError,
    ValidationError,
)
from sokka.core.task import (
    Status,
    Task,
    TaskSpec,
    encode_trace_context,
)
from sokka.core.transitions import Fail, Release, Snooze, Terminate

# -- tasks, pages and batch results --------------------------------------------------

_TASK_FIELDS: Final = tuple(f.name for f in fields(Task))
#: The Task fields kept as JSON text, by the name of their JSON member (a JSON value).
_JSON_TEXT_FIELDS: Final = {
    "data": "data_json",
    "result": "result_json",
    "trace_context": "trace_context_json",
}
#: A task's JSON members: its fields, with ``data``, ``result`` and ``trace_context``
#: as JSON values (not their stored text).
_WIRE_TASK_FIELDS: Final = frozenset(
    (*_JSON_TEXT_FIELDS, *(f for f in _TASK_FIELDS if f not in _JSON_TEXT_FIELDS.values()))
)
#: What older servers send: without ``trace_context`` (before tracing), and
#: without ``result`` too (before results).
_OLDER_WIRE_TASK_FIELDS: Final = (
    _WIRE_TASK_FIELDS - {"trace_context"},
    _WIRE_TASK_FIELDS - {"trace_context", "result"},
)


# Shared encoders: json.dumps with options builds a new encoder on every call.
#: Canonical JSON, as ``core.task.encode_data`` writes ``data_json``.
_canonical_json: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode
_STATUSES: Final = {status.value: status for status in Status}


def task_to_json(task: Task) -> JSONObject:
    """A task as a JSON object: every field, ``data``, ``result`` and
    ``trace_context`` as the JSON values themselves (``result`` and
    ``trace_context`` null when the task has none)."""
    record = task.as_record()
    record["data"] = task.data
    record["result"] = task.result
    record["trace_context"] = task.trace_context
    return record


_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_HEAD_FIELDS: Final = tuple(
    name for name in _TASK_FIELDS if name not in _JSON_TEXT_FIELDS.values()
)


def task_json_text(task: Task) -> str:
    """``task_to_json(task)`` written as JSON text, with the stored ``data_json``,
    ``result_json`` and ``trace_context_json`` spliced in as they are (the
    server's path: no decoding and re-encoding of data).

    >>> from sokka.core.task import TaskSpec
    >>> text = task_json_text(TaskSpec(topic="t", data={"n": [1, 2.5]}).to_task("t1", 5))
    >>> json.loads(text) == task_to_json(TaskSpec(topic="t", data={"n": [1, 2.5]}).to_task("t1", 5))
    True
    """
    head = {name: getattr(task, name) for name in _HEAD_FIELDS}
    head["status"] = task.status.value
    result = "null" if task.result_json is None else task.result_json
    trace = "null" if task.trace_context_json is None else task.trace_context_json
    return (
        f'{_dumps(head)[:-1]},"data":{task.data_json},"result":{result},'
        f'"trace_context":{trace}}}'
    )


def answer_text(returns: Returns, answer: Any) -> str:
    """A store's answer of kind ``returns`` as the JSON text the server sends."""
    if returns == "task":
        return task_json_text(answer)
    if returns == "tasks":
        return f"[{','.join(task_json_text(t) for t in answer)}]"
    if returns == "counts":
        return _dumps(counts_to_json(answer))
    if returns == "purged":
        return _dumps({"deleted": answer.deleted, "more": answer.more})
    if returns == "changed":
        return _dumps({"changed": bool(answer)})
    if returns == "topics":
        return _dumps({"topics": list(answer)})
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

    ``data``, ``result`` and ``trace_context`` are re-encoded canonically,
    which gives back the store's ``data_json``, ``result_json`` and
    ``trace_context_json`` exactly: stores only ever hold canonical JSON. A
    task from a server older than results or tracing (no ``result`` or
    ``trace_context`` member) has none.
    """
    if not isinstance(value, dict) or (
        value.keys() != _WIRE_TASK_FIELDS and value.keys() not in _OLDER_WIRE_TASK_FIELDS
    ):
        raise StoreError("the server sent something that is not a task")
    try:
        record = dict(value)
        record["data_json"] = _canonical_json(record.pop("data"))
        result = record.pop("result", None)
        record["result_json"] = None if result is None else _canonical_json(result)
        record["trace_context_json"] = encode_trace_context(record.pop("trace_context", None))
        record["status"] = _STATUSES[record["status"]]
        record["errors"] = tuple(record["errors"])
        return Task(**record)
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        raise StoreError(f"the server sent a malformed task: {error!r}") from None


def page_from_json(value: object) -> Page:
    if not isinstance(value, dict) or not isinstance(value.get("tasks"), list):
        raise StoreError("the server sent something that is not a page")
    cursor = value.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise StoreError("the server sent a page with a malformed cursor")
    return Page(tasks=tuple(task_from_json(t) for t in value["tasks"]), next_cursor=cursor)


_TOPIC_COUNTS_FIELDS: Final = tuple(f.name for f in fields(TopicCounts))


def counts_to_json(counts: Counts) -> JSONObject:
    """``count_tasks``'s answer as a JSON object (each topic with every field)."""
    return {
        "now": counts.now,
        "failed_within_ms": counts.failed_within_ms,
        "topics": [
            {name: getattr(topic, name) for name in _TOPIC_COUNTS_FIELDS} for topic in counts.topics
        ],
    }


def counts_from_json(value: object) -> Counts:
    """The ``Counts`` a JSON object from ``counts_to_json`` describes (``StoreError``
    if it is not one)."""
    malformed = StoreError("the server sent something that is not a count of tasks")
    if not isinstance(value, dict) or value.keys() != {"now", "failed_within_ms", "topics"}:
        raise malformed
    topics = value["topics"]
    if not isinstance(topics, list):
        raise malformed
    try:
        found = []
        for item in topics:
            if not isinstance(item, dict) or item.keys() != set(_TOPIC_COUNTS_FIELDS):
                raise malformed
            found.append(TopicCounts(**item))
        return Counts(
            now=value["now"], failed_within_ms=value["failed_within_ms"], topics=tuple(found)
        )
    except TypeError:
        raise malformed from None


def changed_from_json(value: object) -> bool:
    """The answer of ``pause_topic``/``resume_topic``: ``{"changed": bool}``
    (``StoreError`` if it is not one)."""
    if (
        not isinstance(value, dict)
        or value.keys() != {"changed"}
        or type(value["changed"]) is not bool
    ):
        raise StoreError("the server sent something that is not a pause's or resume's answer")
    return value["changed"]


def topics_from_json(value: object) -> list[str]:
    """The answer of ``paused_topics``: ``{"topics": [name, ...]}`` (``StoreError``
    if it is not one)."""
    if (
        not isinstance(value, dict)
        or value.keys() != {"topics"}
        or not isinstance(value["topics"], list)
        or not all(isinstance(topic, str) for topic in value["topics"])
    ):
        raise StoreError("the server sent something that is not a list of topics")
    return list(value["topics"])


def purged_from_json(value: object) -> Purged:
    """The ``Purged`` a JSON object ``{"deleted": n, "more": bool}`` describes
    (``StoreError`` if it is not one)."""
    if (
        not isinstance(value, dict)
        or value.keys() != {"deleted", "more"}
        or type(value["deleted"]) is not int
        or value["deleted"] < 0
        or type(value["more"]) is not bool
    ):
        raise StoreError("the server sent something that is not a purge's answer")
    return Purged(deleted=value["deleted"], more=value["more"])


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
            # The key is the client's: printable, so the error can be logged and sent.
            raise ValidationError(
                printable(key),
                f"is not a field of {what} (allowed: {', '.join(allowed) or 'none'})",
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
    """A spec's JSON object; ``delay_ms`` only when the task is delayed, and
    ``trace_context`` only when there is one, so an ordinary spec is still
    accepted by a server older than those fields."""
    body = {name: getattr(spec, name) for name in _SPEC_FIELDS}
    if not spec.delay_ms:
        del body["delay_ms"]
    if spec.trace_context_json is None:
        del body["trace_context"]
    else:
        body["trace_context"] = json.loads(spec.trace_context_json)
    return body


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
    "terminate": ("pid", "attempt", "result"),
    "release": ("pid", "attempt"),
    "snooze": ("pid", "attempt", "snooze_ms"),
    "fail": ("pid", "attempt", "error", "retry_after_ms"),
}


#: Members of an outcome that may be left out.
_OPTIONAL: Final = frozenset({"retry_after_ms", "result"})


def outcome_from_json(value: object) -> Finish:
    """A ``Finish`` from ``{"task_id", "outcome": terminate|snooze|fail|release, ...}``."""
    if not isinstance(value, dict):
        raise ValidationError("outcome", f"must be a JSON object (got {_json_type(value)})")
    kind = value.get("outcome")
    if not isinstance(kind, str) or kind not in _OUTCOME_EVENTS:
        raise ValidationError("outcome", f"must be one of {', '.join(_OUTCOME_EVENTS)}")
    allowed = ("task_id", "outcome", *_OUTCOME_FIELDS[kind])
    required = ("task_id", *(f for f in _OUTCOME_FIELDS[kind] if f not in _OPTIONAL))
    body = _object(f"a {kind} outcome", value, allowed, required)
    event_args = {k: v for k, v in body.items() if k not in ("task_id", "outcome")}
    return Finish(task_id=body["task_id"], event=_OUTCOME_EVENTS[kind](**event_args))


def outcome_to_json(outcome: Finish) -> JSONObject:
    """A ``Finish`` as the JSON object ``outcome_from_json`` reads. A terminate's
    ``result`` is sent only when there is one (as its stored value, decoded
    from ``result_json``), so a plain terminate is still accepted by a server
    older than results."""
    event = outcome.event
    body: JSONObject = {"task_id": outcome.task_id, "outcome": event.name}
    for name in _OUTCOME_FIELDS[event.name]:
        if name == "result":
            assert isinstance(event, Terminate)
            if event.result_json is not None:
                body[name] = json.loads(event.result_json)
            continue
        body[name] = getattr(event, name)
    return body


def _each(decode: Callable[[object], object]) -> Callable[[object], object]:
    """Decode every element of a JSON array; anything else goes to the store as it
    came, so the store's own check names the field."""

    def decode_all(value: object) -> object:
        return [decode(item) for item in value] if isinstance(value, list) else value

    return decode_all
