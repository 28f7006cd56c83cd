"""Reading a task's result, waiting for it if asked: ``App.result``'s loop.

The decisions are the core's (``sokka.core.results``: what a read means, how
long to sleep before the next); this module reads the store, keeps time on a
monotonic clock, sleeps, and raises what the core decided.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from returns.result import Failure, Success

from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.store import TaskStore
from sokka.core.durations import duration_ms
from sokka.core.errors import NotFinished, ResultTimeout, RetryableError
from sokka.core.results import next_poll_ms, result_of
from sokka.core.task import Task, require_name
from sokka.shell.clock import Clock, MonotonicClock

__all__ = ["async_wait_for_result", "require_wait", "wait_for_result"]


def require_wait(wait: object) -> int | None:
    """``wait`` as milliseconds: None (do not wait), an int of ms, or ``"30s"``.

    >>> require_wait("30s"), require_wait(None), require_wait(0)
    (30000, None, 0)
    """
    return None if wait is None else duration_ms(wait, "wait", zero=True)


def _now(task: Task) -> Any:
    """The result of ``task`` as it is: its error raised if it has none."""
    match result_of(task):
        case Success(value):
            return value
        case Failure(error):
            raise error
    raise AssertionError("unreachable")  # pragma: no cover


class _Waiting:
    """One reader's wait: the deadline, the polls so far, the last status seen."""

    def __init__(self, task_id: str, wait_ms: int, clock: Clock) -> None:
        self.task_id = task_id
        self.wait_ms = wait_ms
        self.clock = clock
        self.deadline_ms = clock.now_ms() + wait_ms
        self.polls = 0
        self.status = "unknown"

    def read(self, task: Task) -> tuple[bool, Any]:
        """(True, result) when the task finished well; raises ``TaskFailed`` when it
        failed; (False, None) while it has not finished."""
        match result_of(task):
            case Success(value):
                return True, value
            case Failure(NotFinished() as pending):
                self.status = pending.status
                return False, None
            case Failure(error):
                raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def rode_out(self, error: RetryableError) -> tuple[bool, Any]:
        """A read failed with ``error`` (a busy or unreachable store): ride it out,
        (False, None), until the wait is over; then raise it."""
        if self.clock.now_ms() >= self.deadline_ms:
            raise error
        return False, None

    def pause_ms(self, rand: float) -> int:
        """How long to sleep before the next read; ``ResultTimeout`` once the wait is over."""
        pause = next_poll_ms(self.polls, rand, self.clock.now_ms(), self.deadline_ms)
        if pause is None:
            raise ResultTimeout(self.task_id, self.status, self.wait_ms)
        self.polls += 1
        return pause


def wait_for_result(
    store: TaskStore,
    task_id: str,
    wait: int | str | None = None,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
) -> Any:
    """The result of task ``task_id`` (``App.result``; see its contract).

    ``clock``, ``sleep`` (seconds) and ``rand`` are the shell's: a test passes
    a ``ManualClock`` and a ``sleep`` that advances it.
    """
    require_name("task_id", task_id)
    wait_ms = require_wait(wait)
    if wait_ms is None:
        return _now(store.get_task(task_id))
    waiting = _Waiting(task_id, wait_ms, clock or MonotonicClock())
    while True:
        try:
            done, value = waiting.read(store.get_task(task_id))
        except RetryableError as error:
            done, value = waiting.rode_out(error)
        if done:
            return value
        sleep(waiting.pause_ms(rand()) / 1000)


async def async_wait_for_result(
    store: AsyncTaskStore,
    task_id: str,
    wait: int | str | None = None,
    *,
    clock: Clock | None = None,
    rand: Callable[[], float] = random.random,
) -> Any:
    """``wait_for_result`` for an ``AsyncTaskStore``, sleeping with ``asyncio.sleep``."""
    require_name("task_id", task_id)
    wait_ms = require_wait(wait)
    if wait_ms is None:
        return _now(await store.get_task(task_id))
    waiting = _Waiting(task_id, wait_ms, clock or MonotonicClock())
    while True:
        try:
            done, value = waiting.read(await store.get_task(task_id))
        except RetryableError as error:
            done, value = waiting.rode_out(error)
        if done:
            return value
        await asyncio.sleep(waiting.pause_ms(rand()) / 1000)
