"""Print every failed task of the store ``SOKKA_DB`` names, used by docs/guide.md.

python -m examples.failed_tasks
"""

from __future__ import annotations

import os

from sokka import Status, TaskFilter
from sokka.adapters.sql import SQLStore

with SQLStore(os.environ.get("SOKKA_DB", "sqlite:///sokka.db")) as store:
    wanted = TaskFilter(status=Status.FAILED)
    cursor = None
    while True:
        page = store.list_tasks(wanted, cursor, limit=100)
        for task in page.tasks:
            print(f"{task.task_id} ({task.topic}): {task.failures} failures: {task.error}")
            for line in task.errors:  # the most recent errors, oldest first
                print("   ", line)
        cursor = page.next_cursor
        if cursor is None:
            break
