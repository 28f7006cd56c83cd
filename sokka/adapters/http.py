"""A ``TaskStore`` on a sokka server (``sokka serve``), over HTTP with httpx.

``HTTPStore("http://queue.internal:8080", token=...)`` is indistinguishable
from the store the server fronts: it passes the same contract suite, raises
the same errors (each problem type is mapped back to its exception), and the
Supervisor and Worker run on it unchanged.

What cannot travel as JSON is checked here, with the same rules a store
applies (a ``TaskSpec`` that is not one, a batch that is not a list);
everything else is checked by the server's store, so every refusal names the
same field with the same rule as in-process.

Connection errors and timeouts raise ``Unavailable``, as any 5xx that is not
a store error does. As with any store, a write whose answer was lost may
or may not have been applied: a retry then gets the refusal the new state
calls for (a worker's retried ``terminate`` of a task it did terminate gets
``NotRunning``), or the caller re-reads the task.
Connections are kept alive and reused; the store may be shared by threads.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final

import httpx
from returns.result import Failure, Result

from sokka.adapters.store import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Page,
    TaskFilter,
    require_batch,
    require_spec,
)
from sokka.adapters.wire import (
    OPERATIONS_BY_NAME,
    PROBLEM_JSON,
    error_from_problem,
    filter_to_json,
    lease_to_json,
    outcome_to_json,
    page_from_json,
    results_from_json,
    spec_to_json,
    task_from_json,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import SokkaError, StoreError, Unavailable, ValidationError
from sokka.core.task import Task, TaskSpec, shown
from sokka.core.transitions import Cancel, Fail

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT_S", "HTTPStore"]

#: Seconds to wait for a connection, or for the server's answer to a call.
DEFAULT_TIMEOUT_S: Final = 30.0
#: 64 MiB: the largest answer read. A server's read answers stay within its
#: budget (32 MiB of tasks by default, ``sokka.adapters.wire.budget``); this
#: leaves room for batch answers and keeps a wrong or hostile URL from filling
#: the caller's memory.
DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024


_log = logging.getLogger(__name__)
#: Hosts already warned about (once per process each: a CLI or a worker pool
#: makes many stores for one server).
_warned_hosts: set[str] = set()


class _TooLarge(Exception):
    pass


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


def _warn_if_token_in_clear(url: httpx.URL) -> None:
    """Warn, once per host, that the bearer token is about to cross a network in clear."""
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


class HTTPStore:
    """A ``TaskStore`` served by ``sokka serve`` at ``base_url``.

    ``token``: the server's bearer token, if it has one. ``timeout``: seconds
    for connecting and for each answer (a call that times out raises
    ``Unavailable``). ``transport``: an httpx transport to use instead of the
    network (tests and in-process serving: ``httpx.ASGITransport(app)``).
    ``max_response_bytes``: the largest answer read; a larger one raises
    ``StoreError`` as soon as it passes the limit, before it is all read.

    A token sent over plain ``http://`` to a host that is not loopback is
    logged as a warning (once per host; logger ``sokka.adapters.http``), not
    refused: on a network that encrypts below HTTP (a VPN, a service mesh)
    plain HTTP is what the operator chose, but anywhere else the token can be
    read on the way, so the warning names the host.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValidationError("base_url", "must be an http:// or https:// URL")
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1024
        ):
            raise ValidationError("max_response_bytes", "must be an integer of at least 1024")
        self.max_response_bytes = max_response_bytes
        if token is not None and (not isinstance(token, str) or not token):
            raise ValidationError("token", "must be a non-empty string or None")
        headers = {"Accept": "application/json", "User-Agent": "sokka-httpstore"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        if token is not None and transport is None:
            _warn_if_token_in_clear(httpx.URL(self.base_url))
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=30.0),
        )

    # -- plumbing ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._client.close()

    def __enter__(self) -> HTTPStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HTTPStore({self.base_url!r})"

    def _call(self, name: str, arguments: dict[str, Any]) -> Any:
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
        request = self._client.build_request(
            "POST", operation.path, content=content, headers={"Content-Type": "application/json"}
        )
        try:
            response = self._client.send(request, stream=True)
            try:
                answer = self._read(response)
            finally:
                response.close()
        except httpx.TimeoutException as error:
            raise Unavailable(f"{self.base_url} did not answer {name} in time: {error}") from None
        except httpx.TransportError as error:
            raise Unavailable(f"cannot reach {self.base_url}: {error}") from None
        except _TooLarge:
            raise StoreError(
                f"{self.base_url} answered {name} with more than {self.max_response_bytes} "
                "bytes (HTTPStore's max_response_bytes): not read"
            ) from None
        if response.status_code == 200:
            try:
                return json.loads(answer)
            except ValueError:
                raise StoreError(f"{self.base_url} answered {name} with malformed JSON") from None
        raise self._error(response, answer)

    def _read(self, response: httpx.Response) -> bytes:
        """The answer's body, or ``_TooLarge`` as soon as it passes the limit (a
        declared ``Content-Length`` over it is refused before reading)."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _error(self, response: httpx.Response, body: bytes) -> SokkaError:
        problem: object = None
        if response.headers.get("content-type", "").startswith(PROBLEM_JSON):
            try:
                problem = json.loads(body)
            except ValueError:
                problem = None
        if response.status_code == 401:
            detail = problem.get("detail") if isinstance(problem, dict) else None
            return StoreError(
                f"{self.base_url} refused the token ({detail or 'unauthorized'}): "
                "pass the server's token (HTTPStore(token=...), or SOKKA_TOKEN)"
            )
        return error_from_problem(problem, response.status_code)

    # -- TaskStore ---------------------------------------------------------------------

    def create_task(self, spec: TaskSpec) -> Task:
        require_spec(spec)
        return task_from_json(self._call("create_task", {"spec": spec_to_json(spec)}))

    def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
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
            return [r for r in local if r is not None]
        answered = iter(results_from_json(self._call("create_tasks", {"specs": wire})))
        return [next(answered) if r is None else r for r in local]

    def get_task(self, task_id: str) -> Task:
        return task_from_json(self._call("get_task", {"task_id": task_id}))

    def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        answer = self._call("tasks_in_group", {"task_group_id": task_group_id, "limit": limit})
        if not isinstance(answer, list):
            raise StoreError(f"{self.base_url} answered tasks_in_group with something else")
        return [task_from_json(t) for t in answer]

    def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        if filter is not None and not isinstance(filter, TaskFilter):
            raise ValidationError("filter", "must be a TaskFilter")
        wanted = None if filter is None else filter_to_json(filter)
        return page_from_json(
            self._call("list_tasks", {"filter": wanted, "cursor": cursor, "limit": limit})
        )

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        answer = self._call("reserve_tasks", {"topic": topic, "pid": pid, "limit": limit})
        if not isinstance(answer, list):
            raise StoreError(f"{self.base_url} answered reserve_tasks with something else")
        return [task_from_json(t) for t in answer]

    def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        require_batch("leases", leases, LeaseToken)
        wire = [lease_to_json(lease) for lease in leases]
        return results_from_json(self._call("extend_leases", {"pid": pid, "leases": wire}))

    def terminate(self, task_id: str, pid: str, attempt: int) -> Task:
        arguments = {"task_id": task_id, "pid": pid, "attempt": attempt}
        return task_from_json(self._call("terminate", arguments))

    def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task:
        arguments = {"task_id": task_id, "pid": pid, "attempt": attempt, "snooze_ms": snooze_ms}
        return task_from_json(self._call("snooze", arguments))

    def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task:
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
        return task_from_json(self._call("fail", arguments))

    def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]:
        require_batch("outcomes", outcomes, Finish)
        wire = [outcome_to_json(outcome) for outcome in outcomes]
        return results_from_json(self._call("finish_many", {"outcomes": wire}))

    def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        arguments = {"task_id": task_id, "record_ver": record_ver}
        return task_from_json(self._call("revoke_lease", arguments))

    def requeue(self, task_id: str) -> Task:
        return task_from_json(self._call("requeue", {"task_id": task_id}))

    def cancel(self, task_id: str, reason: str) -> Task:
        clipped = Cancel(reason=reason).reason  # as fail's error, for the same reason
        return task_from_json(self._call("cancel", {"task_id": task_id, "reason": clipped}))

    def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        arguments = {"topic": topic, "cursor": cursor, "limit": limit}
        return page_from_json(self._call("list_leased_tasks", arguments))
