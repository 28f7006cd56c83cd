"""The ``sokka`` command: init, task, topic, status, purge, worker, supervise, scheduler,
serve, dashboard, demo, simulate.

The store comes from ``--db`` or ``SOKKA_DB`` (default ``sqlite:///sokka.db``):
an SQLite or PostgreSQL URL, or the ``http(s)://`` URL of a ``sokka serve``
(its token from ``SOKKA_TOKEN`` or the file named by ``SOKKA_TOKEN_FILE``).
Durations are written with a unit: ``500ms``, ``30s``, ``5m``, ``1h``, ``7d``. Output
is a table for people, JSON with ``--json`` for scripts. A bad option, an
unknown handler or an unreachable store is one clear line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from sokka.core.errors import SokkaError
from sokka.shell.cli import (  # noqa: F401  (they add the commands)
    dashboard,
    purging,
    running,
    scheduling,
    simulate,
    status,
    tasks,
    topics,
)
from sokka.shell.cli.common import DEFAULT_DB, cli, load_handler, parse_duration

__all__ = ["DEFAULT_DB", "cli", "load_handler", "main", "parse_duration"]


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
