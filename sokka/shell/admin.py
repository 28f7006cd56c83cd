"""Bulk administration through the store's own calls: requeue every failed task
of a topic."""

from __future__ import annotations

from dataclasses import dataclass

from sokka.adapters.store import MAX_PAGE_SIZE, TaskFilter, TaskStore
from sokka.core.errors import InvalidTransition, NotFound
from sokka.core.task import Status

__all__ = ["Requeued", "requeue_failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Requeued:
    """What ``requeue_failed`` did: ``requeued`` tasks went back to starting;
    ``moved_on`` were listed as failed but had changed (or gone) by their turn."""

    requeued: int
    moved_on: int


def requeue_failed(store: TaskStore, topic: str, page_size: int = MAX_PAGE_SIZE) -> Requeued:
    """Requeue every failed task of ``topic``, a page of the listing at a time.

    Each task goes through ``store.requeue`` on its own, so the state machine
    decides: a task that moved on since it was listed (requeued by someone
    else, or purged) is counted in ``moved_on``, never forced. The listing is
    a keyset in creation order, so the tasks requeued (no longer failed) do
    not shift the pages still to come.
    """
    wanted = TaskFilter(topic=topic, status=Status.FAILED)  # checks the topic
    requeued = moved_on = 0
    cursor: str | None = None
    while True:
        page = store.list_tasks(wanted, cursor, page_size)
        for task in page.tasks:
            try:
                store.requeue(task.task_id)
            except (InvalidTransition, NotFound):
                moved_on += 1
            else:
                requeued += 1
        cursor = page.next_cursor
        if cursor is None:
            return Requeued(requeued=requeued, moved_on=moved_on)
