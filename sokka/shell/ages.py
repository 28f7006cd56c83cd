"""Durations written for people, shared by ``sokka status`` and the dashboard."""

from __future__ import annotations

__all__ = ["format_age"]


def format_age(ms: int | None) -> str:
    """A duration for people: ``-`` for none, then s, m+s, h+m, d+h.

    >>> [format_age(v) for v in (None, 900, 59_000, 61_000, 3_725_000, 90_000_000)]
    ['-', '0s', '59s', '1m01s', '1h02m', '1d01h']
    """
    if ms is None:
        return "-"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
