"""The asyncio worker: reserve, run the handler, keep the lease alive, record the outcome.

The same worker as ``sokka.shell.worker.Worker``, on one event loop instead of
threads. A handler is ``async def handler(task, ctx) -> Outcome`` (``ctx`` an
``AsyncContext``), or a plain function ``handler(task, ctx)`` that runs on one
of ``concurrency`` handler threads (``ctx`` then the threaded ``Context``,
whose ``sleep`` blocks its thread, not the loop).

Every lease decision is made by the worker's pure core, ``sokka.core.holding``,
exactly as in the threaded runtime; this module only carries it out. One
event loop holds the ``Holdings`` value (no lock: only the loop writes it),
and runs these asyncio tasks:

* the dispatcher (``run()`` itself): reserves in batches, topic by topic as
  ``sokka.core.polling`` says, into each topic's queue of waiting leases;
  with room and nothing to reserve, it waits for the store's hint
  (``subscribe_ready``, rung onto the loop) or, over ``AsyncHTTPStore``,
  long-polls, the poll backoff bounding either;
* ``concurrency`` runners per topic served (one, or several: ``routes=``):
  each takes its topic's next waiting lease, awaits its handler and takes
  the next; cancelling a handler cancels its runner's current await. For a
  plain handler, ``concurrency`` threads instead: each
  takes the next lease handed to it, runs the handler and queues its return;
  the loop collects the returns queued meanwhile in one callback, woken once
  for them all, not once per handler;
* the scheduler: ``holding.tick`` (timeouts, the self-fence, the end of a
  stop's grace period) and ``holding.due`` (keepalives), then it sleeps until
  the core's ``next_wakeup`` or until an event wakes it (aioquic's
  ``get_timer``/``handle_timer``): new leases, a keepalive's answer, or a
  handler start when a timeout may run from it. A keepalive is sent as a
  task of its own, one at a time, so a store call that hangs cannot delay
  the self-fence;
* the recorder: records decided outcomes in batches (``finish_many``); on a
  store with one writer at a time (SQLite) it takes turns with the
  dispatcher's reserves rather than queue for the database's lock;
* optionally an embedded supervisor (``supervise=True``).

As in the threaded worker, handler starts and returns are queued and folded
into the core in one step (``holding.ran``) before the next decision that
depends on them (``tick``, ``record``, ``stopping``, a keepalive's answer, a
handler's ``ctx.cancelled``): one write of the holdings per batch of
events, not per handler call.

Cancelling a coroutine handler is asyncio cancellation: the handler sees
``CancelledError`` at its next await, and ``ctx.cancelled`` is true (exact
when read: it asks the core whether the lease is live at that instant).
Whatever the handler returns afterwards is discarded by the core. A plain
handler in the thread pool cannot be interrupted: it sees ``ctx.cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import queue
import random
import signal
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Final

from returns.result import Result

from sokka.adapters.aio.store import AsyncReservesAndFinishes, AsyncTaskStore
from sokka.adapters.store import MAX_BATCH
from sokka.core import holding, polling
from sokka.core.backoff import Backoff
from sokka.core.commands import CancelHandler, ExtendLeases, Finish, LeaseToken, Why
from sokka.core.errors import (
    RetryableError,
    SokkaError,
    ValidationError,
)
from sokka.core.holding import Discarded, Recording, Token
from sokka.core.outcomes import FailedOutcome, Outcome
from sokka.core.task import Task
from sokka.shell.aio.stopping import call_on_loop
from sokka.shell.aio.supervisor import Supervisor
from sokka.shell.clock import Clock
from sokka.shell.tracing import AttemptSpan, TracerProviderLike
from sokka.shell.worker import (
    _STORE_CALLS,
    Cancelled,
    Context,
    Route,
    WorkerCore,
    WorkerStats,
    handler_raised,
    log_cancelled,
)

__all__ = ["AsyncContext", "AsyncHandler", "Worker"]

log = logging.getLogger("sokka.worker")

#: The scheduler sleeps at most this long, so a clock that a test moves by
#: hand (``ManualClock``) is read again soon after it jumps.
_SCHEDULER_CAP_MS: Final = 100

_CANCELLED: Final = object()  # what a handler "returned" when it was cancelled
_UNSTARTED: Final = object()  # a handler thread did not start the lease handed to it

#: A runner lets the loop's other tasks in after this many handler calls in a
#: row (a handler that never suspends would otherwise hold the loop for a batch).
_RUNNER_STREAK: Final = 16


class AsyncContext:
    """What a coroutine handler gets beside the task: its lease and cancellation.

    ``lease`` is the token ``(task_id, attempt)``: quote it in downstream
    writes so that a worker that lost its lease cannot overwrite its
    successor's work (see ``Context``, its threaded twin).
    """

    __slots__ = ("_cancelled", "_event", "_live", "_reason", "lease", "task")

    def __init__(self, task: Task, live: Callable[[], bool] | None = None) -> None:
        self.task = task
        self.lease = LeaseToken(task.task_id, task.attempt)
        self._cancelled = False
        self._live = live
        self._event: asyncio.Event | None = None  # made only if the handler sleeps
        self._reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once the lease is lost, the timeout passed, or the worker is stopping.

        Exact when read: it asks the worker's core whether the lease is still
        live at this instant, before the worker's scheduler has run.
        """
        if self._cancelled:
            return True
        live = self._live
        if live is not None and not live():
            self._set_cancelled("the lease is no longer live")
            return True
        return False

    @property
    def reason(self) -> str | None:
        """Why the handler was cancelled (None while it was not)."""
        return self._reason

    @property
    def cancel_reason(self) -> str | None:
        """``reason``, under the threaded ``Context``'s name."""
        return self._reason

    def raise_if_cancelled(self) -> None:
        """Raise ``Cancelled`` if the handler should stop now."""
        if self.cancelled:
            raise Cancelled(self._reason or "cancelled")

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once, or early) if cancelled.

        When the worker cancels the handler's asyncio task meanwhile, the
        ``CancelledError`` comes out of this await like out of any other.
        """
        if self.cancelled:
            return True
        event = self._event
        if event is None:
            event = self._event = asyncio.Event()
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            return self.cancelled
        return True

    def _set_cancelled(self, reason: str) -> None:
        if not self._cancelled:
            self._reason = reason
            self._cancelled = True
            if self._event is not None:
                self._event.set()


#: An ``async def handler(task, ctx)`` that returns ``ok()``, ``failed(error)`` or
#: ``snoozed(ms)``; ``ctx`` is an ``AsyncContext``.
AsyncHandler = Callable[[Task, AsyncContext], Awaitable[Outcome]]


def _non_negative(field: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            field, f"must be a non-negative integer of milliseconds (got {value!r})"
        )
    return value


def _is_coroutine_function(handler: object) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 -- an object's async __call__
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


async def _wait(event: asyncio.Event, ms: int) -> None:
    """Until ``event`` is set or ``ms`` pass; the event is cleared either way."""
    if not event.is_set():
        try:
            async with asyncio.timeout(max(ms, 1) / 1000):
                await event.wait()
        except TimeoutError:
            pass
    event.clear()


class Worker(WorkerCore):
    """Runs ``handler`` on the tasks of ``topic``, on an event loop.

    The options are the threaded ``Worker``'s, with the same validation.
    ``await worker.run()`` works until ``worker.stop()`` (callable from any
    thread) and returns the stats. See the module docstring.

    Or serves several topics at once: ``routes=[Route(topic=..., handler=...,
    concurrency=...), ...]`` (``sokka.shell.worker.Route``), each topic with
    its own runners (or handler threads, for a plain handler), slots and poll
    backoff, and every lease kept alive by the one keepalive call per round.
    """

    def __init__(
        self,
        store: AsyncTaskStore,
        topic: str | None = None,
        handler: AsyncHandler | Callable[[Task, Context], Outcome] | None = None,
        *,
        routes: Sequence[Route] | None = None,
        pid: str | None = None,
        concurrency: int = 1,
        batch_size: int | None = None,
        lease_time_ms: int = 30_000,
        keepalive_ratio: float = 0.7,
        fence_ratio: float = 0.9,
        timeout_ms: int | None = None,
        retry_backoff: Backoff | None = None,
        poll_backoff: Backoff | None = None,
        grace_ms: int = 30_000,
        linger_ms: int = 10,
        fetch_ahead_ms: int = 50,
        supervise: bool = False,
        supervisor_interval_ms: int | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        tracer_provider: TracerProviderLike | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(getattr(store, "reserve_tasks", None)):
            raise ValidationError(
                "store",
                "must be an AsyncTaskStore (awaitable calls); "
                "a TaskStore runs with sokka.shell.worker.Worker",
            )
        super().__init__(
            topic, handler, routes=routes, pid=pid, concurrency=concurrency,
            batch_size=batch_size, lease_time_ms=lease_time_ms, keepalive_ratio=keepalive_ratio,
            fence_ratio=fence_ratio, timeout_ms=timeout_ms, retry_backoff=retry_backoff,
            poll_backoff=poll_backoff, grace_ms=grace_ms, linger_ms=linger_ms,
            fetch_ahead_ms=fetch_ahead_ms, clock=clock, rand=rand,
            tracer_provider=tracer_provider,
        )  # fmt: skip
        self._store = store
        # Per topic: is its handler a coroutine function (run by runners on the
        # loop), or plain (run on handler threads)?
        self._async_of = {
            topic: _is_coroutine_function(route.handler) for topic, route in self._routes.items()
        }
        # A store with one writer at a time (SQLite): the reserve and the recording
        # of outcomes take turns instead of queueing for the database's lock.
        self._writer = asyncio.Lock() if getattr(store, "single_writer", False) else None
        # The store's wake-up hint, when it has one (``subscribe_ready``, a plain
        # call: see ``sokka.adapters.ready``): the idle dispatcher waits for it
        # instead of sleeping blind, the poll backoff still bounding each wait (a
        # lost hint costs one poll, never a task).
        subscribe = getattr(store, "subscribe_ready", None)
        self._subscribe: Callable[[str, Callable[[], None]], Callable[[], None]] | None = (
            subscribe
            if callable(subscribe) and not inspect.iscoroutinefunction(subscribe)
            else None
        )
        # Whether the store's hints wake the dispatcher now: while it has room (set
        # before each reserve, so a change the reserve did not see rings), not at
        # capacity, when a change would cost a hop onto the loop for nothing.
        self._hinting = False
        self._max_long_poll_ms = self._long_poll_ms(store, hints=self._subscribe is not None)
        # A store that takes a claim and outcomes in one call: while ``_fusing``, the
        # dispatcher sends the outcomes waiting with its next claim (as the threaded
        # worker does), and the recorder only records what no claim took within
        # ``linger_ms``.
        self._fused: AsyncReservesAndFinishes | None = (
            store
            if isinstance(store, AsyncReservesAndFinishes) and not self._max_long_poll_ms
            else None
        )

        # The core's value (``self._holdings``, made by WorkerCore), written only on
        # the loop; read from the handler threads by a plain handler's
        # ``ctx.cancelled`` (a reference read).
        self._contexts: dict[Token, AsyncContext | Context] = {}
        # The runner now running each lease's handler: cancelling it cancels the handler.
        self._handlers: dict[Token, asyncio.Task[None]] = {}
        # Per topic: the leases waiting for a runner, and the handlers running (or
        # handed to a handler thread).
        self._ready_of: dict[str, deque[Token]] = {topic: deque() for topic in self._topics}
        self._running_of = dict.fromkeys(self._topics, 0)
        self._waiting_count = 0  # leases waiting, every topic
        self._running = 0  # handlers running, every topic
        self._hinted: set[str] = set()  # topics the store hinted at since the last round
        self._outcomes: list[Token] = []  # decided, in the order they were decided
        self._first_outcome_ms = 0  # when the oldest of them (or of the returns) was decided
        # Handler starts and returns, queued by the runners and folded into the
        # core in one step (holding.ran) before any decision that depends on them.
        self._starts: list[tuple[Token, int]] = []
        self._returns: list[tuple[Token, object, int]] = []
        self._returned_topics: dict[Token, str] = {}  # the topic of each return's task
        # Whether a lease may have a timeout: only then can a handler's start
        # bring the scheduler's next wake-up forward.
        self._timeouts = self.policy.timeout_ms is not None or any(
            topic.timeout_ms is not None for topic in self.policy.topics.values()
        )
        self._recording = 0  # finish_many calls in flight
        self._keepalive: asyncio.Task[None] | None = None
        self._stopping = False  # no more reservations
        self._draining = False  # stopping: the recorder records at once
        self._halting = False  # run() is ending: its tasks are cancelled
        self._fatal: SokkaError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Plain handlers: the leases handed to the handler threads, their returns
        # (collected on the loop), and a lock that keeps a thread's start apart
        # from the fold, so that the drain never releases a lease as waiting
        # while its handler starts.
        self._threads: list[threading.Thread] = []
        self._handed_of: dict[str, queue.SimpleQueue[Token | None]] = {
            topic: queue.SimpleQueue() for topic in self._topics
        }
        self._done: deque[tuple[Token, str, object, int, int]] = deque()
        self._collecting = False
        self._lock = threading.Lock()
        # Events the loop's tasks sleep on (bound to the loop on first use).
        self._room = asyncio.Event()  # the dispatcher: stop, or idle
        # Each topic's runners: leases of the topic wait to be run.
        self._work_of = {topic: asyncio.Event() for topic in self._topics}
        self._timer = asyncio.Event()  # the scheduler: the next wake-up moved
        self._recorder = asyncio.Event()  # the recorder: a batch is ready
        self._settled = asyncio.Event()  # the drain: something was recorded
        self._supervisor: Supervisor | None = (
            Supervisor(
                store,
                list(self._topics),
                self._embedded_policy(),
                self._clock,
                interval_ms=supervisor_interval_ms,
            )
            if supervise
            else None
        )

    # -- public ------------------------------------------------------------------

    def stats(self) -> WorkerStats:
        """A snapshot of the worker's counters (a copy: later work does not change it)."""
        return replace(self._stats)

    def stop(self) -> None:
        """Ask the worker to stop: no new reservations, then a graceful drain.

        Safe to call from any thread, and before ``run()``.
        """
        self._stopping = True
        call_on_loop(self._loop, self._wake_all)

    async def run(self, *, install_signal_handlers: bool = False) -> WorkerStats:
        """Work until ``stop()`` (or SIGTERM / SIGINT, if asked to install
        handlers for them), then drain and return the stats.

        On stop: in-flight handlers get ``grace_ms`` to finish; tasks reserved
        but not started, and handlers still running after the grace period
        (coroutines are cancelled), are released so other workers can take
        them at once. A worker runs once.
        """
        if self._loop is not None:
            raise RuntimeError("this worker has already run; make a new one")
        loop = self._loop = asyncio.get_running_loop()
        installed = self._install_signals(loop) if install_signal_handlers else []
        background = [
            loop.create_task(self._schedule(), name="sokka-scheduler"),
            loop.create_task(self._record_loop(), name="sokka-recorder"),
        ]
        i = 0
        for route in self._routes.values():
            for _ in range(route.concurrency):
                if self._async_of[route.topic]:
                    runner = self._runner(route)
                    background.append(loop.create_task(runner, name=f"sokka-runner-{i}"))
                else:
                    thread = threading.Thread(
                        target=self._plain_loop, args=(route,), name=f"sokka-handler-{i}",
                        daemon=True,
                    )  # fmt: skip
                    thread.start()
                    self._threads.append(thread)
                i += 1
        supervising = (
            loop.create_task(self._supervisor.run(), name="sokka-supervisor")
            if self._supervisor is not None
            else None
        )
        unsubscribe = await self._subscribe_to_hints(loop)
        try:
            await self._dispatch()
            await self._drain()
        finally:
            self._halting = True
            self._hinting = False
            if unsubscribe is not None:
                unsubscribe()
            if self._supervisor is not None and supervising is not None:
                self._supervisor.stop()
                await asyncio.gather(supervising, return_exceptions=True)
            others = list(background)
            if self._keepalive is not None:
                others.append(self._keepalive)
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            # A plain handler still running after the grace period cannot be
            # interrupted: its lease is released, and its thread left to end.
            for route in self._routes.values():
                if not self._async_of[route.topic]:
                    for _ in range(route.concurrency):
                        self._handed_of[route.topic].put(None)
            for signum in installed:
                loop.remove_signal_handler(signum)
        if self._fatal is not None:
            raise self._fatal
        return self.stats()

    # -- the dispatcher ------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, ...
                log.debug("worker %s: cannot handle signal %d here", self.pid, signum)
                continue
            installed.append(signum)
        return installed

    def _on_signal(self, signum: int) -> None:
        log.info("worker %s: got signal %d, stopping", self.pid, signum)
        self.stop()

    async def _subscribe_to_hints(
        self, loop: asyncio.AbstractEventLoop
    ) -> Callable[[], None] | None:
        """Subscribe to the store's hints (if it has them) for this run; the
        unsubscribe call. A hint sets the dispatcher's event, hopping onto the
        loop from whichever thread rang (the store's listener, a handler thread,
        another thread of the process), and only while the dispatcher has room."""
        subscribe = self._subscribe
        if subscribe is None:
            return None

        def ringer(topic: str) -> Callable[[], None]:
            def hinted() -> None:
                if self._hinting:
                    self._hinted.add(topic)  # its poll backoff ends (polling.hinted)
                    self._room.set()

            def ring() -> None:  # on the ringing thread: quick, and must not raise
                if self._hinting:
                    with contextlib.suppress(RuntimeError):  # the loop has closed
                        loop.call_soon_threadsafe(hinted)

            return ring

        def subscribe_all() -> list[Callable[[], None]]:
            leave = []
            try:
                for topic in self._topics:
                    leave.append(subscribe(topic, ringer(topic)))
            except BaseException:
                for unsubscribe in leave:
                    unsubscribe()
                raise
            return leave

        try:
            # A thread: subscribing may wait for the store's listener to connect.
            leave = await asyncio.to_thread(subscribe_all)
        except Exception:  # a hint is an optimisation: without it, the worker polls
            log.exception("worker %s: cannot subscribe to the store's hints; polling", self.pid)
            return None

        def unsubscribe_all() -> None:
            for unsubscribe in leave:
                unsubscribe()

        return unsubscribe_all

    def _wake_all(self) -> None:
        for event in (self._room, self._timer, self._recorder, self._settled):
            event.set()
        for work in self._work_of.values():
            work.set()

    async def _dispatch(self) -> None:
        long_poll_ms = 0  # the next reserve's wait at the server (AsyncHTTPStore), 0: none
        while not self._stopping:
            unsettled = self._unsettled_by_topic()
            if self._hinted:
                for topic in self._hinted:
                    self._polls = polling.hinted(self._polls, topic)
                self._hinted.clear()
            plan = polling.to_reserve(self._polls, unsettled, self._clock.now_ms())
            # With room, the store's hints wake the dispatcher from now on: a task
            # made ready during this reserve, and not seen by it, rings.
            self._hinting = self._subscribe is not None and self._has_room(unsettled)
            got_any = False
            for reserve in plan:  # every topic with free slots, in this round's order
                if self._is_stopping():
                    break
                got = await self._reserve(reserve.topic, reserve.limit, long_poll_ms)
                got_any = got_any or bool(got)
                self._polls = polling.reserved(
                    self._polls, reserve.topic, None if got is None else len(got),
                    self._clock.now_ms(), self._rand(),
                )  # fmt: skip
                if got is not None and not got and self._max_long_poll_ms:
                    # The server holds the next reserve until a task is ready, the
                    # backoff at most: no sleep here (one topic only).
                    long_poll_ms = max(1, min(self._wait_ms(), self._max_long_poll_ms))
                    self._polls = polling.hinted(self._polls, reserve.topic)
                else:
                    long_poll_ms = 0
            if self._fusing:
                await self._flush()  # what no claim took: none was due, or more came since
            if got_any or long_poll_ms:
                continue
            unsettled = self._unsettled_by_topic()
            if not self._has_room(unsettled):
                self._hinting = False  # at capacity: a settled lease wakes it (linger)
            wait_ms = self._wait_ms()
            if wait_ms and not self._stopping:
                await _wait(self._room, wait_ms)

    def _is_stopping(self) -> bool:
        return self._stopping  # read again after an await (stop() may have run)

    def _has_room(self, unsettled: dict[str, int]) -> bool:
        return any(unsettled[topic] < cap for topic, cap in self._capacity_of.items())

    def _wait_ms(self) -> int:
        """How long the dispatcher may sleep: the core's ``polling.wait_ms``."""
        unsettled = self._unsettled_by_topic()
        return polling.wait_ms(self._polls, unsettled, self._clock.now_ms(), self._linger_ms)

    async def _reserve(self, topic: str, limit: int, wait_ms: int = 0) -> list[Task] | None:
        """Reserve up to ``limit`` tasks of ``topic`` (a long poll of ``wait_ms`` when
        given); None when the store failed (already logged)."""
        sent = self._clock.now_ms()  # the lease counts from here, a long poll's wait too
        tasks: list[Task]
        recording = self._take_recording(force=True) if self._fusing else None
        if recording is not None:
            self._recording += 1
        try:
            if recording is not None and self._fused is not None:
                tasks, results = await self._claim_with(recording, self._fused, topic, limit)
            elif wait_ms:
                reserve: Any = self._store.reserve_tasks  # AsyncHTTPStore's, with wait_ms
                tasks = await reserve(topic, self.pid, limit, wait_ms=wait_ms)
            elif self._writer is None:
                tasks = await self._store.reserve_tasks(topic, self.pid, limit)
            else:
                async with self._writer:
                    tasks = await self._store.reserve_tasks(topic, self.pid, limit)
        except RetryableError as error:
            if recording is not None:
                self._put_back(recording)  # sent again with the next claim
            self._note_store_error("reserve", error)
            return None
        except SokkaError as error:  # not retryable (a missing schema, ...): stop
            if recording is not None:
                self._put_back(recording)  # the drain tries them once more
            log.error("worker %s: reserve failed, stopping: %s", self.pid, error)
            self._fatal = error
            self.stop()
            return None
        finally:
            if recording is not None:
                self._recording -= 1
                self._settled.set()
        self._errors.succeeded("reserve")
        if recording is not None:
            self._settle(recording, results)
        if not tasks:
            return tasks
        rand = self._rand
        jitters = [rand() for _ in tasks]
        self._stats.reserved += len(tasks)
        self._holdings = holding.take(self._holdings, tasks, sent, jitters)
        contexts, ready, is_async = self._contexts, self._ready_of[topic], self._async_of[topic]
        handed = self._handed_of[topic]
        for task in tasks:
            token = (task.task_id, task.attempt)
            self._timeouts = self._timeouts or task.timeout_ms is not None
            if is_async:
                contexts[token] = AsyncContext(task, functools.partial(self._is_live_here, token))
                ready.append(token)
                self._waiting_count += 1
            else:
                contexts[token] = Context(task, functools.partial(self._is_live, token))
                self._running += 1  # handed to the threads: counted as running until it returns
                self._running_of[topic] += 1
                handed.put(token)
        self._timer.set()  # new leases: new keepalive and fence times
        self._work_of[topic].set()
        return tasks

    def _is_live(self, token: Token) -> bool:
        """``ctx.cancelled`` of a plain handler, on a thread of the pool: the holdings
        as last folded (a reference read; only the loop writes them)."""
        return holding.live(self._holdings, token, self._clock.now_ms())

    def _is_live_here(self, token: Token) -> bool:
        """``ctx.cancelled`` of a coroutine handler, on the loop: exact, the queued
        starts and returns folded in first."""
        if self._starts or self._returns:
            self._fold()
        return holding.live(self._holdings, token, self._clock.now_ms())

    def _unsettled(self) -> int:
        """Leases held whose outcome is not decided yet (waiting or running)."""
        return self._waiting_count + self._running

    def _unsettled_by_topic(self) -> dict[str, int]:
        """``_unsettled`` per topic."""
        running = self._running_of
        return {topic: len(ready) + running[topic] for topic, ready in self._ready_of.items()}

    def _note_store_error(self, what: str, error: SokkaError) -> None:
        self._count_store_errors(_STORE_CALLS[what])
        self._errors.failed(what, error)

    # -- handlers ------------------------------------------------------------------

    async def _runner(self, route: Route) -> None:
        """Run waiting handlers of ``route``'s topic one after another, one at a time:
        the topic's ``concurrency`` runners bound how many run at once, without a
        task per handler call."""
        me = asyncio.current_task()
        assert me is not None
        topic, handler = route.topic, route.handler
        ready, work, clock = self._ready_of[topic], self._work_of[topic], self._clock
        streak = 0
        while True:
            if not ready or self._stopping:
                # Once stopping, no new handler starts: the drain releases what waits.
                work.clear()
                try:
                    await work.wait()
                except asyncio.CancelledError:
                    if self._halting:
                        raise
                    me.uncancel()  # meant for a handler that had already returned
                streak = 0
                continue
            token = ready.popleft()
            self._waiting_count -= 1
            now = clock.now_ms()
            if not holding.live(self._holdings, token, now):
                # given up while it waited (its keepalives failed): never started
                self._contexts.pop(token, None)
                continue
            self._starts.append((token, now))  # folded in before the next decision
            self._running += 1
            self._running_of[topic] += 1
            self._handlers[token] = me
            if self._timeouts:
                self._timer.set()  # its timeout runs from now
            await self._run_one(handler, token, me)
            streak += 1
            if me.cancelling() or streak >= _RUNNER_STREAK:
                # Let the loop's other tasks in between handlers that never
                # suspend; and take a cancel that came after its handler returned.
                streak = 0
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    if self._halting:
                        raise
                while me.cancelling():
                    me.uncancel()

    async def _run_one(
        self, handler: Callable[..., Any], token: Token, me: asyncio.Task[None]
    ) -> None:
        ctx = self._contexts[token]
        outcome: object
        began = self._clock.now_ms()
        self.observer.started(ctx.task)
        # The attempt's span is current in this runner task while it awaits the
        # handler (and so in any task the handler starts).
        with self.tracing.attempt(ctx.task, self.pid) as span:
            try:
                outcome = await handler(ctx.task, ctx)
            except asyncio.CancelledError:
                if self._halting:
                    raise
                me.uncancel()
                outcome = _CANCELLED
            except Cancelled:
                outcome = _CANCELLED
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # a handler's exception is its failure (even
                # SystemExit); the worker lives on
                span.raised(error)
                outcome = handler_raised(self.pid, ctx.task, error, self._clock.now_ms() - began)
            span.ended(outcome, ctx, cancelled=outcome is _CANCELLED)
        self._count_ran(ctx, outcome, began, raised_cancelled=outcome is _CANCELLED)
        self._handler_returned(token, ctx, outcome, ran_ms=self._clock.now_ms() - began)

    def _plain_loop(self, route: Route) -> None:
        """A handler thread of ``route``'s topic: run the plain handler on the leases
        handed to it."""
        clock, loop = self._clock, self._loop
        assert loop is not None
        topic, handed = route.topic, self._handed_of[route.topic]
        while True:
            token = handed.get()
            if token is None:  # the worker is ending
                return
            ctx = self._contexts.get(token)
            with self._lock:  # not while the drain folds and releases what waits
                now = clock.now_ms()
                start = (
                    ctx is not None
                    and not self._stopping
                    and holding.live(self._holdings, token, now)
                )
                if start:
                    self._starts.append((token, now))  # folded in before the next decision
            if ctx is None or not start:
                # Stopping (the drain releases it), or given up while it waited.
                self._plain_returned(token, topic, _UNSTARTED, now, 0)
                continue
            if self._timeouts:
                self._call_soon(self._timer.set)  # its timeout runs from now
            self.observer.started(ctx.task)
            outcome = self._call_plain(route.handler, ctx)
            self._count_ran(ctx, outcome, now, raised_cancelled=outcome is _CANCELLED)
            ended = clock.now_ms()
            self._plain_returned(token, topic, outcome, ended, ended - now)

    def _plain_returned(
        self, token: Token, topic: str, outcome: object, now: int, ran_ms: int
    ) -> None:
        """On a handler thread: queue a return (its handler ran ``ran_ms``); wake the
        loop unless it is woken already."""
        self._done.append((token, topic, outcome, now, ran_ms))
        if not self._collecting:
            self._collecting = True
            self._call_soon(self._collect)

    def _call_soon(self, callback: Callable[[], object]) -> None:
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the worker returned
            loop.call_soon_threadsafe(callback)

    def _collect(self) -> None:
        """On the loop: take in the plain handlers' returns queued since the last call."""
        self._collecting = False  # before taking them: a later return wakes us again
        done = self._done
        while done:
            token, topic, outcome, when, ran_ms = done.popleft()
            ctx = self._contexts.get(token)
            if outcome is _UNSTARTED or ctx is None:
                self._running -= 1
                self._running_of[topic] -= 1
                self._contexts.pop(token, None)
                if self._running == 0 and not self._waiting_count:
                    self._room.set()
                    self._recorder.set()
                continue
            self._handler_returned(token, ctx, outcome, when, ran_ms)

    def _call_plain(self, handler: Callable[..., Any], ctx: AsyncContext | Context) -> object:
        """Run a plain handler, on a handler thread, inside its attempt's span."""
        began = self._clock.now_ms()
        # The attempt's span is current on this handler thread while the handler runs.
        with self.tracing.attempt(ctx.task, self.pid) as span:
            outcome = self._called_plain(handler, ctx, began, span)
            span.ended(outcome, ctx, cancelled=outcome is _CANCELLED)
        return outcome

    def _called_plain(
        self, handler: Callable[..., Any], ctx: AsyncContext | Context, began: int,
        span: AttemptSpan,
    ) -> object:  # fmt: skip
        """Call a plain handler; its exception is its outcome (caught here, so that
        its traceback holds the handler's frames only)."""
        try:
            outcome = handler(ctx.task, ctx)
        except Cancelled:
            return _CANCELLED
        except BaseException as error:  # even SystemExit: the worker lives on
            span.raised(error)
            return handler_raised(self.pid, ctx.task, error, self._clock.now_ms() - began)
        if inspect.isawaitable(outcome):
            if inspect.iscoroutine(outcome):
                outcome.close()  # never awaited: say so, without a warning
            return FailedOutcome(
                "the handler returned an awaitable from a plain function: declare it async def"
            )
        return outcome

    def _handler_returned(
        self, token: Token, ctx: AsyncContext | Context, outcome: object,
        when: int | None = None, ran_ms: int = 0,
    ) -> None:  # fmt: skip
        """On the loop: the handler of ``token`` returned ``outcome`` (at ``when``),
        after running ``ran_ms``."""
        self._running -= 1
        topic = ctx.task.topic
        self._running_of[topic] -= 1
        self._polls = polling.ran(self._polls, topic, ran_ms)  # fetch ahead by run time
        self._handlers.pop(token, None)
        self._contexts.pop(token, None)
        now = self._clock.now_ms() if when is None else when
        if outcome is _CANCELLED:
            if ctx.cancelled:
                # The core has decided why (a fence, a timeout, a stop); make it
                # say so before the handler's non-answer is folded in.
                self._fold()
                self._holdings, cancels = holding.tick(self._holdings, now)
                self._apply_cancels(cancels)
            else:
                outcome = FailedOutcome("the handler was cancelled, and not by the worker")
        if not self._waiting():
            self._first_outcome_ms = now
        self._returns.append((token, outcome, now))  # folded in before recording
        self._returned_topics[token] = topic
        if not self._running_of[topic] and not self._ready_of[topic]:
            self._hinted.add(topic)  # this topic is idle: reserve for it at once
            self._room.set()
        elif polling.refills(
            self._polls, topic, len(self._ready_of[topic]) + self._running_of[topic]
        ):
            self._room.set()  # half a batch is free: refill it now
        if self._running == 0 and not self._waiting_count:
            self._room.set()  # idle: the dispatcher reserves
            self._nudge_recorder()  # and the recorder records (or the next claim)
        elif self._draining or self._waiting() >= self._batch:
            self._nudge_recorder()

    def _waiting(self) -> int:
        """Outcomes waiting to be recorded (decided, or returned and not yet folded)."""
        return len(self._outcomes) + len(self._returns)

    def _fold(self) -> None:
        """Fold the queued handler starts and returns into the core, in order."""
        with self._lock:
            self._fold_locked()

    def _fold_locked(self) -> None:
        if not self._returns:
            if self._starts:
                self._holdings = holding.started_many(self._holdings, self._starts)
                self._starts = []
            return
        starts, returns, self._starts, self._returns = self._starts, self._returns, [], []
        topics, self._returned_topics = self._returned_topics, {}
        self._holdings, verdicts = holding.ran(self._holdings, starts, returns)
        for verdict in verdicts:
            match verdict:
                case Finish(task_id=task_id, event=event):
                    self._outcomes.append((task_id, event.attempt))
                case Discarded():
                    self._count_discarded(verdict, topics[verdict.lease])

    def _decided(self, token: Token) -> None:
        """An outcome for ``token`` waits to be recorded: queue it."""
        if not self._waiting():
            self._first_outcome_ms = self._clock.now_ms()
        self._outcomes.append(token)
        if self._draining or self._waiting() >= self._batch:
            self._nudge_recorder()

    def _nudge_recorder(self) -> None:
        """Outcomes are due: the recorder records them, or (a store that takes them
        with a claim, while not draining) the dispatcher, with its next claim."""
        if self._fusing and not self._draining:
            self._room.set()
        else:
            self._recorder.set()

    # -- recording -------------------------------------------------------------------

    async def _record_loop(self) -> None:
        """Record outcomes in batches; while draining, at once."""
        while True:
            await _wait(self._recorder, 10 if self._draining else self._linger_ms)
            try:
                # The claims carry the outcomes: record those that waited linger_ms.
                patient = self._fusing and not self._draining
                await self._flush(force=self._draining, patient=patient)
            except Exception:  # the recorder must not die
                log.exception("worker %s: recording outcomes failed", self.pid)
                await asyncio.sleep(0.1)

    async def _flush(self, *, force: bool = False, patient: bool = False) -> None:
        """Record decided outcomes in one call (when enough wait, or they waited;
        ``patient``: only once they waited ``linger_ms``)."""
        recording = self._take_recording(force=force, patient=patient)
        if recording is None:
            return
        self._recording += 1
        try:
            try:
                if self._writer is None:
                    results = await self._store.finish_many(list(recording.finishes))
                else:
                    async with self._writer:
                        results = await self._store.finish_many(list(recording.finishes))
            except RetryableError as error:
                self._note_store_error("record outcomes", error)
                self._put_back(recording)
                failures = self._errors.streak("record outcomes")
                await asyncio.sleep(self._poll.delay_ms(min(failures, 30), self._rand()) / 1000)
                return
        finally:
            self._recording -= 1
            self._settled.set()
        self._errors.succeeded("record outcomes")
        self._settle(recording, results)

    async def _claim_with(
        self, recording: Recording, store: AsyncReservesAndFinishes, topic: str, limit: int
    ) -> tuple[list[Task], list[Result[Task, SokkaError]]]:
        """Reserve on ``store`` with ``recording``'s outcomes (one call)."""
        finishes = list(recording.finishes)
        if self._writer is None:
            return await store.reserve_and_finish(topic, self.pid, limit, finishes)
        async with self._writer:
            return await store.reserve_and_finish(topic, self.pid, limit, finishes)

    def _take_recording(self, *, force: bool, patient: bool = False) -> Recording | None:
        """``WorkerCore._take_outcomes``, on the loop."""
        return self._take_outcomes(self._waiting(), self._fold, force, patient)

    # -- keepalive, timeouts, the self-fence -------------------------------------------

    async def _schedule(self) -> None:
        """Tick and send keepalives whenever the core says, or an event wakes it."""
        while True:
            try:
                wait_ms = self._schedule_once()
            except Exception:  # the scheduler must not die
                log.exception("worker %s: scheduler cycle failed", self.pid)
                wait_ms = 50
            await _wait(self._timer, wait_ms)

    def _schedule_once(self) -> int:
        now = self._clock.now_ms()
        self._fold()
        self._holdings, cancels = holding.tick(self._holdings, now)
        self._apply_cancels(cancels)
        in_flight = self._keepalive is not None and not self._keepalive.done()
        if not in_flight:
            self._holdings, command = holding.due(self._holdings, now)
            if command is not None:
                loop = self._loop
                assert loop is not None
                self._keepalive = loop.create_task(self._extend(command), name="sokka-keepalive")
                in_flight = True
        # One keepalive at a time (as the threaded worker's one keepalive thread):
        # while it is out, only tick's deadlines are a reason to wake.
        wakeup = holding.next_wakeup(self._holdings, keepalives=not in_flight)
        if wakeup is None:
            return _SCHEDULER_CAP_MS
        return min(_SCHEDULER_CAP_MS, max(1, wakeup - now))

    async def _extend(self, command: ExtendLeases) -> None:
        try:
            for start in range(0, len(command.leases), MAX_BATCH):
                chunk = replace(command, leases=command.leases[start : start + MAX_BATCH])
                try:
                    results = await self._store.extend_leases(self.pid, list(chunk.leases))
                except RetryableError as error:
                    self._note_store_error("keepalive", error)
                    continue  # the core has set a retry
                self._errors.succeeded("keepalive")
                self._fold()  # a refusal for a lease whose handler returned is no loss
                self._count_keepalive(chunk, results)
                self._holdings, cancels = holding.acknowledged(self._holdings, chunk, results)
                self._apply_cancels(cancels)
        except Exception:  # a bug or a foreign error: the core's retry stands
            log.exception("worker %s: keepalive failed", self.pid)
        finally:
            self._timer.set()  # the next keepalive's time moved

    def _apply_cancels(self, cancels: Sequence[CancelHandler]) -> None:
        for cancel in cancels:
            self._count_cancel(cancel)
            if cancel.why is Why.CANCELLED:
                log_cancelled(self.pid, cancel.lease[0], f"handler cancelled: {cancel.reason}")
            elif cancel.why.loses_lease:
                self._log_lost(cancel.lease, cancel.reason, cancel.topic)
            if cancel.discarded and cancel.lease in self._outcomes:
                self._outcomes.remove(cancel.lease)
            if cancel.decided:
                self._decided(cancel.lease)
            ctx = self._contexts.get(cancel.lease)
            if ctx is not None:
                ctx._set_cancelled(cancel.reason)
            task = self._handlers.get(cancel.lease)
            if task is not None:  # a runner's: only coroutine handlers have one
                task.cancel(cancel.reason)

    # -- graceful stop ---------------------------------------------------------------

    async def _drain(self) -> None:
        """Let in-flight handlers finish within the grace period, then release the rest.

        The core releases what has not started at once and, when the grace
        period is over, what still runs (the scheduler's ``tick``); the
        recorder records those outcomes until no lease is left.
        """
        self._draining = True
        with self._lock:  # no handler thread starts one meanwhile: they see _stopping
            self._fold_locked()  # a handler that started is not released as waiting
            self._holdings, released = holding.stopping(self._holdings, self._clock.now_ms())
        for ready in self._ready_of.values():
            for token in ready:
                self._contexts.pop(token, None)
            ready.clear()
        self._waiting_count = 0
        for topic, handed_queue in self._handed_of.items():
            while True:  # handed to the handler threads, not started: released too
                try:
                    handed = handed_queue.get_nowait()
                except queue.Empty:
                    break
                if handed is not None:
                    self._running -= 1
                    self._running_of[topic] -= 1
                    self._contexts.pop(handed, None)
        for token in released:
            self._decided(token)
        self._timer.set()  # the end of the grace period is a new wake-up
        self._recorder.set()
        while self._holdings or self._outcomes or self._returns or self._recording:
            await _wait(self._settled, 10)
