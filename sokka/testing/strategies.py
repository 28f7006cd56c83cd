"""Hypothesis strategies for sokka values (needs ``hypothesis`` installed).

* ``task_specs()``: valid ``TaskSpec`` values (a topic, JSON data, optional limits);
* ``tasks(statuses=...)``: ``Task`` values as a store could hold them, in any
  status, with the fields each status implies (an owner while running, a
  snooze time while snoozed, an error once failed);
* ``lease_schedules()``: what happens to one lease, as a ``LeaseSchedule``:
  how long the handler runs, and the fate of each keepalive (answered, late,
  lost, refused), for property tests of a handler's lease behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from sokka.core.task import Status, Task, TaskSpec, encode_result

__all__ = ["KeepaliveFate", "LeaseSchedule", "lease_schedules", "task_specs", "tasks"]

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=24)
#: Text a store accepts: no NUL (PostgreSQL cannot hold it), no lone surrogates.
safe_text = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(safe_text, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(safe_text, max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
durations = st.integers(min_value=1, max_value=3_600_000)
#: Header text: printable, no control characters (what a propagator writes).
_header_text = st.characters(
    exclude_characters="\x00", exclude_categories=["Cs", "Cc"]
)
#: A trace context as a propagator's carrier (a W3C traceparent, and maybe more).
trace_contexts = st.none() | st.dictionaries(
    names, st.text(_header_text, max_size=60), min_size=1, max_size=3
).map(lambda headers: {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", **headers})


@st.composite
def task_specs(draw: st.DrawFn, *, topic: str | None = None) -> TaskSpec:
    """A valid ``TaskSpec``; ``topic`` fixes the topic."""
    return TaskSpec(
        topic=topic if topic is not None else draw(names),
        task_id=draw(st.none() | names),
        data=draw(json_values),
        max_attempts=draw(st.none() | st.integers(1, 20)),
        lease_time_ms=draw(st.none() | durations),
        timeout_ms=draw(st.none() | durations),
        trace_context=draw(trace_contexts),
    )


@st.composite
def tasks(
    draw: st.DrawFn, *, statuses: tuple[Status, ...] = tuple(Status), topic: str = "q"
) -> Task:
    """A ``Task`` in one of ``statuses``, consistent with that status."""
    status = draw(st.sampled_from(statuses))
    task_id = draw(names)
    attempt = draw(st.integers(0 if status is Status.STARTING else 1, 20))
    failures = draw(st.integers(0, attempt))
    return Task(
        task_id=task_id,
        task_group_id=task_id,
        topic=topic,
        status=status,
        pid=draw(names) if status is Status.RUNNING else None,
        record_ver=draw(st.integers(attempt, attempt + 1_000)),
        attempt=attempt,
        failures=failures,
        lease_time_ms=draw(st.none() | durations),
        timeout_ms=draw(st.none() | durations),
        snooze_time_ms=draw(durations) if status is Status.SNOOZED else None,
        error=(
            draw(st.text(safe_text, min_size=1, max_size=40))
            if status is Status.FAILED
            else None
        ),
        # What ok(result) kept: only a terminated task may have one.
        result_json=(
            draw(st.none() | json_values.map(encode_result))
            if status is Status.TERMINATED
            else None
        ),
    )


KeepaliveFate = str  #: "answered", "late", "lost" or "refused"


@dataclass(frozen=True, slots=True)
class LeaseSchedule:
    """One lease's story: the handler's duration and each keepalive's fate."""

    lease_time_ms: int
    handler_ms: int
    keepalives: tuple[tuple[KeepaliveFate, int], ...]  #: (fate, answer delay in ms)


@st.composite
def lease_schedules(draw: st.DrawFn, *, lease_time_ms: int = 1_000) -> LeaseSchedule:
    """A handler running up to five leases, with keepalives answered on time,
    late (up to half a lease), never, or refused."""
    fates = st.sampled_from(["answered", "answered", "answered", "late", "lost", "refused"])
    return LeaseSchedule(
        lease_time_ms=lease_time_ms,
        handler_ms=draw(st.integers(1, 5 * lease_time_ms)),
        keepalives=tuple(
            draw(st.lists(st.tuples(fates, st.integers(0, lease_time_ms // 2)), max_size=12))
        ),
    )
