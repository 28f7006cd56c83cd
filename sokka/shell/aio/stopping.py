"""Stopping a loop's runner from any thread: ``call_on_loop`` and ``LoopStop``.

A runner on an event loop (the supervisor, the scheduler, the worker) may be
asked to stop from the loop itself, from a signal handler on the loop, or
from another thread; what wakes it must then run on its loop, through
``call_soon_threadsafe`` when the caller is elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LoopStop", "call_on_loop"]


def call_on_loop(loop: asyncio.AbstractEventLoop | None, callback: Callable[[], object]) -> None:
    """Run ``callback`` on ``loop``: at once when called on it, else scheduled
    there from this thread. Nothing when there is no loop yet, or it is closed
    (a runner that has not started, or has ended, has nothing to wake)."""
    if loop is None or loop.is_closed():
        return
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if current is loop:
        callback()
    else:
        loop.call_soon_threadsafe(callback)


class LoopStop:
    """A stop any thread may ask for, and the runner's sleeps that it ends.

    The runner calls ``bind()`` on its loop when it starts, checks ``asked``
    between rounds and sleeps with ``sleep(seconds)``; ``ask()`` sets
    ``asked`` and ends a sleep in progress. Asked before the runner starts,
    the stop holds: its first check returns.
    """

    def __init__(self) -> None:
        self.asked = False
        self._wake = asyncio.Event()  # bound to the loop on first wait
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        """The runner's loop is the running one (call from the runner)."""
        self._loop = asyncio.get_running_loop()

    def reset(self) -> None:
        """Not asked any more (a runner started again), with a fresh event."""
        self.asked = False
        self._wake = asyncio.Event()

    def ask(self) -> None:
        """Ask the runner to stop; safe from any thread."""
        self.asked = True
        call_on_loop(self._loop, self._wake.set)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` on the loop, or less if a stop is asked (none if it was)."""
        if self.asked:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
