"""``AsyncHTTPStore``: ``HTTPStore`` for asyncio, over ``httpx.AsyncClient``.

What is sent for each call, what is checked before sending and how the
answer or the error is read are ``HTTPStore``'s own
(``sokka.adapters.wire.client``); only the transport differs. The same
options, the same answers and errors; ``Unavailable`` when the server
cannot be reached or does not answer in time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import httpx
from returns.result import Result

from sokka.adapters.http import DEFAULT_TIMEOUT_S
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

__all__ = ["AsyncHTTPStore"]

_T = TypeVar("_T")


class AsyncHTTPStore:
    """An ``AsyncTaskStore`` served by ``sokka serve`` at ``base_url``.

    ``token``, ``timeout``: as for ``HTTPStore``. ``transport``: an httpx
    async transport to use instead of the network (``httpx.ASGITransport(app)``
    serves an app in-process).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url, headers = client_headers(base_url, token)
        self.max_response_bytes = require_max_response_bytes(max_response_bytes)
        if token is not None and transport is None:
            warn_if_token_in_clear(self.base_url)
        #: The longest ``reserve_tasks(..., wait_ms=)`` this client asks for: half its
        #: timeout, so that the held answer always arrives before the timeout.
        self.max_wait_ms = longest_wait_ms(timeout)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=30.0),
        )

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._client.aclose()

    async def __aenter__(self) -> AsyncHTTPStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncHTTPStore({self.base_url!r})"

    async def _call(self, name: str, arguments: dict[str, Any]) -> Any:
        path, content = encode(name, arguments)
        request = self._client.build_request(
            "POST", path, content=content, headers={"Content-Type": "application/json"}
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                body = await self._read(response)
            finally:
                await response.aclose()
        except httpx.TransportError as error:
            raise transport_error(self.base_url, name, error) from None
        except TooLarge:
            raise too_large(self.base_url, name, self.max_response_bytes) from None
        return read_response(self.base_url, name, response, body)

    async def _read(self, response: httpx.Response) -> bytes:
        """The answer's body, or ``TooLarge`` as soon as it passes the limit."""
        limit = self.max_response_bytes
        if declared_too_large(response, limit):
            raise TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send(self, request: Request[_T] | Answered[_T]) -> _T:
        if isinstance(request, Answered):
            return request.value
        return request.read(await self._call(request.name, request.arguments))

    # -- AsyncTaskStore ------------------------------------------------------------------

    async def create_task(self, spec: TaskSpec) -> Task:
        return await self._send(WIRE_CALLS.create_task(spec))

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        return await self._send(WIRE_CALLS.create_tasks(specs))

    async def get_task(self, task_id: str) -> Task:
        return await self._send(WIRE_CALLS.get_task(task_id))

    async def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        return await self._send(WIRE_CALLS.tasks_in_group(task_group_id, limit))

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        return await self._send(WIRE_CALLS.list_tasks(filter, cursor, limit))

    async def reserve_tasks(
        self, topic: str, pid: str, limit: int = 1, wait_ms: int = 0
    ) -> list[Task]:
        """``HTTPStore.reserve_tasks``: with ``wait_ms`` (1..``max_wait_ms``), a long
        poll that the server holds until a task of ``topic`` becomes ready or
        ``wait_ms`` passes (then it answers ``[]``)."""
        wait_ms = require_wait_ms(wait_ms, self.max_wait_ms)
        return await self._send(WIRE_CALLS.reserve_tasks(topic, pid, limit, wait_ms))

    async def extend_leases(
        self, pid: str, leases: Sequence[LeaseToken]
    ) -> list[Result[Task, SokkaError]]:
        return await self._send(WIRE_CALLS.extend_leases(pid, leases))

    async def terminate(self, task_id: str, pid: str, attempt: int, result: Any = None) -> Task:
        return await self._send(WIRE_CALLS.terminate(task_id, pid, attempt, result))

    async def snooze(self, task_id: str, pid: str, attempt: int, snooze_ms: int) -> Task:
        return await self._send(WIRE_CALLS.snooze(task_id, pid, attempt, snooze_ms))

    async def fail(
        self,
        task_id: str,
        pid: str,
        attempt: int,
        error: str,
        retry_after_ms: int | None = None,
    ) -> Task:
        return await self._send(WIRE_CALLS.fail(task_id, pid, attempt, error, retry_after_ms))

    async def finish_many(self, outcomes: Sequence[Finish]) -> list[Result[Task, SokkaError]]:
        return await self._send(WIRE_CALLS.finish_many(outcomes))

    async def revoke_lease(self, task_id: str, record_ver: int) -> Task:
        return await self._send(WIRE_CALLS.revoke_lease(task_id, record_ver))

    async def requeue(self, task_id: str) -> Task:
        return await self._send(WIRE_CALLS.requeue(task_id))

    async def cancel(self, task_id: str, reason: str) -> Task:
        return await self._send(WIRE_CALLS.cancel(task_id, reason))

    async def pause_topic(self, topic: str) -> bool:
        return await self._send(WIRE_CALLS.pause_topic(topic))

    async def resume_topic(self, topic: str) -> bool:
        return await self._send(WIRE_CALLS.resume_topic(topic))

    async def paused_topics(self) -> list[str]:
        return await self._send(WIRE_CALLS.paused_topics())

    async def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        return await self._send(WIRE_CALLS.list_leased_tasks(topic, cursor, limit))

    async def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts:
        return await self._send(WIRE_CALLS.count_tasks(topic, status, failed_within_ms))

    async def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged:
        return await self._send(WIRE_CALLS.purge(statuses, older_than_ms, topic, limit))
