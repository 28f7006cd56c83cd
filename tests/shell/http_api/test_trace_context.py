"""The HTTP API: a task's trace context on the wire (a real server, raw requests)."""

from __future__ import annotations

import json

import httpx

from sokka.adapters.memory import MemoryStore
from sokka.adapters.wire.codec import spec_to_json, task_from_json, task_to_json
from sokka.core.task import MAX_TRACE_CONTEXT_BYTES, TaskSpec
from tests.shell.http_api.helpers import AUTH, assert_problem, post, snapshot

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_create_task_keeps_a_trace_context_sent_as_json(
    http: httpx.Client, backing: MemoryStore
) -> None:
    spec = {"topic": "q", "task_id": "traced",
            "trace_context": {"tracestate": "k=v", "traceparent": TRACEPARENT}}  # fmt: skip
    answer = post(http, "create_task", {"spec": spec})
    assert answer.status_code == 200, answer.text
    assert answer.json()["trace_context"] == {"traceparent": TRACEPARENT, "tracestate": "k=v"}
    assert backing.get_task("traced").trace_context_json == (
        f'{{"traceparent":"{TRACEPARENT}","tracestate":"k=v"}}'
    )
    read = post(http, "get_task", {"task_id": "t-starting"}).json()
    assert read["trace_context"] is None


def test_a_bad_trace_context_is_a_422_naming_it_and_changes_nothing(
    http: httpx.Client, backing: MemoryStore
) -> None:
    before = snapshot(backing)
    for bad, rule in [
        ({"traceparent": 1}, "the value of 'traceparent' must be a string (got int)"),
        (["traceparent"], "must be a mapping of strings to strings (got list)"),
        ({"k": "x" * MAX_TRACE_CONTEXT_BYTES}, f"must be at most {MAX_TRACE_CONTEXT_BYTES} bytes"),
    ]:
        spec = {"topic": "q", "task_id": "bad", "trace_context": bad}
        problem = assert_problem(post(http, "create_task", {"spec": spec}), 422, "invalid-input")
        assert (problem["field"], rule in problem["rule"]) == ("trace_context", True)
        # In a batch, the element fails on its own.
        answer = post(http, "create_tasks", {"specs": [spec]})
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["error"]["field"] == "trace_context"
    assert snapshot(backing) == before


def test_a_spec_without_a_context_is_sent_without_the_member() -> None:
    """So an ordinary spec is still accepted by a server older than tracing."""
    assert "trace_context" not in spec_to_json(TaskSpec(topic="q"))
    sent = spec_to_json(TaskSpec(topic="q", trace_context={"traceparent": TRACEPARENT}))
    assert sent["trace_context"] == {"traceparent": TRACEPARENT}


def test_a_task_from_a_server_older_than_tracing_reads_as_having_none() -> None:
    task = MemoryStore().create_task(TaskSpec(topic="q", task_id="t1"))
    older = task_to_json(task)
    del older["trace_context"]
    assert task_from_json(json.loads(json.dumps(older))) == task


def test_the_openapi_document_describes_trace_context(http: httpx.Client) -> None:
    schemas = http.get("/openapi.json", headers=AUTH).json()["components"]["schemas"]
    assert "trace_context" in schemas["Task"]["required"]
    assert "trace_context" in schemas["TaskSpec"]["properties"]
    assert "trace_context" not in schemas["TaskSpec"]["required"]
