"""The HTTP API: a task's result on the wire (a real server, raw requests)."""

from __future__ import annotations

import json

import httpx

from sokka.adapters.memory import MemoryStore
from sokka.adapters.wire.codec import outcome_to_json, task_from_json, task_to_json
from sokka.core.commands import Finish
from sokka.core.task import MAX_RESULT_BYTES, Status, TaskSpec
from sokka.core.transitions import Terminate
from tests.shell.http_api.helpers import AUTH, assert_problem, post, snapshot


def test_terminate_keeps_a_result_sent_as_json(http: httpx.Client, backing: MemoryStore) -> None:
    answer = post(
        http, "terminate", {"task_id": "t-running", "pid": "w1", "attempt": 1, "result": [1, "ü"]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == [1, "ü"]
    assert backing.get_task("t-running").result_json == '[1,"ü"]'
    read = post(http, "get_task", {"task_id": "t-running"}).json()
    assert (read["status"], read["result"]) == ("terminated", [1, "ü"])
    assert post(http, "get_task", {"task_id": "t-starting"}).json()["result"] is None


def test_a_result_too_large_is_a_422_naming_result_and_changes_nothing(
    http: httpx.Client, backing: MemoryStore
) -> None:
    before = snapshot(backing)
    big = "x" * MAX_RESULT_BYTES
    for call, body in [
        ("terminate", {"task_id": "t-running", "pid": "w1", "attempt": 1, "result": big}),
        (
            "finish_many",
            {"outcomes": [
                {"task_id": "t-running", "outcome": "terminate", "pid": "w1", "attempt": 1,
                 "result": {"rows": big}},
            ]},
        ),
    ]:  # fmt: skip
        problem = assert_problem(post(http, call, body), 422, "invalid-input")
        assert problem["field"] == "result"
        assert problem["rule"].startswith(f"must be at most {MAX_RESULT_BYTES} bytes as JSON")
    assert snapshot(backing) == before
    assert backing.get_task("t-running").status is Status.RUNNING


def test_a_result_is_refused_on_any_outcome_but_terminate(
    http: httpx.Client, backing: MemoryStore
) -> None:
    body = {"outcomes": [{"task_id": "t-running", "outcome": "release", "pid": "w1",
                          "attempt": 1, "result": 1}]}  # fmt: skip
    problem = assert_problem(post(http, "finish_many", body), 422, "invalid-input")
    assert problem["field"] == "result"


def test_a_plain_terminate_is_sent_without_result_for_servers_older_than_results() -> None:
    plain = outcome_to_json(Finish(task_id="t", event=Terminate(pid="w", attempt=1)))
    assert plain == {"task_id": "t", "outcome": "terminate", "pid": "w", "attempt": 1}
    kept = outcome_to_json(Finish(task_id="t", event=Terminate(pid="w", attempt=1, result=[2])))
    assert kept["result"] == [2]


def test_a_task_from_a_server_older_than_results_reads_as_having_none() -> None:
    store = MemoryStore()
    task = store.create_task(TaskSpec(topic="q", task_id="t1"))
    older = task_to_json(task)
    del older["result"], older["trace_context"]  # that server knew neither (tracing came later)
    assert task_from_json(json.loads(json.dumps(older))) == task


def test_the_openapi_document_describes_result(http: httpx.Client) -> None:
    schemas = http.get("/openapi.json", headers=AUTH).json()["components"]["schemas"]
    assert "result" in schemas["Task"]["required"]
    terminate = next(s for s in schemas["Outcome"]["oneOf"] if s["properties"]["outcome"] == {
        "const": "terminate"})  # fmt: skip
    assert "result" in terminate["properties"]
    assert "result" not in terminate["required"]
