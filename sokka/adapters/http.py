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

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

import httpx
from returns.result import Result

from sokka.adapters.store import (
    DEFAULT_FAILED_WITHIN_MS,
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Counts,
    Page,
    Purged,
    TaskFilter,
)
from sokka.adapters.wire.client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    WIRE_CALLS,
    Answered,
    Request,
    TooLarge,
    client_headers,
    declared_too_large,
    encode,
    longest_wait_ms,
    read_response,
    require_max_response_bytes,
    require_wait_ms,
    too_large,
    transport_error,
    warn_if_token_in_clear,
)
from sokka.core.commands import Finish, LeaseToken
from sokka.core.errors import SokkaError
from sokka.core.task import Status, Task, TaskSpec

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT_S", "HTTPStore"]

#: Seconds to wait for a connection, or for the server's answer to a call.
DEFAULT_TIMEOUT_S: Final = 30.0


_T = TypeVar("_T")


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
        self.base_url, headers = client_headers(base_url, token)
        self.max_response_bytes = require_max_response_bytes(max_response_bytes)
        if token is not None and transport is None:
            warn_if_token_in_clear(self.base_url)
        #: The longest ``reserve_tasks(..., wait_ms=)`` this client asks for: half its
        #: timeout, so that the held answer always arrives before the timeout.
        self.max_wait_ms = longest_wait_ms(timeout)
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
        path, content = encode(name, arguments)
        request = self._client.build_request(
            "POST", path, content=content, headers={"Content-Type": "application/json"}
        )
        try:
            response = self._client.send(request, stream=True)
            try:
                body = self._read(response)
            finally:
                response.close()
        except httpx.TransportError as error:
            raise transport_error(self.base_url, name, error) from None
        except TooLarge:
            raise too_large(self.base_url, name, self.max_response_bytes) from None
        return read_response(self.base_url, name, response, body)

    def _read(self, response: httpx.Response) -> bytes:
        """The answer's body, or ``TooLarge`` as soon as it passes the limit."""
        limit = self.max_response_bytes
        if declared_too_large(response, limit):
            raise TooLarge
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _send(self, request: Request[_T] | Answered[_T]) -> _T:
        if isinstance(request, Answered):
            return request.value
        return request.read(self._call(request.name, request.arguments))

    # -- TaskStore ---------------------------------------------------------------------

    def create_task(self, spec: TaskSpec) -> Task:
        return self._send(WIRE_CALLS.create_task(spec))

    def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        return self._send(WIRE_CALLS.create_tasks(specs))

    def get_task(self, task_id: str) -> Task:
        return self._send(WIRE_CALLS.get_task(task_id))

    def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        return self._send(WIRE_CALLS.tasks_in_group(task_group_id, limit))

    def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        return self._send(WIRE_CALLS.list_tasks(filter, cursor, limit))

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1, wait_ms: int = 0) -> list[Task]:
        """``TaskStore.reserve_tasks``; with ``wait_ms`` (1..``max_wait_ms``), a long
        poll: when nothing is ready, the server holds the call until a task of
        ``topic`` becomes ready or ``wait_ms`` passes (then answers ``[]``)."""
        wait_ms = require_wait_ms(wait_ms, self.max_wait_ms)
        return self._send(WIRE_CALLS.reserve_tasks(topic, pid, limit, wait_ms))

    def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        return self._send(WIRE_CALLS.extend_leases(pid, leases))

    def terminate(self, task_id: str, pid: str, attempt: int, result: Any = None) -> Task:
        return self._send(WIRE_CALLS.terminate(task_id, pid, attempt, result))

    def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task:
        return self._send(WIRE_CALLS.snooze(task_id, pid, attempt, snooze_ms))

    def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task:
        return self._send(WIRE_CALLS.fail(task_id, pid, attempt, error, retry_after_ms))

    def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]:
        return self._send(WIRE_CALLS.finish_many(outcomes))

    def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        return self._send(WIRE_CALLS.revoke_lease(task_id, record_ver))

    def requeue(self, task_id: str) -> Task:
        return self._send(WIRE_CALLS.requeue(task_id))

    def cancel(self, task_id: str, reason: str) -> Task:
        return self._send(WIRE_CALLS.cancel(task_id, reason))

    def pause_topic(self, topic: str) -> bool:
        return self._send(WIRE_CALLS.pause_topic(topic))

    def resume_topic(self, topic: str) -> bool:
        return self._send(WIRE_CALLS.resume_topic(topic))

    def paused_topics(self) -> list[str]:
        return self._send(WIRE_CALLS.paused_topics())

    def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        return self._send(WIRE_CALLS.list_leased_tasks(topic, cursor, limit))

    def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts:
        return self._send(WIRE_CALLS.count_tasks(topic, status, failed_within_ms))

    def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged:
        return self._send(WIRE_CALLS.purge(statuses, older_than_ms, topic, limit))
