"""Periodic tasks: which slots of a schedule are due now, and the id of each slot's task.

A *slot* is one moment a schedule fires (for ``*/5 * * * *``: every fifth
minute), as an ``int`` of Unix-epoch milliseconds. A scheduler calls
``plan`` whenever it wakes, with the last moment it already considered and
the wall-clock time now; ``plan`` answers with the slots whose task to create,
the slots it skips (the catch-up bound) and when to wake next.

Rule 1: at most one task per slot, however many schedulers run. Every
scheduler names a slot's task ``slot_task_id(name, slot)``, a function of the
schedule's name and the slot alone, so whoever computes it gets the same id,
and a store creates a task id once (a second ``create_task`` with that id is
``AlreadyExists`` and changes nothing). Two schedulers whose wall clocks
disagree still agree on every id; the skew only moves *when* the task
appears (the scheduler whose clock is ahead creates it first, early by its
skew).

Rule 2: catch-up is bounded. A scheduler that was down (or a machine that
slept) finds many slots past; it creates at most ``CatchUp.slots`` of them, the
most recent, and none older than ``CatchUp.within_ms`` before now. Older ones
are reported as skipped, never created later.

Pure: the cron expression is evaluated outside the core, by a ``Slots`` value
the shell passes in (``sokka.shell.cron.CronSlots``, on croniter); time is a
parameter; nothing here reads a clock or logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from sokka.core.errors import ValidationError
from sokka.core.task import MAX_NAME_LENGTH, require_name

__all__ = [
    "MAX_SCHEDULE_NAME_LENGTH",
    "CatchUp",
    "Every",
    "Plan",
    "Slots",
    "next_wakeup",
    "plan",
    "require_schedule_name",
    "retry_from",
    "slot_task_id",
]

_ID_PREFIX: Final = "periodic:"
#: The longest slot stamp: ``2026-12-01T22:05:00.250Z``.
_LONGEST_STAMP: Final = 24
#: A schedule's name leaves room in a task id for the prefix, a colon and the stamp.
MAX_SCHEDULE_NAME_LENGTH: Final = MAX_NAME_LENGTH - len(_ID_PREFIX) - 1 - _LONGEST_STAMP
#: Slots are instants from 1970 to the end of year 9999 (what a stamp can spell).
_LAST_MS: Final = 253_402_300_799_999


class Slots(Protocol):
    """A schedule's slots: instants in Unix-epoch milliseconds.

    Implementations are pure functions of their argument (the same answer
    every time, no clock read).
    """

    def next_after(self, ms: int) -> int | None:
        """The first slot strictly after ``ms``; ``None`` if there is none."""
        ...

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last slot at or before ``ms``; ``None`` if there is none."""
        ...


@dataclass(frozen=True, slots=True)
class Every:
    """Slots every ``period_ms`` from ``offset_ms`` (a ``Slots`` without cron, for
    tests, simulations and fixed intervals).

    >>> every = Every(300_000)
    >>> every.next_after(300_000), every.latest_at_or_before(599_999)
    (600000, 300000)
    """

    period_ms: int
    offset_ms: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.period_ms, bool) or not isinstance(self.period_ms, int):
            raise ValidationError("period_ms", "must be an int of milliseconds")
        if self.period_ms <= 0:
            raise ValidationError("period_ms", f"must be positive (got {self.period_ms})")

    def next_after(self, ms: int) -> int | None:
        """The first ``offset_ms + k * period_ms`` strictly after ``ms``."""
        return self.offset_ms + ((ms - self.offset_ms) // self.period_ms + 1) * self.period_ms

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last ``offset_ms + k * period_ms`` at or before ``ms``."""
        return self.offset_ms + ((ms - self.offset_ms) // self.period_ms) * self.period_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUp:
    """How many past slots one ``plan`` may still create.

    ``slots``: at most this many due slots per plan, the most recent (at
    least 1: the slot that just came is one of them). ``within_ms``: none
    older than this before now (``None``: no age limit). A scheduler that
    runs steadily sees one due slot per wake-up; these bounds only bite
    after it was down or asleep.

    >>> CatchUp(slots=0)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: catch_up: must be an int from 1 to 1000 (got 0)
    """

    slots: int = 1
    within_ms: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.slots, bool) or not isinstance(self.slots, int):
            raise ValidationError("catch_up", "must be an int from 1 to 1000")
        if not 1 <= self.slots <= 1000:
            raise ValidationError("catch_up", f"must be an int from 1 to 1000 (got {self.slots})")
        within = self.within_ms
        if within is not None and (
            isinstance(within, bool) or not isinstance(within, int) or within <= 0
        ):
            raise ValidationError(
                "catch_up_within", f"must be a positive number of milliseconds (got {within!r})"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a scheduler does for one schedule when it wakes at ``now_ms``.

    ``due``: the slots whose task to create, oldest first. ``skipped_until``:
    the most recent slot that was due but is left out by the catch-up bound
    (``None``: none was); ``skipped_from``: the first one left out, when the
    scheduler knows where its last plan stopped (``None`` on its first plan,
    where every earlier slot counts as past). ``considered_ms``: pass it as
    ``last_ms`` to the next plan. ``wake_ms``: the next slot, when the
    scheduler must wake (``None``: the schedule never fires again).
    """

    due: tuple[int, ...]
    skipped_from: int | None
    skipped_until: int | None
    considered_ms: int
    wake_ms: int | None


def plan(slots: Slots, catch_up: CatchUp, last_ms: int | None, now_ms: int) -> Plan:
    """The slots due at ``now_ms`` that were not considered by the previous plan.

    A slot ``s`` is due when ``last_ms < s <= now_ms`` (on the first plan,
    ``last_ms`` is ``None``: every slot up to now). Of the due slots, the
    ``catch_up.slots`` most recent that are no older than
    ``catch_up.within_ms`` are returned; the rest are skipped. A wall clock
    that stepped back (``now_ms < last_ms``) makes nothing due again: a slot
    is considered once per scheduler.

    >>> p = plan(Every(1_000), CatchUp(slots=2), last_ms=1_500, now_ms=5_200)
    >>> p.due, p.skipped_from, p.skipped_until, p.considered_ms, p.wake_ms
    ((4000, 5000), 2000, 3000, 5200, 6000)
    """
    considered = now_ms if last_ms is None else max(last_ms, now_ms)
    oldest = None if catch_up.within_ms is None else now_ms - catch_up.within_ms
    due: list[int] = []
    skipped_until = None
    slot = slots.latest_at_or_before(now_ms)
    # Walk back from now: the newest due slots are kept, the first one past a
    # bound is the newest skipped, and every older one is skipped too.
    while slot is not None and (last_ms is None or slot > last_ms):
        if len(due) == catch_up.slots or (oldest is not None and slot < oldest):
            skipped_until = slot
            break
        due.append(slot)
        slot = slots.latest_at_or_before(slot - 1)
    skipped_from = None
    if skipped_until is not None and last_ms is not None:
        skipped_from = slots.next_after(last_ms)
    due.reverse()
    return Plan(
        due=tuple(due),
        skipped_from=skipped_from,
        skipped_until=skipped_until,
        considered_ms=considered,
        wake_ms=slots.next_after(considered),
    )


def retry_from(slot_ms: int) -> int:
    """The ``last_ms`` to plan from when creating ``slot_ms``'s task failed and may
    be retried (the store was unreachable): the slot is due again on the next
    plan, under the same catch-up bound as any other.

    >>> plan(Every(1_000), CatchUp(), last_ms=retry_from(3_000), now_ms=3_400).due
    (3000,)
    """
    return slot_ms - 1


def next_wakeup(plans: Iterable[Plan]) -> int | None:
    """The earliest ``wake_ms`` of ``plans`` (``None``: none will fire again).

    >>> next_wakeup([plan(Every(1_000), CatchUp(), None, 500),
    ...              plan(Every(300), CatchUp(), None, 500)])
    600
    """
    wakes = [p.wake_ms for p in plans if p.wake_ms is not None]
    return min(wakes) if wakes else None


def require_schedule_name(name: object) -> str:
    """Check a schedule's name: a name like a topic's, short enough for its slots' ids.

    >>> require_schedule_name("x" * 95)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: name: must be at most 94 characters (got 95)
    """
    checked = require_name("name", name)
    if len(checked) > MAX_SCHEDULE_NAME_LENGTH:
        raise ValidationError(
            "name", f"must be at most {MAX_SCHEDULE_NAME_LENGTH} characters (got {len(checked)})"
        )
    return checked


def slot_task_id(name: str, slot_ms: int) -> str:
    """The id of the task of schedule ``name``'s slot at ``slot_ms``: the same
    whoever computes it, and different for every other (name, slot).

    The slot is spelled in UTC, whatever the schedule's time zone, so an hour
    that repeats when clocks go back still gives two ids.

    >>> slot_task_id("reports", 1_796_162_700_000)
    'periodic:reports:2026-12-01T22:05:00Z'
    >>> slot_task_id("fast", 1_796_162_700_250)
    'periodic:fast:2026-12-01T22:05:00.250Z'
    """
    require_schedule_name(name)
    if isinstance(slot_ms, bool) or not isinstance(slot_ms, int) or not 0 <= slot_ms <= _LAST_MS:
        raise ValidationError("slot_ms", f"must be an int from 0 to {_LAST_MS} (got {slot_ms!r})")
    stamp = _utc_stamp(slot_ms)
    if slot_ms % 1000:
        stamp += f".{slot_ms % 1000:03d}"
    return f"{_ID_PREFIX}{name}:{stamp}Z"


def _utc_stamp(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of ``ms`` after the Unix epoch, in UTC, by
    arithmetic (the proleptic Gregorian calendar; no datetime, no time zone data).

    >>> _utc_stamp(0), _utc_stamp(951_782_400_000), _utc_stamp(1_796_162_759_999)
    ('1970-01-01T00:00:00', '2000-02-29T00:00:00', '2026-12-01T22:05:59')
    """
    days, seconds = divmod(ms // 1000, 86_400)
    # Days since 1970-01-01 to a civil date, counting in 400-year eras from
    # 0000-03-01 (so the leap day falls last in each year of the count).
    shifted = days + 719_468
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153  # 0 = March
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    hours, rest = divmod(seconds, 3_600)
    return f"{year:04d}-{month:02d}-{day:02d}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
