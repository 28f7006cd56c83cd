"""The contract: bugs the first run of this suite found, kept as regressions."""

from __future__ import annotations

from typing import Any

import pytest

from sokka.adapters.store import (
    TaskStore,
)
from sokka.core.commands import Finish
from sokka.core.errors import (
    ValidationError,
)
from sokka.core.transitions import (
    Cancel,
    Requeue,
    Reserve,
    Revoke,
)
from tests.adapters.contract.helpers import (
    DONE,
    OTHER_PID,
    PID,
    TOKEN,
    Call,
    build_world,
    failure,
    refused,
    short_id,
    snapshot,
    spec,
)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda s: s.create_tasks(None), "specs", id="create_tasks-None"),
        pytest.param(lambda s: s.create_tasks(spec("x")), "specs", id="create_tasks-one-spec"),
        pytest.param(lambda s: s.extend_leases(PID, None), "leases", id="extend-None"),
        pytest.param(lambda s: s.extend_leases(PID, TOKEN), "leases", id="extend-one-token"),
        pytest.param(lambda s: s.finish_many(None), "outcomes", id="finish-None"),
        pytest.param(lambda s: s.finish_many(DONE), "outcomes", id="finish-one-outcome"),
    ],
)
def test_a_batch_call_given_a_non_sequence_is_refused_naming_the_field(
    store: TaskStore, call: Call, field: str
) -> None:
    build_world(store)
    with refused(store, ValidationError, field):
        call(store)


@pytest.mark.parametrize(
    ("task_id", "event"),
    [
        pytest.param("r1", "terminate", id="str"),
        pytest.param("r1", Revoke(record_ver=1), id="revoke"),
        pytest.param("s1", Reserve(pid=OTHER_PID), id="reserve"),
        pytest.param("s1", Cancel(reason="x"), id="cancel"),
        pytest.param("f1", Requeue(), id="requeue"),
    ],
)
def test_finish_many_refuses_an_event_that_is_not_an_owner_outcome(
    store: TaskStore, task_id: str, event: Any
) -> None:
    # Accepted answers: the whole call refused, or that element failed; never applied.
    build_world(store)
    before = snapshot(store)
    try:
        [result] = store.finish_many([Finish(task_id=task_id, event=event)])
    except ValidationError:
        pass
    else:
        assert isinstance(failure(result), ValidationError)
    assert snapshot(store) == before


@pytest.mark.parametrize("filter", [{}, "", 0, []], ids=short_id)
def test_list_tasks_refuses_a_falsy_filter_that_is_not_a_task_filter(
    store: TaskStore, filter: Any
) -> None:
    build_world(store)
    with refused(store, ValidationError, "filter"):
        store.list_tasks(filter)
