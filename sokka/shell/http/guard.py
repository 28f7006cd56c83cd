"""Before any parsing: the bearer token, the allowed host names, the body limit and
deadline, and the requests served at once (and the problem answers they give)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from sokka.adapters.wire import (
    PROBLEM_JSON,
    problem_for,
)
from sokka.adapters.wire import problem as _protocol_problem  # locals are named "problem"
from sokka.core.errors import RetryableError, SokkaError, StoreError
from sokka.shell.http.hosts import HostRule
from sokka.shell.http.limits import RETRY_AFTER_S, ASGIApp, Message, Receive, Scope, Send, _log
from sokka.shell.tokens import WRONG_TOKEN, Throttle, bearer_refusal

__all__ = []

# -- responses ------------------------------------------------------------------------


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    status = int(problem["status"])
    extra = dict(headers or {})
    if status in (429, 503):
        extra.setdefault("Retry-After", str(RETRY_AFTER_S))
    return Response(_json_bytes(problem), status, extra, media_type=PROBLEM_JSON)


def _too_large(limit: int) -> Response:
    problem = _protocol_problem(
        "request-too-large", f"the request body must be at most {limit} bytes", max_bytes=limit
    )
    return _problem_response(problem, {"Connection": "close"})


def _too_slow(timeout_s: float) -> Response:
    problem = _protocol_problem(
        "request-timeout", f"the request body must arrive within {timeout_s:g} seconds"
    )
    return _problem_response(problem, {"Connection": "close"})


def _client_address(scope: Scope) -> str:
    """The address a request came from, as the wrong-token throttle counts it
    (uvicorn puts a trusted proxy's ``X-Forwarded-For`` there)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _locked_out(retry_after_s: int) -> Response:
    """The answer to a request from an address that sent too many wrong tokens."""
    problem = _protocol_problem(
        "too-many-wrong-tokens",
        f"too many wrong tokens from this address: try again in {retry_after_s} s",
    )
    return _problem_response(problem, {"Retry-After": str(retry_after_s)})


def _error_response(error: SokkaError) -> Response:
    if isinstance(error, RetryableError | StoreError):
        # The fixed detail goes out; the store's own message (hosts, tables,
        # driver text) stays in the server's log.
        _log.warning("store call failed: %s: %s", type(error).__name__, error)
    return _problem_response(problem_for(error))


# -- the guard: authentication and the body limit, before any parsing ------------------


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class _Guard:
    """ASGI middleware: refuse a request without the token (401), from an address
    that sent too many wrong tokens (429, ``throttle``), with a body over the
    limit (413) or slower than its deadline (408), and a request over the
    concurrency limit (503), before the application parses anything."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body_bytes: int,
        hosts: HostRule,
        body_timeout_s: float,
        max_concurrency: int,
        throttle: Throttle,
        dashboard: bool = False,
    ) -> None:
        self.app = app
        self.throttle = throttle
        self.serves_dashboard = dashboard
        self.expected = None if token is None else token.encode()
        self.max_body_bytes = max_body_bytes
        self.hosts = hosts
        self.body_timeout_s = body_timeout_s
        self.max_concurrency = max_concurrency
        # Requests in flight: the event loop is one thread, so a plain count is safe.
        self.in_flight = 0

    def dashboard(self, scope: Scope) -> bool:
        path: str = scope["path"]
        return self.serves_dashboard and (path == "/ui" or path.startswith("/ui/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        named = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
        if not self.hosts.allows(named):
            problem = _protocol_problem(
                "misdirected-request", "this server does not answer for that Host"
            )
            await _problem_response(problem)(scope, receive, send)
            return
        # /ui is the dashboard, which checks its own session cookie instead of a
        # bearer token (a browser cannot send one); it needs jinja2 to exist.
        if self.expected is not None and scope["path"] != "/health" and not self.dashboard(scope):
            address = _client_address(scope)
            wait_s = self.throttle.retry_after_s(address)
            if wait_s is not None:
                # Refused whatever it carries, the right token too: a guess that
                # hit is not confirmed before the lockout ends.
                await _locked_out(wait_s)(scope, receive, send)
                return
            given = [value for name, value in scope["headers"] if name == b"authorization"]
            refusal = bearer_refusal(given, self.expected)
            if refusal == WRONG_TOKEN:
                self.throttle.wrong(address, "the API")
            if refusal is not None:
                challenge = 'Bearer realm="sokka"'
                if given:
                    challenge += ', error="invalid_token"'
                problem = _protocol_problem("unauthorized", refusal)
                await _problem_response(problem, {"WWW-Authenticate": challenge})(
                    scope, receive, send
                )
                return
        declared = headers.get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_body_bytes
        ):
            await _too_large(self.max_body_bytes)(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency and scope["path"] != "/health":
            problem = _protocol_problem(
                "server-busy", f"the server is serving {self.max_concurrency} requests already"
            )
            await _problem_response(problem)(scope, receive, send)
            return
        self.in_flight += 1
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, self._reading(receive), sending)
        except _BodyTooSlow:
            _log.info("%s: the request body did not arrive within %s s", scope["path"],
                      self.body_timeout_s)  # fmt: skip
            if not started:
                await _too_slow(self.body_timeout_s)(scope, receive, send)
        except ClientDisconnect:
            # The client hung up before its body arrived: nothing to answer, nothing wrong here.
            _log.debug("%s: the client went away during its request", scope["path"])
        finally:
            self.in_flight -= 1

    def _reading(self, receive: Receive) -> Receive:
        """``receive`` that counts the body (``_BodyTooLarge``) and reads all of it
        within ``body_timeout_s`` of the request's start (``_BodyTooSlow``)."""
        seen = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        complete = False

        async def read() -> Message:
            nonlocal seen, complete
            if complete:
                # After the body, receive only waits for a disconnect: no deadline.
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise _BodyTooSlow from None
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise _BodyTooLarge
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return read
