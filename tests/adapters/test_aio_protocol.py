"""``AsyncTaskStore`` is ``TaskStore``, awaitable: the same calls with the same
parameters (names, order, defaults), on the protocol and on every async store."""

from __future__ import annotations

import inspect

import pytest

from sokka.adapters.aio.http import AsyncHTTPStore
from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.http import HTTPStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from tests.adapters.blocking import CALLS


def test_the_calls_are_the_ports_calls() -> None:
    assert set(CALLS) == {"create_task", "create_tasks", "get_task", "tasks_in_group",
                          "list_tasks", "reserve_tasks", "extend_leases", "terminate",
                          "snooze", "fail", "finish_many", "revoke_lease", "requeue",
                          "cancel", "list_leased_tasks", "count_tasks", "purge",
                          "pause_topic", "resume_topic", "paused_topics"}  # fmt: skip


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize(
    ("async_store", "sync_store"),
    [
        (AsyncTaskStore, TaskStore),
        (AsyncMemoryStore, TaskStore),
        # The SQL stores add the caller's transaction after the port's arguments
        # (create_task's and create_tasks's connection=), the same on both.
        (AsyncSQLStore, SQLStore),
        # The HTTP stores add the wire's own arguments after the port's (reserve_tasks's
        # wait_ms), the same on both (tests/adapters/test_aio_http.py).
        (AsyncHTTPStore, HTTPStore),
    ],
)
def test_each_async_call_takes_what_the_sync_call_takes(
    async_store: type, sync_store: type, name: str
) -> None:
    method = getattr(async_store, name)
    assert inspect.iscoroutinefunction(method)
    assert (
        inspect.signature(method).parameters
        == inspect.signature(getattr(sync_store, name)).parameters
    )
