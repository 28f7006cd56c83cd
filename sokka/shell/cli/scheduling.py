"""``sokka scheduler --app module:app``: create the tasks of an app's periodic
schedules (``@app.periodic``), until SIGTERM or SIGINT; and the scheduler that
``sokka worker --app --scheduler`` runs beside the app's workers. The app is a
``sokka.App`` (its scheduler on a thread) or a ``sokka.asyncio.App`` (its
scheduler a task of the worker's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import click

from sokka.core.errors import RetryableError
from sokka.shell.cli.common import cli, load_object
from sokka.shell.cli.running import _log_level, _logging

if TYPE_CHECKING:
    from sokka.shell.aio.app import App as AsyncApp
    from sokka.shell.app import App

__all__ = ["async_scheduling", "load_app", "scheduler", "scheduling"]

log = logging.getLogger("sokka.scheduler")


def load_app(app_path: str) -> App | AsyncApp:
    """The ``sokka.App`` or ``sokka.asyncio.App`` named by ``module:app``, or a
    usage error saying what it is."""
    from sokka.shell.aio.app import App as AsyncApp
    from sokka.shell.app import App

    app = load_object(app_path, "app", "package.module:app")
    if not isinstance(app, App | AsyncApp):
        raise click.UsageError(
            f"--app {app_path} is a {type(app).__name__}, not a sokka.App or sokka.asyncio.App"
        )
    return app


def _check_store(app: App) -> None:
    """A missing schema is an error at once; a store that is down is ridden out."""
    with contextlib.suppress(RetryableError):
        app.store.list_leased_tasks(limit=1)


async def _check_async_store(app: AsyncApp) -> None:
    """``_check_store``, awaited."""
    with contextlib.suppress(RetryableError):
        await app.store.list_leased_tasks(limit=1)


@cli.command()
@click.option(
    "--app",
    "app_path",
    required=True,
    metavar="MODULE:APP",
    help="A sokka.App or sokka.asyncio.App whose periodic schedules (@app.periodic) "
    "to run, on the app's store.",
)
@_log_level
def scheduler(app_path: str, log_level: str) -> None:
    """Create the task of every slot of an app's periodic schedules, until SIGTERM
    or SIGINT (then exit 0). Run as many as you like: each slot gets one task."""
    from sokka.shell.app import App

    _logging(log_level)
    app = load_app(app_path)
    runner = app.scheduler()  # no schedule, or a topic without a handler: an error now
    starting = f"scheduler for {len(runner.schedules)} schedule(s) of {app_path}"
    if isinstance(app, App):
        _check_store(app)
        log.info(starting)
        app.run_scheduler()
        return

    async def run_async() -> None:
        await _check_async_store(app)
        log.info(starting)
        await app.run_scheduler()

    asyncio.run(run_async())


@contextlib.contextmanager
def scheduling(app: App, enabled: bool) -> Iterator[None]:
    """With ``enabled``, run ``app``'s scheduler on a thread for the duration."""
    if not enabled:
        yield
        return
    runner = app.scheduler()
    _check_store(app)
    runner.start()
    try:
        yield
    finally:
        runner.stop()


@contextlib.asynccontextmanager
async def async_scheduling(app: AsyncApp, enabled: bool) -> AsyncIterator[None]:
    """With ``enabled``, run ``app``'s scheduler as a task of the running event loop
    for the duration (``scheduling`` for a ``sokka.asyncio.App``)."""
    if not enabled:
        yield
        return
    runner = app.scheduler()
    await _check_async_store(app)
    running = runner.start()
    try:
        yield
    finally:
        runner.stop()
        await running
