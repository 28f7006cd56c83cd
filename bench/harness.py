"""What every benchmark needs and none should write again.

* checks: ``BenchFailure`` and ``check``: a failed check means the figures
  would mean nothing, so the run stops;
* the command line: the parser (its description from the module's docstring),
  the shared flags (``--quick``, ``--postgres-url``) and argument types;
* timing: one timed call, the rotation of sides from round to round, the
  per-round ratios and their median;
* printing: rates, ratios, percentages, verdicts, fixed-width tables;
* the environment: package versions, a child process's ``PYTHONPATH``;
* PostgreSQL: ``PgServer``, the server of ``--postgres-url``: libpq DSNs,
  private databases, a description of the server.

Pure helpers apart from ``PgServer`` and ``timed``: ``tests/bench`` tests them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import secrets
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

#: The repository: where ``bench`` and ``sokka`` are imported from, in this
#: process (the entry scripts put it first on ``sys.path``) and in its children.
ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES_URL: Final = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Where ``--postgres-url`` takes its default from, first found first.
POSTGRES_URL_VARIABLES: Final = ("SOKKA_BENCH_PG", "SOKKA_TEST_POSTGRES_URL")


class BenchFailure(Exception):
    """A correctness check failed: the numbers would mean nothing."""


def check(condition: bool, message: str) -> None:
    """Raise ``BenchFailure(message)`` unless ``condition``."""
    if not condition:
        raise BenchFailure(message)


# -- the command line ------------------------------------------------------------------


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of ``doc`` (a module's docstring)."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)


def add_quick(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--quick", action="store_true", help=help)


def default_postgres_url(environ: Mapping[str, str] = os.environ) -> str:
    """``$SOKKA_BENCH_PG``, else ``$SOKKA_TEST_POSTGRES_URL``, else the local test server."""
    for name in POSTGRES_URL_VARIABLES:
        value = environ.get(name)
        if value is not None:
            return value
    return DEFAULT_POSTGRES_URL


def add_postgres_url(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--postgres-url", default=default_postgres_url(), help=help)


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the items of a comma-separated flag."""
    return [part.strip() for part in text.split(",") if part.strip()]


def unknown_items(items: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The items not in ``allowed``, in their order."""
    return [item for item in items if item not in allowed]


def positive_int(text: str) -> int:
    """An ``argparse`` type: an int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an int: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def positive_ints(text: str) -> tuple[int, ...]:
    """An ``argparse`` type: a comma-separated list of ints of at least 1 (``_`` allowed)."""
    try:
        values = tuple(int(part.replace("_", "")) for part in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive ints: {text!r}")
    return values


# -- timing ----------------------------------------------------------------------------


def timed(run: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    """``run(*args, **kwargs)``'s result and the seconds it took (``time.perf_counter``)."""
    started = time.perf_counter()
    result = run(*args, **kwargs)
    return result, time.perf_counter() - started


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` started at ``shift`` (modulo their number) and wrapped around.

    Round ``r`` runs the sides in ``rotated(sides, r)``: no side always runs
    first, or always right after another one's garbage.
    """
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def round_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """``a / b`` for each round's pair (the two sides ran back to back in that round)."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the rounds' ratios: a slow spell of the machine mostly hits both sides."""
    return statistics.median(round_ratios(numerators, denominators))


# -- printing --------------------------------------------------------------------------


def fmt_rate(rate: float | None) -> str:
    """``1234.5`` -> ``"1,234"``; ``None`` (not measured) -> ``"-"``."""
    return "-" if rate is None else f"{rate:,.0f}"


def fmt_percent(ratio: float | None, digits: int = 0) -> str:
    """``0.634`` -> ``"63%"``; ``None`` -> ``"-"``."""
    return "-" if ratio is None else f"{100 * ratio:.{digits}f}%"


def fmt_times(a: float, b: float, digits: int = 2) -> str:
    """``a / b`` as ``"2.64x"``; ``"n/a"`` when ``b`` is 0."""
    return f"{a / b:.{digits}f}x" if b else "n/a"


def verdict(met: bool, missed: str = "MISSED") -> str:
    """How a goal line ends: ``MET``, or ``missed``."""
    return "MET" if met else missed


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its ``repr`` when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)


@dataclass(frozen=True, slots=True)
class Column:
    """A fixed-width column: its title, width, alignment (``<`` or ``>``), and the
    text before it (the table's separator when ``None``)."""

    title: str
    width: int
    align: str = ">"
    before: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    """Fixed-width rows under a header: cells are formatted by the caller, aligned here."""

    columns: tuple[Column, ...]
    sep: str = " "
    indent: str = ""

    def row(self, *cells: str) -> str:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        parts = [self.indent]
        for i, (column, cell) in enumerate(zip(self.columns, cells, strict=True)):
            if i:
                parts.append(self.sep if column.before is None else column.before)
            parts.append(f"{cell:{column.align}{column.width}}")
        return "".join(parts)

    def header(self) -> str:
        return self.row(*(column.title for column in self.columns))

    def rule(self, char: str = "-") -> str:
        """A line of ``char`` as long as the header."""
        return char * len(self.header())

    def __add__(self, other: Table) -> Table:
        """This table's columns, then ``other``'s (``other``'s separator goes before its first)."""
        first, *rest = other.columns
        if first.before is None:
            first = Column(first.title, first.width, first.align, other.sep)
        rest = [c if c.before is not None else Column(c.title, c.width, c.align, other.sep)
                for c in rest]  # fmt: skip
        return Table((*self.columns, first, *rest), self.sep, self.indent)


# -- the environment -------------------------------------------------------------------


def version_of(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(names: Iterable[str]) -> str:
    """``"sokka 0.1.0, sqlalchemy 2.0.30, ..."``: those of ``names`` that are installed."""
    found = ((name, version_of(name)) for name in names)
    return ", ".join(f"{name} {version}" for name, version in found if version is not None)


def child_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``environ`` (this process's), with ``ROOT`` first on ``PYTHONPATH``: a child
    process (``python -c``, or a benchmark re-run as a worker) imports ``bench``
    and ``sokka`` from where this one did."""
    path = [str(ROOT), *(p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return {**environ, "PYTHONPATH": os.pathsep.join(path)}


# -- PostgreSQL ------------------------------------------------------------------------


class PgServer:
    """The PostgreSQL server of ``--postgres-url``: DSNs, private databases, a description.

    Nothing connects until asked: making one never fails for a server that is down.
    """

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self.url = make_url(url)

    def dsn(self, database: str | None = None) -> str:
        """A libpq DSN (psycopg, asyncpg) for ``database`` (default: the URL's)."""
        url = self.url.set(drivername="postgresql")
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)

    @property
    def shown(self) -> str:
        """The URL as printed: password hidden."""
        return self.url.render_as_string(hide_password=True)

    def connect(self, database: str | None = None, **options: Any) -> Any:
        """A psycopg connection (autocommit unless ``options`` say otherwise; 5 s to connect)."""
        import psycopg

        options.setdefault("autocommit", True)
        options.setdefault("connect_timeout", 5)
        return psycopg.connect(self.dsn(database), **options)

    @staticmethod
    def version(conn: Any) -> str:
        """The server's version, as ``SHOW server_version`` says it on ``conn``."""
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def label(self, conn: Any) -> str:
        """``postgres (<url, no password>; PostgreSQL <version>)``: a section's title."""
        return f"postgres ({self.shown}; PostgreSQL {self.version(conn)})"

    @contextlib.contextmanager
    def database(self, tag: str) -> Iterator[str]:
        """A fresh database ``bench_<tag>_<random>``, dropped on the way out; yields its DSN."""
        name = f"bench_{tag}_{secrets.token_hex(4)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.dsn(name)
        finally:
            with self.connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def describe(self) -> str:
        """The server's version and the settings that shape write throughput."""
        with self.connect() as conn:
            version = self.version(conn)
            settings = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'synchronous_commit', 'shared_buffers', 'autovacuum') ORDER BY name"
            ).fetchall()
        shown = ", ".join(f"{k}={v}" for k, v in settings)
        return f"PostgreSQL {version} ({shown})"
