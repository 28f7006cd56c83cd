"""The statement audit of ``bench/store_ops.py`` on SQLite, where the store's hot
calls run below SQLAlchemy (``SQLStore._driver``) and both sides are traced by
``sqlite3`` itself: it passes on the store's own statements, and it fails, naming
the operation, when the ceiling runs a statement the store does not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import BenchFailure
from bench.stores.audit import audit
from bench.stores.backends import SQLiteBackend
from bench.stores.common import LEASED_TOPIC, Settings

SMALL = Settings(finished=10, leased=150, rounds=1, target_s=0.01, cycles=1)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SQLiteBackend]:
    made = SQLiteBackend(SMALL, str(tmp_path))
    made.add("running", LEASED_TOPIC, SMALL.leased)
    made.tokens = made.leased_tokens()
    try:
        yield made
    finally:
        made.close()


def test_the_sqlite_audit_finds_the_store_and_the_ceiling_alike(backend: SQLiteBackend) -> None:
    lines = {line.split("  ")[0]: line for line in audit(backend)}
    reserve = lines["reserve_tasks (1) + terminate"]
    # the look (a read), the claim and the finish, each its own transaction
    assert reserve.count("BEGIN IMMEDIATE") == 2
    assert reserve.count("COMMIT") == 3
    assert "SELECT ready seq (look)" in reserve


def test_the_sqlite_audit_fails_when_the_ceiling_runs_another_statement(
    backend: SQLiteBackend,
) -> None:
    raw = backend.raw
    assert raw is not None
    raw.sql.claim = raw.sql.claim.replace("WHERE", "WHERE 1 = 1 AND", 1)  # the same rows
    with pytest.raises(BenchFailure, match=r"the store's statements for reserve_tasks"):
        audit(backend)
