"""The databases the tests run against, and how they are found or skipped.

PostgreSQL: ``SOKKA_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). When it does not
answer, tests that need it are skipped with the reason shown, unless
``SOKKA_REQUIRE_POSTGRES=1`` (CI sets it), which turns the skip into a failure.
Each run works under table prefixes of its own and drops them afterwards.
"""

from __future__ import annotations

import functools
import os
import secrets

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_RUN = f"{os.getpid() % 100_000}{secrets.token_hex(2)}"


def postgres_url() -> str:
    return os.environ.get("SOKKA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def test_prefix(name: str) -> str:
    """A table prefix private to this test run (several runs may share a database)."""
    return f"t{_RUN}_{name}_"


@functools.cache
def _postgres_engine() -> Engine | str:
    url = postgres_url()
    engine = sa.create_engine(
        url, pool_size=12, max_overflow=12, connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as error:  # any failure to connect means: not reachable
        engine.dispose()
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return f"PostgreSQL at {url} is not reachable: {first}"
    return engine


def postgres_engine() -> Engine:
    """The shared engine of the test PostgreSQL, or skip (fail under SOKKA_REQUIRE_POSTGRES)."""
    found = _postgres_engine()
    if isinstance(found, str):
        if os.environ.get("SOKKA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{found} (SOKKA_REQUIRE_POSTGRES=1)")
        pytest.skip(found)
    return found
test_prefix.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
