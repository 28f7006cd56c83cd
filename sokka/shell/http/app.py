"""The application: serve any ``TaskStore`` over HTTP: an ASGI application (Starlette).

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

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sokka.adapters.ready import Wakeable
from sokka.adapters.store import TaskStore
from sokka.adapters.wire import (
    OPERATIONS,
    PROBLEM_TYPES,
    Operation,
    invoke,
    problem_type_uri,
    wait_ms_from_json,
)
from sokka.adapters.wire import problem as _protocol_problem  # locals are named "problem"
from sokka.adapters.wire.budget import DEFAULT_MAX_ANSWER_BYTES, MAX_TASK_JSON_BYTES
from sokka.adapters.wire.openapi import openapi_document
from sokka.core.errors import SokkaError, ValidationError
from sokka.shell.http.guard import (
    _BodyTooLarge,
    _error_response,
    _Guard,
    _json_bytes,
    _problem_response,
    _too_large,
)
from sokka.shell.http.hosts import host_rule
from sokka.shell.http.limits import (
    BODY_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    _log,
)
from sokka.shell.tokens import Throttle, require_token

if TYPE_CHECKING:
    from sokka.shell.clock import Clock
    from sokka.shell.metrics import ServerMetrics

__all__ = ["create_app"]

# -- request decoding -------------------------------------------------------------------


#: Bodies up to this size are parsed on the event loop (a few milliseconds at most);
#: larger ones on a worker thread, so one large body does not hold up every request.
_PARSE_ON_LOOP_BYTES: Final = 64 * 1024


class _NotStrict(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _NotStrict(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        # Linear: one object may hold hundreds of thousands of keys.
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                shown = name if len(name) <= 64 else f"{name[:64]}..."
                raise _NotStrict(f"the key {shown!r} appears twice in one object")
            seen.add(name)
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


def _store_of(app: Starlette) -> TaskStore:
    store: TaskStore = app.state.store
    return store


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
            if len(raw) <= _PARSE_ON_LOOP_BYTES:
                body = _parse_json(raw)
            else:
                body = await run_in_threadpool(_parse_json, raw)
        except ValidationError as error:
            problem = _protocol_problem(
                "malformed-request", str(error), field=error.field, rule=error.rule
            )
            return _problem_response(problem)
        store = _store(request)
        try:
            if operation.name == "reserve_tasks":
                answer = await _reserve(store, operation, body, request.app.state.max_answer_bytes)
            else:
                answer = await run_in_threadpool(
                    invoke, store, operation, body, request.app.state.max_answer_bytes
                )
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


async def _reserve(store: TaskStore, operation: Operation, body: object, budget: int) -> str:
    """``reserve_tasks``, holding an empty answer up to the body's ``wait_ms`` (a long poll).

    The wait holds neither a thread nor a store connection: it awaits an
    asyncio event that the store's ready hint sets (``Wakeable.subscribe_ready``,
    subscribed before the first reservation, so a task made ready in between
    is not missed), then reserves again. A store that cannot hint answers at
    once, and the client polls as without a wait. ``wait_ms`` is validated by
    ``invoke`` (which ignores it) before anything waits.
    """
    wait_ms = body.get("wait_ms", 0) if isinstance(body, dict) else 0
    topic = body.get("topic") if isinstance(body, dict) else None
    if not wait_ms or not isinstance(store, Wakeable) or not isinstance(topic, str):
        return await run_in_threadpool(invoke, store, operation, body, budget)
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def ring() -> None:  # on the store's thread: hop onto the loop, if it still runs
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(woken.set)

    try:
        unsubscribe = await run_in_threadpool(store.subscribe_ready, topic, ring)
    except ValidationError:  # a bad topic: let the call itself say so
        return await run_in_threadpool(invoke, store, operation, body, budget)
    try:
        answer = await run_in_threadpool(invoke, store, operation, body, budget)
        deadline = loop.time() + wait_ms_from_json(wait_ms) / 1000
        while answer == "[]":
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(woken.wait(), remaining)
            except TimeoutError:
                break
            woken.clear()  # before reserving: a hint during the reservation is kept
            answer = await run_in_threadpool(invoke, store, operation, body, budget)
        return answer
    finally:
        unsubscribe()


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


async def _metrics(request: Request) -> Response:
    metrics = request.app.state.metrics
    if metrics is None:
        problem = _protocol_problem(
            "unknown-endpoint",
            "metrics need prometheus-client, which is not installed: pip install 'sokka[metrics]'",
        )
        return _problem_response(problem)
    from sokka.shell.metrics import CONTENT_TYPE, exposition

    # Off the loop: a scrape counts the queue with a store call.
    body = await run_in_threadpool(exposition, metrics.registry)
    return Response(body, 200, media_type=CONTENT_TYPE)


async def _openapi(request: Request) -> Response:
    return Response(_json_bytes(request.app.state.openapi), 200, media_type="application/json")


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


def _server_metrics() -> ServerMetrics | None:
    """Request metrics on a registry of this application's own, or None without
    prometheus-client."""
    try:
        from sokka.shell.metrics import ServerMetrics, new_registry
    except ImportError:
        return None
    calls = {op.path: op.name for op in OPERATIONS}
    calls.update({"/health": "health", "/openapi.json": "openapi", "/metrics": "metrics"})
    return ServerMetrics(new_registry(), calls)


def create_app(
    store: TaskStore,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    allowed_hosts: Sequence[str] = (),
    listen_host: str | None = None,
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    body_timeout_s: float = BODY_TIMEOUT_S,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    dashboard: bool = True,
    metrics: bool = True,
    clock: Clock | None = None,
) -> Starlette:
    """The ASGI application serving ``store``.

    ``token``: when given, every endpoint but ``/health`` requires
    ``Authorization: Bearer <token>``; it must be at least 16 characters of
    ``A-Z a-z 0-9 - . _ ~ + / =``. ``max_body_bytes``: the largest request
    body read (413 above it). ``allowed_hosts`` and ``listen_host`` (the
    address the server listens on): which ``Host`` headers are answered, by
    the one rule of ``sokka.shell.http.hosts`` (421 otherwise): loopback
    names, ``listen_host`` and ``allowed_hosts``; with a token, any well-formed
    one. It keeps a web page that rebinds its own domain to
    this address (DNS rebinding) from calling a server that has no token.
    ``max_answer_bytes``: the most task JSON one read answers with
    (``tasks_in_group``, ``list_tasks``, ``list_leased_tasks``,
    ``reserve_tasks``; see ``sokka.adapters.wire.budget``).
    ``body_timeout_s``: the time a request's whole body may take to arrive
    (408 after it). ``max_concurrency``: requests served at once (503 with
    ``Retry-After`` above it; ``/health`` is always answered).
    ``metrics``: count requests by call and status, and answer ``GET /metrics``
    (Prometheus' text format, behind the token like every other call) when
    prometheus-client is installed (the ``metrics`` extra).

    Wrong tokens are counted per client address, on the API and the
    dashboard's login together (``sokka.shell.tokens``): after
    ``MAX_WRONG_TOKENS`` within ``WRONG_TOKEN_WINDOW_MS``, that address gets
    429 ``too-many-wrong-tokens`` with ``Retry-After`` until the oldest of them
    is a window old. ``clock``: the clock that window is read on (monotonic by
    default; a test steps a ``ManualClock``).
    """
    if token is not None:
        require_token("token", token)
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
        raise ValidationError("max_body_bytes", "must be an integer")
    if max_body_bytes < 1024:
        raise ValidationError("max_body_bytes", f"must be at least 1024 (got {max_body_bytes})")
    if isinstance(max_answer_bytes, bool) or not isinstance(max_answer_bytes, int):
        raise ValidationError("max_answer_bytes", "must be an integer")
    if max_answer_bytes < MAX_TASK_JSON_BYTES:
        raise ValidationError(
            "max_answer_bytes",
            f"must hold one task of the largest size, {MAX_TASK_JSON_BYTES} bytes "
            f"(got {max_answer_bytes})",
        )
    if isinstance(body_timeout_s, bool) or not isinstance(body_timeout_s, int | float):
        raise ValidationError("body_timeout_s", "must be a number of seconds")
    if not 0 < body_timeout_s <= 3600:
        raise ValidationError(
            "body_timeout_s", f"must be above 0 and at most 3600 (got {body_timeout_s})"
        )
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ValidationError("max_concurrency", "must be an integer")
    if max_concurrency < 1:
        raise ValidationError("max_concurrency", f"must be at least 1 (got {max_concurrency})")
    if isinstance(allowed_hosts, str) or not all(isinstance(h, str) for h in allowed_hosts):
        raise ValidationError("allowed_hosts", "must be a list of host names")
    try:
        hosts = host_rule(token=token is not None, listen=listen_host, allowed=allowed_hosts)
    except ValueError as error:
        raise ValidationError("allowed_hosts", f"must be host names: {error}") from None
    routes: list[BaseRoute] = [
        Route("/health", _health, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/problems/{code}", _problem_type, methods=["GET"]),
        *(Route(op.path, _endpoint(op), methods=["POST"]) for op in OPERATIONS),
    ]
    if dashboard:
        try:
            from sokka.shell.http.dashboard import Sessions, dashboard_routes
        except ImportError:  # jinja2 missing: an older install of the http extra
            _log.warning("the dashboard (/ui/) needs jinja2: pip install 'sokka[http]'")
            dashboard = False
        else:
            routes.extend(dashboard_routes())
    server_metrics = _server_metrics() if metrics else None
    throttle = Throttle(clock=clock)
    app = Starlette(
        routes=routes,
        middleware=[
            # Outermost: refusals (a missing token, a busy server) are counted too.
            *([Middleware(server_metrics.middleware)] if server_metrics is not None else []),
            Middleware(
                _Guard,
                token=token,
                max_body_bytes=max_body_bytes,
                hosts=hosts,
                body_timeout_s=body_timeout_s,
                max_concurrency=max_concurrency,
                throttle=throttle,
                dashboard=dashboard,
            )
        ],
        exception_handlers={HTTPException: _http_error},
    )
    # No redirect from /v1/x/ to /v1/x: a 404 problem says more than a bare 307.
    app.router.redirect_slashes = False
    # The store lives in app.state: a test may swap it between requests.
    app.state.store = store
    app.state.max_body_bytes = max_body_bytes
    app.state.max_answer_bytes = max_answer_bytes
    app.state.openapi = openapi_document(secured=token is not None)
    app.state.metrics = server_metrics
    app.state.throttle = throttle  # the guard's and the login's, one count per address
    if server_metrics is not None:
        server_metrics.watch_queue(lambda: _store_of(app).count_tasks())
    if dashboard:
        app.state.ui_sessions = Sessions(token)
    return app
