"""Handlers for the topic "emails", used by docs/guide.md.

Run a worker on them from the repository's root:

    sokka worker --topic emails --handler examples.emails:send_welcome

Nothing is really mailed: ``deliver`` prints what it would send, and fails
for addresses at ``down.example``, like a mail server that refuses
connections.
"""

from __future__ import annotations

import time

from sokka.core.task import Task
from sokka.shell.worker import Context, Outcome, failed, ok, snoozed


def send_welcome(task: Task, ctx: Context) -> Outcome:
    """Send a welcome email to ``data["to"]``."""
    data = task.data  # a fresh copy of the task's JSON data: mutate it freely
    if not isinstance(data, dict) or not isinstance(data.get("to"), str):
        # Bad data will not get better: fail now, without retries.
        return failed("data must be an object with a 'to' address", retry=False)
    deliver(data["to"], "Welcome!", f"Hello {data.get('name', 'there')}!")
    return ok()  # an exception raised by deliver() is a failure, retried


def send_digest(task: Task, ctx: Context) -> Outcome:
    """Send a digest, but not before ``data["not_before"]`` (Unix time, seconds)."""
    data = task.data
    wait_s = data.get("not_before", 0) - time.time()
    if wait_s > 0:
        return snoozed(int(wait_s * 1000) + 1)  # "not yet": not a failure
    deliver(data["to"], "Your digest", "...")
    return ok()


def deliver(to: str, subject: str, body: str) -> None:
    """Stand-in for an SMTP client."""
    if to.endswith("@down.example"):
        raise ConnectionRefusedError(f"mail server for {to} refused the connection")
    # One write per line: the lines of concurrent handler threads never mix.
    print(f"sent {subject!r} to {to}\n", end="", flush=True)
