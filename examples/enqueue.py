"""Create tasks from Python, used by docs/guide.md.

    python -m examples.enqueue

The store is the one ``SOKKA_DB`` names, as for the ``sokka`` command.
"""

from __future__ import annotations

import os

from returns.result import Failure, Success

from sokka import AlreadyExists, TaskSpec
from sokka.adapters.sql import SQLStore

store = SQLStore(os.environ.get("SOKKA_DB", "sqlite:///sokka.db"))
store.create_schema()  # like `sokka init`: creates what is missing, changes nothing else

# One task. Without task_id the store makes one up (a UUID).
task = store.create_task(
    TaskSpec(topic="emails", data={"to": "ann@example.com", "name": "Ann"}, max_attempts=5)
)
print(task.status, task.attempt, task.data)

# With an id of your own, creating the same task twice is refused: a safe retry.
for _ in range(2):
    try:
        store.create_task(
            TaskSpec(topic="emails", task_id="welcome-bob", data={"to": "bob@example.com"})
        )
        print("created welcome-bob")
    except AlreadyExists as error:
        print(error)

# Many in one call; each element succeeds or fails on its own.
specs = [
    TaskSpec(topic="emails", task_group_id="newsletter-42", data={"to": f"reader{n}@example.com"})
    for n in range(3)
]
for result in store.create_tasks(specs):
    match result:
        case Success(created):
            print("created", created.data["to"], "in", created.task_group_id)
        case Failure(error):
            print("refused:", error)

print(len(store.tasks_in_group("newsletter-42")), "tasks in newsletter-42")
store.close()
