"""What the commands share: the group, durations, handler loading, opening a
store from ``--db``, and printing tasks."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.store import TaskStore
from sokka.adapters.urls import is_http_url
from sokka.core.durations import parse_duration
from sokka.core.errors import ValidationError
from sokka.core.task import Task

__all__ = [
    "DEFAULT_DB", "DURATION", "DURATION_OR_ZERO", "cli", "load_handler", "load_object",
    "parse_duration",
]

DEFAULT_DB = "sqlite:///sokka.db"

class _Duration(click.ParamType):  # type: ignore[type-arg]  # generic in click >= 8.3
    name = "duration"

    def __init__(self, *, zero: bool = False) -> None:
        self.zero = zero  #: 0 (``0``, ``0s``, ``0ms``) is allowed too

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        if self.zero and re.fullmatch(r"\s*0+(\.0*)?\s*(ms|s|m|h|d)?\s*", str(value)):
            return 0
        try:
            return parse_duration(str(value), param.name or "duration" if param else "duration")
        except ValidationError as error:
            self.fail(error.rule, param, ctx)


DURATION = _Duration()
#: A duration, or 0.
DURATION_OR_ZERO = _Duration(zero=True)


def load_handler(path: str) -> Callable[..., Any]:
    """The function named by ``package.module:function`` (the working directory is
    importable, as for ``python -m``)."""
    target = load_object(path, "handler", "package.module:function")
    if not callable(target):
        raise ValidationError("handler", f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def load_object(path: str, field: str, form: str) -> Any:
    """The object named by ``package.module:name`` (the working directory is
    importable, as for ``python -m``); a ``ValidationError`` naming ``field``."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValidationError(field, f"{path!r} is not of the form {form}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValidationError(field, f"cannot import {module_name!r}: {error}") from None
    except Exception as error:  # the module's own code failed: say which, and how, once
        raise ValidationError(
            field, f"importing {module_name!r} raised {_one_line(error)}"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValidationError(field, f"{module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    return target


def _one_line(error: BaseException) -> str:
    """``Type: message`` on one line; a SyntaxError also says where."""
    if isinstance(error, SyntaxError):
        where = f"line {error.lineno}"
        if error.filename:
            where = f"{error.filename}, {where}"
        return f"{type(error).__name__}: {error.msg} ({where})"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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


_is_http = is_http_url  # how a URL is read lives in the adapters, shared with connect()


def _need_http_extra() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise click.ClickException("HTTP needs the http extra: pip install 'sokka[http]'") from None


@contextmanager
def _store(db: str, prefix: str) -> Iterator[TaskStore]:
    if _is_http(db):
        _need_http_extra()
        from sokka.adapters.http import HTTPStore

        with HTTPStore(db, token=_client_token()) as client:
            yield client
        return
    from sokka.adapters.sql import SQLStore

    # Only `sokka init` creates a database: every other command opens an
    # existing SQLite file or says that it is missing, and leaves nothing behind.
    store = SQLStore(db, prefix=prefix, create_file=False)
    try:
        yield store
    finally:
        store.close()


@asynccontextmanager
async def _async_store(db: str, prefix: str) -> AsyncIterator[AsyncTaskStore]:
    """``_store`` for the asyncio runtime: the same URLs, the same refusals."""
    from sokka.adapters.aio.connect import connect

    if _is_http(db):
        _need_http_extra()
        store = connect(db, token=_client_token())
    else:
        # As for the threaded commands, every other URL is a database's: memory://
        # (private to one process, of no use to a command) is refused by the SQL
        # store's parser, and only `sokka init` creates an SQLite file.
        from sokka.adapters.aio.sql import AsyncSQLStore

        store = AsyncSQLStore(db, prefix=prefix, create_file=False)
    try:
        yield store
    finally:
        await store.aclose()


def _task_json(task: Task) -> dict[str, Any]:
    return {
        **task.as_record(),
        "data": task.data,
        "result": task.result,
        "trace_context": task.trace_context,
    }


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
