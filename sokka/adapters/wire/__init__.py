"""The JSON wire format shared by the HTTP API (``sokka.shell.http``) and
``HTTPStore`` (``sokka.adapters.http``): one package, so the two cannot drift.

It holds three things, all pure (no I/O), a module each (``calls``,
``codec``, ``problems``; ``schema`` has the JSON Schemas the calls and the
OpenAPI document share):

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

from sokka.adapters.wire.calls import (
    MAX_WAIT_MS,
    OPERATIONS,
    OPERATIONS_BY_NAME,
    Operation,
    Param,
    invoke,
    wait_ms_from_json,
)
from sokka.adapters.wire.codec import (
    answer_text,
    filter_to_json,
    lease_to_json,
    outcome_to_json,
    page_from_json,
    results_from_json,
    spec_to_json,
    task_from_json,
    task_json_text,
    task_to_json,
)
from sokka.adapters.wire.problems import (
    PROBLEM_TYPES,
    ProblemType,
    error_from_problem,
    problem,
    problem_for,
    problem_type_uri,
)
from sokka.adapters.wire.schema import SCHEMAS
from sokka.adapters.wire.values import PROBLEM_JSON

__all__ = [
    "MAX_WAIT_MS",
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
    "wait_ms_from_json",
]
