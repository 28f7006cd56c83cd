"""The HTTP API: 5. the OpenAPI document."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from sokka.adapters.store import TaskStore
from sokka.adapters.wire import OPERATIONS_BY_NAME, PROBLEM_TYPES
from tests.shell.http_api.helpers import (
    AUTH,
    STORE_CALLS,
    assert_problem,
)

_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@pytest.fixture(scope="module")
def openapi(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/openapi.json", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def _route_methods(app: Starlette) -> dict[str, set[str]]:
    # The dashboard's HTML pages (/ui) are for browsers, not part of the API.
    return {
        route.path: {m.lower() for m in route.methods or () if m != "HEAD"}
        for route in app.routes
        if isinstance(route, Route) and route.path != "/ui" and not route.path.startswith("/ui/")
    }


def _documented_methods(document: dict[str, Any]) -> dict[str, set[str]]:
    return {
        path: {key for key in item if key in _HTTP_METHODS}
        for path, item in document["paths"].items()
    }


def test_every_documented_path_is_a_route_with_the_documented_methods(
    server: tuple[Starlette, str], openapi: dict[str, Any]
) -> None:
    routes = _route_methods(server[0])
    for path, methods in _documented_methods(openapi).items():
        assert path in routes, path
        assert methods == routes[path], path


def test_every_route_of_the_app_is_in_the_openapi_document(
    server: tuple[Starlette, str], openapi: dict[str, Any]
) -> None:
    assert _route_methods(server[0]) == _documented_methods(openapi)


def test_the_v1_operations_are_exactly_the_calls_of_the_task_store_protocol(
    openapi: dict[str, Any],
) -> None:
    v1 = {path: item for path, item in openapi["paths"].items() if path.startswith("/v1/")}
    assert {path.removeprefix("/v1/") for path in v1} == set(STORE_CALLS)
    for path, item in v1.items():
        assert set(item) == {"post"}
        assert item["post"]["operationId"] == path.removeprefix("/v1/")


@pytest.mark.parametrize("call", STORE_CALLS)
def test_each_request_schema_lists_exactly_the_parameters_of_its_protocol_method(
    openapi: dict[str, Any], call: str
) -> None:
    parameters = [
        p
        for p in inspect.signature(getattr(TaskStore, call)).parameters.values()
        if p.name != "self"
    ]
    operation = openapi["paths"][f"/v1/{call}"]["post"]
    assert operation["requestBody"]["required"] is True
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    # and the HTTP call's own arguments, after them (reserve_tasks's wait_ms)
    extra = [p.name for p in OPERATIONS_BY_NAME[call].params if p.wire_only]
    assert list(schema["properties"]) == [p.name for p in parameters] + extra
    assert schema["required"] == [p.name for p in parameters if p.default is p.empty]
    for p in parameters:
        if p.default is not p.empty and p.default is not None:
            assert schema["properties"][p.name]["default"] == p.default, p.name
    assert "200" in operation["responses"]
    assert "401" in operation["responses"]  # the server has a token
    assert "422" in operation["responses"]


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> object:
    assert ref.startswith("#/"), ref
    node: object = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert key in node, ref
        node = node[key]
    return node


def test_every_ref_in_the_openapi_document_resolves(openapi: dict[str, Any]) -> None:
    refs = set(_refs(openapi))
    assert len(refs) >= 8  # Task, Page, Result, Problem, TaskSpec, TaskFilter, Lease, Outcome
    for ref in refs:
        assert isinstance(_resolve(openapi, ref), dict), ref


def test_the_openapi_document_declares_bearer_security_but_not_for_health(
    openapi: dict[str, Any],
) -> None:
    assert openapi["openapi"] == "3.1.0"
    assert openapi["security"] == [{"bearer": []}]
    assert openapi["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert openapi["paths"]["/health"]["get"]["security"] == []


def test_the_openapi_document_is_valid_openapi_3_1(openapi: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validate = getattr(validator, "validate", None) or validator.validate_spec
    validate(openapi)


def test_every_problem_type_is_served_at_its_uri(http: httpx.Client) -> None:
    for code, kind in PROBLEM_TYPES.items():
        response = http.get(f"/problems/{code}", headers=AUTH)
        assert response.status_code == 200, code
        assert response.json() == {
            "type": f"/problems/{code}",
            "title": kind.title,
            "status": kind.status,
            "members": list(kind.members),
        }
    assert_problem(http.get("/problems/no-such-code", headers=AUTH), 404, "unknown-endpoint")
