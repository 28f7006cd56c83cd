"""The shared benchmark harness: its pure helpers, and PgServer on the real server."""

from __future__ import annotations

import argparse
import os

import psycopg
import pytest

from bench import core_supervision, throughput
from bench.harness import (
    DEFAULT_POSTGRES_URL,
    ROOT,
    BenchFailure,
    Column,
    PgServer,
    Table,
    add_postgres_url,
    add_quick,
    check,
    child_env,
    comma_list,
    default_postgres_url,
    first_line,
    fmt_percent,
    fmt_rate,
    fmt_times,
    median_ratio,
    parser_for,
    positive_int,
    positive_ints,
    rotated,
    round_ratios,
    unknown_items,
    verdict,
    versions,
)
from bench.stores.run import SUMMARY, _operations_table
from tests.databases import postgres_engine, postgres_url

# -- checks and the command line


def test_check_raises_bench_failure_with_the_message():
    check(True, "not raised")
    with pytest.raises(BenchFailure, match="3 tasks left"):
        check(False, "3 tasks left")


def test_comma_list_drops_blanks_and_spaces():
    assert comma_list(" memory, sqlite,,postgres ,") == ["memory", "sqlite", "postgres"]
    assert comma_list("") == []


def test_unknown_items_keeps_their_order():
    assert unknown_items(["http", "x", "memory", "y"], ("memory", "http")) == ["x", "y"]


def test_positive_int_names_the_rule():
    assert positive_int("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match="must be at least 1: 0"):
        positive_int("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not an int: 'seven'"):
        positive_int("seven")


def test_positive_ints_reads_sizes_with_underscores():
    assert positive_ints("1_000, 10000,100_000") == (1000, 10_000, 100_000)
    with pytest.raises(argparse.ArgumentTypeError, match="not a comma-separated list"):
        positive_ints("1000,lots")
    with pytest.raises(argparse.ArgumentTypeError, match="sizes must be positive"):
        positive_ints("1000,-5")
    with pytest.raises(argparse.ArgumentTypeError, match="sizes must be positive"):
        positive_ints(" , ")


def test_parser_takes_the_first_paragraph_of_the_docstring_and_the_shared_flags():
    parser = parser_for("One line title.\n\nThe details, not in the description.")
    add_quick(parser, "smoke run")
    add_postgres_url(parser)
    assert parser.description == "One line title."
    args = parser.parse_args(["--quick", "--postgres-url", ""])
    assert args.quick is True
    assert args.postgres_url == ""
    assert parser.parse_args([]).quick is False


def test_default_postgres_url_prefers_the_bench_variable_then_the_tests_one():
    assert default_postgres_url({}) == DEFAULT_POSTGRES_URL
    assert default_postgres_url({"SOKKA_TEST_POSTGRES_URL": "t"}) == "t"
    assert default_postgres_url({"SOKKA_TEST_POSTGRES_URL": "t", "SOKKA_BENCH_PG": "b"}) == "b"
    # An empty value is a choice (skip PostgreSQL in throughput.py), not a missing one.
    assert default_postgres_url({"SOKKA_BENCH_PG": "", "SOKKA_TEST_POSTGRES_URL": "t"}) == ""


# -- timing


def test_rotated_starts_each_round_at_the_next_side():
    sides = ["store", "ceiling", "minimal"]
    assert [rotated(sides, r) for r in range(4)] == [
        ["store", "ceiling", "minimal"],
        ["ceiling", "minimal", "store"],
        ["minimal", "store", "ceiling"],
        ["store", "ceiling", "minimal"],
    ]
    assert rotated([], 3) == []


def test_ratios_pair_the_rounds_and_take_their_median():
    assert round_ratios([2.0, 6.0, 9.0], [1.0, 2.0, 3.0]) == [2.0, 3.0, 3.0]
    # Not the ratio of the medians (6 / 2 = 3 here too, but 100 / 1 would not be):
    assert median_ratio([100.0, 6.0, 9.0], [1.0, 3.0, 3.0]) == 3.0
    with pytest.raises(ValueError, match="shorter"):
        round_ratios([1.0, 2.0], [1.0])


# -- printing


def test_formats_of_rates_ratios_and_verdicts():
    assert fmt_rate(1_234_567.4) == "1,234,567"
    assert fmt_rate(None) == "-"
    assert fmt_percent(0.634) == "63%"
    assert fmt_percent(0.634, 1) == "63.4%"
    assert fmt_percent(None) == "-"
    assert fmt_times(9.0, 3.0) == "3.00x"
    assert fmt_times(9.0, 3.0, 1) == "3.0x"
    assert fmt_times(1.0, 0.0) == "n/a"
    assert verdict(True) == "MET"
    assert verdict(False) == "MISSED"
    assert verdict(False, "NOT MET") == "NOT MET"


def test_first_line_of_an_error():
    assert first_line(ConnectionError("refused\n\tIs the server running?")) == "refused"
    assert first_line(ConnectionError("  ")) == "ConnectionError('  ')"


def test_table_aligns_cells_under_their_titles():
    table = Table(
        (Column("name", 6, "<"), Column("rate", 7), Column("note", 4, "<", before=" | ")),
        indent="  ",
    )
    assert table.header() == "  name      rate | note"
    assert table.row("a", "1,234", "ok") == "  a        1,234 | ok  "
    assert table.rule() == "-" * len(table.header())
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        table.row("a", "b")


def test_tables_join_with_the_second_ones_separator():
    joined = Table((Column("a", 3),), sep=" ") + Table((Column("b", 2), Column("c", 2)), sep="|")
    assert joined.header() == "  a| b| c"


def test_tables_print_the_headers_the_benchmarks_always_printed():
    """The output format is kept: these are the headers as the scripts wrote them by hand."""
    assert core_supervision.TABLE.header() == (
        f"{'size':>8}  {'cycles':>6}  {'core ms/cyc':>11}  {'core us/task':>12}  "
        f"{'ref us/task':>11}  {'naive us/task':>13}  {'core/ref':>8}  {'naive/ref':>9}"
    )
    header = throughput.HEADER
    assert header == (
        f"{'system':<14}{'store':<10}{'configuration':<30}{'tasks':>7}{'create/s':>10}"
        f"{'drain s':>9}{'jobs/s':>10}  check"
    )
    assert _operations_table(True).header() == (
        f"  {'operation':<38} {'unit':<9} {'store':>10} {'ceiling':>10} {'ratio':>6} "
        f"{'minimal*':>10}   calls/round  spread"
    )
    assert _operations_table(False).header() == (
        f"  {'operation':<38} {'unit':<9} {'store':>10}   calls/round  spread"
    )
    assert SUMMARY.header() == (
        f"{'store':<9} {'operation':<38} {'unit':<9} {'store':>10} {'ceiling':>10} "
        f"{'ratio':>6} {'minimal*':>10}"
    )


# -- the environment


def test_versions_names_the_installed_packages_only():
    line = versions(["sqlalchemy", "no-such-distribution-here"])
    assert line.startswith("sqlalchemy 2.")
    assert "no-such" not in line


def test_child_env_puts_the_repository_first_on_pythonpath():
    env = child_env({"PYTHONPATH": f"/elsewhere{os.pathsep}", "KEEP": "1"})
    assert env["PYTHONPATH"] == f"{ROOT}{os.pathsep}/elsewhere"
    assert env["KEEP"] == "1"
    assert (ROOT / "bench" / "harness.py").is_file()
    assert child_env({})["PYTHONPATH"] == str(ROOT)


# -- PostgreSQL


def test_pg_server_dsn_and_shown_url():
    server = PgServer("postgresql+psycopg://bench:secret@db.example:6543/main")
    assert server.dsn() == "postgresql://bench:secret@db.example:6543/main"
    assert server.dsn("other") == "postgresql://bench:secret@db.example:6543/other"
    assert server.shown == "postgresql+psycopg://bench:***@db.example:6543/main"


def test_pg_server_database_exists_inside_and_is_dropped_after():
    postgres_engine()  # skips (or fails under SOKKA_REQUIRE_POSTGRES) when not reachable
    server = PgServer(postgres_url())
    with server.database("harness") as dsn:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        name = row[0]
        assert name.startswith("bench_harness_")
    with server.connect() as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert left.fetchone() == (0,)
    described = server.describe()
    assert described.startswith("PostgreSQL ")
    assert "fsync=" in described
    assert "synchronous_commit=" in described
