"""Slow handlers for the topic "reports", used by docs/guide.md.

``crunch`` works for ``data["seconds"]`` in short steps and stops as soon as
it is cancelled (timeout, lost lease, or the end of a shutdown's grace
period). ``stubborn`` does the same work but never looks at ``ctx``: see the
guide's troubleshooting section for what that costs.
"""

from __future__ import annotations

import time

from sokka.core.task import Task
from sokka.shell.worker import Context, Outcome, ok


def say(line: str) -> None:
    """Print ``line`` in one write, so that lines of concurrent handlers never mix."""
    print(line + "\n", end="", flush=True)


def crunch(task: Task, ctx: Context) -> Outcome:
    seconds = task.data["seconds"]
    say(f"{task.task_id}: attempt {ctx.lease.attempt} started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # ctx.sleep returns True at once if the task is cancelled meanwhile.
        if ctx.sleep(0.1):
            say(f"{task.task_id}: cancelled ({ctx.cancel_reason})")
            ctx.raise_if_cancelled()  # raises Cancelled: the worker reports nothing
    say(f"{task.task_id}: done")
    return ok()


def stubborn(task: Task, ctx: Context) -> Outcome:
    time.sleep(task.data["seconds"])  # ignores cancellation
    say(f"{task.task_id}: done (cancelled: {ctx.cancelled})")
    return ok()
