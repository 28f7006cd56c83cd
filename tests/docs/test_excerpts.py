"""Code the docs show from a file is that file's code.

A ```python block right after ``<!-- excerpt: PATH -->`` must appear, line
for line, in the repository's file PATH, so that the docs cannot drift from
the examples the tests run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->\n```python\n(.*?)\n```", re.S)

EXCERPTS = [
    (doc, path, body)
    for doc in DOCS
    for path, body in _EXCERPT.findall(doc.read_text(encoding="utf-8"))
]


def test_the_docs_have_excerpts() -> None:
    assert len(EXCERPTS) >= 3


@pytest.mark.parametrize(
    ("doc", "path", "body"), EXCERPTS, ids=[f"{d.name}:{p}" for d, p, _ in EXCERPTS]
)
def test_excerpt_is_in_its_file(doc: Path, path: str, body: str) -> None:
    source = (REPO / path).read_text(encoding="utf-8")
    assert body in source, f"{doc.name} shows code that is not in {path}: copy it again"
