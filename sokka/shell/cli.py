"""The ``sokka`` command.

For now: ``sokka demo`` and ``sokka --version``; the later issues add
``init``, ``task``, ``worker``, ``supervise``, ``serve`` and ``simulate``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

__all__ = ["main"]


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    _parser().print_help()
    return 2


def _demo(args: argparse.Namespace) -> int:
    from sokka.shell.demo import run_demo

    if args.workers < 2:
        print("sokka demo: --workers must be at least 2 (one of them hangs)", file=sys.stderr)
        return 2
    result = run_demo(tasks=args.tasks, workers=args.workers, lease_ms=args.lease_ms)
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
