"""The ``sokka`` command: init, task, worker, supervise, serve, demo, simulate.

The store comes from ``--db`` or ``SOKKA_DB`` (default ``sqlite:///sokka.db``):
an SQLite or PostgreSQL URL, or the ``http(s)://`` URL of a ``sokka serve``
(its token from ``SOKKA_TOKEN`` or the file named by ``SOKKA_TOKEN_FILE``).
Durations are written with a unit: ``500ms``, ``30s``, ``5m``, ``1h``. Output
is a table for people, JSON with ``--json`` for scripts. A bad option, an
unknown handler or an unreachable store is one clear line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click
from returns.result import Failure

from sokka.adapters.store import MAX_PAGE_SIZE, TaskFilter, TaskStore
from sokka.core.errors import SokkaError, ValidationError
from sokka.core.supervision import LeasePolicy
from sokka.core.task import Status, Task, TaskSpec

__all__ = ["DEFAULT_DB", "cli", "load_handler", "main", "parse_duration"]

DEFAULT_DB = "sqlite:///sokka.db"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


def parse_duration(text: str, field: str = "duration") -> int:
    """Milliseconds in ``text`` (``500ms``, ``30s``, ``1.5s``, ``5m``, ``1h``).

    >>> parse_duration("30s"), parse_duration("500ms"), parse_duration("1.5m")
    (30000, 500, 90000)
    >>> parse_duration("30")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: duration: '30' has no unit: write 500ms, 30s, 5m or 1h
    """
    match = _DURATION.match(text)
    if match is None:
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
            raise ValidationError(field, f"{text!r} has no unit: write 500ms, 30s, 5m or 1h")
        raise ValidationError(field, f"{text!r} is not a duration like 500ms, 30s, 5m or 1h")
    value = round(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if value <= 0:
        raise ValidationError(field, f"{text!r} must be longer than 0 ms")
    return value


class _Duration(click.ParamType):  # type: ignore[type-arg]  # generic in click >= 8.3
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value), param.name or "duration" if param else "duration")
        except ValidationError as error:
            self.fail(error.rule, param, ctx)


DURATION = _Duration()


def load_handler(path: str) -> Callable[..., Any]:
    """The function named by ``package.module:function`` (the working directory is
    importable, as for ``python -m``)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValidationError("handler", f"{path!r} is not of the form package.module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValidationError("handler", f"cannot import {module_name!r}: {error}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValidationError("handler", f"{module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValidationError("handler", f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def _version() -> str:
    try:
        return version("sokka")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


# -- options shared by the commands that talk to a store --------------------------

_db = click.option(
    "--db",
    envvar="SOKKA_DB",
    default=DEFAULT_DB,
    show_default=True,
    metavar="URL",
    help="Store URL (also read from $SOKKA_DB).",
)
_prefix = click.option(
    "--prefix",
    default="sokka_",
    show_default=True,
    help="Table-name prefix, so independent queues can share one database.",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _read_token_file(path: str, field: str) -> str:
    try:
        with open(path, encoding="utf-8") as source:
            token = source.read().strip()
    except OSError as error:
        raise ValidationError(field, f"cannot read {path}: {error.strerror}") from None
    if not token:
        raise ValidationError(field, f"{path} is empty")
    return token


def _client_token() -> str | None:
    """The token for a ``sokka serve``: ``SOKKA_TOKEN``, else the file ``SOKKA_TOKEN_FILE``."""
    if os.environ.get("SOKKA_TOKEN"):
        return os.environ["SOKKA_TOKEN"]
    path = os.environ.get("SOKKA_TOKEN_FILE")
    return _read_token_file(path, "SOKKA_TOKEN_FILE") if path else None


def _is_http(db: str) -> bool:
    return db.startswith(("http://", "https://"))


def _need_http_extra() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "HTTP needs the http extra: pip install 'sokka[http]'"
        ) from None


@contextmanager
def _store(db: str, prefix: str) -> Iterator[TaskStore]:
    if _is_http(db):
        _need_http_extra()
        from sokka.adapters.http import HTTPStore

        with HTTPStore(db, token=_client_token()) as client:
            yield client
        return
    from sokka.adapters.sql import SQLStore

    store = SQLStore(db, prefix=prefix)
    try:
        yield store
    finally:
        store.close()


def _task_json(task: Task) -> dict[str, Any]:
    return {**task.as_record(), "data": task.data}


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(tasks: Sequence[Task]) -> str:
    header = ("TASK", "TOPIC", "STATUS", "ATTEMPT", "FAILS", "OWNER", "UPDATED (UTC)", "ERROR")
    rows = [
        (
            t.task_id,
            t.topic,
            t.status.value,
            str(t.attempt),
            str(t.failures),
            t.pid or "-",
            _when(t.updated_at),
            (t.error or "")[:40],
        )
        for t in tasks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]  # fmt: skip
    return "\n".join(lines)


def _show(tasks: Sequence[Task], as_json: bool, next_cursor: str | None = None) -> None:
    if as_json:
        body: dict[str, Any] = {"tasks": [_task_json(t) for t in tasks]}
        if next_cursor is not None:
            body["next_cursor"] = next_cursor
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(_table(tasks) if tasks else "no tasks")
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


# -- the commands ----------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="sokka", message="%(prog)s %(version)s")
def cli() -> None:
    """Durable background tasks with clock-skew-safe lease supervision."""


@cli.command()
@_db
@_prefix
def init(db: str, prefix: str) -> None:
    """Create the store's schema if it is missing (safe to run again)."""
    from sokka.adapters.sql import SQLStore

    if _is_http(db):
        raise click.UsageError("init creates a database schema: run it against the database "
                               "the server uses, not against the server")  # fmt: skip
    with SQLStore(db, prefix=prefix) as store:
        found = store.schema_version()
        created = store.create_schema()
        url = store.engine.url.render_as_string(hide_password=True)
    what = "created" if found is None else "already there"
    click.echo(f"sokka schema version {created} {what} in {url} (prefix {prefix!r})")


@cli.group()
def task() -> None:
    """Create, inspect and administer tasks."""


@task.command("create")
@_db
@_prefix
@_json
@click.option("--topic", required=True, help="The topic workers reserve from.")
@click.option("--data", default="null", show_default=True, help="The task's data, as JSON.")
@click.option("--id", "task_id", default=None, help="The task id (default: a new UUID).")
@click.option("--group", default=None, help="The task group id (default: the task id).")
@click.option("--sub-topic", default="default", show_default=True, help="A finer topic.")
@click.option("--description", default="", help="Free text for people.")
@click.option("--max-attempts", type=int, default=None, help="Failures allowed before it fails.")
@click.option("--lease-time", type=DURATION, default=None, help="This task's own lease time.")
@click.option("--timeout", type=DURATION, default=None, help="How long one attempt may run.")
@click.option("--count", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="Create this many such tasks (ids are generated).")  # fmt: skip
def task_create(
    db: str, prefix: str, as_json: bool, topic: str, data: str, task_id: str | None,
    group: str | None, sub_topic: str, description: str, max_attempts: int | None,
    lease_time: int | None, timeout: int | None, count: int,
) -> None:  # fmt: skip
    """Create a task (or --count of them)."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as error:
        raise ValidationError("data", f"is not JSON: {error}") from None
    if count > 1 and task_id is not None:
        raise ValidationError("id", "cannot be given with --count above 1")
    specs = [
        TaskSpec(
            topic=topic,
            data=value,
            task_id=task_id,
            task_group_id=group,
            sub_topic=sub_topic,
            description=description,
            max_attempts=max_attempts,
            lease_time_ms=lease_time,
            timeout_ms=timeout,
        )
        for _ in range(count)
    ]
    created: list[Task] = []
    with _store(db, prefix) as store:
        for start in range(0, len(specs), 1000):
            for result in store.create_tasks(specs[start : start + 1000]):
                if isinstance(result, Failure):
                    raise result.failure()
                created.append(result.unwrap())
    if count > 1 and not as_json:
        click.echo(f"created {len(created)} tasks on topic {topic!r}")
        return
    _show(created, as_json)


@task.command("get")
@_db
@_prefix
@_json
@click.argument("task_id")
def task_get(db: str, prefix: str, as_json: bool, task_id: str) -> None:
    """Show one task."""
    with _store(db, prefix) as store:
        found = store.get_task(task_id)
    if as_json:
        click.echo(json.dumps(_task_json(found), indent=2))
        return
    click.echo(_table([found]))
    click.echo(f"data: {found.data_json}")
    for line in found.errors:
        click.echo(f"error: {line}")


@task.command("list")
@_db
@_prefix
@_json
@click.option("--topic", default=None, help="Only this topic.")
@click.option("--sub-topic", default=None, help="Only this sub-topic.")
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None,
              help="Only this status.")  # fmt: skip
@click.option("--group", default=None, help="Only this task group.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=50, show_default=True,
              help="Tasks per page.")  # fmt: skip
@click.option("--cursor", default=None, help="Continue after a previous page.")
@click.option("--all", "every", is_flag=True, help="Follow every page.")
def task_list(
    db: str, prefix: str, as_json: bool, topic: str | None, sub_topic: str | None,
    status: str | None, group: str | None, limit: int, cursor: str | None, every: bool,
) -> None:  # fmt: skip
    """List tasks in creation order, a page at a time."""
    wanted = TaskFilter(
        topic=topic, sub_topic=sub_topic, task_group_id=group,
        status=None if status is None else Status(status),
    )  # fmt: skip
    found: list[Task] = []
    with _store(db, prefix) as store:
        while True:
            page = store.list_tasks(wanted, cursor, limit)
            found.extend(page.tasks)
            cursor = page.next_cursor
            if not every or cursor is None:
                break
    _show(found, as_json, cursor)


@task.command("group")
@_db
@_prefix
@_json
@click.argument("group_id")
def task_group(db: str, prefix: str, as_json: bool, group_id: str) -> None:
    """List the tasks of a group."""
    with _store(db, prefix) as store:
        _show(store.tasks_in_group(group_id), as_json)


@task.command("requeue")
@_db
@_prefix
@_json
@click.argument("task_id")
def task_requeue(db: str, prefix: str, as_json: bool, task_id: str) -> None:
    """Give a failed task a fresh failure budget and queue it again."""
    with _store(db, prefix) as store:
        _show([store.requeue(task_id)], as_json)


@task.command("cancel")
@_db
@_prefix
@_json
@click.argument("task_id")
@click.option("--reason", default="cancelled by an operator", show_default=True)
def task_cancel(db: str, prefix: str, as_json: bool, task_id: str, reason: str) -> None:
    """Fail a task that nobody is running (starting or snoozed)."""
    with _store(db, prefix) as store:
        _show([store.cancel(task_id, reason)], as_json)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


_log_level = click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
    show_default=True, help="How much to log (to stderr).",
)  # fmt: skip


@cli.command()
@_db
@_prefix
@click.option("--topic", required=True, help="The topic to work on.")
@click.option(
    "--handler",
    "handler_path",
    required=True,
    metavar="MODULE:FUNCTION",
    help="The handler, handler(task, ctx) -> ok() | failed(e) | snoozed(ms).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Tasks run at once (threads).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=None,
    help="Tasks reserved per call and outcomes recorded per call (default: --concurrency).",
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
@click.option("--supervise", is_flag=True, help="Also run a supervisor for this topic.")
@click.option("--pid", default=None, help="This worker's name (default: host-pid-random).")
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the worker's counters here as JSON when it stops.",
)
@_log_level
def worker(
    db: str, prefix: str, topic: str, handler_path: str, concurrency: int,
    batch_size: int | None, lease_time: int, timeout: int | None, grace: int,
    max_poll: int, supervise: bool, pid: str | None, stats_file: str | None, log_level: str,
) -> None:  # fmt: skip
    """Run tasks of a topic with a handler until SIGTERM or SIGINT (then exit 0)."""
    from dataclasses import asdict

    from sokka.core.backoff import Backoff
    from sokka.shell.worker import Worker

    _logging(log_level)
    handler = load_handler(handler_path)
    with _store(db, prefix) as store:
        runner = Worker(
            store, topic, handler, pid=pid, concurrency=concurrency, batch_size=batch_size,
            lease_time_ms=lease_time, timeout_ms=timeout, grace_ms=grace, supervise=supervise,
            poll_backoff=Backoff(base_ms=min(20, max_poll), cap_ms=max_poll),
        )  # fmt: skip
        logging.getLogger("sokka.worker").info(
            "worker %s on topic %r (concurrency %d, lease %d ms)",
            runner.pid, topic, concurrency, lease_time,
        )  # fmt: skip
        stats = runner.run()
    if stats_file:
        with open(stats_file, "w", encoding="utf-8") as out:
            json.dump({"pid": runner.pid, **asdict(stats)}, out)
    logging.getLogger("sokka.worker").info("worker %s stopped: %s", runner.pid, stats)


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
@_log_level
def supervise(
    db: str, prefix: str, topics: tuple[str, ...], lease_time: int, interval: int | None,
    log_level: str,
) -> None:  # fmt: skip
    """Revoke the leases nobody keeps alive, until SIGTERM or SIGINT (then exit 0)."""
    from sokka.shell.supervisor import Supervisor

    _logging(log_level)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with _store(db, prefix) as store:
        supervisor = Supervisor(
            store, topics or None,
            LeasePolicy(lease_time_ms=lease_time, default_snooze_ms=lease_time),
            interval_ms=interval,
        )  # fmt: skip
        logging.getLogger("sokka.supervisor").info(
            "supervising %s with a lease of %d ms", ", ".join(topics) or "every topic", lease_time
        )
        supervisor.start()
        stop.wait()
        supervisor.stop()


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@cli.command()
@_db
@_prefix
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 or :: for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the bearer token every call but /health must carry "
                   "(default: $SOKKA_TOKEN, else no token).")
@click.option("--allow-no-token", is_flag=True,
              help="Serve without a token on an address other than loopback.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="A host name clients may use in the Host header (repeat for several). "
                   "Without a token, only loopback names and --host are answered, so a web "
                   "page cannot reach the server by rebinding its own domain.")
@click.option("--max-body", type=click.IntRange(1024, 1 << 30), default=None, metavar="BYTES",
              help="Largest request body accepted (default 8 MiB).")
@_log_level
def serve(
    db: str, prefix: str, host: str, port: int, token_file: str | None, allow_no_token: bool,
    allow_hosts: tuple[str, ...], max_body: int | None, log_level: str,
) -> None:  # fmt: skip
    """Serve the store over HTTP (JSON, problem+json errors, OpenAPI at /openapi.json)."""
    _need_http_extra()
    import uvicorn

    from sokka.shell.http import DEFAULT_MAX_BODY_BYTES, create_app

    _logging(log_level)
    token = _read_token_file(token_file, "--token-file") if token_file else None
    token = token or os.environ.get("SOKKA_TOKEN") or None
    if token is None and host not in _LOOPBACK and not allow_no_token:
        raise click.UsageError(
            f"refusing to serve {host} without a token: anyone who reaches it could run "
            "and cancel tasks (give --token-file, or --allow-no-token if a proxy "
            "authenticates)"
        )
    hosts: list[str] | None = list(allow_hosts) or None
    if token is None:
        # No token: answer only names of this machine's loopback (and --host), so
        # DNS rebinding cannot turn a web page into a client.
        hosts = [*_LOOPBACK, *allow_hosts, *([host] if host not in ("0.0.0.0", "::") else [])]
    with _store(db, prefix) as store:
        store.list_leased_tasks(limit=1)  # the store answers, and its schema is there
        app = create_app(
            store, token=token, max_body_bytes=max_body or DEFAULT_MAX_BODY_BYTES,
            allowed_hosts=hosts,
        )  # fmt: skip
        logging.getLogger("sokka.http").info(
            "serving %s on http://%s:%d (%s)", _shown(db), host, port,
            "token required" if token else "no token",
        )  # fmt: skip
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False,
            lifespan="off", server_header=False,
        )  # fmt: skip
        server = uvicorn.Server(config)
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal
        # to the handler it found: make that one a no-op, so the command exits 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
        server.run()


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (errors are one line on stderr)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="sokka",
                 standalone_mode=False)  # fmt: skip
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except SokkaError as error:
        click.echo(f"sokka: {error}", err=True)
        return 1
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0



@cli.command()
@click.argument(
    "scenario",
    type=click.Choice(
        ["skew", "drift", "pauses", "crashes", "mixed", "store-step", "store-step-back", "demo"]
    ),
)
@click.option("--seed", type=int, default=0, show_default=True, help="The random seed.")
@click.option("--workers", type=click.IntRange(1, 1_000), default=None, help="Worker processes.")
@click.option("--tasks", type=click.IntRange(1, 100_000), default=None, help="Tasks to run.")
@click.option("--lease", type=DURATION, default=None, help="Lease time (e.g. 10s).")
@click.option("--keepalive", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Keepalive interval, as a fraction of the lease.")  # fmt: skip
@click.option("--supervisors", type=click.IntRange(1, 100), default=None, help="Supervisors.")
@click.option("--interval", type=DURATION, default=None, help="Supervisor listing interval.")
@click.option("--latency", type=DURATION, default=None, help="One-way store latency.")
@click.option("--skew", type=DURATION, default=None, help="Largest worker/supervisor clock offset.")
@click.option("--drift", type=click.FloatRange(0, 0.5, max_open=True), default=None,
              help="Largest clock drift rate (0.05 = 5%).")  # fmt: skip
@click.option("--crash-prob", type=click.FloatRange(0, 1), default=None,
              help="Probability that a worker crashes during a task.")  # fmt: skip
@click.option("--pause-every", type=DURATION, default=None, help="Mean time between pauses.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Also draw the scenario's sweep (e.g. false revocations by clock skew) "
              "into a PNG (needs the plot extra).")  # fmt: skip
@click.option("--strategy", "strategies", multiple=True,
              type=click.Choice(["observed", "deadline", "store-clock"]),
              help="Only these strategies (repeatable; default: all).")  # fmt: skip
@_json
def simulate(
    scenario: str,
    seed: int,
    workers: int | None,
    tasks: int | None,
    lease: int | None,
    keepalive: float | None,
    supervisors: int | None,
    interval: int | None,
    latency: int | None,
    skew: int | None,
    drift: float | None,
    crash_prob: float | None,
    pause_every: int | None,
    strategies: tuple[str, ...],
    as_json: bool,
    plot: str | None,
) -> None:
    """Compare lease-supervision strategies in a deterministic virtual-time simulation."""
    from sokka.shell import simulation as sim

    try:
        chosen = sim.scenario_named(
            scenario, workers=workers, tasks=tasks, lease_ms=lease, keepalive=keepalive,
            supervisors=supervisors, interval_ms=interval, latency_ms=latency, skew_ms=skew,
            drift=drift, crash_prob=crash_prob, pause_every_ms=pause_every,
        )  # fmt: skip
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    picked = tuple(s for s in sim.STRATEGIES if not strategies or s in strategies)
    reports = sim.compare(chosen, seed, picked)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        click.echo(sim.format_table(scenario, chosen, reports))
    if plot is not None:
        _plot(
            plot,
            scenario,
            sim.SWEEPS[scenario],
            sim.sweep_parameter(scenario, chosen, seed, picked),
        )
        if not as_json:
            click.echo(f"\nwrote {plot}")


def _plot(
    path: str, scenario: str, plan: Any, points: dict[str, list[tuple[float, float]]]
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValidationError("plot", "needs matplotlib: pip install 'sokka[plot]'") from None
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    styles = {"observed": ("-", 3.0), "deadline": ("-", 1.5), "store-clock": ("--", 1.5)}
    for strategy, series in points.items():
        xs, ys = zip(*series, strict=True)
        style, width = styles.get(strategy, ("-", 1.5))
        axes.plot(xs, ys, style, linewidth=width, marker="o", label=strategy)
    axes.set_xlabel(plan.axis)
    axes.set_ylabel(plan.metric_label)
    axes.set_title(f"sokka simulate {scenario}: {plan.metric_label} by strategy")
    if plan.field == "skew_ms":
        axes.set_xscale("symlog", linthresh=0.01)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# Last, so that every command above is defined when the module runs as a script.
if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
