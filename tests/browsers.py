"""The browser the dashboard tests drive, and how it is found or skipped.

Debian's ``chromium`` (``apt-get install chromium``), driven by playwright's
Python API with ``executable_path`` (``playwright install`` downloads a
browser of its own, which this project does not need). When ``chromium`` is
not on PATH, the browser tests are skipped with the reason shown, unless
``SOKKA_REQUIRE_BROWSER=1`` (CI sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest


def chromium_path() -> str:
    """Where ``chromium`` is, or skip (fail under SOKKA_REQUIRE_BROWSER=1)."""
    found = shutil.which("chromium")
    if found is None:
        why = "chromium is not on PATH (apt-get install chromium)"
        if os.environ.get("SOKKA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why} (SOKKA_REQUIRE_BROWSER=1)")
        pytest.skip(why)
    return found
