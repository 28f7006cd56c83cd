"""The contract: a task's result (``ok(result)``, kept by ``Terminate``)."""

from __future__ import annotations

from typing import Any

import pytest

from sokka.adapters.store import TaskFilter, TaskStore
from sokka.core.commands import Finish
from sokka.core.errors import NotRunning, ValidationError
from sokka.core.task import MAX_RESULT_BYTES, Status
from sokka.core.transitions import Terminate
from tests.adapters.contract.helpers import (
    PID,
    failure,
    listing,
    nested,
    refused,
    running,
    success,
)

RESULTS: list[Any] = [
    {"sent": 3, "to": ["ann@example.com", "bob@example.com"]},
    [1, 2.5, None, True, "é ✓"],
    "done",
    0,
    False,
    {"nested": nested(60)},
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_terminate_keeps_the_result_on_the_task(store: TaskStore, result: Any) -> None:
    running(store, "t1")
    done = store.terminate("t1", PID, 1, result)
    assert done.status is Status.TERMINATED
    assert done.result == result
    read = store.get_task("t1")
    assert read == done
    assert read.result == result
    assert [t.result for t in listing(store)] == [result]
    assert [t.result for t in store.tasks_in_group("t1")] == [result]


def test_a_task_without_a_result_has_none(store: TaskStore) -> None:
    created = running(store, "t1")
    assert (created.result, created.result_json) == (None, None)
    done = store.terminate("t1", PID, 1)
    assert (done.result, done.result_json) == (None, None)
    assert store.get_task("t1").result_json is None


def test_finish_many_keeps_each_terminate_s_own_result(store: TaskStore) -> None:
    running(store, "a")
    running(store, "b")
    running(store, "c")
    results = store.finish_many(
        [
            Finish(task_id="a", event=Terminate(pid=PID, attempt=1, result={"n": 1})),
            Finish(task_id="b", event=Terminate(pid=PID, attempt=1)),
            Finish(task_id="c", event=Terminate(pid=PID, attempt=1, result=[3])),
        ]
    )
    assert [success(r).result for r in results] == [{"n": 1}, None, [3]]
    found = {t.task_id: t.result for t in listing(store, TaskFilter(status=Status.TERMINATED))}
    assert found == {"a": {"n": 1}, "b": None, "c": [3]}


def test_the_result_is_kept_byte_for_byte_in_canonical_form(store: TaskStore) -> None:
    running(store, "t1")
    store.terminate("t1", PID, 1, {"b": 1.0, "a": "ü", "c": [1e300]})
    assert store.get_task("t1").result_json == '{"b":1.0,"a":"ü","c":[1e+300]}'


def test_a_result_at_the_bound_is_kept(store: TaskStore) -> None:
    running(store, "t1")
    biggest = "x" * (MAX_RESULT_BYTES - 2)  # two quotes: exactly the bound encoded
    assert store.terminate("t1", PID, 1, biggest).result == biggest


@pytest.mark.parametrize(
    ("result", "rule"),
    [
        ("x" * (MAX_RESULT_BYTES - 1), f"must be at most {MAX_RESULT_BYTES} bytes as JSON"),
        ({"k": b"bytes"}, "result['k'] is a bytes, which is not a JSON value"),
        ([float("nan")], "which JSON cannot hold"),
        ({1: "x"}, "is not a string (JSON keys are strings)"),
        (nested(65), "must be nested at most 64 levels deep"),
        ("nul\x00", "must not contain NUL characters"),
    ],
    ids=["too-large", "bytes", "nan", "int-key", "too-deep", "nul"],
)
def test_a_bad_result_names_the_field_and_leaves_the_task_running(
    store: TaskStore, result: object, rule: str
) -> None:
    running(store, "t1")
    with refused(store, ValidationError, "result"):
        store.terminate("t1", PID, 1, result)
    with pytest.raises(ValidationError, match=r"^result: ") as raised:
        store.terminate("t1", PID, 1, result)
    assert rule in raised.value.rule
    task = store.get_task("t1")
    assert (task.status, task.result_json) == (Status.RUNNING, None)


def test_a_terminate_with_a_result_is_fenced_like_any_other(store: TaskStore) -> None:
    running(store, "t1")
    store.terminate("t1", PID, 1, "first")
    error = failure(
        store.finish_many([Finish(task_id="t1", event=Terminate(pid=PID, attempt=1, result=2))])[0]
    )
    assert isinstance(error, NotRunning)
    assert store.get_task("t1").result == "first"


def test_a_failed_task_has_no_result(store: TaskStore) -> None:
    running(store, "t1")
    failed = store.fail("t1", PID, 1, "boom")
    assert (failed.status, failed.result) == (Status.FAILED, None)
