"""Tasks as immutable values, and the validation of everything a caller sends.

A ``TaskSpec`` is what a caller asks for; a ``Task`` is what a store holds.
Both are frozen: a transition returns a new ``Task``. ``data`` is kept as
canonical JSON text (``data_json``), so a task is immutable all the way down
and ``task.data`` hands every reader a fresh copy it may mutate freely.

Limits (documented in the user guide; every breach is a ``ValidationError``
naming the field and the rule):

* ``topic``, ``sub_topic``, ``task_id``, ``task_group_id``, ``pid``:
  1 to 128 characters, no control characters.
* ``description``: at most 1,024 characters.
* ``data``: a JSON value (``None``, bool, int, finite float, str, list/tuple,
  dict with str keys), nested at most 64 deep, at most 256 KiB once encoded
  as compact UTF-8 JSON.
* ``result`` (what ``ok(result)`` stores on a terminated task): a JSON value
  as ``data`` is, at most 64 KiB once encoded (``MAX_RESULT_BYTES``).
* ``trace_context`` (the W3C trace context headers a tracer injected when
  the task was enqueued): a mapping of non-empty ``str`` keys to ``str``
  values, no control characters, at most 1 KiB once encoded
  (``MAX_TRACE_CONTEXT_BYTES``); an empty mapping is no context.
* no string may hold a NUL character (U+0000) or a lone surrogate:
  PostgreSQL cannot store the first, UTF-8 cannot encode the second.
* every time (``lease_time_ms``, ``timeout_ms``, snooze times): a positive
  ``int`` of milliseconds; ``max_attempts``: a positive ``int``;
  ``delay_ms``: ``None`` or an ``int`` of milliseconds, zero or more.
* every time and version fits a signed 64-bit integer (at most ``MAX_INT``),
  the widest column SQLite and PostgreSQL have; ``max_attempts`` and
  ``attempt`` fit a signed 32-bit one (at most ``MAX_ATTEMPTS``).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from sokka.core.errors import ValidationError

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_DATA_BYTES",
    "MAX_DATA_DEPTH",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_ERROR_HISTORY",
    "MAX_ERROR_LENGTH",
    "MAX_INT",
    "MAX_NAME_LENGTH",
    "MAX_RESULT_BYTES",
    "MAX_TRACE_CONTEXT_BYTES",
    "JsonValue",
    "Status",
    "Task",
    "TaskSpec",
    "encode_data",
    "encode_result",
    "encode_trace_context",
    "evolve",
    "require_at_most_max_int",
    "require_name",
    "require_positive_ms",
    "shown",
    "task_from_values",
]

MAX_NAME_LENGTH: Final = 128
MAX_DESCRIPTION_LENGTH: Final = 1024
MAX_DATA_BYTES: Final = 256 * 1024
MAX_DATA_DEPTH: Final = 64
#: A task's result is read back by whoever waits for it (and shown by
#: ``sokka task get``): a summary, not a payload, hence a quarter of ``data``'s.
MAX_RESULT_BYTES: Final = 64 * 1024
#: A task's trace context is a propagator's carrier (``traceparent`` is 55
#: characters, a ``tracestate`` at most 512): a header's worth, never a payload.
MAX_TRACE_CONTEXT_BYTES: Final = 1024
#: Errors longer than this are cut (with a marker) so one bad handler
#: cannot bloat the store.
MAX_ERROR_LENGTH: Final = 4000
#: How many past errors a task remembers (the most recent ones).
MAX_ERROR_HISTORY: Final = 32
#: The largest integer any field may hold (a signed 64-bit column).
MAX_INT: Final = 2**63 - 1
#: The largest ``max_attempts`` or ``attempt`` (a signed 32-bit column).
MAX_ATTEMPTS: Final = 2**31 - 1
# Python writes no int of more than 4300 digits (sys.get_int_max_str_digits()):
# 14,000 bits (4,214 digits) stay safely below.
_LONGEST_JSON_INT_BITS: Final = 14_000

JsonValue = None | bool | int | float | str | list[Any] | dict[str, Any]

_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")


class Status(enum.StrEnum):
    """Where a task is in its life (see ``core/transitions.py`` for the table)."""

    STARTING = "starting"
    RUNNING = "running"
    SNOOZED = "snoozed"
    FAILED = "failed"
    TERMINATED = "terminated"

    @classmethod
    def parse(cls, value: object, field: str = "status") -> Status:
        """Return the status named by ``value``, or raise a ``ValidationError``.

        >>> Status.parse("running")
        <Status.RUNNING: 'running'>
        >>> Status.parse("done")
        Traceback (most recent call last):
        ...
        sokka.core.errors.ValidationError: status: must be one of starting, running, \
snoozed, failed, terminated (got 'done')
        """
        if isinstance(value, Status):
            return value
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(s.value for s in cls)
        raise ValidationError(field, f"must be one of {names} (got {value!r})")

    @property
    def is_leased(self) -> bool:
        """True for the statuses a supervisor watches (running, snoozed)."""
        return self in (Status.RUNNING, Status.SNOOZED)

    @property
    def is_final(self) -> bool:
        return self in (Status.FAILED, Status.TERMINATED)


def shown(value: int) -> str:
    """An integer as an error message shows it: huge ones by their size (Python
    refuses to print an int of more than 4300 digits, and nobody reads one).

    >>> shown(-42), shown(2**300)
    ('-42', 'an integer of 301 bits')
    """
    bits = value.bit_length()
    return str(value) if bits <= 256 else f"an integer of {bits} bits"


def require_name(field: str, value: object) -> str:
    """Check an identifier-like string (topic, ids, pid) and return it.

    >>> require_name("topic", "emails")
    'emails'
    >>> require_name("topic", "")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: topic: must not be empty
    """
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string (got {type(value).__name__})")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(
            field, f"must be at most {MAX_NAME_LENGTH} characters (got {len(value)})"
        )
    if _CONTROL.search(value):
        raise ValidationError(field, "must not contain control characters")
    _require_utf8(field, value)
    return value


def _require_utf8(field: str, value: str) -> None:
    """Refuse what some stores cannot hold: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "must be valid Unicode (it holds a lone surrogate)") from None


def require_positive_ms(field: str, value: object) -> int:
    """Check a duration in milliseconds: a positive int (bool is refused).

    >>> require_positive_ms("lease_time_ms", 0)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: lease_time_ms: must be a positive number of \
milliseconds (got 0)
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer (got {type(value).__name__})")
    if value <= 0:
        raise ValidationError(
            field, f"must be a positive number of milliseconds (got {shown(value)})"
        )
    return require_at_most_max_int(field, value)


def require_at_most_max_int(field: str, value: int, maximum: int = MAX_INT) -> int:
    """Refuse an integer no store column can hold (above ``MAX_INT``, or the
    ``maximum`` of a narrower column).

    >>> require_at_most_max_int("snooze_ms", 2**63)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: snooze_ms: must be at most 9223372036854775807 \
(a 64-bit integer)
    """
    if value > maximum:
        bits = 64 if maximum == MAX_INT else maximum.bit_length() + 1
        raise ValidationError(field, f"must be at most {maximum} (a {bits}-bit integer)")
    return value


def _optional_positive_int(
    field: str, value: object, what: str, maximum: int = MAX_INT
) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer or None (got {type(value).__name__})")
    if value <= 0:
        raise ValidationError(field, f"must be a positive {what} (got {shown(value)})")
    return require_at_most_max_int(field, value, maximum)


def _optional_delay_ms(value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            "delay_ms", f"must be an integer or None (got {type(value).__name__})"
        )
    if value < 0:
        raise ValidationError(
            "delay_ms", f"must be zero or more milliseconds (got {shown(value)})"
        )
    require_at_most_max_int("delay_ms", value)


def _too_large(field: str, limit: int, size: str) -> ValidationError:
    return ValidationError(field, f"must be at most {limit} bytes as JSON (got {size})")


class _Walk:
    """One check of a JSON value (a task's ``data`` or ``result``): its types,
    depth and strings, and a lower bound of its encoded size that stops the walk
    as soon as it passes the limit, so a value far over the limit costs the
    limit, not its own size.

    ``trail`` holds the keys and indices down to the value being checked; it
    becomes a path only when there is an error to report (building one per value
    made the check cost values x path length: seconds for long nested keys).
    """

    __slots__ = ("field", "left", "limit", "trail")

    def __init__(self, field: str = "data", limit: int = MAX_DATA_BYTES) -> None:
        self.field = field
        self.limit = limit
        self.left = limit
        self.trail: list[str | int] = []

    def where(self) -> str:
        """The path to the value being checked, as Python would index it.

        >>> walk = _Walk(); walk.trail[:] = ["to", 0, "id"]; walk.where()
        "data['to'][0]['id']"
        """
        return self.field + "".join(f"[{step!r}]" for step in self.trail)

    def spend(self, size: int) -> None:
        """Count ``size`` bytes the value takes at least, once encoded."""
        self.left -= size
        if self.left < 0:
            raise _too_large(self.field, self.limit, f"more than {self.limit}")

    def check(self, value: object, depth: int) -> None:
        field = self.field
        if depth > MAX_DATA_DEPTH:
            raise ValidationError(field, f"must be nested at most {MAX_DATA_DEPTH} levels deep")
        if isinstance(value, str):
            self.spend(len(value) + 2)  # before reading it: it may be huge
            _require_utf8(field, value)
        elif value is None or isinstance(value, bool):
            self.spend(4)
        elif isinstance(value, int):
            self.spend(1)
            if value.bit_length() > _LONGEST_JSON_INT_BITS:
                raise ValidationError(
                    field, f"{self.where()} is {shown(value)}, too long to write as JSON"
                )
        elif isinstance(value, float):
            self.spend(3)
            if not math.isfinite(value):
                rule = f"is {value!r}, which JSON cannot hold"
                raise ValidationError(field, f"{self.where()} {rule}")
        elif isinstance(value, list | tuple):
            self.spend(1)
            for i, item in enumerate(value):
                self.trail.append(i)
                self.check(item, depth + 1)
                self.trail.pop()
                self.spend(1)  # a comma or the closing bracket
        elif isinstance(value, dict):
            self.spend(1)
            for key, item in value.items():
                if not isinstance(key, str):
                    rule = f"has a key {key!r} that is not a string (JSON keys are strings)"
                    raise ValidationError(field, f"{self.where()} {rule}")
                self.spend(len(key) + 4)  # quotes, colon, and a comma or the brace
                _require_utf8(field, key)
                self.trail.append(key)
                self.check(item, depth + 1)
                self.trail.pop()
        else:
            raise ValidationError(
                field, f"{self.where()} is a {type(value).__name__}, which is not a JSON value"
            )


def _encode_json(value: object, field: str, limit: int) -> str:
    _Walk(field, limit).check(value, 0)
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > limit:
        raise _too_large(field, limit, str(size))
    return text


def encode_data(value: object) -> str:
    """Validate a JSON value and return its canonical compact encoding.

    The size limit is checked first, while the value is walked: the walk stops
    once the value is certain to pass the limit (a lower bound of its size),
    and the exact size of what it accepts is checked once encoded.

    >>> encode_data({"to": "ann@example.com", "n": [1, 2.5, None]})
    '{"to":"ann@example.com","n":[1,2.5,null]}'
    >>> encode_data({1: "x"})
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: data: data has a key 1 that is not a string (JSON keys \
are strings)
    """
    return _encode_json(value, "data", MAX_DATA_BYTES)


def encode_result(value: object) -> str | None:
    """Validate a task's result and return its canonical compact encoding;
    ``None`` (no result) stays ``None``.

    The rules are ``data``'s, with a bound of ``MAX_RESULT_BYTES``; an error
    names the field ``result``.

    >>> encode_result({"sent": 3}), encode_result(None)
    ('{"sent":3}', None)
    >>> encode_result("x" * 70_000)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: result: must be at most 65536 bytes as JSON \
(got more than 65536)
    """
    if value is None:
        return None
    return _encode_json(value, "result", MAX_RESULT_BYTES)


def encode_trace_context(value: object) -> str | None:
    """Validate a task's trace context and return its canonical encoding (JSON,
    keys sorted); ``None`` and an empty mapping (no context) give ``None``.

    The context is what a tracing propagator injects into a carrier (W3C
    ``traceparent`` and ``tracestate``): a mapping of non-empty string keys
    to string values, without control characters, at most
    ``MAX_TRACE_CONTEXT_BYTES`` once encoded. The core only carries it: no
    lease decision reads it. Errors name the field ``trace_context``.

    >>> encode_trace_context({"traceparent": "00-0af7-b7ad-01", "tracestate": "k=v"})
    '{"traceparent":"00-0af7-b7ad-01","tracestate":"k=v"}'
    >>> encode_trace_context({}), encode_trace_context(None)
    (None, None)
    >>> encode_trace_context({"traceparent": 1})
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: trace_context: the value of 'traceparent' must be a \
string (got int)
    """
    if value is None:
        return None
    field = "trace_context"
    if not isinstance(value, Mapping):
        raise ValidationError(
            field, f"must be a mapping of strings to strings (got {type(value).__name__})"
        )
    if not value:
        return None
    left = MAX_TRACE_CONTEXT_BYTES
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(field, f"has a key {key!r} that is not a non-empty string")
        if not isinstance(item, str):
            raise ValidationError(
                field, f"the value of {key!r} must be a string (got {type(item).__name__})"
            )
        for text in (key, item):
            if _CONTROL.search(text):
                raise ValidationError(field, f"{key!r} must not contain control characters")
            _require_utf8(field, text)
        left -= len(key) + len(item) + 6  # quotes, colon, and a comma or the brace
        if left < 0:  # before encoding: the mapping may be huge
            raise _too_large(field, MAX_TRACE_CONTEXT_BYTES, f"more than {MAX_TRACE_CONTEXT_BYTES}")
    text = json.dumps(dict(sorted(value.items())), separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > MAX_TRACE_CONTEXT_BYTES:
        raise _too_large(field, MAX_TRACE_CONTEXT_BYTES, str(size))
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """What a caller asks a store to create. Validated on construction.

    >>> TaskSpec(topic="emails", data={"to": "ann"}).sub_topic
    'default'
    >>> TaskSpec(topic="emails", max_attempts=0)
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: max_attempts: must be a positive number of attempts (got 0)
    """

    topic: str
    data: Any = None
    task_id: str | None = None
    task_group_id: str | None = None
    sub_topic: str = "default"
    description: str = ""
    max_attempts: int | None = None
    lease_time_ms: int | None = None
    timeout_ms: int | None = None
    delay_ms: int | None = None
    #: The trace context to carry to the task's attempts (a propagator's
    #: carrier: ``traceparent``, ``tracestate``); see ``encode_trace_context``.
    #: ``App.enqueue`` fills it when tracing is on (``sokka.shell.tracing``).
    trace_context: Mapping[str, str] | None = None
    data_json: str = field(init=False, repr=False, compare=False)
    trace_context_json: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_name("topic", self.topic)
        require_name("sub_topic", self.sub_topic)
        if self.task_id is not None:
            require_name("task_id", self.task_id)
        if self.task_group_id is not None:
            require_name("task_group_id", self.task_group_id)
        if not isinstance(self.description, str):
            raise ValidationError("description", "must be a string")
        _require_utf8("description", self.description)
        if len(self.description) > MAX_DESCRIPTION_LENGTH:
            raise ValidationError(
                "description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters"
            )
        _optional_positive_int(
            "max_attempts", self.max_attempts, "number of attempts", MAX_ATTEMPTS
        )
        _optional_positive_int("lease_time_ms", self.lease_time_ms, "number of milliseconds")
        _optional_positive_int("timeout_ms", self.timeout_ms, "number of milliseconds")
        _optional_delay_ms(self.delay_ms)
        object.__setattr__(self, "data_json", encode_data(self.data))
        object.__setattr__(self, "trace_context_json", encode_trace_context(self.trace_context))

    def to_task(self, task_id: str, now_ms: int) -> Task:
        """The new task this spec describes, as a store first writes it.

        A delayed spec (``delay_ms`` > 0) makes a snoozed task whose
        ``snooze_time_ms`` is the delay: the supervisor wakes it like any
        snooze, measuring the delay on its own clock, so no timestamp written
        by another machine is ever compared with its clock.
        """
        require_name("task_id", task_id)
        delayed = bool(self.delay_ms)
        return Task(
            task_id=task_id,
            task_group_id=self.task_group_id or task_id,
            topic=self.topic,
            sub_topic=self.sub_topic,
            description=self.description,
            data_json=self.data_json,
            status=Status.SNOOZED if delayed else Status.STARTING,
            max_attempts=self.max_attempts,
            lease_time_ms=self.lease_time_ms,
            timeout_ms=self.timeout_ms,
            snooze_time_ms=self.delay_ms if delayed else None,
            created_at=now_ms,
            updated_at=now_ms,
            trace_context_json=self.trace_context_json,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """A task as a store holds it. Never mutated: transitions return a new one.

    ``attempt`` counts reservations and is the fencing token: every owner
    operation must quote it. ``failures`` counts the attempts that ended badly
    (a handler failure or an expired lease) and is what ``max_attempts``
    bounds; a snooze the handler asked for is not a failure.
    ``created_at``/``updated_at`` are the store's clock, informational only:
    no lease decision reads them.
    """

    task_id: str
    task_group_id: str
    topic: str
    sub_topic: str = "default"
    description: str = ""
    data_json: str = "null"
    status: Status = Status.STARTING
    pid: str | None = None
    record_ver: int = 0
    attempt: int = 0
    failures: int = 0
    max_attempts: int | None = None
    lease_time_ms: int | None = None
    timeout_ms: int | None = None
    snooze_time_ms: int | None = None
    error: str | None = None
    errors: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0
    #: What the handler's ``ok(result)`` gave, as canonical JSON text; None when
    #: there is none (only a terminated task has one).
    result_json: str | None = None
    #: The trace context the task was created with, as canonical JSON text (see
    #: ``encode_trace_context``); None when it has none. Fixed at creation.
    trace_context_json: str | None = None

    @property
    def data(self) -> Any:
        """The task's JSON data, decoded afresh (a copy the caller may mutate)."""
        return json.loads(self.data_json)

    @property
    def result(self) -> Any:
        """The result the handler gave with ``ok(result)``, decoded afresh; None
        when it gave none (or the task has not terminated)."""
        return None if self.result_json is None else json.loads(self.result_json)

    @property
    def trace_context(self) -> dict[str, str] | None:
        """The trace context the task carries (a propagator's carrier, a fresh
        dict), or None when it was created without one."""
        if self.trace_context_json is None:
            return None
        context: dict[str, str] = json.loads(self.trace_context_json)
        return context

    def as_record(self) -> dict[str, Any]:
        """Every field as a plain value: ``data``, ``result`` and ``trace_context``
        as their JSON text (``result`` and ``trace_context`` None when there is
        none), ``status`` as its name, ``errors`` as a list (what a store row or
        a JSON document holds)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["data"] = record.pop("data_json")
        record["result"] = record.pop("result_json")
        record["trace_context"] = record.pop("trace_context_json")
        record["status"] = self.status.value
        record["errors"] = list(self.errors)
        return record

    @property
    def lease(self) -> tuple[str, int]:
        """The lease token ``(task_id, attempt)`` a handler can fence its writes with."""
        return (self.task_id, self.attempt)


_TASK_FIELDS: Final = tuple(f.name for f in fields(Task))
_new = object.__new__
_set = object.__setattr__
#: Each field's slot setter, in declaration order: a slot's own descriptor sets it
#: in about half the time ``object.__setattr__`` takes (no lookup by name).
_SETTERS: Final = tuple(Task.__dict__[name].__set__ for name in _TASK_FIELDS)


def evolve(task: Task, changes: dict[str, Any]) -> Task:
    """``dataclasses.replace(task, **changes)``, about four times as fast.

    Every transition of every store makes one new ``Task``; ``replace`` spends
    most of its time finding the fields and passing them as keywords. ``Task``
    has no ``__post_init__``, so copying the slots and setting the changes
    makes the same value. ``changes`` must name fields of ``Task``.

    >>> t = Task(task_id="t1", task_group_id="t1", topic="q")
    >>> evolve(t, {"record_ver": 2}) == Task(task_id="t1", task_group_id="t1", topic="q",
    ...                                      record_ver=2)
    True
    """
    new = _new(Task)
    for name in _TASK_FIELDS:
        _set(new, name, getattr(task, name))
    for name, value in changes.items():
        _set(new, name, value)
    return new


def task_from_values(values: Sequence[Any]) -> Task:
    """A ``Task`` from its field values in declaration order (a store's row),
    without the keyword ``__init__``: the stores build one per row read.

    >>> task_from_values(["t1", "t1", "q", "default", "", "null", Status.STARTING, None,
    ...                   0, 0, 0, None, None, None, None, None, (), 0, 0, None, None]).task_id
    't1'
    """
    if len(values) != len(_TASK_FIELDS):
        raise ValueError(f"a Task has {len(_TASK_FIELDS)} fields, not {len(values)}")
    new = _new(Task)
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(new, value)
    return new
