"""The ``sokka`` command.

For now: ``sokka init``, ``sokka demo`` and ``sokka --version``; later issues
add ``task``, ``worker``, ``supervise``, ``serve`` and ``simulate``. The store
comes from ``--db`` or ``SOKKA_DB`` (default ``sqlite:///sokka.db``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from sokka.core.errors import SokkaError

__all__ = ["DEFAULT_DB", "main"]

DEFAULT_DB = "sqlite:///sokka.db"


def _version() -> str:
    try:
        return version("sokka")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {value})")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sokka",
        description="Durable background tasks with clock-skew-safe lease supervision.",
    )
    parser.add_argument("--version", action="version", version=f"sokka {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    init = commands.add_parser(
        "init",
        help="create the store's schema (idempotent)",
        description=(
            "Create the tables and indexes of a SQL store if they are missing. Safe to run "
            "again, and from several machines at once. Refuses a schema newer than this sokka."
        ),
    )
    _add_db(init)
    demo = commands.add_parser(
        "demo",
        help="watch a hung worker's task being rescued (in memory, a few seconds)",
        description=(
            "Worker threads take tasks from an in-memory store; one hangs mid-task. "
            "The supervisor revokes its lease after one lease time without a change, "
            "another worker finishes the task, and the hung worker's late result is refused."
        ),
    )
    demo.add_argument("--tasks", type=_positive_int, default=12, help="tasks to queue (12)")
    demo.add_argument("--workers", type=_positive_int, default=3, help="worker threads (3)")
    demo.add_argument(
        "--lease-ms", type=_positive_int, default=600, help="lease time in milliseconds (600)"
    )
    demo.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="run on this store instead of in memory (its schema is created if missing; "
        "the demo uses a topic of its own)",
    )
    demo.add_argument("--prefix", default="sokka_", help="table-name prefix (sokka_)")
    return parser


def _add_db(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get("SOKKA_DB", DEFAULT_DB),
        help=f"store URL (default: $SOKKA_DB, else {DEFAULT_DB})",
    )
    command.add_argument(
        "--prefix",
        default="sokka_",
        help="table-name prefix, so independent queues can share a database (sokka_)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            return _init(args)
        if args.command == "demo":
            return _demo(args)
    except SokkaError as error:
        print(f"sokka {args.command}: {error}", file=sys.stderr)
        return 1
    _parser().print_help()
    return 2


def _init(args: argparse.Namespace) -> int:
    from sokka.adapters.sql import SQLStore

    with SQLStore(args.db, prefix=args.prefix) as store:
        found = store.schema_version()
        version = store.create_schema()
        url = store.engine.url.render_as_string(hide_password=True)
    what = "created" if found is None else "already there"
    print(f"sokka schema version {version} {what} in {url} (prefix {args.prefix!r})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sokka.shell.demo import run_demo

    if args.workers < 2:
        print("sokka demo: --workers must be at least 2 (one of them hangs)", file=sys.stderr)
        return 2
    if args.db is None:
        result = run_demo(tasks=args.tasks, workers=args.workers, lease_ms=args.lease_ms)
    else:
        from sokka.adapters.sql import SQLStore

        with SQLStore(args.db, prefix=args.prefix) as store:
            store.create_schema()
            url = store.engine.url.render_as_string(hide_password=True)
            print(f"running on {url}")
            result = run_demo(
                tasks=args.tasks, workers=args.workers, lease_ms=args.lease_ms, store=store
            )
    print()
    print(f"done:    {result.done} of {result.tasks} tasks, each finished exactly once")
    print(f"lost:    {result.lost}")
    print(f"rescued: {len(result.rescued)} ({', '.join(result.rescued) or 'none'})")
    print(f"fenced:  {len(result.fenced)} late result(s) refused")
    if not result.ok:
        print("sokka demo: something went wrong (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
