"""Log a failure that repeats once, then in summaries: a store that is down for
ten minutes must not write thousands of identical warnings.

The first failure of a call (``"reserve"``, ``"keepalive"``, ...) is logged at
WARNING with its error. Repeats are counted and summarised at most once per
``every_ms``; an error of another kind is logged at once. When the call works
again, one INFO line says after how many failures and how long.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sokka.shell.clock import Clock, MonotonicClock

__all__ = ["RepeatedErrors"]

#: How often a failure that keeps repeating is summarised.
SUMMARY_EVERY_MS = 30_000


@dataclass
class _Streak:
    first_ms: int  #: the first failure of the streak
    logged_ms: int  #: the last line logged for it
    kind: str  #: the error type of the last line logged
    failures: int = 1  #: in the whole streak
    unlogged: int = 0  #: since the last line
    last: str = ""  #: the last error, as text


class RepeatedErrors:
    """Failures of named calls, logged without flooding (thread-safe).

    >>> from sokka.shell.clock import ManualClock
    >>> clock = ManualClock()
    >>> errors = RepeatedErrors(logging.getLogger("doc"), "worker w1", clock)
    >>> for _ in range(3):
    ...     errors.failed("reserve", ConnectionError("refused"))
    >>> errors.streak("reserve")
    3
    >>> errors.succeeded("reserve")
    >>> errors.streak("reserve")
    0
    """

    def __init__(
        self,
        logger: logging.Logger,
        who: str,
        clock: Clock | None = None,
        *,
        every_ms: int = SUMMARY_EVERY_MS,
    ) -> None:
        self._log = logger
        self._who = who
        self._clock = clock or MonotonicClock()
        self._every_ms = every_ms
        self._streaks: dict[str, _Streak] = {}
        self._lock = threading.Lock()

    def streak(self, call: str) -> int:
        """How many times in a row ``call`` has failed (0: it last worked)."""
        with self._lock:
            streak = self._streaks.get(call)
            return 0 if streak is None else streak.failures

    def failed(self, call: str, error: BaseException) -> None:
        now = self._clock.now_ms()
        kind, text = type(error).__name__, str(error)
        with self._lock:
            streak = self._streaks.get(call)
            if streak is None:
                self._streaks[call] = _Streak(now, now, kind, last=text)
                first = True
            else:
                streak.failures += 1
                streak.unlogged += 1
                streak.last = text
                first = False
                if kind == streak.kind and now - streak.logged_ms < self._every_ms:
                    return
                unlogged, seconds = streak.unlogged, (now - streak.first_ms) / 1000
                streak.logged_ms, streak.kind, streak.unlogged = now, kind, 0
        if first:
            self._log.warning("%s: %s failed, will retry: %s", self._who, call, text)
        else:
            self._log.warning(
                "%s: %s has failed %d more times (%.0f s since it last worked), "
                "still retrying; the last error: %s",
                self._who, call, unlogged, seconds, text,
            )  # fmt: skip

    def succeeded(self, call: str) -> None:
        if not self._streaks:  # the common case, without the lock
            return
        now = self._clock.now_ms()
        with self._lock:
            streak = self._streaks.pop(call, None)
        if streak is not None:
            self._log.info(
                "%s: %s works again, after %d failures over %.1f s",
                self._who, call, streak.failures, (now - streak.first_ms) / 1000,
            )  # fmt: skip
