"""A task's trace context: what the core accepts, and the error naming the rule."""

from __future__ import annotations

import pytest
from hypothesis import given

from sokka.core.errors import ValidationError
from sokka.core.task import MAX_TRACE_CONTEXT_BYTES, TaskSpec, encode_trace_context
from sokka.core.transitions import Reserve, apply
from sokka.testing.strategies import trace_contexts


@pytest.mark.parametrize(
    ("context", "rule"),
    [
        ({"k": "x" * MAX_TRACE_CONTEXT_BYTES}, f"must be at most {MAX_TRACE_CONTEXT_BYTES} bytes"),
        ({"k": "x" * (MAX_TRACE_CONTEXT_BYTES - 7)}, f"(got {MAX_TRACE_CONTEXT_BYTES + 1})"),
        ({"k": "é" * (MAX_TRACE_CONTEXT_BYTES // 2)}, "bytes as JSON"),  # bytes, not characters
        (["traceparent"], "must be a mapping of strings to strings (got list)"),
        ("00-abc-def-01", "must be a mapping of strings to strings (got str)"),
        ({"traceparent": 1}, "the value of 'traceparent' must be a string (got int)"),
        ({1: "x"}, "has a key 1 that is not a non-empty string"),
        ({"": "x"}, "has a key '' that is not a non-empty string"),
        ({"traceparent": "a\nb"}, "'traceparent' must not contain control characters"),
        ({"k": "\ud800"}, "must be valid Unicode"),
        ({"k": "nul\x00"}, "control characters"),
    ],
    ids=[
        "too-large",
        "one-over",
        "utf8-bytes",
        "list",
        "str",
        "int-value",
        "int-key",
        "empty-key",
        "newline",
        "lone-surrogate",
        "nul",
    ],
)
def test_a_bad_trace_context_is_refused_naming_the_field_and_the_rule(
    context: object, rule: str
) -> None:
    with pytest.raises(ValidationError, match=r"^trace_context: ") as raised:
        TaskSpec(topic="q", trace_context=context)  # type: ignore[arg-type]
    assert raised.value.field == "trace_context"
    assert rule in raised.value.rule


def test_a_huge_mapping_is_refused_without_encoding_it() -> None:
    huge = {f"k{i}": "v" for i in range(1_000_000)}
    with pytest.raises(ValidationError, match="more than 1024"):
        encode_trace_context(huge)


def test_one_byte_under_the_bound_and_at_it_are_kept() -> None:
    for size in (MAX_TRACE_CONTEXT_BYTES - 1, MAX_TRACE_CONTEXT_BYTES):
        context = {"k": "x" * (size - 8)}  # {"k":"..."}: 8 bytes around the value
        text = encode_trace_context(context)
        assert text is not None
        assert len(text.encode()) == size


@given(trace_contexts)
def test_the_context_is_carried_unchanged_through_transitions(context: object) -> None:
    spec = TaskSpec(topic="q", trace_context=context)  # type: ignore[arg-type]
    task = spec.to_task("t1", 5)
    assert task.trace_context == context
    reserved = apply(task, Reserve(pid="w1"), 6).unwrap()
    assert reserved.trace_context_json == task.trace_context_json
    assert reserved.as_record()["trace_context"] == task.trace_context_json
