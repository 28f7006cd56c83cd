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
            for error in task.errors:  # the most recent errors, oldest first
                print("   ", error.splitlines()[0])  # a traceback may follow the first line
        cursor = page.next_cursor
        if cursor is None:
            break
