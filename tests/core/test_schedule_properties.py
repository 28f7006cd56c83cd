"""The periodic-schedule planner (sokka.core.schedule), stated as properties.

Slots here are ``Every(period, offset)`` (plain arithmetic) so the tests
know every slot; ``tests/shell/test_scheduler.py`` checks the cron-backed
``CronSlots`` against a brute-force walk and runs the planner on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sokka.core.errors import ValidationError
from sokka.core.schedule import (
    MAX_SCHEDULE_NAME_LENGTH,
    CatchUp,
    Every,
    next_wakeup,
    plan,
    retry_from,
    slot_task_id,
)

DAY_MS = 86_400_000
YEAR_2026_MS = 1_767_225_600_000

periods = st.integers(min_value=1, max_value=10 * 60_000)
offsets = st.integers(min_value=0, max_value=60_000)
instants = st.integers(min_value=YEAR_2026_MS, max_value=YEAR_2026_MS + DAY_MS)
catch_ups = st.builds(
    CatchUp,
    slots=st.integers(min_value=1, max_value=20),
    within_ms=st.none() | st.integers(min_value=1, max_value=DAY_MS),
)
names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    min_size=1,
    max_size=MAX_SCHEDULE_NAME_LENGTH,
)


def slots_between(every: Every, after: int, until: int) -> list[int]:
    """Every slot s with after < s <= until, by brute force."""
    found = []
    slot = every.next_after(after)
    while slot is not None and slot <= until:
        found.append(slot)
        slot = every.next_after(slot)
    return found


@given(names, st.integers(min_value=0, max_value=253_402_300_799_999))
def test_each_slots_task_id_is_the_same_whoever_computes_it(name, slot):
    # Two schedulers are two calls: nothing but (name, slot) goes in.
    assert slot_task_id(name, slot) == slot_task_id(str(name), int(slot))
    assert len(slot_task_id(name, slot)) <= 128


@given(names, names, instants, instants)
def test_different_slots_or_names_get_different_ids(name_a, name_b, slot_a, slot_b):
    same = slot_task_id(name_a, slot_a) == slot_task_id(name_b, slot_b)
    assert same == ((name_a, slot_a) == (name_b, slot_b))


@given(periods, offsets, catch_ups, st.none() | instants, instants)
def test_catch_up_never_creates_more_than_n_nor_anything_outside_the_window(
    period, offset, catch_up, last, now
):
    p = plan(Every(period, offset), catch_up, last, now)
    assert len(p.due) <= catch_up.slots
    assert list(p.due) == sorted(set(p.due))
    for slot in p.due:
        assert slot <= now
        assert last is None or slot > last
        assert catch_up.within_ms is None or slot >= now - catch_up.within_ms


@given(periods, offsets, catch_ups, instants, st.integers(min_value=-5, max_value=300))
def test_every_slot_since_the_last_plan_is_either_due_or_reported_skipped(
    period, offset, catch_up, now, periods_back
):
    every = Every(period, offset)
    last = now - periods_back * period
    p = plan(every, catch_up, last, now)
    expected = slots_between(every, last, now)
    skipped = [s for s in expected if s not in p.due]
    # The due slots are the newest ones; everything older is in the skipped range.
    assert list(p.due) == expected[len(expected) - len(p.due) :]
    if skipped:
        assert (p.skipped_from, p.skipped_until) == (skipped[0], skipped[-1])
    else:
        assert (p.skipped_from, p.skipped_until) == (None, None)


@given(periods, offsets, st.lists(st.integers(min_value=0, max_value=5 * 60_000), max_size=30))
def test_a_scheduler_waking_often_enough_skips_no_slot_in_the_window(period, offset, gaps):
    # Woken at least once per slot (a gap of at most one period), with a
    # catch-up of 1, a scheduler creates every slot after its first plan once.
    every = Every(period, offset)
    gaps = [min(g, period) for g in gaps]
    now = YEAR_2026_MS
    first = plan(every, CatchUp(), None, now)
    created = list(first.due)
    last = first.considered_ms
    for gap in gaps:
        now += gap
        p = plan(every, CatchUp(), last, now)
        assert p.skipped_until is None
        created.extend(p.due)
        last = p.considered_ms
    assert created == sorted(set(created))
    assert created[1:] == slots_between(every, YEAR_2026_MS, now)


@given(periods, offsets, catch_ups, st.lists(instants, min_size=1, max_size=20))
def test_a_slot_is_considered_once_even_when_the_wall_clock_steps_back(
    period, offset, catch_up, readings
):
    every = Every(period, offset)
    last = None
    created: list[int] = []
    for now in readings:
        p = plan(every, catch_up, last, now)
        created.extend(p.due)
        last = p.considered_ms
    assert len(created) == len(set(created))


@given(periods, offsets, catch_ups, st.none() | instants, instants)
def test_the_wake_up_is_the_first_slot_after_what_was_considered(
    period, offset, catch_up, last, now
):
    every = Every(period, offset)
    p = plan(every, catch_up, last, now)
    assert p.considered_ms == (now if last is None else max(last, now))
    assert p.wake_ms == every.next_after(p.considered_ms)
    assert p.wake_ms is not None
    assert p.wake_ms > now
    assert next_wakeup([p]) == p.wake_ms


@given(periods, offsets, instants, st.integers(min_value=0, max_value=10))
def test_a_slot_that_failed_is_due_again_on_the_next_plan(period, offset, now, back):
    every = Every(period, offset)
    slot = every.latest_at_or_before(now)
    assert slot is not None
    slot -= back * period
    p = plan(every, CatchUp(slots=back + 1), retry_from(slot), now)
    assert p.due[0] == slot


def test_a_first_plan_takes_only_the_most_recent_slots_and_cannot_say_where_skipping_began():
    p = plan(Every(60_000), CatchUp(slots=2), None, 10 * 60_000 + 5)
    assert p.due == (9 * 60_000, 10 * 60_000)
    assert (p.skipped_from, p.skipped_until) == (None, 8 * 60_000)


def test_the_window_bounds_catch_up_by_age():
    p = plan(Every(60_000), CatchUp(slots=10, within_ms=150_000), 0, 10 * 60_000)
    assert p.due == (8 * 60_000, 9 * 60_000, 10 * 60_000)
    assert (p.skipped_from, p.skipped_until) == (60_000, 7 * 60_000)


def test_a_schedule_that_never_fires_again_asks_for_no_wake_up():
    class Once:
        def next_after(self, ms: int) -> int | None:
            return 1_000 if ms < 1_000 else None

        def latest_at_or_before(self, ms: int) -> int | None:
            return 1_000 if ms >= 1_000 else None

    p = plan(Once(), CatchUp(), None, 5_000)
    assert (p.due, p.wake_ms) == ((1_000,), None)
    assert next_wakeup([p]) is None
    assert plan(Once(), CatchUp(), p.considered_ms, 6_000).due == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slots": 0}, "catch_up: must be an int from 1 to 1000 (got 0)"),
        ({"slots": 1001}, "catch_up: must be an int from 1 to 1000 (got 1001)"),
        ({"slots": True}, "catch_up: must be an int from 1 to 1000"),
        ({"within_ms": 0}, "catch_up_within: must be a positive number of milliseconds (got 0)"),
    ],
)
def test_a_bad_catch_up_names_the_field_and_the_rule(kwargs, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CatchUp(**kwargs)


@pytest.mark.parametrize(
    ("name", "slot", "message"),
    [
        ("", 0, "name: must not be empty"),
        ("x" * (MAX_SCHEDULE_NAME_LENGTH + 1), 0, "name: must be at most 94 characters"),
        ("a\nb", 0, "name: must not contain control characters"),
        ("ok", -1, "slot_ms: must be an int from 0 to"),
    ],
)
def test_a_bad_name_or_slot_names_the_field(name, slot, message):
    with pytest.raises(ValidationError, match=message):
        slot_task_id(name, slot)


@given(st.integers(0, 253_402_300_799_999))
def test_a_slot_is_named_by_its_utc_time_as_the_calendar_gives_it(slot_ms: int) -> None:
    """The core spells a slot's time by arithmetic (it reads no clock and no
    time zone data); it must say what the standard library's UTC calendar says."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=slot_ms)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if slot_ms % 1000:
        stamp += f".{slot_ms % 1000:03d}"
    assert slot_task_id("s", slot_ms) == f"periodic:s:{stamp}Z"
