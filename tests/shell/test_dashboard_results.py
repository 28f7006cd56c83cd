"""The dashboard's task page shows what a terminated task's handler kept
(``ok(result)``), escaped, in a real headless browser against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sokka.adapters.sql import SQLStore
from sokka.core.task import TaskSpec
from sokka.shell.http import create_app, serve_in_background
from tests.shell.test_dashboard import HOSTILE, browser, page

__all__ = ["browser", "page"]  # the fixtures, shared with test_dashboard


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """kept: terminated with a result whose text holds markup; plain: terminated
    without one; waiting: starting."""
    with SQLStore(f"sqlite:///{tmp_path / 'results.db'}") as store:
        store.create_schema()
        store.create_tasks(
            [TaskSpec(topic="q", task_id=t) for t in ("kept", "plain", "waiting")]
        )
        store.reserve_tasks("q", "w1", limit=2)
        store.terminate("kept", "w1", 1, {"sent": 3, **HOSTILE})
        store.terminate("plain", "w1", 1)
        with serve_in_background(create_app(store)) as base_url:
            yield base_url


def test_the_task_page_shows_the_result_escaped(page: Any, server: str) -> None:
    page.goto(f"{server}/ui/tasks/kept")
    shown = page.locator("#task-result").inner_text()
    assert '"sent": 3' in shown
    assert "<script>window.__pwned = 1</script>" in shown
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#task-result script, #task-result img").count() == 0


def test_a_task_without_a_result_says_so_and_an_unfinished_one_shows_none(
    page: Any, server: str
) -> None:
    page.goto(f"{server}/ui/tasks/plain")
    assert page.locator("#task-result").count() == 0
    assert "None kept" in page.locator("#task-result-none").inner_text()
    page.goto(f"{server}/ui/tasks/waiting")
    assert page.get_by_role("heading", name="Result").count() == 0
