"""docs/testing.md's examples run as written, and its claim holds: without the
``ctx.cancelled`` check, the property test finds a write after the lease was lost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "testing.md"
CHECK = "            if ctx.cancelled:\n                return ok()\n"


def run_pytest_on(source: str, where: Path) -> subprocess.CompletedProcess[str]:
    test = where / "test_from_doc.py"
    test.write_text(source)
    return subprocess.run(
        # a fixed seed: the search for the broken handler's failure is the same every run
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--hypothesis-seed=0", str(test)],
        capture_output=True, text=True, timeout=300, cwd=where, check=False,
    )  # fmt: skip


def test_the_examples_pass_and_fail_without_the_cancelled_check(tmp_path: Path) -> None:
    source = "\n\n".join(re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S))
    assert CHECK in source
    as_written = run_pytest_on(source, tmp_path)
    assert as_written.returncode == 0, as_written.stdout + as_written.stderr
    assert "2 passed" in as_written.stdout
    broken = run_pytest_on(source.replace(CHECK, ""), tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "1 failed, 1 passed" in broken.stdout
