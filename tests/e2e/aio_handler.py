"""A coroutine handler for the end-to-end tests: the demo's work, on asyncio.

``journal_handler`` is ``sokka.shell.demo.demo_handler`` as an ``async def``:
it waits ``data["ms"]`` and notes its start and end in the demo journal. It
waits with a plain ``asyncio.sleep``, so the only thing that stops it early
is the worker cancelling its asyncio task (a lost lease, the end of a
stop's grace period); the end is noted either way, as the demo's is.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from sokka.asyncio import AsyncContext, Outcome, ok
from sokka.core.task import Task
from sokka.shell.demo import JOURNAL_ENV


def _journal(event: dict[str, Any]) -> None:
    """Append one line to the journal the test reads (one write: atomic for short lines)."""
    descriptor = os.open(os.environ[JOURNAL_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (json.dumps(event) + "\n").encode())
    finally:
        os.close(descriptor)


async def journal_handler(task: Task, ctx: AsyncContext) -> Outcome:
    run = {"task": task.task_id, "attempt": task.attempt, "worker": task.pid}
    _journal({**run, "ev": "start", "t": time.monotonic()})
    try:
        await asyncio.sleep(task.data["ms"] / 1000)
    finally:
        _journal({**run, "ev": "end", "t": time.monotonic(), "cancelled": ctx.cancelled})
    return ok()
