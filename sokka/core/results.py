"""A task's result as its reader sees it, and how often a waiting reader looks.

``ok(result)`` keeps a JSON value on the terminated task (``Task.result``).
Whoever waits for it reads the task until it has finished: ``result_of``
says what a read means (the result, the task's failure, or "not yet"), and
``next_poll_ms`` how long to wait before the next read. The shell reads and
sleeps (``sokka.shell.results``); the decisions are here, pure.
"""

from __future__ import annotations

from typing import Any, Final

from returns.result import Failure, Result, Success

from sokka.core.backoff import Backoff, Jitter
from sokka.core.errors import NotFinished, TaskFailed
from sokka.core.task import Status, Task

__all__ = ["RESULT_POLL", "next_poll_ms", "result_of"]

#: Reads of a task being waited for: soon at first (most tasks are short), then
#: every second at most, so many waiting readers cost a store little.
RESULT_POLL: Final = Backoff(base_ms=20, cap_ms=1_000, jitter=Jitter.EQUAL)


def result_of(task: Task) -> Result[Any, TaskFailed | NotFinished]:
    """The result of ``task`` if it terminated (``None`` when it kept none), its
    failure if it failed, ``NotFinished`` while it may still run.

    >>> from sokka.core.task import TaskSpec
    >>> from sokka.core.transitions import Reserve, Terminate, apply
    >>> task = TaskSpec(topic="q").to_task("t1", 0)
    >>> result_of(task).failure()
    NotFinished("task 't1' has not finished yet (it is starting)")
    >>> running = apply(task, Reserve(pid="w1"), 1).unwrap()
    >>> done = apply(running, Terminate(pid="w1", attempt=1, result={"n": 2}), 2).unwrap()
    >>> result_of(done).unwrap()
    {'n': 2}
    """
    match task.status:
        case Status.TERMINATED:
            return Success(task.result)
        case Status.FAILED:
            return Failure(TaskFailed(task.task_id, task.error or "failed"))
        case _:
            return Failure(NotFinished(task.task_id, task.status.value))


def next_poll_ms(polls: int, rand: float, now_ms: int, deadline_ms: int) -> int | None:
    """How long a reader waiting until ``deadline_ms`` sleeps after its
    ``polls``-th read (from 0) found the task unfinished at ``now_ms``: the
    backoff's delay (``RESULT_POLL`` with the random draw ``rand``), cut short so
    that the last read falls on the deadline; ``None`` once the deadline has
    passed (stop waiting).

    >>> [next_poll_ms(n, 0.0, 0, 10_000) for n in (0, 1, 5, 9)]
    [10, 20, 320, 500]
    >>> next_poll_ms(9, 0.0, 9_800, 10_000), next_poll_ms(0, 0.0, 10_000, 10_000)
    (200, None)
    """
    if now_ms >= deadline_ms:
        return None
    return max(1, min(RESULT_POLL.delay_ms(polls, rand), deadline_ms - now_ms))
