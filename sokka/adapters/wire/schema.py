"""The JSON Schemas of the wire format (served in the OpenAPI document)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from sokka.adapters.wire.codec import (
    _OPTIONAL,
    _OUTCOME_EVENTS,
    _OUTCOME_FIELDS,
    _WIRE_TASK_FIELDS,
)
from sokka.adapters.wire.problems import PROBLEM_TYPES, problem_type_uri
from sokka.adapters.wire.values import JSONObject
from sokka.core.task import (
    MAX_ATTEMPTS,
    MAX_DATA_DEPTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_INT,
    MAX_NAME_LENGTH,
    MAX_RESULT_BYTES,
    MAX_TRACE_CONTEXT_BYTES,
    Status,
)

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
#: A terminate's result, as a caller sends it.
_RESULT: Final[JSONObject] = {
    "description": f"the task's result: any JSON value, at most {MAX_RESULT_BYTES // 1024} KiB "
    f"encoded, {MAX_DATA_DEPTH} deep; null or absent: no result",
}
#: A task's trace context: a propagator's carrier.
_TRACE_CONTEXT: Final[JSONObject] = _nullable(
    {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "the trace context headers to carry to the task's attempts (W3C "
        f"traceparent, tracestate), at most {MAX_TRACE_CONTEXT_BYTES} bytes as JSON; "
        "null, absent or empty: none",
    }
)
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
    if kind == "terminate":
        properties["result"] = _RESULT
    required = ["task_id", "outcome", *(p for p in _OUTCOME_FIELDS[kind] if p not in _OPTIONAL)]
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
            "delay_ms": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_INT}),
            "trace_context": _TRACE_CONTEXT,
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
            "result": {
                "description": "what the handler's ok(result) kept on the terminated task; "
                "null when there is none",
            },
            "trace_context": _TRACE_CONTEXT,
        },
        sorted(_WIRE_TASK_FIELDS),
    ),
    "Page": _closed(
        {"tasks": {"type": "array", "items": _ref("Task")}, "next_cursor": _CURSOR},
        ["tasks", "next_cursor"],
    ),
    "Counts": _closed(
        {
            "now": {**_INT, "description": "the store clock when it counted (ms)"},
            "failed_within_ms": _INT,
            "topics": {"type": "array", "items": _ref("TopicCounts")},
        },
        ["now", "failed_within_ms", "topics"],
    ),
    "TopicCounts": _closed(
        {
            "topic": {"type": "string"},
            **{status.value: {"type": "integer", "minimum": 0} for status in Status},
            "oldest_ready_at": _nullable(_INT),
            "failed_recently": {"type": "integer", "minimum": 0},
        },
        ["topic", *(s.value for s in Status), "oldest_ready_at", "failed_recently"],
    ),
    "Purged": _closed(
        {
            "deleted": {"type": "integer", "minimum": 0},
            "more": {
                "type": "boolean",
                "description": "deleted == limit: there may be more, call again",
            },
        },
        ["deleted", "more"],
    ),
    "Changed": _closed(
        {
            "changed": {
                "type": "boolean",
                "description": "true if this call changed the topic's state; false if it "
                "was in that state already",
            }
        },
        ["changed"],
    ),
    "Topics": _closed(
        {"topics": {"type": "array", "items": {"type": "string"}, "description": "sorted"}},
        ["topics"],
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


