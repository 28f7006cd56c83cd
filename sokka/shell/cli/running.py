"""The commands that run something: ``sokka worker``, ``supervise``, ``serve``
and ``demo``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import click

from sokka.core.errors import RetryableError, ValidationError
from sokka.core.supervision import LeasePolicy
from sokka.shell.cli.common import (
    DURATION,
    DURATION_OR_ZERO,
    _async_store,
    _db,
    _need_http_extra,
    _prefix,
    _read_token_file,
    _store,
    cli,
    load_handler,
)
from sokka.shell.cli.purging import periodic_purge_options, retention_policy
from sokka.shell.signals import stopping_on_signals

if TYPE_CHECKING:
    from sokka.shell.retention import RetentionPolicy
    from sokka.shell.supervisor import SupervisorCore
    from sokka.shell.worker import WorkerCore, WorkerStats

__all__ = ["demo", "serve", "supervise", "worker"]


_LEVELS = ("debug", "info", "warning", "error")
LIBRARY_LOG_LEVEL_ENV = "SOKKA_LIBRARY_LOG_LEVEL"
#: The libraries under sokka whose INFO lines are noise to an operator (httpx
#: logs every request: one line per poll of a worker over HTTP).
_LIBRARY_LOGGERS = ("httpx", "httpcore", "uvicorn", "starlette", "sqlalchemy", "psycopg",
                    "asyncio")  # fmt: skip


def _logging(level: str, log_format: str = "text") -> None:
    """sokka's loggers (and a handler's own) at ``level``; the libraries sokka uses
    at WARNING, unless ``SOKKA_LIBRARY_LOG_LEVEL`` asks for more. ``log_format``
    ``json``: one JSON object per line (``sokka.shell.jsonlog``)."""
    library_level = os.environ.get(LIBRARY_LOG_LEVEL_ENV, "").strip().lower() or "warning"
    if library_level not in _LEVELS:
        raise click.BadParameter(
            f"{library_level!r} is not one of {', '.join(_LEVELS)}",
            param_hint=f"${LIBRARY_LOG_LEVEL_ENV}",
        )
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from sokka.shell.jsonlog import JSONFormatter

        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(getattr(logging, library_level.upper()))


_log_level = click.option(
    "--log-level", type=click.Choice(_LEVELS), default="info", show_default=True,
    help=f"How much sokka logs (to stderr). The libraries it uses (httpx, uvicorn, "
    f"SQLAlchemy, psycopg) log warnings and errors only: set ${LIBRARY_LOG_LEVEL_ENV} "
    "to debug or info to see more of theirs.",
)  # fmt: skip
_log_format = click.option(
    "--log-format", type=click.Choice(("text", "json")), default="text", show_default=True,
    help="text: a line of text per record; json: one JSON object per line (time, level, "
    "logger, message, and fields such as task_id and topic where the record has them).",
)  # fmt: skip


def _metrics_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--metrics-port``, ``--metrics-host`` and the metrics token's options, for the
    long-running commands."""
    command = click.option(
        "--metrics-allow-no-token", is_flag=True,
        help="Serve metrics without a token on an address other than loopback (a "
        "proxy or a firewall in front decides who scrapes).",
    )(command)  # fmt: skip
    command = click.option(
        "--metrics-token-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
        help="File holding the bearer token every scrape must carry (Authorization: "
        "Bearer ...; at least 16 characters, as for `sokka serve`). Needed for a "
        "--metrics-host other than loopback, unless --metrics-allow-no-token.",
    )(command)  # fmt: skip
    command = click.option(
        "--metrics-host", default="127.0.0.1", show_default=True, metavar="ADDRESS",
        help="The address the metrics endpoint listens on (0.0.0.0 for every interface; "
        "then give --metrics-token-file).",
    )(command)  # fmt: skip
    return click.option(
        "--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
        help="Serve Prometheus metrics at http://ADDRESS:PORT/metrics (0: a free port, "
        "logged); needs the metrics extra: pip install 'sokka[metrics]'.",
    )(command)  # fmt: skip


def _need_metrics_extra(port: int | None) -> None:
    """Refuse --metrics-port before anything runs when prometheus-client is missing."""
    if port is None:
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ValidationError(
            "--metrics-port",
            "needs prometheus-client, which is not installed: pip install 'sokka[metrics]'",
        ) from None


def _metrics_token(
    host: str, port: int | None, token_file: str | None, allow_no_token: bool
) -> str | None:
    """The metrics endpoint's token (from ``--metrics-token-file``, checked as
    ``sokka serve`` checks its own), or None; a usage error, before anything runs,
    for an endpoint beyond loopback that nothing guards."""
    if port is None:
        if token_file is not None:
            raise click.UsageError("--metrics-token-file guards the metrics endpoint: "
                                   "it needs --metrics-port")  # fmt: skip
        return None
    if token_file is not None:
        from sokka.shell.tokens import require_token

        field = "--metrics-token-file"
        return require_token(field, _read_token_file(token_file, field))
    if host in _LOOPBACK:
        return None
    if not allow_no_token:
        raise click.UsageError(
            f"refusing to serve metrics on {host} without a token: anyone who reaches "
            "it could read the topics, queue sizes and error rates (give "
            "--metrics-token-file, or --metrics-allow-no-token if a proxy or a "
            "firewall decides who scrapes)"
        )
    return None  # allowed: _exposed warns once logging is set up


@contextlib.contextmanager
def _exposed(
    host: str, port: int | None, token: str | None, workers: Sequence[WorkerCore] = (),
    supervisors: Sequence[SupervisorCore] = (),
) -> Iterator[None]:  # fmt: skip
    """Count what ``workers`` and ``supervisors`` (and the workers' embedded
    supervisors) do, and serve it at ``/metrics`` on ``host:port`` while the block runs
    (nothing when ``port`` is None), behind ``token`` when given."""
    if port is None:
        yield
        return
    from sokka.shell.metrics import SupervisorMetrics, WorkerMetrics, new_registry, serve_metrics

    registry = new_registry()
    embedded = [w.supervisor for w in workers if w.supervisor is not None]
    if workers:
        worker_metrics = WorkerMetrics(registry)
        for one in workers:
            worker_metrics.watch(one)
    if supervisors or embedded:
        supervisor_metrics = SupervisorMetrics(registry)
        for supervisor in (*supervisors, *embedded):
            supervisor_metrics.watch(supervisor)
    try:
        server = serve_metrics(registry, host, port, token=token)
    except OSError as error:
        why = (
            "the port is in use (choose another with --metrics-port)"
            if error.errno == errno.EADDRINUSE
            else error.strerror or str(error)
        )
        raise click.ClickException(
            f"cannot serve metrics on {_address(host, port)}: {why}"
        ) from None
    log = logging.getLogger("sokka.metrics")
    log.info("metrics on %s", server.url)  # the line as it was: log readers parse it
    if token is None and host not in _LOOPBACK:  # --metrics-allow-no-token
        log.warning(
            "no token on the metrics endpoint %s (--metrics-allow-no-token): anyone who "
            "reaches it reads the metrics", server.url,
        )  # fmt: skip
    try:
        yield
    finally:
        server.stop()


@cli.command()
@_db
@_prefix
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="The topic to work on (with --handler: exactly one; with --app: repeat to "
    "serve some of the app's topics, none: all of them).",
)
@click.option(
    "--handler",
    "handler_path",
    default=None,
    metavar="MODULE:FUNCTION",
    help="The handler, handler(task, ctx) -> ok() | failed(e) | snoozed(ms), "
    "or async def handler(task, ctx) for the asyncio runtime.",
)
@click.option(
    "--app",
    "app_path",
    default=None,
    metavar="MODULE:APP",
    help="A sokka.App or sokka.asyncio.App: serve its topics in one worker, each with "
    "its handler's concurrency, lease and timeout, on the app's store (instead of "
    "--handler); the runtime is the app's.",
)
@click.option(
    "--runtime",
    type=click.Choice(("auto", "threads", "asyncio")),
    default="auto",
    show_default=True,
    help="threads: --concurrency handler threads; asyncio: one event loop (a plain "
    "handler runs in a pool of --concurrency threads); auto: asyncio for an async def "
    "handler or a sokka.asyncio.App, threads otherwise.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Tasks run at once.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=None,
    help="Tasks reserved per call and outcomes recorded per call (default: fetched ahead "
    "by time: one per handler, plus what the handlers start within 50 ms, at most 100; "
    "--batch-size equal to --concurrency fetches nothing ahead).",
)
@click.option(
    "--lease-time",
    type=DURATION,
    default="30s",
    show_default=True,
    help="Lease time; must match the supervisor's.",
)
@click.option(
    "--timeout",
    type=DURATION,
    default=None,
    help="Default time limit of one attempt (a task's own wins).",
)
@click.option(
    "--grace",
    type=DURATION,
    default="30s",
    show_default=True,
    help="On SIGTERM, how long in-flight tasks may take to finish.",
)
@click.option(
    "--max-poll",
    type=DURATION,
    default="2s",
    show_default=True,
    help="Longest wait between two reservations while no task is ready.",
)
@click.option(
    "--fetch-ahead",
    type=DURATION_OR_ZERO,
    default="50ms",
    show_default=True,
    help="Without --batch-size: hold, beyond one task per handler, the tasks the "
    "handlers are expected to start within this long (at most 100); 0 holds none ahead.",
)
@click.option("--supervise", is_flag=True, help="Also run a supervisor for this topic.")
@click.option(
    "--scheduler",
    "schedule",
    is_flag=True,
    help="With --app: also create the tasks of the app's periodic schedules "
    "(as `sokka scheduler --app` does).",
)
@click.option("--pid", default=None, help="This worker's name (default: host-pid-random).")
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the worker's counters here as JSON when it stops.",
)
@_metrics_options
@_log_level
@_log_format
def worker(
    db: str, prefix: str, topics: tuple[str, ...], handler_path: str | None,
    app_path: str | None, runtime: str, concurrency: int, batch_size: int | None,
    lease_time: int, timeout: int | None, grace: int, max_poll: int, fetch_ahead: int,
    supervise: bool, schedule: bool, pid: str | None, stats_file: str | None,
    metrics_port: int | None, metrics_host: str, metrics_token_file: str | None,
    metrics_allow_no_token: bool, log_level: str, log_format: str,
) -> None:  # fmt: skip
    """Run tasks of a topic with a handler (or every topic of an app) until SIGTERM
    or SIGINT (then exit 0)."""
    from dataclasses import asdict

    from sokka.core.backoff import Backoff
    from sokka.shell.aio.worker import _is_coroutine_function
    from sokka.shell.worker import Worker

    _need_metrics_extra(metrics_port)
    metrics_token = _metrics_token(
        metrics_host, metrics_port, metrics_token_file, metrics_allow_no_token
    )
    exposing = functools.partial(_exposed, metrics_host, metrics_port, metrics_token)
    if app_path is not None:
        _app_usage(handler_path)
        _logging(log_level, log_format)
        _run_app(app_path, topics, runtime, supervise, grace, pid, stats_file, exposing,
                 schedule, fetch_ahead)  # fmt: skip
        return
    if schedule:
        raise click.UsageError("--scheduler runs an app's schedules: it needs --app MODULE:APP")
    if handler_path is None:
        raise click.UsageError(
            "give --handler MODULE:FUNCTION with one --topic, or --app MODULE:APP"
        )
    if len(topics) != 1:
        raise click.UsageError(
            f"--handler runs one topic: give exactly one --topic (got {len(topics)}); "
            "to serve several topics in one process, use --app"
        )
    (topic,) = topics
    _logging(log_level, log_format)
    handler = load_handler(handler_path)
    is_coroutine = _is_coroutine_function(handler)
    if runtime == "threads" and is_coroutine:
        raise click.UsageError(
            f"--runtime threads cannot run {handler_path}: it is a coroutine function "
            "(async def); run it with --runtime asyncio (or auto, the default)"
        )
    options: dict[str, Any] = {
        "pid": pid, "concurrency": concurrency, "batch_size": batch_size,
        "lease_time_ms": lease_time, "timeout_ms": timeout, "grace_ms": grace,
        "fetch_ahead_ms": fetch_ahead,
        "supervise": supervise, "poll_backoff": Backoff(base_ms=min(20, max_poll), cap_ms=max_poll),
    }  # fmt: skip
    log = logging.getLogger("sokka.worker")
    if runtime == "asyncio" or (runtime == "auto" and is_coroutine):
        name, stats = asyncio.run(
            _work_on_asyncio(db, prefix, topic, handler, options, exposing)
        )
    else:
        with _store(db, prefix) as store:
            runner = Worker(store, topic, handler, **options)
            log.info(
                "worker %s on topic %r (concurrency %d, lease %d ms)",
                runner.pid, topic, concurrency, lease_time,
                extra={"worker": runner.pid, "topic": topic},
            )  # fmt: skip
            with exposing([runner]):
                name, stats = runner.pid, runner.run()
    if stats_file:
        with open(stats_file, "w", encoding="utf-8") as out:
            json.dump({"pid": name, **asdict(stats)}, out)
    log.info("worker %s stopped: %s", name, stats)


#: The options of ``sokka worker`` that --app takes from the app's handlers instead.
_PER_HANDLER_OPTIONS = ("db", "prefix", "concurrency", "batch_size", "lease_time", "timeout",
                        "max_poll")  # fmt: skip


def _app_usage(handler_path: str | None) -> None:
    """Refuse, as a usage error, what --app cannot be combined with."""
    if handler_path is not None:
        raise click.UsageError("--app and --handler are exclusive: the app names its handlers")
    ctx = click.get_current_context()
    given = [
        name
        for name in _PER_HANDLER_OPTIONS
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        shown = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(
            f"--app takes its store and each topic's concurrency, lease and timeout from "
            f"the app: {shown} cannot be given with it"
        )


def _run_app(
    app_path: str, topics: tuple[str, ...], runtime: str, supervise: bool, grace: int,
    pid: str | None, stats_file: str | None,
    exposing: Callable[
        [Sequence[WorkerCore], Sequence[SupervisorCore]], contextlib.AbstractContextManager[None]
    ],
    schedule: bool = False,
    fetch_ahead: int = 50,
) -> None:  # fmt: skip
    """``sokka worker --app``: ``app.run_worker`` for the topics asked (all: none asked),
    on the app's runtime (a ``--runtime`` that is not the app's is a usage error), and
    the app's scheduler beside it with ``--scheduler``."""
    from dataclasses import asdict

    from sokka.shell.aio.app import App as AsyncApp
    from sokka.shell.cli.scheduling import async_scheduling, load_app, scheduling

    app = load_app(app_path)
    own = "asyncio" if isinstance(app, AsyncApp) else "threads"
    if runtime not in ("auto", own):
        kind = "sokka.asyncio.App" if own == "asyncio" else "sokka.App"
        raise click.UsageError(
            f"--runtime {runtime} cannot run {app_path}: it is a {kind}, which runs on {own}"
        )
    served = list(topics) or None
    with ExitStack() as exposed:

        def observe(workers: Sequence[WorkerCore], supervisors: Sequence[SupervisorCore]) -> None:
            exposed.enter_context(exposing(workers, supervisors))

        if isinstance(app, AsyncApp):

            async def run_async(app: AsyncApp) -> WorkerStats:
                async with async_scheduling(app, schedule):
                    return await app.run_worker(
                        served, supervise=supervise, grace=grace, pid=pid, observe=observe,
                        fetch_ahead=fetch_ahead,
                    )

            stats = asyncio.run(run_async(app))
        else:
            with scheduling(app, schedule):
                stats = app.run_worker(
                    served, supervise=supervise, grace=grace, pid=pid, observe=observe,
                    fetch_ahead=fetch_ahead,
                )
    if stats_file:
        with open(stats_file, "w", encoding="utf-8") as out:
            json.dump(asdict(stats), out)
    logging.getLogger("sokka.worker").info("worker stopped: %s", stats)


async def _work_on_asyncio(
    db: str, prefix: str, topic: str, handler: Callable[..., Any], options: dict[str, Any],
    exposing: Callable[[Sequence[WorkerCore]], contextlib.AbstractContextManager[None]],
) -> tuple[str, WorkerStats]:  # fmt: skip
    """``sokka worker`` on the asyncio runtime: its pid and its stats once it stopped."""
    from sokka.shell.aio.worker import Worker

    async with _async_store(db, prefix) as store:
        runner = Worker(store, topic, handler, **options)
        logging.getLogger("sokka.worker").info(
            "worker %s on topic %r (asyncio, concurrency %d, lease %d ms)",
            runner.pid, topic, options["concurrency"], options["lease_time_ms"],
            extra={"worker": runner.pid, "topic": topic},
        )  # fmt: skip
        with exposing([runner]):
            return runner.pid, await runner.run(install_signal_handlers=True)


@cli.command()
@_db
@_prefix
@click.option(
    "--topic",
    "topics",
    multiple=True,
    help="A topic to supervise (repeat for several; none: every topic).",
)
@click.option(
    "--lease-time",
    type=DURATION,
    default="30s",
    show_default=True,
    help="Lease time; must match the workers'.",
)
@click.option(
    "--interval",
    type=DURATION,
    default=None,
    help="Longest sleep between listings (default: a quarter of the lease).",
)
@click.option(
    "--runtime",
    type=click.Choice(("threads", "asyncio")),
    default="threads",
    show_default=True,
    help="threads: the supervisor on a thread of its own; asyncio: on an event loop.",
)
@periodic_purge_options
@_metrics_options
@_log_level
@_log_format
def supervise(
    db: str, prefix: str, topics: tuple[str, ...], lease_time: int, interval: int | None,
    runtime: str, purge_after: int | None, purge_every: int, metrics_port: int | None,
    metrics_host: str, metrics_token_file: str | None, metrics_allow_no_token: bool,
    log_level: str, log_format: str,
) -> None:  # fmt: skip
    """Revoke the leases nobody keeps alive, until SIGTERM or SIGINT (then exit 0)."""
    from sokka.shell.retention import periodic_purge
    from sokka.shell.supervisor import Supervisor

    _need_metrics_extra(metrics_port)
    metrics_token = _metrics_token(
        metrics_host, metrics_port, metrics_token_file, metrics_allow_no_token
    )
    _logging(log_level, log_format)
    policy = LeasePolicy(lease_time_ms=lease_time, default_snooze_ms=lease_time)
    retention = retention_policy(purge_after, purge_every)
    exposing = functools.partial(_exposed, metrics_host, metrics_port, metrics_token, ())
    if runtime == "asyncio":
        asyncio.run(
            _supervise_on_asyncio(db, prefix, topics, policy, interval, retention, exposing)
        )
        return
    stop = threading.Event()
    with (
        stopping_on_signals(lambda _signum: stop.set()),
        _store(db, prefix) as store,
        periodic_purge(store, retention),
    ):
        supervisor = Supervisor(store, topics or None, policy, interval_ms=interval)
        with contextlib.suppress(RetryableError):  # the loop rides out a store that is down
            store.list_leased_tasks(limit=1)  # a missing schema is an error, not a retry
        _log_supervising(topics, lease_time)
        with exposing([supervisor]):
            supervisor.start()
            stop.wait()
            supervisor.stop()


def _log_supervising(topics: tuple[str, ...], lease_time: int) -> None:
    logging.getLogger("sokka.supervisor").info(
        "supervising %s with a lease of %d ms", ", ".join(topics) or "every topic", lease_time
    )


async def _supervise_on_asyncio(
    db: str, prefix: str, topics: tuple[str, ...], policy: LeasePolicy, interval: int | None,
    retention: RetentionPolicy | None = None,
    exposing: Callable[[Sequence[SupervisorCore]], contextlib.AbstractContextManager[None]]
    | None = None,
) -> None:  # fmt: skip
    """``sokka supervise`` on the asyncio runtime, until SIGTERM or SIGINT."""
    from sokka.shell.aio.supervisor import Supervisor
    from sokka.shell.retention import periodic_purge_task

    async with _async_store(db, prefix) as store, periodic_purge_task(store, retention):
        supervisor = Supervisor(store, topics or None, policy, interval_ms=interval)
        with contextlib.suppress(RetryableError):  # the loop rides out a store that is down
            await store.list_leased_tasks(limit=1)  # a missing schema is an error, not a retry
        _log_supervising(topics, policy.lease_time_ms)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        try:
            with exposing([supervisor]) if exposing else contextlib.nullcontext():
                await supervisor.run()  # an in-flight cycle ends first
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@cli.command()
@_db
@_prefix
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 or :: for every interface).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File holding the bearer token every call but /health must carry "
    "(default: $SOKKA_TOKEN, else no token).",
)
@click.option(
    "--allow-no-token",
    is_flag=True,
    help="Serve without a token on an address other than loopback: for a proxy in "
    "front that authenticates every request. The API and the dashboard's actions "
    "are then open to whoever reaches the address (a warning says so at start).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="A host name clients may use in the Host header (repeat for several). "
    "Without a token, only these, loopback names and --host are answered; a "
    "server with a token answers any Host (docs/http.md, Security: host names).",
)
@click.option(
    "--max-body",
    type=click.IntRange(1024, 1 << 30),
    default=None,
    metavar="BYTES",
    help="Largest request body accepted (default 8 MiB).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    metavar="N",
    help="Requests served at once; more get 503 with Retry-After.",
)
@click.option(
    "--shutdown-timeout",
    type=click.IntRange(0, 3600),
    default=10,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM/SIGINT, wait this long for the requests in flight, then cancel "
    "them (a second signal stops at once).",
)
@periodic_purge_options
@_log_level
@_log_format
def serve(
    db: str, prefix: str, host: str, port: int, token_file: str | None, allow_no_token: bool,
    allow_hosts: tuple[str, ...], max_body: int | None, max_concurrency: int,
    shutdown_timeout: int, purge_after: int | None, purge_every: int, log_level: str,
    log_format: str,
) -> None:  # fmt: skip
    """Serve the store over HTTP (JSON, problem+json errors, OpenAPI at /openapi.json)."""
    _need_http_extra()
    from sokka.shell.http import DEFAULT_MAX_BODY_BYTES, create_app
    from sokka.shell.http.protocol import bounded_server
    from sokka.shell.retention import periodic_purge

    _logging(log_level, log_format)
    retention = retention_policy(purge_after, purge_every)
    token = _read_token_file(token_file, "--token-file") if token_file else None
    token = token or os.environ.get("SOKKA_TOKEN") or None
    if token is None and host not in _LOOPBACK and not allow_no_token:
        raise click.UsageError(
            f"refusing to serve {host} without a token: anyone who reaches it could run "
            "and cancel tasks (give --token-file, or --allow-no-token if a proxy "
            "authenticates)"
        )
    if token is not None and allow_hosts:
        logging.getLogger("sokka.http").warning(
            "--allow-host changes nothing on a server with a token: it answers any Host"
        )
    # Listen before saying so: a port in use is one clear error, not a
    # "serving ... on ..." line followed by uvicorn's own exit status 3.
    listeners = _listening(host, port)
    with ExitStack() as closing, _store(db, prefix) as store:
        for listener in listeners:
            closing.enter_context(listener)
        store.list_leased_tasks(limit=1)  # the store answers, and its schema is there
        app = create_app(
            store, token=token, max_body_bytes=max_body or DEFAULT_MAX_BODY_BYTES,
            allowed_hosts=allow_hosts, listen_host=host, max_concurrency=max_concurrency,
        )  # fmt: skip
        address = _address(host, _port_of(listeners[0]))
        logging.getLogger("sokka.http").info(
            "serving %s on http://%s (%s)", _shown(db), address,
            "token required" if token else "no token",
        )  # fmt: skip
        if token is None and host not in _LOOPBACK:
            # --allow-no-token: a proxy in front is meant to authenticate. Say, every
            # time it starts, what this server lets through if nothing does.
            logging.getLogger("sokka.http").warning(
                "no token on %s (--allow-no-token): anyone who reaches http://%s can "
                "create, cancel, requeue and reserve tasks through /v1/ and the dashboard "
                "at /ui/ without a login; only a proxy in front that authenticates every "
                "request keeps them out (the dashboard's actions still need its CSRF "
                "token, which stops other web sites, not people)", address, address,
            )  # fmt: skip
        server = bounded_server(app, host=host, port=port, shutdown_timeout_s=shutdown_timeout)
        # uvicorn shuts down gracefully on SIGTERM/SIGINT (at once on a second one),
        # then re-raises the signal to the handler it found: make that one a no-op,
        # so the command exits 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
        with periodic_purge(store, retention):
            server.run(sockets=listeners)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port_of(listener: socket.socket) -> int:
    return int(listener.getsockname()[1])


def _listening(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` on ``port``, as asyncio binds
    them for uvicorn (SO_REUSEADDR; IPv6 sockets IPv6-only), or a
    ``ClickException`` that names the address and says why it cannot be had."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise click.ClickException(
            f"cannot listen on {_address(host, port)}: {error.strerror}"
        ) from None
    listeners: list[socket.socket] = []
    for family, kind, proto, _, address in dict.fromkeys(found):
        listener = socket.socket(family, kind, proto)
        listeners.append(listener)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
        except OSError as error:
            for opened in listeners:
                opened.close()
            why = (
                "the port is in use (another server? choose one with --port)"
                if error.errno == errno.EADDRINUSE
                else error.strerror or str(error)
            )
            raise click.ClickException(
                f"cannot listen on {_address(str(address[0]), port)}: {why}"
            ) from None
    return listeners


def _shown(db: str) -> str:
    """The store URL without its password, for logs."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", db)


@cli.command()
@click.option(
    "--db",
    default=None,
    metavar="URL",
    help="Run on this store (default: a new SQLite file in a temporary directory).",
)
@_prefix
@click.option(
    "--tasks",
    "task_count",
    type=click.IntRange(10, 5_000),
    default=300,
    show_default=True,
    help="Tasks to queue.",
)
@click.option(
    "--workers", type=click.IntRange(2, 16), default=4, show_default=True, help="Worker processes."
)
@click.option(
    "--lease-time", type=DURATION, default="2s", show_default=True, help="Lease time of the demo."
)
def demo(db: str | None, prefix: str, task_count: int, workers: int, lease_time: int) -> None:
    """Watch a killed worker's task get rescued, on real processes."""
    from sokka.shell.demo import run_demo

    code = run_demo(db=db, prefix=prefix, tasks=task_count, workers=workers, lease_ms=lease_time)
    if code:
        raise SystemExit(code)
