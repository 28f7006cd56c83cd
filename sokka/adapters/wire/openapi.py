"""The OpenAPI 3.1 document of the wire format, built from the same table of
calls the server decodes requests with, so the two agree."""

from __future__ import annotations

import importlib.metadata
from typing import Any, Final

from sokka.adapters.wire import (
    OPERATIONS,
    PROBLEM_JSON,
    PROBLEM_TYPES,
    SCHEMAS,
    Operation,
)

__all__ = ["openapi_document"]

# -- the OpenAPI document -----------------------------------------------------------------

_PROBLEM_TYPE_DOC: Final = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "members": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["type", "title", "status", "members"],
    "additionalProperties": False,
}
_PROTOCOL_ERRORS: Final = (
    "malformed-request",
    "request-too-large",
    "request-timeout",
    "unsupported-media-type",
)
_ALWAYS: Final = (
    "throttled",
    "unavailable",
    "store-error",
    "internal-error",
    "misdirected-request",
    "server-busy",
)


def _responses(success: dict[str, Any], codes: tuple[str, ...], secured: bool) -> dict[str, Any]:
    statuses: dict[int, list[str]] = {}
    for code in (*codes, *(("unauthorized", "too-many-wrong-tokens") if secured else ())):
        statuses.setdefault(PROBLEM_TYPES[code].status, []).append(code)
    responses: dict[str, Any] = {"200": success}
    for status, names in sorted(statuses.items()):
        responses[str(status)] = {
            "description": ", ".join(names),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return responses


def _returns_schema(operation: Operation) -> dict[str, Any]:
    task = {"$ref": "#/components/schemas/Task"}
    match operation.returns:
        case "task":
            return task
        case "tasks":
            return {"type": "array", "items": task}
        case "page":
            return {"$ref": "#/components/schemas/Page"}
        case "counts":
            return {"$ref": "#/components/schemas/Counts"}
        case "purged":
            return {"$ref": "#/components/schemas/Purged"}
        case "changed":
            return {"$ref": "#/components/schemas/Changed"}
        case "topics":
            return {"$ref": "#/components/schemas/Topics"}
        case "results":
            return {"type": "array", "items": {"$ref": "#/components/schemas/Result"}}


def _version() -> str:
    try:
        return importlib.metadata.version("sokka")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0+unknown"


def openapi_document(*, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API, built from ``wire.OPERATIONS``."""
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        body = {
            "type": "object",
            "properties": {p.name: p.schema for p in op.params},
            "required": [p.name for p in op.params if p.required],
            "additionalProperties": False,
        }
        codes = (*op.errors, *_PROTOCOL_ERRORS, *_ALWAYS)
        if "invalid-input" not in codes:
            codes = ("invalid-input", *codes)
        paths[op.path] = {
            "post": {
                "operationId": op.name,
                "summary": op.summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": _responses(
                    {
                        "description": "the store's answer",
                        "content": {"application/json": {"schema": _returns_schema(op)}},
                    },
                    codes,
                    secured,
                ),
            }
        }
    ok = {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Whether the store answers (no token needed)",
            "security": [],
            "responses": _responses(
                {
                    "description": "the store answers",
                    "content": {"application/json": {"schema": ok}},
                },
                _ALWAYS,
                False,
            ),
        }
    }
    any_json = {"description": "a JSON document", "content": {"application/json": {"schema": {}}}}
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": _responses(any_json, ("misdirected-request",), secured),
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics: requests by call and status, the queue's counts "
            "(404 when the server has no prometheus-client)",
            "responses": _responses(
                {
                    "description": "Prometheus' text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                ("unknown-endpoint", "misdirected-request"),
                secured,
            ),
        }
    }
    paths["/problems/{code}"] = {
        "get": {
            "operationId": "problem_type",
            "summary": "What a problem type means: its title, status and members",
            "parameters": [
                {
                    "name": "code",
                    "in": "path",
                    "required": True,
                    "description": "the part of the problem's type after /problems/ "
                    "(an unknown one answers 404)",
                    "schema": {"type": "string"},
                }
            ],
            "responses": _responses(
                {
                    "description": "the problem type",
                    "content": {"application/json": {"schema": _PROBLEM_TYPE_DOC}},
                },
                ("unknown-endpoint", "misdirected-request"),
                secured,
            ),
        }
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sokka task store",
            "version": _version(),
            "description": "Every TaskStore call as POST /v1/<call> with a JSON object of its "
            "arguments. Errors are RFC 9457 problems.",
        },
        "paths": paths,
        "components": {"schemas": dict(SCHEMAS)},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
