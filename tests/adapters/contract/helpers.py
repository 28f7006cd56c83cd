"""What the contract's sections share: names, and helpers that use only the
public protocol."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from returns.result import Failure, Result, Success

from sokka.adapters.store import (
    MAX_PAGE_SIZE,
    Page,
    TaskFilter,
    TaskStore,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import (
    SokkaError,
    ValidationError,
)
from sokka.core.task import (
    MAX_NAME_LENGTH,
    Task,
    TaskSpec,
)
from sokka.core.transitions import Terminate

TOPIC = "emails"
OTHER_TOPIC = "reports"
PID = "worker-1"
OTHER_PID = "worker-2"

# -- helpers ------------------------------------------------------------------


def spec(task_id: str | None = None, topic: str = TOPIC, **fields: Any) -> TaskSpec:
    return TaskSpec(topic=topic, task_id=task_id, **fields)


def create(store: TaskStore, task_id: str, topic: str = TOPIC, **fields: Any) -> Task:
    return store.create_task(spec(task_id, topic, **fields))


def start(store: TaskStore, task_id: str, topic: str = TOPIC, pid: str = PID) -> Task:
    """Reserve ``task_id``, which must be the oldest starting task of ``topic``."""
    reserved = store.reserve_tasks(topic, pid)
    assert [t.task_id for t in reserved] == [task_id]
    return reserved[0]


def running(
    store: TaskStore, task_id: str, topic: str = TOPIC, pid: str = PID, **fields: Any
) -> Task:
    """Create ``task_id`` and reserve it (no other task of ``topic`` may be starting)."""
    create(store, task_id, topic, **fields)
    return start(store, task_id, topic, pid)


def ids(tasks: Sequence[Task]) -> list[str]:
    return [t.task_id for t in tasks]


def every_page(list_page: Callable[[str | None], Page]) -> list[Page]:
    """Follow ``next_cursor`` until it is ``None``."""
    pages: list[Page] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    while True:
        page = list_page(cursor)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        assert isinstance(page.next_cursor, str)
        assert page.next_cursor
        assert page.next_cursor not in seen_cursors, "a cursor came back twice: endless paging"
        seen_cursors.add(page.next_cursor)
        cursor = page.next_cursor


def listing(
    store: TaskStore, filter: TaskFilter | None = None, limit: int = MAX_PAGE_SIZE
) -> list[Task]:
    pages = every_page(lambda cursor: store.list_tasks(filter, cursor, limit))
    return [t for page in pages for t in page.tasks]


def leased(store: TaskStore, topic: str | None = None, limit: int = MAX_PAGE_SIZE) -> list[Task]:
    pages = every_page(lambda cursor: store.list_leased_tasks(topic, cursor, limit))
    return [t for page in pages for t in page.tasks]


def snapshot(store: TaskStore) -> tuple[tuple[Task, ...], tuple[Task, ...]]:
    """Everything a caller can see: every task, and the leased listing."""
    return tuple(listing(store)), tuple(leased(store))


@contextmanager
def refused(store: TaskStore, error: type[SokkaError], field: str | None = None) -> Iterator[None]:
    """The block must raise exactly ``error`` (naming ``field``) and change nothing."""
    before = snapshot(store)
    with pytest.raises(error) as raised:
        yield
    assert type(raised.value) is error
    if field is not None:
        assert isinstance(raised.value, ValidationError)
        assert raised.value.field == field
    assert snapshot(store) == before


def failure(result: Result[Task, SokkaError]) -> SokkaError:
    assert isinstance(result, Failure), f"expected a Failure, got {result!r}"
    error = result.failure()
    assert isinstance(error, SokkaError)
    return error


def success(result: Result[Task, SokkaError]) -> Task:
    assert isinstance(result, Success), f"expected a Success, got {result!r}"
    task = result.unwrap()
    assert isinstance(task, Task)
    return task


def short_id(value: object) -> str:
    """A readable test id for a parameter, however long its value."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for Python to print
        return "huge-int"
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"


def filter_id(wanted: TaskFilter) -> str:
    fields = ("topic", "sub_topic", "status", "task_group_id", "created_from", "created_before")
    given = [
        f"{name}={getattr(wanted, name)}" for name in fields if getattr(wanted, name) is not None
    ]
    return ",".join(given) or "no-filter"


def nested(depth: int) -> object:
    """A JSON list nested ``depth`` levels deep."""
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def b64json(value: object) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def failure_of(results: list[Result[Task, SokkaError]]) -> object:
    """Raise the error of a one-element batch, so batch and single calls test alike."""
    [result] = results
    if isinstance(result, Failure):
        raise result.failure()
    return result.unwrap()


def build_world(store: TaskStore) -> None:
    """r1 running (PID, attempt 1, record_ver 1), z1 snoozed (record_ver 2), f1 failed,
    t1 terminated, s1 starting (all in TOPIC); g1 starting in OTHER_TOPIC, group "grp"."""
    running(store, "r1")
    running(store, "z1")
    store.snooze("z1", PID, 1, 5_000)
    running(store, "f1")
    store.fail("f1", PID, 1, "boom")
    running(store, "t1")
    store.terminate("t1", PID, 1)
    create(store, "s1")
    create(store, "g1", topic=OTHER_TOPIC, task_group_id="grp")


TOKEN = LeaseToken("r1", 1)
DONE = Finish(task_id="r1", event=Terminate(pid=PID, attempt=1))
LONG = "x" * (MAX_NAME_LENGTH + 1)
HUGE = 10**5000  # more digits than Python will print

Call = Callable[[Any], object]
