"""Clocks for the shell: the real monotonic one, and a manual one for tests.

Lease decisions only ever use one process's monotonic clock. Wall clocks
(``time.time``) jump when NTP corrects them or an operator sets them; a
monotonic clock does not, which is the whole point.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from sokka.core.errors import ValidationError

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


class Clock(Protocol):
    """A source of milliseconds that never goes backwards."""

    def now_ms(self) -> int: ...


class MonotonicClock:
    """``time.monotonic_ns`` in milliseconds: immune to wall-clock changes."""

    def now_ms(self) -> int:
        """Milliseconds since an arbitrary start; never smaller than an earlier answer."""
        return time.monotonic_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to (thread-safe).

    >>> clock = ManualClock(start_ms=1_000)
    >>> clock.advance(250)
    1250
    >>> clock.now_ms()
    1250
    """

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """The time the clock was set or advanced to, in milliseconds."""
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` (never back) and return the new time."""
        if ms < 0:
            raise ValidationError("ms", f"a monotonic clock cannot go back (got {ms})")
        with self._lock:
            self._now += ms
            return self._now

    def __call__(self) -> int:
        """So a ``ManualClock`` can also serve as a store's timestamp function."""
        return self.now_ms()
