"""An application's tasks in one place, a ``sokka.App``, used by docs/guide.md.

The app's store is the one ``SOKKA_DB`` names (``sqlite:///sokka.db`` by
default; create its schema once with ``sokka init``). Enqueue a few tasks,
then serve every topic of the app in one worker process:

    python -m examples.app welcome ann@example.com
    python -m examples.app report 2024-05 --delay 5s
    sokka worker --app examples.app:app --supervise

Each topic has its own handler, concurrency, lease, timeout and attempts;
``enqueue`` writes the handler's lease, timeout and attempts on the task,
so any worker or supervisor runs it as the handler asks.
"""

from __future__ import annotations

import argparse
import os

import sokka
from examples.emails import send_welcome
from sokka import Context, Outcome, Task

app = sokka.App(os.environ.get("SOKKA_DB", "sqlite:///sokka.db"))

# A handler written for a plain Worker registers as it is.
app.handler("emails", concurrency=4, lease="30s", timeout="1m", max_attempts=5)(send_welcome)


@app.handler("reports", concurrency=1, lease="2m", timeout="30m", max_attempts=2)
def build_report(task: Task, ctx: Context) -> Outcome:
    """Build the monthly report of ``data["month"]`` (pretend: a second of work)."""
    month = task.data["month"]
    if ctx.sleep(1.0):  # returns True at once if the attempt is cancelled
        ctx.raise_if_cancelled()
    print(f"report {month}: built (attempt {ctx.lease.attempt})\n", end="", flush=True)
    return sokka.ok()


def main(argv: list[str] | None = None) -> None:
    """``python -m examples.app welcome ADDRESS`` or ``... report MONTH [--delay 5s]``."""
    parser = argparse.ArgumentParser(prog="python -m examples.app")
    parser.add_argument("what", choices=["welcome", "report"])
    parser.add_argument("value", help="an email address, or a month (2024-05)")
    parser.add_argument("--delay", default=None, help="500ms, 30s, 5m, ...: run no earlier")
    args = parser.parse_args(argv)
    if args.what == "welcome":
        # One welcome per address: the task id makes a second enqueue a no-op.
        try:
            task = app.enqueue(
                "emails", {"to": args.value}, task_id=f"welcome-{args.value}", delay=args.delay
            )
        except sokka.AlreadyExists:
            print(f"welcome-{args.value}: already enqueued")
            return
    else:
        task = app.enqueue(
            "reports", {"month": args.value}, task_id=f"report-{args.value}", delay=args.delay
        )
    print(f"{task.task_id}: {task.status} (max_attempts {task.max_attempts})")


if __name__ == "__main__":
    main()
