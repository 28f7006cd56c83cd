"""Durations as people write them (``500ms``, ``30s``, ``5m``) and as sokka keeps
them (an ``int`` of milliseconds).

The command line's options and ``sokka.App``'s arguments read durations the
same way, through this module: one rule for what ``1.5m`` means.
"""

from __future__ import annotations

import re
from typing import Final

from sokka.core.errors import ValidationError
from sokka.core.task import require_at_most_max_int, shown

__all__ = ["duration_ms", "parse_duration"]

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS: Final = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str, field: str = "duration", *, zero: bool = False) -> int:
    """Milliseconds in ``text`` (``500ms``, ``30s``, ``1.5s``, ``5m``, ``1h``, ``7d``).

    >>> parse_duration("30s"), parse_duration("500ms"), parse_duration("1.5m")
    (30000, 500, 90000)
    >>> parse_duration("30")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: duration: '30' has no unit: write 500ms, 30s, 5m or 1h
    """
    match = _DURATION.match(text)
    if match is None:
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
            raise ValidationError(field, f"{text!r} has no unit: write 500ms, 30s, 5m or 1h")
        raise ValidationError(field, f"{text!r} is not a duration like 500ms, 30s, 5m or 1h")
    value = round(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if value <= 0 and not (zero and value == 0):
        raise ValidationError(field, f"{text!r} must be longer than 0 ms")
    return require_at_most_max_int(field, value)


def duration_ms(value: object, field: str, *, zero: bool = False) -> int:
    """A duration given as an ``int`` of milliseconds or a string like ``"30s"``.

    Positive, or zero too (``0``, ``"0s"``, ``"0ms"``) when ``zero`` is true; a
    ``ValidationError`` naming ``field`` otherwise.

    >>> duration_ms("5m", "timeout"), duration_ms(250, "lease"), duration_ms(0, "delay", zero=True)
    (300000, 250, 0)
    >>> duration_ms("0s", "delay", zero=True)
    0
    >>> duration_ms(-1, "lease")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: lease: must be a positive number of milliseconds (got -1)
    """
    if isinstance(value, str):
        return parse_duration(value, field, zero=zero)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            field,
            "must be an int of milliseconds or a string like 500ms, 30s, 5m or 1h "
            f"(got {type(value).__name__})",
        )
    if value < 0 or (value == 0 and not zero):
        least = "zero or more" if zero else "a positive number of"
        raise ValidationError(field, f"must be {least} milliseconds (got {shown(value)})")
    return require_at_most_max_int(field, value)
