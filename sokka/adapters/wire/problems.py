"""The RFC 9457 problem type of every error of the taxonomy: its HTTP status,
and the members that rebuild the exception on the client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sokka.adapters.wire.values import JSONObject
from sokka.core.errors import (
    AlreadyExists,
    InvalidTransition,
    LeaseLost,
    NotFound,
    NotRunning,
    RetryableError,
    SchemaError,
    SokkaError,
    StaleAttempt,
    StaleRecord,
    StoreError,
    TaskCancelled,
    Throttled,
    Unavailable,
    ValidationError,
    WrongOwner,
)

# -- problem types ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One problem type: ``/problems/<code>``, its status, and how to rebuild its error.

    ``members`` are the problem's extension members, in the order the
    exception's constructor takes them (``error_from_problem``).
    """

    code: str
    status: int
    title: str
    members: tuple[str, ...] = ()
    error: type[SokkaError] | None = None  #: None: a protocol problem, not a store error
    #: The detail the server sends instead of the error's own message (which may
    #: name tables, hosts or driver text that must not leave the server).
    fixed_detail: str | None = None


def problem_type_uri(code: str) -> str:
    """The ``type`` member of a problem: a relative URI the server resolves.

    >>> problem_type_uri("not-found")
    '/problems/not-found'
    """
    return f"/problems/{code}"


_TYPES: tuple[ProblemType, ...] = (
    ProblemType("invalid-input", 422, "Invalid input", ("field", "rule"), ValidationError),
    ProblemType("not-found", 404, "Task not found", ("task_id",), NotFound),
    ProblemType("already-exists", 409, "Task already exists", ("task_id",), AlreadyExists),
    ProblemType(
        "stale-record",
        409,
        "Stale record version",
        ("task_id", "expected", "actual"),
        StaleRecord,
    ),
    ProblemType(
        "invalid-transition",
        409,
        "Transition not allowed",
        ("task_id", "task_status", "event"),
        InvalidTransition,
    ),
    ProblemType("not-running", 409, "Task not running", ("task_id", "reason"), NotRunning),
    ProblemType(
        "task-cancelled", 409, "Task cancelled by an operator", ("task_id", "reason"), TaskCancelled
    ),
    ProblemType("stale-attempt", 403, "Stale attempt", ("task_id", "reason"), StaleAttempt),
    ProblemType("wrong-owner", 403, "Wrong lease owner", ("task_id", "reason"), WrongOwner),
    ProblemType("lease-lost", 409, "Lease lost", ("task_id", "reason"), LeaseLost),
    ProblemType(
        "throttled",
        429,
        "Store busy",
        error=Throttled,
        fixed_detail="the store is busy; nothing was changed, try again later",
    ),
    ProblemType(
        "unavailable",
        503,
        "Store unavailable",
        error=Unavailable,
        fixed_detail="the store cannot be reached; nothing was changed, try again later",
    ),
    ProblemType(
        "retryable",
        503,
        "Try again later",
        error=RetryableError,
        fixed_detail="the store could not answer; nothing was changed, try again later",
    ),
    ProblemType(
        "schema-error",
        500,
        "Store schema missing or too new",
        error=SchemaError,
        fixed_detail="the store's schema is missing or newer than the server "
        "(run `sokka init` against the server's database)",
    ),
    ProblemType(
        "store-error",
        500,
        "Store failed",
        error=StoreError,
        fixed_detail="the store failed; the server's log has the details",
    ),
    # Protocol problems: raised by the HTTP layer, never by a store.
    ProblemType("malformed-request", 400, "Malformed request", ("field", "rule")),
    ProblemType("unauthorized", 401, "Unauthorized"),
    ProblemType("too-many-wrong-tokens", 429, "Too many wrong tokens"),
    ProblemType("unknown-endpoint", 404, "No such endpoint"),
    ProblemType("method-not-allowed", 405, "Method not allowed"),
    ProblemType("misdirected-request", 421, "Host not served here"),
    ProblemType("request-too-large", 413, "Request body too large", ("max_bytes",)),
    ProblemType("request-timeout", 408, "Request body too slow"),
    ProblemType("server-busy", 503, "Server busy"),
    ProblemType("unsupported-media-type", 415, "Unsupported media type"),
    ProblemType(
        "internal-error",
        500,
        "Internal server error",
        fixed_detail="the server failed; its log has the details",
    ),
)

#: code -> problem type, for every problem the API can answer with.
PROBLEM_TYPES: Final[Mapping[str, ProblemType]] = {t.code: t for t in _TYPES}
_BY_ERROR: Final = {t.error: t for t in _TYPES if t.error is not None}


def _problem_type_of(error: SokkaError) -> ProblemType:
    for cls in type(error).__mro__:
        found = _BY_ERROR.get(cls)
        if found is not None:
            return found
    return PROBLEM_TYPES["store-error"]


def _members_of(error: SokkaError) -> JSONObject:
    match error:
        case ValidationError():
            return {"field": error.field, "rule": error.rule}
        case StaleRecord():
            return {"task_id": error.task_id, "expected": error.expected, "actual": error.actual}
        case InvalidTransition():
            return {"task_id": error.task_id, "task_status": error.status, "event": error.event}
        case LeaseLost():
            _, (task_id, reason) = error.__reduce__()
            return {"task_id": task_id, "reason": reason}
        case NotFound() | AlreadyExists():
            return {"task_id": error.task_id}
        case _:
            return {}


def problem_for(error: SokkaError) -> JSONObject:
    """The RFC 9457 problem document for a store error.

    >>> problem_for(NotFound("t1"))["status"]
    404
    """
    kind = _problem_type_of(error)
    return problem(kind.code, kind.fixed_detail or str(error), **_members_of(error))


def printable(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate, which a client can send
    escaped in JSON and which no UTF-8 answer or log can hold, is written as
    its backslash escape instead.

    >>> printable("café"), printable("k" + chr(0xD800))
    ('café', 'k\\\\ud800')
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def problem(code: str, detail: str, **members: Any) -> JSONObject:
    """The RFC 9457 problem document of type ``code``.

    Every string in it is ``printable``: a field name or a message can quote
    what a client sent, and the answer must still encode as UTF-8.

    >>> problem("unauthorized", "wrong token")["type"]
    '/problems/unauthorized'
    >>> problem("invalid-input", "?", field=chr(0xD800))["field"]
    '\\\\ud800'
    """
    kind = PROBLEM_TYPES[code]
    return {
        "type": problem_type_uri(code),
        "title": kind.title,
        "status": kind.status,
        "detail": printable(detail),
        **{name: printable(v) if isinstance(v, str) else v for name, v in members.items()},
    }


def error_from_problem(problem: object, status: int) -> SokkaError:
    """The exception a problem document stands for (the one the store raised).

    Answers that are not store errors (a proxy's page, a protocol problem)
    become the error a caller can act on: a 429 ``Throttled`` and any other 5xx
    ``Unavailable`` (retry), an over-large body ``ValidationError``, any other
    refusal ``StoreError`` (fix the setup).
    """
    doc: Mapping[str, Any] = problem if isinstance(problem, dict) else {}
    type_uri = doc.get("type")
    code = type_uri.removeprefix("/problems/") if isinstance(type_uri, str) else ""
    detail = doc.get("detail") if isinstance(doc.get("detail"), str) else None
    kind = PROBLEM_TYPES.get(code)
    if kind is not None and kind.error is not None:
        try:
            args = [doc[name] for name in kind.members] if kind.members else [detail or code]
            return kind.error(*args)
        except (KeyError, TypeError):
            pass  # a problem of a known type without its members: fall through
    if code == "request-timeout":
        # The body did not arrive in time (a slow or broken link): try again.
        return Unavailable(f"the server timed out reading the request: {detail or code}")
    if code == "request-too-large":
        limit = doc.get("max_bytes")
        return ValidationError("body", f"must be at most {limit} bytes (the server's limit)")
    if status == 429:
        return Throttled(f"the server answered 429: {detail or 'too many requests'}")
    if status >= 500:
        return Unavailable(f"the server answered {status}: {detail or 'no detail'}")
    return StoreError(f"the server refused the request ({status}): {detail or 'no detail'}")


