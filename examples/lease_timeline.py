"""The worker's lease timing on a 1 s lease, used by docs/guide.md.

    python -m examples.lease_timeline

A worker runs one long task. After 2.5 s the store stops answering its
keepalives (as if the network to the store were cut: a call hangs, then
fails); the worker's fence, on a thread of its own, gives the lease up at
0.9 lease after its last successful keepalive was sent, and cancels the
handler, while the keepalive is still stuck in the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from returns.result import Result

from sokka import LeaseToken, MemoryStore, SokkaError, Task, TaskSpec, Unavailable
from sokka.shell.worker import Context, Outcome, Worker, ok

logging.disable(logging.WARNING)  # the worker's own warnings would repeat what we print
started = time.monotonic()


def now() -> str:
    return f"{time.monotonic() - started:5.2f}s"


class CuttableStore:
    """A MemoryStore whose keepalives can be made to fail."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.cut = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        print(f"{now()} keepalive{' (the store does not answer)' if self.cut else ''}")
        if self.cut:
            time.sleep(0.5)  # longer than the 0.2 lease left before the fence
            raise Unavailable("the network is cut (simulated)")
        return self.inner.extend_leases(pid, leases)


def long_job(task: Task, ctx: Context) -> Outcome:
    print(f"{now()} handler starts attempt {ctx.lease.attempt}")
    ctx.sleep(60)  # returns early when cancelled
    print(f"{now()} handler cancelled: {ctx.cancel_reason}")
    ctx.raise_if_cancelled()
    return ok()


store = CuttableStore()
store.inner.create_task(TaskSpec(topic="jobs", data=None))
worker = Worker(store, "jobs", long_job, lease_time_ms=1_000)
worker.start()
time.sleep(2.5)
store.cut = True
time.sleep(1.0)
worker.stop()
worker.wait_stopped()
print(worker.stats())
