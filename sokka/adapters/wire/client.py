"""The client's side of the wire, without I/O: what ``HTTPStore`` and
``AsyncHTTPStore`` send for each ``TaskStore`` call, and how they read the answer.

Each call of the port is a function here (``WIRE_CALLS.create_task(spec)``,
...) that checks what cannot travel as JSON and returns a ``Request``: the
call's name in the table of calls, its JSON arguments, and the function that
turns the server's JSON answer into the call's value. A call that needs no
round trip (a batch whose every element was refused here) returns
``Answered``. ``encode`` makes the body, ``read_response`` the answer or the
error of an ``httpx.Response``. The two stores differ only in how they send
the bytes (``httpx.Client`` or ``httpx.AsyncClient``), so they cannot drift.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import httpx
from returns.result import Failure, Result

from sokka.adapters.store import (
    DEFAULT_FAILED_WITHIN_MS,
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Counts,
    Page,
    Purged,
    TaskFilter,
    require_batch,
    require_spec,
)
from sokka.adapters.urls import is_http_url
from sokka.adapters.wire.calls import MAX_WAIT_MS, OPERATIONS_BY_NAME
from sokka.adapters.wire.codec import (
    changed_from_json,
    counts_from_json,
    filter_to_json,
    lease_to_json,
    outcome_to_json,
    page_from_json,
    purged_from_json,
    results_from_json,
    spec_to_json,
    task_from_json,
    topics_from_json,
)
from sokka.adapters.wire.problems import error_from_problem
from sokka.adapters.wire.values import PROBLEM_JSON
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import SokkaError, StoreError, Unavailable, ValidationError
from sokka.core.task import Status, Task, TaskSpec, shown
from sokka.core.transitions import Cancel, Fail, Terminate

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "WIRE_CALLS",
    "Answered",
    "Request",
    "WireCalls",
    "client_headers",
    "encode",
    "longest_wait_ms",
    "read_response",
    "require_max_response_bytes",
    "require_wait_ms",
    "too_large",
    "transport_error",
    "warn_if_token_in_clear",
]

_T = TypeVar("_T")

#: 64 MiB: the largest answer read. A server's read answers stay within its
#: budget (32 MiB of tasks by default, ``sokka.adapters.wire.budget``); this
#: leaves room for batch answers and keeps a wrong or hostile URL from filling
#: the caller's memory.
DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024

_log = logging.getLogger("sokka.adapters.http")
#: Hosts already warned about (once per process each: a CLI or a worker pool
#: makes many stores for one server).
_warned_hosts: set[str] = set()


@dataclass(frozen=True, slots=True)
class Request(Generic[_T]):
    """One call to send: its name in the table of calls, its JSON arguments by
    name, and how to read the server's JSON answer."""

    name: str
    arguments: dict[str, Any]
    read: Callable[[Any], _T]


@dataclass(frozen=True, slots=True)
class Answered(Generic[_T]):
    """A call answered without a round trip."""

    value: _T


def client_headers(base_url: object, token: object) -> tuple[str, dict[str, str]]:
    """The checked base URL (no trailing slash) and the headers of every request."""
    if not isinstance(base_url, str) or not is_http_url(base_url):
        raise ValidationError("base_url", "must be an http:// or https:// URL")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValidationError("token", "must be a non-empty string or None")
    headers = {"Accept": "application/json", "User-Agent": "sokka-httpstore"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return base_url.rstrip("/"), headers


def require_max_response_bytes(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise ValidationError("max_response_bytes", "must be an integer of at least 1024")
    return value


def longest_wait_ms(timeout: float) -> int:
    """The longest long poll a client with this ``timeout`` (seconds) asks for: half
    its timeout, so that the held answer always arrives before the timeout, and
    at most the server's limit."""
    return max(0, min(MAX_WAIT_MS, int(timeout * 500)))


def require_wait_ms(wait_ms: object, max_wait_ms: int) -> int:
    """``reserve_tasks``'s ``wait_ms`` as a client checks it: 0 to ``max_wait_ms``."""
    if wait_ms and (
        isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or not 0 <= wait_ms <= max_wait_ms
    ):
        raise ValidationError(
            "wait_ms",
            f"must be an integer of milliseconds from 0 to {max_wait_ms} "
            "(half the client's timeout, at most the server's limit)",
        )
    return wait_ms if isinstance(wait_ms, int) else 0


def _is_loopback(host: str) -> bool:
    """``localhost``, ``*.localhost`` (RFC 6761) or a loopback address.

    >>> [_is_loopback(h) for h in ("localhost", "127.0.0.2", "::1", "queue.internal")]
    [True, True, True, False]
    """
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_token_in_clear(base_url: str) -> None:
    """Warn, once per host, that the bearer token is about to cross a network in clear."""
    url = httpx.URL(base_url)
    host = url.host
    if url.scheme != "http" or _is_loopback(host) or host in _warned_hosts:
        return
    _warned_hosts.add(host)
    _log.warning(
        "HTTPStore sends its bearer token to %s over plain http://: anyone on the path "
        "can read it and run and cancel tasks. Put TLS in front of the server and use "
        "an https:// URL (docs/http.md, Behind a proxy).",
        host,
    )


class TooLarge(Exception):
    """An answer passed ``max_response_bytes`` (raised while reading it)."""


def too_large(base_url: str, name: str, limit: int) -> StoreError:
    return StoreError(
        f"{base_url} answered {name} with more than {limit} "
        "bytes (HTTPStore's max_response_bytes): not read"
    )


def declared_too_large(response: httpx.Response, limit: int) -> bool:
    """A declared ``Content-Length`` over ``limit`` (refused before reading)."""
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


def _check_scalar(field: str, value: object) -> None:
    """A JSON-ready scalar, or a ``ValidationError`` naming the field."""
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        # Python writes no int of more than 4300 digits; no store takes one anyway.
        if value.bit_length() > 14_000:
            raise ValidationError(field, f"is {shown(value)}, too long to send as JSON")
        return
    if isinstance(value, float) and value == value and value not in (float("inf"), -float("inf")):
        return
    raise ValidationError(field, f"must be a JSON value (got {type(value).__name__})")


def encode(name: str, arguments: dict[str, Any]) -> tuple[str, bytes]:
    """The endpoint's path and the JSON body of the call ``name`` with ``arguments``."""
    # The client speaks from the same table of calls the server decodes with:
    # a call or an argument the table does not have is a bug here, not input.
    operation = OPERATIONS_BY_NAME[name]
    unknown = set(arguments).difference(param.name for param in operation.params)
    if unknown:
        raise AssertionError(f"HTTPStore sends {sorted(unknown)} that {operation.path} lacks")
    for field, value in arguments.items():
        if not isinstance(value, dict | list):
            _check_scalar(field, value)
    try:
        body = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        content = body.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: send it escaped, so the server's store refuses it
        # naming its field, as in-process.
        content = json.dumps(arguments, separators=(",", ":")).encode("ascii")
    return operation.path, content


def transport_error(base_url: str, name: str, error: httpx.TransportError) -> Unavailable:
    """``Unavailable`` for a call that did not reach the server, or got no answer in time."""
    if isinstance(error, httpx.TimeoutException):
        return Unavailable(f"{base_url} did not answer {name} in time: {error}")
    return Unavailable(f"cannot reach {base_url}: {error}")


def read_response(base_url: str, name: str, response: httpx.Response, body: bytes) -> Any:
    """The JSON answer of a call (``body``, read within the size limit), or the
    error the server's problem stands for (raised)."""
    if response.status_code == 200:
        try:
            return json.loads(body)
        except ValueError:
            raise StoreError(f"{base_url} answered {name} with malformed JSON") from None
    problem: object = None
    if response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        try:
            problem = json.loads(body)
        except ValueError:
            problem = None
    if response.status_code == 401:
        detail = problem.get("detail") if isinstance(problem, dict) else None
        raise StoreError(
            f"{base_url} refused the token ({detail or 'unauthorized'}): "
            "pass the server's token (HTTPStore(token=...), or SOKKA_TOKEN)"
        )
    raise error_from_problem(problem, response.status_code)


def _tasks(name: str) -> Callable[[Any], list[Task]]:
    def read(answer: Any) -> list[Task]:
        if not isinstance(answer, list):
            raise StoreError(f"the server answered {name} with something else")
        return [task_from_json(t) for t in answer]

    return read


class WireCalls:
    """Every ``TaskStore`` call as a ``Request`` (same arguments, same checks)."""

    def create_task(self, spec: TaskSpec) -> Request[Task]:
        require_spec(spec)
        return Request("create_task", {"spec": spec_to_json(spec)}, task_from_json)

    def create_tasks(
        self, specs: Sequence[TaskSpec]
    ) -> Request[list[Result[Task, SokkaError]]] | Answered[list[Result[Task, SokkaError]]]:
        require_batch("specs", specs)
        given: Sequence[object] = specs
        local: list[Result[Task, SokkaError] | None] = []
        wire: list[dict[str, Any]] = []
        for spec in given:
            # An element that is not a TaskSpec fails on its own, here, as in a store.
            try:
                wire.append(spec_to_json(require_spec(spec)))
                local.append(None)
            except ValidationError as error:
                local.append(Failure(error))
        if not wire:
            return Answered([r for r in local if r is not None])

        def read(answer: Any) -> list[Result[Task, SokkaError]]:
            answered = iter(results_from_json(answer))
            return [next(answered) if r is None else r for r in local]

        return Request("create_tasks", {"specs": wire}, read)

    def get_task(self, task_id: str) -> Request[Task]:
        return Request("get_task", {"task_id": task_id}, task_from_json)

    def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> Request[list[Task]]:
        arguments = {"task_group_id": task_group_id, "limit": limit}
        return Request("tasks_in_group", arguments, _tasks("tasks_in_group"))

    def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Request[Page]:
        if filter is not None and not isinstance(filter, TaskFilter):
            raise ValidationError("filter", "must be a TaskFilter")
        wanted = None if filter is None else filter_to_json(filter)
        arguments = {"filter": wanted, "cursor": cursor, "limit": limit}
        return Request("list_tasks", arguments, page_from_json)

    def reserve_tasks(
        self, topic: str, pid: str, limit: int = 1, wait_ms: int = 0
    ) -> Request[list[Task]]:
        arguments: dict[str, object] = {"topic": topic, "pid": pid, "limit": limit}
        if wait_ms:  # sent only when asked for: a plain reserve is the same call as ever
            arguments["wait_ms"] = wait_ms
        return Request("reserve_tasks", arguments, _tasks("reserve_tasks"))

    def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> Request[list[Result[Task, SokkaError]]]:
        require_batch("leases", leases, LeaseToken)
        wire = [lease_to_json(lease) for lease in leases]
        return Request("extend_leases", {"pid": pid, "leases": wire}, results_from_json)

    def terminate(
        self, task_id: str, pid: str, attempt: int, result: Any = None
    ) -> Request[Task]:
        arguments: dict[str, Any] = {"task_id": task_id, "pid": pid, "attempt": attempt}
        if result is not None:
            # Checked here as a store checks it (a bad result names ``result`` and
            # never travels); sent only when there is one, so a plain terminate
            # is still accepted by a server older than results.
            event = Terminate(pid=pid, attempt=attempt, result=result)
            arguments["result"] = json.loads(event.result_json or "null")
        return Request("terminate", arguments, task_from_json)

    def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Request[Task]:
        arguments = {"task_id": task_id, "pid": pid, "attempt": attempt, "snooze_ms": snooze_ms}
        return Request("snooze", arguments, task_from_json)

    def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Request[Task]:
        # The event a store builds, with its checks: the message goes out clipped as
        # a store clips it (a 10 MB message would pass the server's body limit).
        event = Fail(pid=pid, attempt=attempt, error=error, retry_after_ms=retry_after_ms)
        arguments = {
            "task_id": task_id,
            "pid": event.pid,
            "attempt": event.attempt,
            "error": event.error,
            "retry_after_ms": event.retry_after_ms,
        }
        return Request("fail", arguments, task_from_json)

    def finish_many(self, outcomes: Sequence[Finish]) -> Request[list[Result[Task, SokkaError]]]:
        require_batch("outcomes", outcomes, Finish)
        wire = [outcome_to_json(outcome) for outcome in outcomes]
        return Request("finish_many", {"outcomes": wire}, results_from_json)

    def revoke_lease(self, task_id: str, record_ver: int) -> Request[Task]:
        arguments = {"task_id": task_id, "record_ver": record_ver}
        return Request("revoke_lease", arguments, task_from_json)

    def requeue(self, task_id: str) -> Request[Task]:
        return Request("requeue", {"task_id": task_id}, task_from_json)

    def cancel(self, task_id: str, reason: str) -> Request[Task]:
        clipped = Cancel(reason=reason).reason  # as fail's error, for the same reason
        return Request("cancel", {"task_id": task_id, "reason": clipped}, task_from_json)

    def pause_topic(self, topic: str) -> Request[bool]:
        return Request("pause_topic", {"topic": topic}, changed_from_json)

    def resume_topic(self, topic: str) -> Request[bool]:
        return Request("resume_topic", {"topic": topic}, changed_from_json)

    def paused_topics(self) -> Request[list[str]]:
        return Request("paused_topics", {}, topics_from_json)

    def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Request[Page]:
        arguments = {"topic": topic, "cursor": cursor, "limit": limit}
        return Request("list_leased_tasks", arguments, page_from_json)

    def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Request[Counts]:
        # A Status is a str: it travels as its value; anything else goes as it
        # is, and the server's store names the field it refuses.
        arguments = {"topic": topic, "status": status, "failed_within_ms": failed_within_ms}
        return Request("count_tasks", arguments, counts_from_json)

    def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Request[Purged]:
        # Statuses are str: a list of them travels as it is; anything else goes
        # as it is too, and the server's store names the field it refuses.
        wire = list(statuses) if isinstance(statuses, list | tuple | set | frozenset) else statuses
        arguments = {
            "statuses": wire,
            "older_than_ms": older_than_ms,
            "topic": topic,
            "limit": limit,
        }
        return Request("purge", arguments, purged_from_json)


#: The one ``WireCalls`` both HTTP stores use.
WIRE_CALLS = WireCalls()
