"""``sokka dashboard``: the web dashboard of a store, for the person at this machine.

It serves the same application as ``sokka serve`` (the dashboard under
``/ui/`` and the API beside it) on a loopback address only, without a token,
so no login is asked: anyone who can open a connection to this machine's
loopback can use it, as they could run ``sokka task`` here. To share a
dashboard, run ``sokka serve`` with a token instead (docs/operations.md).
"""

from __future__ import annotations

import logging
import signal
from contextlib import ExitStack

import click

from sokka.shell.cli.common import _db, _need_http_extra, _prefix, _store, cli
from sokka.shell.cli.running import _LOOPBACK, _address, _listening, _port_of

__all__ = ["dashboard"]


@cli.command()
@_db
@_prefix
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Loopback address to listen on (127.0.0.1, ::1 or localhost).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True)
def dashboard(db: str, prefix: str, host: str, port: int) -> None:
    """Open the web dashboard of a store on this machine (loopback, no login)."""
    _need_http_extra()
    from sokka.shell.http import create_app
    from sokka.shell.http.protocol import bounded_server

    if host not in _LOOPBACK:
        raise click.UsageError(
            f"sokka dashboard listens on loopback only (got --host {host}): to open a "
            "dashboard to others, run `sokka serve` with a token (its /ui/ asks for it)"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    listeners = _listening(host, port)
    with ExitStack() as closing, _store(db, prefix) as store:
        for listener in listeners:
            closing.enter_context(listener)
        store.list_leased_tasks(limit=1)  # the store answers, and its schema is there
        app = create_app(store, listen_host=host)
        click.echo(f"dashboard on http://{_address(host, _port_of(listeners[0]))}/ui/ "
                   "(Ctrl-C to stop)")  # fmt: skip
        server = bounded_server(app, host=host, port=port)
        # As `sokka serve`: uvicorn stops gracefully on SIGTERM/SIGINT, and the
        # command then exits 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
        server.run(sockets=listeners)
