"""``SteppedWorker``: the worker core driven by a test, one step at a time.

It makes the same decisions as the threaded ``Worker`` because it calls the
same pure functions (``sokka.core.holding``); only the scheduling differs:
nothing happens between two calls, handlers run inline on the caller's
thread, and time is whatever the clock says (a ``ManualClock`` in tests).

A handler that advances the clock past its lease's fence loses the lease,
as a real worker whose keepalives stopped would: its ``ctx.cancelled`` turns
true and its outcome is discarded. Call ``keep_alive()`` (from the handler,
or between steps) to send the keepalives the core says are due.
"""

from __future__ import annotations

from collections.abc import Callable

from sokka.adapters.store import TaskStore
from sokka.core import holding
from sokka.core.backoff import Backoff
from sokka.core.commands import CancelHandler
from sokka.core.errors import RetryableError
from sokka.core.holding import Discarded, Holdings, Phase, WorkerPolicy
from sokka.core.outcomes import FailedOutcome
from sokka.core.task import Task, require_name
from sokka.shell.clock import Clock
from sokka.shell.worker import Cancelled, Context, Handler, WorkerStats, handler_raised

__all__ = ["SteppedWorker"]


class SteppedWorker:
    """Reserve, run, keep alive and record, one explicit step at a time.

    >>> from sokka.adapters.memory import MemoryStore
    >>> from sokka.core.outcomes import ok
    >>> from sokka.core.task import TaskSpec
    >>> from sokka.shell.clock import ManualClock
    >>> clock = ManualClock()
    >>> store = MemoryStore(clock=clock)
    >>> _ = store.create_task(TaskSpec(topic="emails", task_id="t1"))
    >>> worker = SteppedWorker(store, "emails", lambda task, ctx: ok(), clock=clock)
    >>> worker.step(), store.get_task("t1").status.value
    (1, 'terminated')
    """

    def __init__(
        self,
        store: TaskStore,
        topic: str,
        handler: Handler,
        *,
        clock: Clock,
        pid: str = "stepped-worker",
        batch_size: int = 1,
        lease_time_ms: int = 30_000,
        keepalive_ratio: float = 0.7,
        fence_ratio: float = 0.9,
        timeout_ms: int | None = None,
        retry_backoff: Backoff | None = None,
        rand: Callable[[], float] = lambda: 0.5,
    ) -> None:
        self.store = store
        self.topic = require_name("topic", topic)
        self.handler = handler
        self.clock = clock
        self.batch_size = batch_size
        self.rand = rand
        self.policy = WorkerPolicy(
            lease_time_ms=lease_time_ms,
            keepalive_ratio=keepalive_ratio,
            fence_ratio=fence_ratio,
            timeout_ms=timeout_ms,
            retry_backoff=retry_backoff or Backoff(base_ms=1_000, cap_ms=300_000),
        )
        self.holdings: Holdings = holding.holdings(pid, self.policy)
        self.stats = WorkerStats()
        self.cancels: list[CancelHandler] = []  #: every cancel the core issued
        self.discarded: list[Discarded] = []  #: every outcome the core refused to report
        self._contexts: dict[tuple[str, int], Context] = {}

    @property
    def pid(self) -> str:
        """The worker's name, recorded as the owner of the tasks it reserves."""
        return self.holdings.pid

    def step(self) -> int:
        """Keep alive what is due, reserve up to ``batch_size`` tasks, run their
        handlers inline, and record the outcomes. Returns how many ran."""
        self.keep_alive()
        sent = self.clock.now_ms()
        tasks = self.store.reserve_tasks(self.topic, self.pid, self.batch_size)
        if not tasks:
            return 0
        self.stats.reserved += len(tasks)
        self.holdings = holding.take(self.holdings, tasks, sent, [self.rand() for _ in tasks])
        for task in tasks:
            self._run(task)
        self.record()
        return len(tasks)

    def run_until_idle(self, max_steps: int = 10_000) -> int:
        """Step until a reservation finds nothing; returns how many handlers ran."""
        ran = 0
        for _ in range(max_steps):
            done = self.step()
            if not done:
                return ran
            ran += done
        raise AssertionError(f"still finding work after {max_steps} steps")

    def keep_alive(self) -> None:
        """What time passing means now (fence, timeouts), then the keepalive that is due."""
        self.holdings, cancels = holding.tick(self.holdings, self.clock.now_ms())
        self._cancel(cancels)
        self.holdings, command = holding.due(self.holdings, self.clock.now_ms())
        if command is None:
            return
        try:
            results = self.store.extend_leases(self.pid, list(command.leases))
        except RetryableError:
            self.stats.store_errors += 1
            return  # the core has set a retry, as in the threaded worker
        self.holdings, cancels = holding.acknowledged(self.holdings, command, results)
        self._cancel(cancels)

    def record(self) -> None:
        """Send every decided outcome the core still allows, in one call."""
        decided = [k for k, v in self.holdings.leases.items() if v.phase is Phase.DECIDED]
        self.holdings, recording = holding.record(self.holdings, decided, self.clock.now_ms())
        if not recording:
            return
        results = self.store.finish_many(list(recording.finishes))
        self.holdings, _ = holding.recorded(self.holdings, recording, results)
        for finish, result in zip(recording.finishes, results, strict=True):
            self.stats.count_answer(finish, result)

    def _run(self, task: Task) -> None:
        token = (task.task_id, task.attempt)
        now = self.clock.now_ms()
        self.holdings, may = holding.started(self.holdings, token, now)
        if not may:
            return
        ctx = Context(task, lambda: holding.live(self.holdings, token, self.clock.now_ms()))
        self._contexts[token] = ctx
        outcome: object
        try:
            outcome = self.handler(task, ctx)
        except Cancelled:
            outcome = FailedOutcome("the handler raised Cancelled without being cancelled")
        except Exception as error:
            outcome = handler_raised(self.pid, task, error, self.clock.now_ms() - now)
        finally:
            self._contexts.pop(token, None)
        self.holdings, cancels = holding.tick(self.holdings, self.clock.now_ms())
        self._cancel(cancels)
        self.holdings, verdict = holding.finished(
            self.holdings, token, outcome, self.clock.now_ms()
        )
        if isinstance(verdict, Discarded):
            self.discarded.append(verdict)
            self.stats.count_discarded(verdict)

    def _cancel(self, cancels: tuple[CancelHandler, ...]) -> None:
        for cancel in cancels:
            self.cancels.append(cancel)
            self.stats.count_cancel(cancel)
            ctx = self._contexts.get(cancel.lease)
            if ctx is not None:
                ctx._set_cancelled(cancel.reason)
