"""Answers bounded by bytes as well as by count: the server's read calls.

A page of 1,000 tasks with the largest data is 256 MiB of JSON, and building
it takes several times that in the server's memory. So every call that answers
with tasks it reads (``tasks_in_group``, ``list_tasks``, ``list_leased_tasks``,
``reserve_tasks``) asks its store in steps, each step for no more tasks than
the rest of the byte budget holds at the largest size a task can have
(``MAX_TASK_JSON_BYTES``). Neither the store's read nor the answer can pass
the budget, whatever the tasks hold; small tasks take more steps, never more
memory.

* A listing stops at the budget and hands back the store's own cursor of the
  last step, so the caller pages on as with any short page.
* ``tasks_in_group`` has no cursor: it is read as the group's listing, in the
  same creation order, and may answer fewer than ``limit`` tasks (the protocol
  allows it; a caller pages the group with ``list_tasks``).
* ``reserve_tasks`` reserves each step only once the answer is sure to hold
  it, because a task reserved and not answered would stay leased to nobody
  until a supervisor revoked it, and that expiry would count as a failed
  attempt. Reserving more and releasing the excess would leave the same hole
  whenever the release itself failed.

When a later step fails, the tasks already read (or reserved) are answered
and the failure is not: a reserved task must reach its caller, and a listing
is still a valid page with its cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sokka.adapters.store import (
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Page,
    TaskFilter,
    TaskStore,
    require_limit,
)
from sokka.adapters.wire.codec import _dumps, task_json_text
from sokka.core.errors import SokkaError
from sokka.core.task import (
    MAX_DATA_BYTES,
    MAX_DESCRIPTION_LENGTH,
    MAX_ERROR_HISTORY,
    MAX_ERROR_LENGTH,
    MAX_NAME_LENGTH,
    Task,
    require_name,
)

__all__ = [
    "DEFAULT_MAX_ANSWER_BYTES",
    "MAX_TASK_JSON_BYTES",
    "bounded_group",
    "bounded_leased",
    "bounded_listing",
    "bounded_reserve",
]

#: The most UTF-8 bytes one character of a JSON string can take: a control
#: character is written as a six-byte ``\\u00XX`` escape (any other character
#: takes at most four).
_MAX_BYTES_PER_CHAR: Final = 6
#: Keys, quotes, commas and the integer fields (at most 20 digits each).
_TASK_FRAME_BYTES: Final = 1024

#: The largest a task can be as JSON text (``task_json_text``, in UTF-8): its
#: stored data, and every text field at its longest with every character
#: escaped (about 1 MB: the error history dominates).
MAX_TASK_JSON_BYTES: Final = (
    MAX_DATA_BYTES
    + _MAX_BYTES_PER_CHAR
    * (
        5 * MAX_NAME_LENGTH  # task_id, task_group_id, topic, sub_topic, pid
        + MAX_DESCRIPTION_LENGTH
        + MAX_ERROR_LENGTH * (1 + MAX_ERROR_HISTORY)  # error, errors
    )
    + 2 * (2 + MAX_ERROR_HISTORY)  # the quotes of error and of each errors element
    + _TASK_FRAME_BYTES
)

#: 32 MiB: the most task JSON one answer carries. A step asks the store for at
#: most 31 tasks (31 of the largest size fill it), so a page of 1,000 small
#: tasks takes about 33 steps: twice the time of one read on SQLite, the price
#: of a bound that holds whatever the tasks hold.
DEFAULT_MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024


def _is_limit(value: object, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum


class _Answer:
    """Task JSON texts gathered under a byte budget."""

    def __init__(self, budget: int) -> None:
        if budget < MAX_TASK_JSON_BYTES:
            raise ValueError(f"an answer budget must hold one task ({MAX_TASK_JSON_BYTES} bytes)")
        self.budget = budget
        self.used = 0
        self.texts: list[str] = []

    def room(self, wanted: int) -> int:
        """How many more tasks (up to ``wanted``) the budget surely holds."""
        return min(wanted, (self.budget - self.used) // MAX_TASK_JSON_BYTES)

    def add(self, tasks: list[Task] | tuple[Task, ...]) -> None:
        for task in tasks:
            text = task_json_text(task)
            self.texts.append(text)
            self.used += len(text.encode("utf-8", "surrogatepass")) + 1  # and its comma

    def array(self) -> str:
        return f"[{','.join(self.texts)}]"


def _page_text(answer: _Answer, next_cursor: str | None) -> str:
    return f'{{"tasks":{answer.array()},"next_cursor":{_dumps(next_cursor)}}}'


def _gather_pages(
    fetch: Callable[[str | None, int], Page], cursor: str | None, limit: int, budget: int
) -> tuple[_Answer, str | None]:
    """Follow the store's pages from ``cursor`` until ``limit`` tasks, the budget, or
    the end; the cursor returned resumes after the last task gathered."""
    answer = _Answer(budget)
    wanted = answer.room(limit)
    while wanted > 0:
        try:
            page = fetch(cursor, wanted)
        except SokkaError:
            if not answer.texts:
                raise
            break  # what was read is a valid page, with the cursor that resumes it
        answer.add(page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            break
        wanted = answer.room(limit - len(answer.texts))
    return answer, cursor


def bounded_listing(
    store: TaskStore,
    budget: int,
    filter: TaskFilter | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> str:
    """``list_tasks`` as the page's JSON text, at most ``budget`` bytes of tasks."""
    if not _is_limit(limit, MAX_PAGE_SIZE):
        store.list_tasks(filter, cursor, limit)  # the store names the bad argument
        require_limit("limit", limit, MAX_PAGE_SIZE)

    def fetch(after: str | None, count: int) -> Page:
        return store.list_tasks(filter, after, count)

    return _page_text(*_gather_pages(fetch, cursor, limit, budget))


def bounded_leased(
    store: TaskStore,
    budget: int,
    topic: str | None = None,
    cursor: str | None = None,
    limit: int = MAX_PAGE_SIZE,
) -> str:
    """``list_leased_tasks`` as the page's JSON text, at most ``budget`` bytes of tasks."""
    if not _is_limit(limit, MAX_PAGE_SIZE):
        store.list_leased_tasks(topic, cursor, limit)  # the store names the bad argument
        require_limit("limit", limit, MAX_PAGE_SIZE)

    def fetch(after: str | None, count: int) -> Page:
        return store.list_leased_tasks(topic, after, count)

    return _page_text(*_gather_pages(fetch, cursor, limit, budget))


def bounded_group(
    store: TaskStore, budget: int, task_group_id: str, limit: int = MAX_PAGE_SIZE
) -> str:
    """``tasks_in_group`` as a JSON array, at most ``budget`` bytes of tasks: read as the
    group's listing (the same tasks, in the same creation order)."""
    # The group is required here, where a filter's is optional: check it as the
    # store's tasks_in_group does (same field, same rule), before the limit.
    require_name("task_group_id", task_group_id)
    if not _is_limit(limit, MAX_PAGE_SIZE):
        store.tasks_in_group(task_group_id, limit)  # the store names the bad argument
        require_limit("limit", limit, MAX_PAGE_SIZE)
    group = TaskFilter(task_group_id=task_group_id)

    def fetch(after: str | None, count: int) -> Page:
        return store.list_tasks(group, after, count)

    answer, _ = _gather_pages(fetch, None, limit, budget)
    return answer.array()


def bounded_reserve(store: TaskStore, budget: int, topic: str, pid: str, limit: int = 1) -> str:
    """``reserve_tasks`` as a JSON array: never reserves more than ``budget`` holds."""
    answer = _Answer(budget)
    if not _is_limit(limit, MAX_BATCH):
        answer.add(store.reserve_tasks(topic, pid, limit))  # the store refuses it
        require_limit("limit", limit, MAX_BATCH)
        return answer.array()
    wanted = answer.room(limit)
    while wanted > 0:
        try:
            reserved = store.reserve_tasks(topic, pid, wanted)
        except SokkaError:
            if not answer.texts:
                raise
            break  # the tasks already reserved must reach their owner
        answer.add(reserved)
        if len(reserved) < wanted:
            break  # nothing more is ready
        wanted = answer.room(limit - len(answer.texts))
    return answer.array()
