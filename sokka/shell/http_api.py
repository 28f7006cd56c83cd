"""Serve any ``TaskStore`` over HTTP: an ASGI application (Starlette).

``create_app(store)`` returns the application; ``sokka serve`` runs it under
uvicorn. Every ``TaskStore`` call is ``POST /v1/<call>`` with a JSON object
of its arguments (``sokka.adapters.wire.OPERATIONS``); ``GET /health`` tells
whether the store answers; ``GET /openapi.json`` is the OpenAPI 3.1 document,
built from the same table the requests are decoded with, so the two agree.

Every error is an RFC 9457 problem (``application/problem+json``) whose
``type`` is ``/problems/<code>`` (``GET`` it for its description). The
status follows the error: 422 invalid input, 404 not found, 409 conflicts,
403 a lease the caller does not hold, 429 throttled and 503 unavailable
(both with ``Retry-After``). A driver's message, a stack trace or SQL never
reaches a response: store failures answer with a fixed text and are logged.

Security: with a ``token``, every endpoint but ``/health`` needs
``Authorization: Bearer <token>`` (compared in constant time); a body over
``max_body_bytes`` gets 413 before it is read in full; ``POST`` needs
``Content-Type: application/json``, which a browser cannot send to another
origin without a CORS preflight (never granted here), so a web page cannot
forge calls.
"""

from __future__ import annotations

import hmac
import importlib.metadata
import json
import logging
import socket
import string
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sokka.adapters.store import TaskStore
from sokka.adapters.wire import (
    OPERATIONS,
    PROBLEM_JSON,
    PROBLEM_TYPES,
    SCHEMAS,
    Operation,
    invoke,
    problem_for,
    problem_type_uri,
)
from sokka.adapters.wire import problem as _protocol_problem  # locals are named "problem"
from sokka.core.errors import RetryableError, SokkaError, StoreError, ValidationError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MIN_TOKEN_LENGTH",
    "create_app",
    "openapi_document",
    "serve_in_background",
]

#: 8 MiB: a batch of 1,000 specs with a few KiB of data each, or one task with
#: the largest data (256 KiB) in any encoding.
DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
MIN_TOKEN_LENGTH: Final = 16
#: Seconds a client should wait before retrying a throttled or unavailable call.
RETRY_AFTER_S: Final = 1

_log = logging.getLogger("sokka.http")
_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-._~+/=")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- responses ------------------------------------------------------------------------


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _problem_response(problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    status = int(problem["status"])
    extra = dict(headers or {})
    if status in (429, 503):
        extra["Retry-After"] = str(RETRY_AFTER_S)
    return Response(_json_bytes(problem), status, extra, media_type=PROBLEM_JSON)


def _too_large(limit: int) -> Response:
    problem = _protocol_problem(
        "request-too-large", f"the request body must be at most {limit} bytes", max_bytes=limit
    )
    return _problem_response(problem, {"Connection": "close"})


def _error_response(error: SokkaError) -> Response:
    if isinstance(error, RetryableError | StoreError):
        # The fixed detail goes out; the store's own message (hosts, tables,
        # driver text) stays in the server's log.
        _log.warning("store call failed: %s: %s", type(error).__name__, error)
    return _problem_response(problem_for(error))


# -- the guard: authentication and the body limit, before any parsing ------------------


class _BodyTooLarge(Exception):
    pass


def _hostname(host: str) -> str:
    """The name in a Host header (or an allowed host): no port, no IPv6 brackets.

    >>> _hostname("LocalHost:8080"), _hostname("[::1]:8080"), _hostname("::1")
    ('localhost', '::1', '::1')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class _Guard:
    """ASGI middleware: refuse a request without the token (401) and a body over
    the limit (413), before the application parses anything."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body_bytes: int,
        allowed_hosts: frozenset[str] | None,
    ) -> None:
        self.app = app
        self.expected = None if token is None else token.encode()
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = allowed_hosts

    def _refusal(self, given: list[bytes]) -> str | None:
        """Why the ``Authorization`` headers do not carry the token (None: they do).

        The scheme is case-insensitive (RFC 9110); one header only, since two
        could be read differently by a proxy and by us.
        """
        assert self.expected is not None
        if not given:
            return "a bearer token is required"
        if len(given) > 1:
            return "send one Authorization header"
        scheme, _, credentials = given[0].partition(b" ")
        if scheme.lower() != b"bearer":
            return "the Authorization scheme must be Bearer"
        if not hmac.compare_digest(credentials.strip(b" "), self.expected):
            return "wrong token"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.allowed_hosts is not None:
            host = _hostname(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed_hosts:
                problem = _protocol_problem(
                    "misdirected-request", "this server does not answer for that Host"
                )
                await _problem_response(problem)(scope, receive, send)
                return
        if self.expected is not None and scope["path"] != "/health":
            given = [value for name, value in scope["headers"] if name == b"authorization"]
            refusal = self._refusal(given)
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
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise _BodyTooLarge
            return message

        return counted


# -- request decoding -------------------------------------------------------------------


class _NotStrict(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _NotStrict(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        names = [name for name, _ in pairs]
        duplicate = next(name for name in result if names.count(name) > 1)
        raise _NotStrict(f"the key {duplicate!r} appears twice in one object")
    return result


def _parse_json(body: bytes) -> object:
    """Strict JSON: UTF-8, no NaN/Infinity, no repeated keys (``ValidationError``)."""
    try:
        return json.loads(
            body.decode("utf-8"),
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError:
        raise ValidationError("body", "must be UTF-8") from None
    except RecursionError:
        raise ValidationError("body", "is nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ValidationError(
            "body", f"is not JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except ValueError as error:  # NaN, a repeated key, an int too long to read
        reason = str(error) if isinstance(error, _NotStrict) else "holds an integer too long"
        raise ValidationError("body", f"is not strict JSON: {reason}") from None


def _is_json(content_type: str | None) -> bool:
    """JSON, in UTF-8 (RFC 8259 allows no other encoding between systems)."""
    if content_type is None:
        return False
    media, *parameters = (part.strip().lower() for part in content_type.split(";"))
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


# -- the application ----------------------------------------------------------------------


def _store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


def _endpoint(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not _is_json(request.headers.get("content-type")):
            return _problem_response(
                _protocol_problem(
                    "unsupported-media-type",
                    "send the body as Content-Type: application/json (UTF-8)",
                )
            )
        try:
            raw = await request.body()
        except _BodyTooLarge:
            return _too_large(request.app.state.max_body_bytes)
        try:
            body = _parse_json(raw)
        except ValidationError as error:
            problem = _protocol_problem(
                "malformed-request", str(error), field=error.field, rule=error.rule
            )
            return _problem_response(problem)
        store = _store(request)
        try:
            answer = await run_in_threadpool(invoke, store, operation, body)
        except SokkaError as error:
            return _error_response(error)
        except Exception:
            _log.exception("%s failed", operation.path)
            return _problem_response(
                _protocol_problem(
                    "internal-error", str(PROBLEM_TYPES["internal-error"].fixed_detail)
                )
            )
        return Response(answer.encode(), 200, media_type="application/json")

    endpoint.__name__ = operation.name
    return endpoint


async def _health(request: Request) -> Response:
    store = _store(request)
    try:
        await run_in_threadpool(store.list_leased_tasks, None, None, 1)
    except SokkaError as error:
        return _error_response(error)
    except Exception:
        _log.exception("health check failed")
        return _problem_response(
            _protocol_problem("internal-error", "the store did not answer the health check")
        )
    return Response(_json_bytes({"status": "ok"}), 200, media_type="application/json")


async def _openapi(request: Request) -> Response:
    return Response(
        _json_bytes(request.app.state.openapi), 200, media_type="application/json"
    )


async def _problem_type(request: Request) -> Response:
    kind = PROBLEM_TYPES.get(request.path_params["code"])
    if kind is None:
        problem = _protocol_problem("unknown-endpoint", "no such problem type")
        return _problem_response(problem)
    doc = {
        "type": problem_type_uri(kind.code),
        "title": kind.title,
        "status": kind.status,
        "members": list(kind.members),
    }
    return Response(_json_bytes(doc), 200, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        problem = _protocol_problem("method-not-allowed", f"{request.method} is not allowed here")
        return _problem_response(problem, {"Allow": (exc.headers or {}).get("Allow", "")})
    problem = _protocol_problem("unknown-endpoint", f"no endpoint at {request.url.path}")
    return _problem_response(problem)


def create_app(
    store: TaskStore,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The ASGI application serving ``store``.

    ``token``: when given, every endpoint but ``/health`` requires
    ``Authorization: Bearer <token>``; it must be at least 16 characters of
    ``A-Z a-z 0-9 - . _ ~ + / =``. ``max_body_bytes``: the largest request
    body read (413 above it). ``allowed_hosts``: when given, a request whose
    ``Host`` names another host gets 421, which keeps a web page that rebinds
    its own domain to this address (DNS rebinding) from calling a server that
    has no token.
    """
    if token is not None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ValidationError("token", f"must be at least {MIN_TOKEN_LENGTH} characters")
        if not set(token) <= _TOKEN_CHARS:
            raise ValidationError("token", "must only hold A-Z a-z 0-9 - . _ ~ + / =")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
        raise ValidationError("max_body_bytes", "must be an integer")
    if max_body_bytes < 1024:
        raise ValidationError("max_body_bytes", f"must be at least 1024 (got {max_body_bytes})")
    hosts = None
    if allowed_hosts is not None:
        if isinstance(allowed_hosts, str) or not all(
            isinstance(h, str) and h.strip() for h in allowed_hosts
        ):
            raise ValidationError("allowed_hosts", "must be a list of host names")
        hosts = frozenset(_hostname(h) for h in allowed_hosts)
    routes = [
        Route("/health", _health, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/problems/{code}", _problem_type, methods=["GET"]),
        *(Route(op.path, _endpoint(op), methods=["POST"]) for op in OPERATIONS),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                _Guard, token=token, max_body_bytes=max_body_bytes, allowed_hosts=hosts
            )
        ],
        exception_handlers={HTTPException: _http_error},
    )
    # No redirect from /v1/x/ to /v1/x: a 404 problem says more than a bare 307.
    app.router.redirect_slashes = False
    # The store lives in app.state: a test may swap it between requests.
    app.state.store = store
    app.state.max_body_bytes = max_body_bytes
    app.state.openapi = openapi_document(secured=token is not None)
    return app


# -- the OpenAPI document -----------------------------------------------------------------

_PROBLEM_TYPE_DOC: Final = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "members": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["type", "title", "status", "members"],
    "additionalProperties": False,
}
_PROTOCOL_ERRORS: Final = ("malformed-request", "request-too-large", "unsupported-media-type")
_ALWAYS: Final = (
    "throttled",
    "unavailable",
    "store-error",
    "internal-error",
    "misdirected-request",
)


def _responses(success: dict[str, Any], codes: tuple[str, ...], secured: bool) -> dict[str, Any]:
    statuses: dict[int, list[str]] = {}
    for code in (*codes, *(("unauthorized",) if secured else ())):
        statuses.setdefault(PROBLEM_TYPES[code].status, []).append(code)
    responses: dict[str, Any] = {"200": success}
    for status, names in sorted(statuses.items()):
        responses[str(status)] = {
            "description": ", ".join(names),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return responses


def _returns_schema(operation: Operation) -> dict[str, Any]:
    task = {"$ref": "#/components/schemas/Task"}
    match operation.returns:
        case "task":
            return task
        case "tasks":
            return {"type": "array", "items": task}
        case "page":
            return {"$ref": "#/components/schemas/Page"}
        case "results":
            return {"type": "array", "items": {"$ref": "#/components/schemas/Result"}}


def _version() -> str:
    try:
        return importlib.metadata.version("sokka")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "0+unknown"


def openapi_document(*, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API, built from ``wire.OPERATIONS``."""
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        body = {
            "type": "object",
            "properties": {p.name: p.schema for p in op.params},
            "required": [p.name for p in op.params if p.required],
            "additionalProperties": False,
        }
        codes = (*op.errors, *_PROTOCOL_ERRORS, *_ALWAYS)
        if "invalid-input" not in codes:
            codes = ("invalid-input", *codes)
        paths[op.path] = {
            "post": {
                "operationId": op.name,
                "summary": op.summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": _responses(
                    {
                        "description": "the store's answer",
                        "content": {"application/json": {"schema": _returns_schema(op)}},
                    },
                    codes,
                    secured,
                ),
            }
        }
    ok = {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Whether the store answers (no token needed)",
            "security": [],
            "responses": _responses(
                {
                    "description": "the store answers",
                    "content": {"application/json": {"schema": ok}},
                },
                _ALWAYS,
                False,
            ),
        }
    }
    any_json = {"description": "a JSON document", "content": {"application/json": {"schema": {}}}}
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": _responses(any_json, ("misdirected-request",), secured),
        }
    }
    paths["/problems/{code}"] = {
        "get": {
            "operationId": "problem_type",
            "summary": "What a problem type means: its title, status and members",
            "parameters": [
                {
                    "name": "code",
                    "in": "path",
                    "required": True,
                    "description": "the part of the problem's type after /problems/ "
                    "(an unknown one answers 404)",
                    "schema": {"type": "string"},
                }
            ],
            "responses": _responses(
                {
                    "description": "the problem type",
                    "content": {"application/json": {"schema": _PROBLEM_TYPE_DOC}},
                },
                ("unknown-endpoint", "misdirected-request"),
                secured,
            ),
        }
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sokka task store",
            "version": _version(),
            "description": "Every TaskStore call as POST /v1/<call> with a JSON object of its "
            "arguments. Errors are RFC 9457 problems.",
        },
        "paths": paths,
        "components": {"schemas": dict(SCHEMAS)},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


# -- running it -------------------------------------------------------------------------


@contextmanager
def serve_in_background(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a thread of this process; yield its base URL.

    ``port=0`` takes a free port. The server stops (finishing the requests in
    flight) when the block exits. For tests, benchmarks and embedding; ``sokka
    serve`` runs uvicorn in the foreground instead.
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sokka-http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.005)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        yield f"http://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
