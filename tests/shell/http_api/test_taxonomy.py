"""The HTTP API: 3. the error taxonomy over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskStore
from sokka.adapters.wire import PROBLEM_TYPES
from sokka.core.errors import (
    LeaseLost,
    SokkaError,
)
from sokka.core.task import TaskSpec
from tests.shell.http_api.helpers import (
    HIDDEN,
    SECRET,
    SECRET_PARTS,
    RaisingStore,
    assert_problem,
    post,
    snapshot,
)


#: Errors whose message may carry server internals: (error, status, code).
@pytest.mark.parametrize(
    ("error", "status", "code"), HIDDEN, ids=[type(e).__name__ for e, _, _ in HIDDEN]
)
def test_a_store_failure_answers_its_status_with_a_fixed_detail_and_no_internals(
    http: httpx.Client,
    behind: Callable[[TaskStore], None],
    error: SokkaError,
    status: int,
    code: str,
) -> None:
    store = RaisingStore(error)
    behind(store)
    response = post(http, "get_task", {"task_id": "t-1"})
    problem = assert_problem(response, status, code)
    assert store.calls == 1
    assert problem["detail"] == PROBLEM_TYPES[code].fixed_detail
    assert set(problem) == {"type", "title", "status", "detail"}
    for part in SECRET_PARTS:
        assert part not in response.text
    if status in (429, 503):
        assert response.headers["retry-after"] == "1"
    else:
        assert "retry-after" not in response.headers


def test_an_unexpected_exception_in_the_store_answers_500_internal_error_without_its_message(
    http: httpx.Client, behind: Callable[[TaskStore], None]
) -> None:
    behind(RaisingStore(RuntimeError(f"boom {SECRET}")))
    response = post(http, "list_tasks", {})
    problem = assert_problem(response, 500, "internal-error")
    assert problem["detail"] == PROBLEM_TYPES["internal-error"].fixed_detail
    assert "boom" not in response.text
    assert "RuntimeError" not in response.text
    for part in SECRET_PARTS:
        assert part not in response.text


#: (id, call over HTTP, the same call in-process, status, code, members of the problem)
REAL_ERRORS: list[
    tuple[str, str, dict[str, Any], Callable[[MemoryStore], object], int, str, dict[str, Any]]
] = [
    (
        "not found",
        "get_task",
        {"task_id": "t-missing"},
        lambda s: s.get_task("t-missing"),
        404,
        "not-found",
        {"task_id": "t-missing"},
    ),
    (
        "already exists",
        "create_task",
        {"spec": {"topic": "other", "task_id": "t-starting"}},
        lambda s: s.create_task(TaskSpec(topic="other", task_id="t-starting")),
        409,
        "already-exists",
        {"task_id": "t-starting"},
    ),
    (
        "stale record",
        "revoke_lease",
        {"task_id": "t-running", "record_ver": 0},
        lambda s: s.revoke_lease("t-running", 0),
        409,
        "stale-record",
        {"task_id": "t-running", "expected": 0, "actual": 1},
    ),
    (
        "invalid transition: requeue",
        "requeue",
        {"task_id": "t-starting"},
        lambda s: s.requeue("t-starting"),
        409,
        "invalid-transition",
        {"task_id": "t-starting", "task_status": "starting", "event": "requeue"},
    ),
    (
        "invalid transition: cancel",
        "cancel",
        {"task_id": "t-failed", "reason": "r"},
        lambda s: s.cancel("t-failed", "r"),
        409,
        "invalid-transition",
        {"task_id": "t-failed", "task_status": "failed", "event": "cancel"},
    ),
    (
        "not running",
        "terminate",
        {"task_id": "t-failed", "pid": "w1", "attempt": 1},
        lambda s: s.terminate("t-failed", "w1", 1),
        409,
        "not-running",
        {"task_id": "t-failed"},
    ),
    (
        "stale attempt",
        "terminate",
        {"task_id": "t-running", "pid": "w1", "attempt": 2},
        lambda s: s.terminate("t-running", "w1", 2),
        403,
        "stale-attempt",
        {"task_id": "t-running"},
    ),
    (
        "wrong owner",
        "snooze",
        {"task_id": "t-running", "pid": "w2", "attempt": 1, "snooze_ms": 10},
        lambda s: s.snooze("t-running", "w2", 1, 10),
        403,
        "wrong-owner",
        {"task_id": "t-running"},
    ),
    (
        "invalid input",
        "create_task",
        {"spec": {"topic": ""}},
        lambda s: s.create_task(TaskSpec(topic="")),
        422,
        "invalid-input",
        {"field": "topic", "rule": "must not be empty"},
    ),
]


@pytest.mark.parametrize(
    ("call", "body", "in_process", "status", "code", "members"),
    [case[1:] for case in REAL_ERRORS],
    ids=[case[0] for case in REAL_ERRORS],
)
def test_a_store_error_answers_its_status_type_and_members_as_in_process(
    http: httpx.Client,
    backing: MemoryStore,
    call: str,
    body: dict[str, Any],
    in_process: Callable[[MemoryStore], object],
    status: int,
    code: str,
    members: dict[str, Any],
) -> None:
    before = snapshot(backing)
    response = post(http, call, body)
    problem = assert_problem(response, status, code)
    assert snapshot(backing) == before
    with pytest.raises(SokkaError) as caught:
        in_process(backing)
    error = caught.value
    assert error.code == code
    assert problem["detail"] == str(error)
    for name, value in members.items():
        assert problem[name] == value
    if isinstance(error, LeaseLost):
        assert problem["reason"]
        assert problem["detail"] == f"task {problem['task_id']!r}: {problem['reason']}"
    expected_keys = {"type", "title", "status", "detail", *PROBLEM_TYPES[code].members}
    assert set(problem) == expected_keys
    assert "retry-after" not in response.headers
