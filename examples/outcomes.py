"""What each handler answer becomes, used by docs/guide.md.

    python -m examples.outcomes

Runs one task per kind of answer through a real Worker on an in-memory
store, then prints each task's status and error.
"""

from __future__ import annotations

import time
from typing import Any

from sokka import MemoryStore, Status, TaskFilter, TaskSpec
from sokka.core.task import Task
from sokka.shell.worker import Context, Worker, failed, ok, snoozed


def handler(task: Task, ctx: Context) -> Any:
    match task.task_id:
        case "returns-ok":
            return ok()
        case "returns-failed":
            return failed("the API said 400", retry=False)
        case "returns-failed-exception":
            return failed(ValueError("bad postcode"), retry=False)
        case "returns-snoozed":
            return snoozed(60_000)
        case "raises":
            raise KeyError("to")
        case "raises-bare":
            raise RuntimeError
        case "returns-a-string":
            return "done"
        case "returns-none":
            return None
    raise AssertionError(task.task_id)


store = MemoryStore()
names = [
    "returns-ok", "returns-failed", "returns-failed-exception", "returns-snoozed",
    "raises", "raises-bare", "returns-a-string", "returns-none",
]  # fmt: skip
for name in names:
    store.create_task(TaskSpec(topic="demo", task_id=name, max_attempts=1))

worker = Worker(store, "demo", handler)
worker.start()
while any(t.status in (Status.STARTING, Status.RUNNING) for t in store.list_tasks().tasks):
    time.sleep(0.01)  # until every task has an outcome
worker.stop()
worker.wait_stopped()
for task in store.list_tasks(TaskFilter(topic="demo")).tasks:
    print(f"{task.task_id:25} {task.status:10} {task.error}")
