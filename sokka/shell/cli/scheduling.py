"""``sokka scheduler --app module:app``: create the tasks of an app's periodic
schedules (``@app.periodic``), until SIGTERM or SIGINT; and the scheduler that
``sokka worker --app --scheduler`` runs beside the app's workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from sokka.core.errors import RetryableError
from sokka.shell.cli.common import cli, load_object
from sokka.shell.cli.running import _log_level, _logging

if TYPE_CHECKING:
    from sokka.shell.app import App

__all__ = ["load_app", "scheduler", "scheduling"]

log = logging.getLogger("sokka.scheduler")


def load_app(app_path: str) -> App:
    """The ``sokka.App`` named by ``module:app``, or a usage error saying what it is."""
    from sokka.shell.app import App

    app = load_object(app_path, "app", "package.module:app")
    if not isinstance(app, App):
        raise click.UsageError(f"--app {app_path} is a {type(app).__name__}, not a sokka.App")
    return app


def _check_store(app: App) -> None:
    """A missing schema is an error at once; a store that is down is ridden out."""
    with contextlib.suppress(RetryableError):
        app.store.list_leased_tasks(limit=1)


@cli.command()
@click.option(
    "--app",
    "app_path",
    required=True,
    metavar="MODULE:APP",
    help="A sokka.App whose periodic schedules (@app.periodic) to run, on the app's store.",
)
@_log_level
def scheduler(app_path: str, log_level: str) -> None:
    """Create the task of every slot of an app's periodic schedules, until SIGTERM
    or SIGINT (then exit 0). Run as many as you like: each slot gets one task."""
    _logging(log_level)
    app = load_app(app_path)
    runner = app.scheduler()  # no schedule, or a topic without a handler: an error now
    _check_store(app)
    log.info("scheduler for %d schedule(s) of %s", len(runner.schedules), app_path)
    app.run_scheduler()


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
