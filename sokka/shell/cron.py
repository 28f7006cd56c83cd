"""Cron expressions as ``Slots`` for the pure schedule planner, on croniter.

``CronSlots("*/5 * * * *")`` reads a cron line once, at construction, and
refuses a bad one with a ``ValidationError`` naming the cron field at fault
and its rule. Afterwards ``next_after`` and ``latest_at_or_before`` are pure
computations (no clock is read: the instant is the argument), which is what
``sokka.core.schedule.plan`` asks of its ``Slots``.

Syntax (croniter's):

* five fields, ``minute hour day-of-month month day-of-week``;
* or six, with a **seconds field first**: ``second minute hour ...``
  (``*/10 * * * * *``: every ten seconds);
* each field: ``*``, a value, a range ``a-b``, a list ``a,b``, a step
  ``*/n`` or ``a-b/n``; months and days may be names (``JAN``, ``MON``);
* or one of ``@yearly``, ``@monthly``, ``@weekly``, ``@daily``, ``@hourly``.

The time zone (``tz``, an IANA name, ``UTC`` by default) is where the fields
are read: ``0 9 * * *`` with ``tz="Europe/Paris"`` is 09:00 in Paris, summer
and winter. Slots are instants (Unix-epoch milliseconds) whatever the zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from sokka.core.errors import ValidationError

__all__ = ["CronSlots"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Every field of a six-field line, in order; a five-field line has no seconds.
_FIELDS: Final = (
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-6 or SUN-SAT (7 is Sunday too)"),
)
_FORMS: Final = "*, a value, a range a-b, a list a,b, or a step */n or a-b/n"
#: A fixed instant to ask "does this line ever fire?" from, so that the check
#: reads no clock (and gives the same answer every day).
_PROBE: Final = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CronSlots:
    """The slots of a cron line read in time zone ``tz``. See the module docstring.

    >>> every_five = CronSlots("*/5 * * * *")
    >>> every_five.next_after(1_796_162_700_000)  # 2026-12-01T22:05:00Z
    1796163000000
    >>> every_five.latest_at_or_before(1_796_162_999_999)
    1796162700000
    >>> CronSlots("61 * * * *")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: cron: '61 * * * *': the minute field '61' is not valid \
(minute: *, a value, a range a-b, a list a,b, or a step */n or a-b/n, within 0-59)
    """

    expression: str
    tz: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _seconds: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise ValidationError(
                "cron", f"must be a string (got {type(self.expression).__name__})"
            )
        if not isinstance(self.tz, str) or not self.tz:
            raise ValidationError(
                "tz", "must be the name of a time zone, like 'UTC' or 'Europe/Paris'"
            )
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(
                "tz", f"{self.tz!r} is not a known time zone (an IANA name like 'Europe/Paris')"
            ) from None
        object.__setattr__(self, "_zone", zone)
        columns = self.expression.split()
        if not columns:
            raise ValidationError("cron", "must not be empty (five fields: minute hour "
                                  "day-of-month month day-of-week)")  # fmt: skip
        if not columns[0].startswith("@") and len(columns) not in (5, 6):
            raise ValidationError(
                "cron",
                f"{self.expression!r} has {len(columns)} fields: give five (minute hour "
                "day-of-month month day-of-week) or six (a seconds field first)",
            )
        object.__setattr__(self, "_seconds", len(columns) == 6)
        try:
            self._iterator(_PROBE)
        except (CroniterError, ValueError, KeyError, IndexError) as error:
            raise self._diagnosis(columns, error) from None
        if self.next_after(_ms(_PROBE)) is None:
            raise ValidationError("cron", f"{self.expression!r} never fires (no date matches it)")

    def next_after(self, ms: int) -> int | None:
        """The first slot strictly after ``ms`` (``None``: the line never fires again)."""
        # Slots fall on whole seconds: the first after ms is the first after its second.
        start = _instant(ms // 1000 * 1000).astimezone(self._zone)
        try:
            found = self._iterator(start).get_next(datetime)
        except CroniterBadDateError:
            return None
        return _ms(found)

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last slot at or before ``ms`` (``None``: there is none)."""
        # croniter's get_prev is strictly before its start: start one second
        # past ms's second, so a slot at ms's own second counts.
        start = _instant((ms // 1000 + 1) * 1000).astimezone(self._zone)
        try:
            found = self._iterator(start).get_prev(datetime)
        except CroniterBadDateError:
            return None
        return _ms(found)

    def _iterator(self, start: datetime) -> croniter:
        return croniter(self.expression, start, second_at_beginning=self._seconds)

    def _diagnosis(self, columns: list[str], error: Exception) -> ValidationError:
        """The first field that croniter refuses on its own, with its rule."""
        if columns[0].startswith("@"):
            return ValidationError(
                "cron",
                f"{self.expression!r} is not a cron line: the @ forms are @yearly, @monthly, "
                "@weekly, @daily and @hourly",
            )
        fields = _FIELDS if self._seconds else _FIELDS[1:]
        for index, (name, values) in enumerate(fields):
            alone = ["*"] * len(columns)
            alone[index] = columns[index]
            try:
                croniter(" ".join(alone), _PROBE, second_at_beginning=self._seconds)
            except (CroniterError, ValueError, KeyError, IndexError):
                return ValidationError(
                    "cron",
                    f"{self.expression!r}: the {name} field {columns[index]!r} is not valid "
                    f"({name}: {_FORMS}, within {values})",
                )
        return ValidationError("cron", f"{self.expression!r} is not valid: {error}")


def _instant(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)
