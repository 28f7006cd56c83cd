"""The HTTP API: 6. /health."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import TaskStore
from sokka.core.errors import (
    SchemaError,
    Throttled,
    Unavailable,
)
from tests.shell.http_api.helpers import (
    SECRET,
    SECRET_PARTS,
    RaisingStore,
    assert_problem,
)


def test_health_answers_200_ok_with_a_working_store(
    http: httpx.Client, backing: MemoryStore
) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Unavailable(f"could not connect: {SECRET}"), 503, "unavailable"),
        (Throttled(f"lock timeout: {SECRET}"), 429, "throttled"),
        (SchemaError(f"no table: {SECRET}"), 500, "schema-error"),
        (RuntimeError(f"boom {SECRET}"), 500, "internal-error"),
    ],
    ids=["Unavailable", "Throttled", "SchemaError", "RuntimeError"],
)
def test_health_answers_the_problem_of_a_failing_store_without_its_message(
    http: httpx.Client,
    behind: Callable[[TaskStore], None],
    error: Exception,
    status: int,
    code: str,
) -> None:
    store = RaisingStore(error)
    behind(store)
    response = http.get("/health")
    assert_problem(response, status, code)
    assert store.calls == 1
    for part in SECRET_PARTS:
        assert part not in response.text
    assert "boom" not in response.text
    if status in (429, 503):
        assert response.headers["retry-after"] == "1"
