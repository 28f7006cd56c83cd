"""The benchmarks' doctests: pytest's ``--doctest-modules`` collects ``tests`` and
``sokka`` only, so the examples in ``bench``'s docstrings are run here."""

from __future__ import annotations

import doctest
import importlib

import pytest

from bench.harness import ROOT

MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for path in (ROOT / "bench").rglob("*.py")
    if path.name != "__init__.py"
)


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_a_benchmarks_docstrings_hold(name: str) -> None:
    failed, _attempted = doctest.testmod(importlib.import_module(name))
    assert failed == 0


def test_the_benchmarks_have_examples_to_run() -> None:
    attempted = sum(doctest.testmod(importlib.import_module(m)).attempted for m in MODULES)
    assert attempted >= 3
