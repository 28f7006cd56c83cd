"""Validation of what callers send: every error names the field and the rule."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sokka.core.backoff import Backoff, Jitter
from sokka.core.errors import ValidationError
from sokka.core.task import (
    MAX_DATA_BYTES,
    MAX_DATA_DEPTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    Status,
    TaskSpec,
)


def rejects(field: str, **spec: object) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        TaskSpec(**spec)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")
    return raised.value


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("field", "spec", "rule"),
    [
        ("topic", {"topic": ""}, "must not be empty"),
        ("topic", {"topic": "x" * (MAX_NAME_LENGTH + 1)}, "at most 128"),
        ("topic", {"topic": 7}, "must be a string"),
        ("topic", {"topic": "a\nb"}, "control characters"),
        ("sub_topic", {"topic": "q", "sub_topic": ""}, "must not be empty"),
        ("task_id", {"topic": "q", "task_id": ""}, "must not be empty"),
        ("task_group_id", {"topic": "q", "task_group_id": "x" * 200}, "at most 128"),
        ("description", {"topic": "q", "description": "d" * (MAX_DESCRIPTION_LENGTH + 1)},
         "at most"),
        ("data", {"topic": "q", "data": {1, 2}}, "not a JSON value"),
        ("data", {"topic": "q", "data": {"when": object()}}, "not a JSON value"),
        ("data", {"topic": "q", "data": float("nan")}, "JSON cannot hold"),
        ("data", {"topic": "q", "data": {"x": [float("inf")]}}, "JSON cannot hold"),
        ("data", {"topic": "q", "data": {2: "two"}}, "not a string"),
        ("data", {"topic": "q", "data": "x" * (MAX_DATA_BYTES + 1)}, "at most 262144 bytes"),
        ("data", {"topic": "q", "data": nested(MAX_DATA_DEPTH + 1)}, "nested at most"),
        ("data", {"topic": "q", "data": {"k": "a\x00b"}}, "NUL"),
        ("data", {"topic": "q", "data": {"a\x00": 1}}, "NUL"),
        ("data", {"topic": "q", "data": ["\ud800"]}, "lone surrogate"),
        ("topic", {"topic": "q\ud800"}, "lone surrogate"),
        ("description", {"topic": "q", "description": "x\x00"}, "NUL"),
        ("max_attempts", {"topic": "q", "max_attempts": 0}, "positive"),
        ("max_attempts", {"topic": "q", "max_attempts": 2.5}, "integer"),
        ("lease_time_ms", {"topic": "q", "lease_time_ms": -1}, "positive"),
        ("lease_time_ms", {"topic": "q", "lease_time_ms": True}, "integer"),
        ("timeout_ms", {"topic": "q", "timeout_ms": 0}, "positive"),
    ],
)
def test_bad_specs_name_the_field_and_the_rule(field: str, spec: dict, rule: str) -> None:
    assert rule in rejects(field, **spec).rule


def test_data_at_the_size_limit_is_accepted() -> None:
    # A JSON string of n characters encodes to n + 2 bytes (the quotes).
    spec = TaskSpec(topic="q", data="x" * (MAX_DATA_BYTES - 2))
    assert len(spec.data_json.encode()) == MAX_DATA_BYTES
    assert TaskSpec(topic="q", data=nested(MAX_DATA_DEPTH)).data_json.startswith("[[")


def test_an_error_deep_in_data_names_its_path() -> None:
    error = rejects("data", topic="q", data={"a": [1, {"b": float("nan")}]})
    assert error.rule == "data['a'][1]['b'] is nan, which JSON cannot hold"
    error = rejects("data", topic="q", data={"a": [{"b": {3: 1}}]})
    assert error.rule.startswith("data['a'][0]['b'] has a key 3 that is not a string")


def test_data_over_the_size_limit_is_refused_before_it_is_walked() -> None:
    """The walk stops once the data is certain to pass the limit: data far over it
    costs the limit, not its size (the key 2 below is never reached; it used to be
    reported first, after a walk of the whole value)."""
    error = rejects("data", topic="q", data={"big": "x" * MAX_DATA_BYTES, 2: "two"})
    assert error.rule == f"must be at most {MAX_DATA_BYTES} bytes as JSON (got more than 262144)"


def test_data_over_the_limit_only_once_encoded_is_refused_with_its_size() -> None:
    """Escapes count: a tab takes 2 bytes as JSON, so these 131,100 tabs take a little
    more than the limit (262,208 bytes), though the walk's lower bound is half that."""
    data = ["\t" * 50_000, "\t" * 50_000, "\t" * 31_100]
    size = len(json.dumps(data, separators=(",", ":")))
    assert size > MAX_DATA_BYTES
    assert rejects("data", topic="q", data=data).rule.endswith(f"as JSON (got {size})")


def _long_paths(key_length: int) -> object:
    """60 nested keys of ``key_length`` characters above 12,000 leaves."""
    value: object = {f"l{i}": 0 for i in range(12_000)}
    for level in range(60):
        value = {chr(ord("a") + level % 26) * key_length: value}
    return value


def _best_of(runs: int, data: object) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        TaskSpec(topic="q", data=data)
        best = min(best, time.perf_counter() - started)
    return best


def test_checking_data_costs_its_size_not_leaves_times_path_length() -> None:
    """Paths 16 times as long (120 KB of keys) above the same 12,000 leaves: the
    check used to build the path of every value it walked, 8 times the cost here
    (6 ms against 48 ms); a path is now built for an error only (1.4 times)."""
    short = _best_of(5, _long_paths(125))
    long = _best_of(5, _long_paths(2_000))
    assert long < 3 * short, (short, long)


# Any Unicode text a store can hold (no NUL, no lone surrogates: see core/task.py).
storable_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(storable_text, inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_round_trips_through_a_task(value: object) -> None:
    task = TaskSpec(topic="q", data=value).to_task("t1", now_ms=5)
    assert task.data == json.loads(json.dumps(value))
    # Every read is a fresh copy: mutating it cannot change the task.
    copy = task.data
    if isinstance(copy, dict | list):
        copy.clear()
        assert task.data == json.loads(json.dumps(value))


def test_a_new_task_starts_with_its_group_defaulting_to_its_id() -> None:
    task = TaskSpec(topic="q", data=[1]).to_task("t1", now_ms=5)
    assert (task.task_group_id, task.status, task.record_ver, task.attempt) == (
        "t1", Status.STARTING, 0, 0
    )
    assert (task.created_at, task.updated_at) == (5, 5)


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValidationError, match="status: must be one of"):
        Status.parse("finished")
    with pytest.raises(ValidationError):
        Status.parse(3)
    assert Status.parse("snoozed") is Status.SNOOZED


# -- backoff --------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    base=st.integers(min_value=1, max_value=10_000),
    extra=st.integers(min_value=0, max_value=10**6),
    jitter=st.sampled_from(list(Jitter)),
)
def test_backoff_stays_within_its_ceiling(
    attempt: int, rand: float, base: int, extra: int, jitter: Jitter
) -> None:
    backoff = Backoff(base_ms=base, cap_ms=base + extra, jitter=jitter)
    delay = backoff.delay_ms(attempt, rand)
    ceiling = backoff.ceiling_ms(attempt)
    assert 0 <= delay <= ceiling <= base + extra
    if jitter is Jitter.EQUAL:
        assert delay >= ceiling // 2
    if jitter is Jitter.NONE:
        assert delay == ceiling


@given(attempt=st.integers(min_value=0, max_value=100))
def test_backoff_ceiling_never_shrinks(attempt: int) -> None:
    backoff = Backoff(base_ms=10, cap_ms=60_000)
    assert backoff.ceiling_ms(attempt) <= backoff.ceiling_ms(attempt + 1)


def test_backoff_is_a_pure_function_of_attempt_and_rand() -> None:
    backoff = Backoff(base_ms=100, cap_ms=10_000)
    assert backoff.delay_ms(4, 0.25) == backoff.delay_ms(4, 0.25) == 400


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Backoff(base_ms=0, cap_ms=10), "base_ms"),
        (lambda: Backoff(base_ms=10, cap_ms=5), "cap_ms"),
        (lambda: Backoff(base_ms=10, cap_ms=50).delay_ms(-1, 0.5), "attempt"),
        (lambda: Backoff(base_ms=10, cap_ms=50).delay_ms(1, 1.0), "rand"),
        (lambda: Backoff(base_ms=10, cap_ms=50, factor=0), "factor"),
    ],
)
def test_bad_backoff_input_names_the_field(make, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as raised:
        make()
    assert raised.value.field == field
