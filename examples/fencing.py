"""Fencing a downstream write with the lease token, used by docs/guide.md.

One task per order (``--id order-17``) computes the order's invoice and
writes it to a table of its own database. Each row remembers, in ``fence``,
the attempt that wrote it; a write is applied only if no later attempt of
the task has written the row already. A worker that was paused past its
lease (and whose task was meanwhile run again as attempt N+1) can therefore
never overwrite its successor's invoice with its own late one.

The invoices live in the SQLite file named by ``INVOICES_DB`` (default
``invoices.db``); the SQL is the same on PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time

from sokka.core.commands import LeaseToken
from sokka.core.task import Task
from sokka.shell.worker import Context, Outcome, failed, ok

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS invoices (
    order_id    TEXT PRIMARY KEY,
    total_cents INTEGER NOT NULL,
    fence       INTEGER NOT NULL  -- the attempt that wrote this row
)
"""

# One statement: the check and the write cannot be separated by another writer.
SAVE = """
INSERT INTO invoices (order_id, total_cents, fence) VALUES (:order_id, :total, :attempt)
ON CONFLICT (order_id) DO UPDATE
    SET total_cents = excluded.total_cents, fence = excluded.fence
    WHERE invoices.fence <= excluded.fence
"""


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(os.environ.get("INVOICES_DB", "invoices.db"), timeout=10)
    db.execute(SCHEMA)
    return db


def save_invoice(db: sqlite3.Connection, lease: LeaseToken, order_id: str, total: int) -> bool:
    """Write the invoice unless a later attempt wrote it already; True if written."""
    with db:  # one transaction, committed on success
        cursor = db.execute(SAVE, {"order_id": order_id, "total": total, "attempt": lease.attempt})
    return cursor.rowcount == 1


def make_invoice(task: Task, ctx: Context) -> Outcome:
    order = task.data
    total = sum(line["cents"] for line in order["lines"])
    log.info("%s: attempt %d started", task.task_id, ctx.lease.attempt)
    time.sleep(order.get("work_seconds", 0))  # the slow part, where a pause can strike
    db = connect()
    try:
        written = save_invoice(db, ctx.lease, task.task_id, total)
    finally:
        db.close()
    if not written:
        print(f"{task.task_id}: attempt {ctx.lease.attempt} refused: a later attempt "
              "wrote the invoice", flush=True)  # fmt: skip
        # A later attempt exists, so this lease is gone: the store will refuse
        # this outcome too, and the worker discards it.
        return failed("superseded by a later attempt", retry=False)
    print(f"{task.task_id}: attempt {ctx.lease.attempt} wrote {total} cents", flush=True)
    return ok()
