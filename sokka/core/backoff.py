"""Retry and polling schedules as pure functions of ``(attempt, rand)``.

The caller draws ``rand`` uniformly from ``[0, 1)`` and passes it in, so a
schedule is deterministic for a given draw: tests and simulations replay it
exactly, and the core stays free of randomness.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sokka.core.errors import ValidationError
from sokka.core.task import require_positive_ms

__all__ = ["Backoff", "Jitter"]

# 2**62 ms is far beyond any cap; limiting the exponent keeps the arithmetic small.
_MAX_EXPONENT = 62


class Jitter(enum.StrEnum):
    """How randomness spreads the delays of many clients apart."""

    #: The exact exponential delay (for tests; herds of clients stay in step).
    NONE = "none"
    #: Uniform in ``[0, delay)``: spreads clients the most.
    FULL = "full"
    #: Uniform in ``[delay/2, delay)``: never much shorter than planned.
    EQUAL = "equal"


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff ``min(cap_ms, base_ms * factor**attempt)`` with jitter.

    >>> b = Backoff(base_ms=100, cap_ms=5_000, jitter=Jitter.NONE)
    >>> [b.delay_ms(n, 0.5) for n in range(0, 8)]
    [100, 200, 400, 800, 1600, 3200, 5000, 5000]
    >>> Backoff(base_ms=100, cap_ms=5_000).delay_ms(3, 0.5)   # full jitter
    400
    >>> Backoff(base_ms=100, cap_ms=5_000, jitter=Jitter.EQUAL).delay_ms(3, 0.5)
    600
    """

    base_ms: int
    cap_ms: int
    factor: int = 2
    jitter: Jitter = Jitter.FULL

    def __post_init__(self) -> None:
        require_positive_ms("base_ms", self.base_ms)
        require_positive_ms("cap_ms", self.cap_ms)
        if self.cap_ms < self.base_ms:
            raise ValidationError("cap_ms", f"must be at least base_ms ({self.base_ms})")
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ValidationError("factor", "must be an integer of at least 1")
        Jitter(self.jitter)

    def ceiling_ms(self, attempt: int) -> int:
        """The un-jittered delay before retry number ``attempt`` (0-based)."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise ValidationError("attempt", f"must be a non-negative integer (got {attempt!r})")
        growth: int = pow(self.factor, min(attempt, _MAX_EXPONENT))
        return min(self.cap_ms, self.base_ms * growth)

    def delay_ms(self, attempt: int, rand: float) -> int:
        """The delay before retry number ``attempt`` for the random draw ``rand``."""
        if not 0.0 <= rand < 1.0:
            raise ValidationError("rand", f"must be in [0, 1) (got {rand!r})")
        ceiling = self.ceiling_ms(attempt)
        match self.jitter:
            case Jitter.NONE:
                return ceiling
            case Jitter.FULL:
                return int(ceiling * rand)
            case Jitter.EQUAL:
                half = ceiling / 2
                return int(half + half * rand)
