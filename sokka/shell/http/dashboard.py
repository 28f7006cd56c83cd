"""The dashboard: server-rendered pages under ``/ui/`` over the same ``TaskStore``
calls as the API (``count_tasks``, ``list_tasks``, ``get_task``,
``list_leased_tasks``, ``requeue``, ``cancel``).

Security model:

* On a server with a token, every page needs a session, which the login page
  gives for the server's token (compared in constant time). Wrong tokens
  count against the client's address with the API's (``throttle``): after
  five within a minute, its logins get 429 until the minute has passed. The session is a
  cookie signed with HMAC-SHA256 under a secret made when the process starts
  (so a restart logs everyone out), ``HttpOnly`` (no script reads it),
  ``SameSite=Strict`` (a browser sends it with no request another site
  starts), ``Path=/ui``, and ``Secure`` when the request came over https. It
  lasts ``SESSION_MAX_AGE_S``.
* On a server without a token (loopback, as ``sokka dashboard`` runs it) no
  login is asked, but a session is still issued, unauthenticated, so that
  the actions can carry a CSRF token.
* Every action is a ``POST`` form carrying a CSRF token, an HMAC of the
  session's id; a request whose ``Origin`` is not this server is refused as
  well. A page of another site can therefore neither read a page (no CORS)
  nor act (no cookie, no CSRF token).
* Everything shown is escaped (Jinja2 autoescaping): task data, errors,
  topics and ids are user input. No script runs on any page.

The ``/ui`` paths are let through the API's bearer-token check
(``guard``): the dashboard checks its session instead; the host rule, body
limit and concurrency limit apply as to every request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sokka.adapters.store import Page, TaskFilter, TaskStore
from sokka.core.errors import (
    InvalidTransition,
    NotFound,
    RetryableError,
    SokkaError,
    ValidationError,
)
from sokka.core.task import Status, Task
from sokka.shell.admin import requeue_failed
from sokka.shell.ages import format_age
from sokka.shell.http.guard import _client_address
from sokka.shell.http.limits import _log
from sokka.shell.tokens import Throttle

__all__ = ["SESSION_COOKIE", "SESSION_MAX_AGE_S", "Sessions", "dashboard_routes"]

SESSION_COOKIE: Final = "sokka_session"
#: How long a login lasts (seconds).
SESSION_MAX_AGE_S: Final = 12 * 3600
#: Tasks per page of the task list.
PAGE_SIZE: Final = 50

_TEMPLATES: Final = Path(__file__).with_name("templates")


# -- sessions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    authenticated: bool


class Sessions:
    """Signed session cookies and their CSRF tokens, under a per-process secret."""

    def __init__(self, token: str | None, secret: bytes | None = None) -> None:
        self.token = token
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    @property
    def login_required(self) -> bool:
        return self.token is not None

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, *, authenticated: bool) -> str:
        """A fresh session's cookie value (a new id each time: a login never keeps
        the id it was given before, so a planted cookie gains nothing)."""
        payload = f"{secrets.token_urlsafe(18)}.{int(authenticated)}.{int(time.time())}"
        return f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie stands for; None if unsigned, altered or expired."""
        if not cookie or len(cookie) > 200:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        sid, authenticated, issued = payload.split(".")
        if not issued.isdigit() or time.time() - int(issued) > SESSION_MAX_AGE_S:
            return None
        return Session(sid, authenticated == "1")

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.sid}")

    def check_token(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())


def _set_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# -- rendering ----------------------------------------------------------------------------


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every template is HTML; task data is user input
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["age"] = format_age
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.globals["statuses"] = [s.value for s in Status]
    return env


_env: jinja2.Environment | None = None


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    global _env
    if _env is None:
        _env = _environment()
    session: Session | None = request.state.ui_session
    sessions: Sessions = request.app.state.ui_sessions
    context.setdefault("notice", None)
    html = _env.get_template(name).render(
        csrf=sessions.csrf(session) if session is not None else "",
        login_required=sessions.login_required,
        signed_in=session is not None and session.authenticated,
        **context,
    )
    response = HTMLResponse(html, status_code)
    # No framing (clickjacking of the action buttons), no script, no referrer leaks.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    fresh: str | None = request.state.ui_new_cookie
    if fresh is not None:
        _set_cookie(request, response, fresh)
    return response


def _error_page(request: Request, error: SokkaError) -> HTMLResponse:
    if isinstance(error, ValidationError):
        return _render(request, "error.html", 400, title="Bad input", message=str(error))
    if isinstance(error, NotFound):
        return _render(request, "error.html", 404, title="Not found", message=str(error))
    if isinstance(error, InvalidTransition):
        return _render(request, "error.html", 409, title="Not allowed", message=str(error))
    if isinstance(error, RetryableError):
        _log.warning("dashboard: the store did not answer: %s", error)
        return _render(request, "error.html", 503, title="Store unavailable",
                       message="the store did not answer; try again")  # fmt: skip
    _log.warning("dashboard: store call failed: %s: %s", type(error).__name__, error)
    return _render(request, "error.html", 500, title="Store error",
                   message="the store failed (see the server's log)")  # fmt: skip


# -- the gate: who may see a page, and who may act ------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def _page(handler: Handler) -> Handler:
    """A GET page: a session is required on a server with a token (else to the login)."""

    async def page(request: Request) -> Response:
        sessions: Sessions = request.app.state.ui_sessions
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        request.state.ui_new_cookie = None
        if sessions.login_required and (session is None or not session.authenticated):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?{urlencode({'next': target})}", 303)
        if session is None:
            fresh = sessions.issue(authenticated=False)
            session = sessions.read(fresh)
            request.state.ui_new_cookie = fresh
        request.state.ui_session = session
        try:
            return await handler(request)
        except SokkaError as error:
            return _error_page(request, error)

    page.__name__ = handler.__name__
    return page


def _same_origin(request: Request) -> bool:
    """No ``Origin`` (an old browser, a script), or this server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc == host


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form's fields (the first value of each)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _action(handler: Callable[[Request, dict[str, str]], Awaitable[Response]]) -> Handler:
    """A POST action: the session (signed in, with a token), the CSRF token, the origin."""

    async def action(request: Request) -> Response:
        sessions: Sessions = request.app.state.ui_sessions
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        request.state.ui_new_cookie = None
        request.state.ui_session = session
        form = await _form(request)
        if session is None or (sessions.login_required and not session.authenticated):
            return _render(request, "error.html", 403, title="Not signed in",
                           message="sign in again: your session is missing or expired")  # fmt: skip
        given = form.get("csrf", "")
        if not _same_origin(request) or not hmac.compare_digest(given, sessions.csrf(session)):
            message = ("this form did not come from this dashboard (a missing or stale "
                       "CSRF token): reload the page and try again")  # fmt: skip
            return _render(request, "error.html", 403, title="Refused", message=message)
        try:
            return await handler(request, form)
        except SokkaError as error:
            return _error_page(request, error)

    action.__name__ = handler.__name__
    return action


def _store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


def _back(path: str, **query: str | int) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, 303)


# -- pages -----------------------------------------------------------------------------------


async def _overview(request: Request) -> Response:
    store = _store(request)
    counts = await run_in_threadpool(store.count_tasks)
    paused: list[str] = await run_in_threadpool(store.paused_topics)
    counted = {t.topic for t in counts.topics}
    return _render(
        request, "overview.html", counts=counts, paused=set(paused),
        paused_without_tasks=[p for p in paused if p not in counted], notice=_notice(request),
    )  # fmt: skip


def _optional(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "")
    return value or None


async def _tasks(request: Request) -> Response:
    topic = _optional(request, "topic")
    status = _optional(request, "status")
    cursor = _optional(request, "cursor")
    wanted = TaskFilter(topic=topic, status=None if status is None else Status.parse(status))
    page: Page = await run_in_threadpool(_store(request).list_tasks, wanted, cursor, PAGE_SIZE)
    return _render(
        request, "tasks.html", page=page, topic=topic or "", status=status or "",
        first_page=cursor is None, notice=_notice(request),
    )  # fmt: skip


async def _task(request: Request) -> Response:
    task: Task = await run_in_threadpool(_store(request).get_task, request.path_params["task_id"])
    errors = [(e.partition("\n")[0], e.partition("\n")[2]) for e in task.errors]
    data = json.dumps(task.data, indent=2, ensure_ascii=False)
    result = None
    if task.result_json is not None:  # what the handler's ok(result) kept
        result = json.dumps(task.result, indent=2, ensure_ascii=False)
    return _render(request, "task.html", task=task, data=data, result=result, errors=errors,
                   notice=_notice(request))  # fmt: skip


async def _leased(request: Request) -> Response:
    topic = _optional(request, "topic")
    cursor = _optional(request, "cursor")
    page: Page = await run_in_threadpool(
        _store(request).list_leased_tasks, topic, cursor, PAGE_SIZE
    )
    return _render(request, "leased.html", page=page, topic=topic or "",
                   first_page=cursor is None)  # fmt: skip


_NOTICES: Final = {
    "requeued": "Requeued: the task is ready again, with a fresh failure budget.",
    "cancelled": "Cancelled: the task is failed with your reason.",
    "cancelled-running": "Cancelled: the task is failed with your reason. Its worker stops "
    "the handler at its next keepalive and reports nothing.",
    "paused": "Paused: workers reserve nothing from the topic; leases already held run on.",
    "resumed": "Resumed: workers reserve from the topic again.",
}


def _notice(request: Request) -> str | None:
    """The fixed message an action redirected with (never text from the URL)."""
    done = request.query_params.get("done")
    if done == "bulk":
        count = request.query_params.get("n", "0")
        refused = request.query_params.get("refused", "0")
        if count.isdigit() and refused.isdigit():
            return f"Requeued {int(count)} failed tasks ({int(refused)} had moved on)."
        return None
    return _NOTICES.get(done or "")


# -- actions ------------------------------------------------------------------------------


async def _requeue(request: Request, form: dict[str, str]) -> Response:
    task_id = form.get("task_id", "")
    await run_in_threadpool(_store(request).requeue, task_id)
    return _back(f"/ui/tasks/{quote(task_id, safe='')}", done="requeued")


async def _cancel(request: Request, form: dict[str, str]) -> Response:
    task_id = form.get("task_id", "")
    reason = form.get("reason", "").strip() or "cancelled from the dashboard"
    store = _store(request)
    before: Task = await run_in_threadpool(store.get_task, task_id)
    await run_in_threadpool(store.cancel, task_id, reason)
    done = "cancelled-running" if before.status is Status.RUNNING else "cancelled"
    return _back(f"/ui/tasks/{quote(task_id, safe='')}", done=done)


async def _pause_topic(request: Request, form: dict[str, str]) -> Response:
    await run_in_threadpool(_store(request).pause_topic, form.get("topic", ""))
    return _back("/ui/", done="paused")


async def _resume_topic(request: Request, form: dict[str, str]) -> Response:
    await run_in_threadpool(_store(request).resume_topic, form.get("topic", ""))
    return _back("/ui/", done="resumed")


async def _requeue_failed_action(request: Request, form: dict[str, str]) -> Response:
    topic = form.get("topic", "")
    TaskFilter(topic=topic)  # a malformed topic is refused naming the field
    done = await run_in_threadpool(requeue_failed, _store(request), topic, PAGE_SIZE)
    return _back("/ui/tasks", topic=topic, done="bulk", n=done.requeued, refused=done.moved_on)


# -- login ------------------------------------------------------------------------------------


def _next(target: str | None) -> str:
    """Where to go after the login: a dashboard path of this server, nothing else."""
    if target and target.startswith("/ui/") and not target.startswith("/ui//"):
        return target
    return "/ui/"


async def _login_page(request: Request) -> Response:
    sessions: Sessions = request.app.state.ui_sessions
    if not sessions.login_required:
        return RedirectResponse("/ui/", 303)
    session = sessions.read(request.cookies.get(SESSION_COOKIE))
    request.state.ui_new_cookie = None
    if session is None:
        fresh = sessions.issue(authenticated=False)
        session = sessions.read(fresh)
        request.state.ui_new_cookie = fresh
    request.state.ui_session = session
    return _render(request, "login.html", next=_next(request.query_params.get("next")),
                   failed=False, locked=None)  # fmt: skip


async def _login(request: Request) -> Response:
    sessions: Sessions = request.app.state.ui_sessions
    if not sessions.login_required:
        return RedirectResponse("/ui/", 303)
    session = sessions.read(request.cookies.get(SESSION_COOKIE))
    request.state.ui_new_cookie = None
    request.state.ui_session = session
    form = await _form(request)
    target = _next(form.get("next"))
    if (
        session is None
        or not _same_origin(request)
        or not hmac.compare_digest(form.get("csrf", ""), sessions.csrf(session))
    ):
        return _render(request, "error.html", 403, title="Refused",
                       message="reload the login page and try again")  # fmt: skip
    # The API's count: a guess is a guess, on either door.
    throttle: Throttle = request.app.state.throttle
    address = _client_address(request.scope)
    wait_s = throttle.retry_after_s(address)
    if wait_s is not None:  # refused before the token is looked at, even the right one
        refused = _render(request, "login.html", 429, next=target, failed=False, locked=wait_s)
        refused.headers["Retry-After"] = str(wait_s)
        return refused
    if not sessions.check_token(form.get("token", "")):
        _log.info("dashboard: a login with a wrong token from %s", address)
        throttle.wrong(address, "the dashboard's login")
        return _render(request, "login.html", 401, next=target, failed=True, locked=None)
    response = RedirectResponse(target, 303)
    _set_cookie(request, response, sessions.issue(authenticated=True))
    return response


async def _logout(request: Request, form: dict[str, str]) -> Response:
    response = RedirectResponse("/ui/login" if request.app.state.ui_sessions.login_required
                                else "/ui/", 303)  # fmt: skip
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


async def _stylesheet(request: Request) -> Response:
    css = (_TEMPLATES / "dashboard.css").read_bytes()
    return Response(css, 200, media_type="text/css",
                    headers={"Cache-Control": "max-age=3600"})  # fmt: skip


async def _to_overview(request: Request) -> Response:
    return RedirectResponse("/ui/", 308)


def dashboard_routes() -> list[BaseRoute]:
    """The routes of ``/ui``; the app's state holds ``store`` and ``ui_sessions``."""
    return [
        Route("/ui", _to_overview, methods=["GET"]),
        Route("/ui/", _page(_overview), methods=["GET"]),
        Route("/ui/dashboard.css", _stylesheet, methods=["GET"]),
        Route("/ui/tasks", _page(_tasks), methods=["GET"]),
        Route("/ui/tasks/{task_id:path}", _page(_task), methods=["GET"]),
        Route("/ui/leased", _page(_leased), methods=["GET"]),
        Route("/ui/login", _login_page, methods=["GET"]),
        Route("/ui/login", _login, methods=["POST"]),
        Route("/ui/logout", _action(_logout), methods=["POST"]),
        Route("/ui/actions/requeue", _action(_requeue), methods=["POST"]),
        Route("/ui/actions/cancel", _action(_cancel), methods=["POST"]),
        Route("/ui/actions/pause-topic", _action(_pause_topic), methods=["POST"]),
        Route("/ui/actions/resume-topic", _action(_resume_topic), methods=["POST"]),
        Route("/ui/actions/requeue-failed", _action(_requeue_failed_action), methods=["POST"]),
    ]
