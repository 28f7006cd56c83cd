"""docs/http.md's curl session, re-run against a real ``sokka serve``.

The session is a ``console`` block (``$ command``, its output, a blank line),
not a ``sh`` + ``text`` pair, and the doc elides long tasks with ``…``: it
is checked here rather than by ``test_shown_output``. Each command runs
in bash as shown, against a server on a free port (the doc's ``8080`` is
replaced), in a directory holding the doc's ``token`` file. Each shown line
must be printed: ``…`` stands for any text, and the store's timestamps for any
number; of a ``curl -i`` answer's headers, the ones shown must be among those
printed.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.shown_output import REPO
from tests.shell.http_api.helpers import sokka_serve

DOC = REPO / "docs" / "http.md"
TOKEN = "docs-session-token-0123456789abcdef"


@dataclass(frozen=True)
class Step:
    line: int  #: where the command starts in the doc (1-based)
    command: str
    shown: list[str]


def session_steps(text: str) -> list[Step]:
    """The commands of the curl session and what the doc shows each print."""
    lines = text.splitlines()
    start = lines.index("## A session with curl")
    opening = next(i for i in range(start, len(lines)) if lines[i] == "```console")
    closing = lines.index("```", opening + 1)
    steps: list[Step] = []
    i = opening + 1
    while i < closing:
        if not lines[i].startswith("$ "):
            i += 1
            continue
        first, parts = i, [lines[i][2:]]
        while parts[-1].endswith("\\"):
            i += 1
            parts.append(lines[i])
        i += 1
        shown: list[str] = []
        while i < closing and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        while shown and not shown[-1]:
            shown.pop()
        steps.append(Step(first + 1, "\n".join(parts), shown))
    return steps


_STAMP = re.compile(r'"(created_at|updated_at)":\d+')


def _pattern(shown: str) -> re.Pattern[str]:
    """A shown line as a pattern: ``…`` is any text, a timestamp any number."""
    text = _STAMP.sub(r'"\1":0', shown)
    return re.compile(".*?".join(re.escape(part) for part in text.split("…")) + r"\Z")


def matches(shown: list[str], printed: list[str]) -> list[str]:
    """What of ``shown`` is not in ``printed`` (empty: it matches)."""
    printed = [_STAMP.sub(r'"\1":0', line.rstrip("\r")) for line in printed]
    if shown and shown[0].startswith("HTTP/1.1 "):  # curl -i: status, some headers, body
        blank = printed.index("") if "" in printed else len(printed)
        head, body = printed[:blank], printed[blank + 1 :]
        shown_blank = shown.index("")
        problems = [] if shown[0] == head[0] else [f"status {head[0]!r}, shown {shown[0]!r}"]
        headers = {line.lower() for line in head[1:]}
        problems += [
            f"header not sent: {h!r}" for h in shown[1:shown_blank] if h.lower() not in headers
        ]
        return problems + matches(shown[shown_blank + 1 :], body)
    if len(shown) != len(printed):
        return [f"{len(printed)} lines printed, {len(shown)} shown: {printed!r}"]
    return [
        f"shown {want!r}, printed {got!r}"
        for want, got in zip(shown, printed, strict=True)
        if not _pattern(want).match(got)
    ]


def test_the_session_is_what_the_doc_shows(tmp_path: Path) -> None:
    steps = session_steps(DOC.read_text(encoding="utf-8"))
    assert len(steps) >= 8, "the curl session was not found in docs/http.md"
    (tmp_path / "token").write_text(TOKEN + "\n")
    with sokka_serve(tmp_path, token=TOKEN) as (_server, base_url):
        port = base_url.rsplit(":", 1)[1]
        problems: list[str] = []
        for step in steps:
            command = step.command.replace("localhost:8080", f"localhost:{port}")
            run = subprocess.run(
                ["bash", "-c", f"export TOKEN=$(cat token)\n{command}"],
                cwd=tmp_path, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            printed = run.stdout.splitlines()
            problems += [f"http.md:{step.line}: {p}" for p in matches(step.shown, printed)]
    assert problems == []


_401 = "HTTP/1.1 401 Unauthorized"


@pytest.mark.parametrize(
    ("shown", "printed", "ok"),
    [
        (['{"a":1,…,"b":2}'], ['{"a":1,"x":3,"b":2}'], True),
        (['{"a":1,…,"b":2}'], ['{"a":1,"x":3,"b":3}'], False),
        (['{"created_at":1}'], ['{"created_at":99}'], True),
        ([_401, "x-a: 1", "", "body"], [_401, "date: d", "x-a: 1", "", "body"], True),
        ([_401, "x-a: 1", "", "body"], [_401, "date: d", "", "body"], False),
        ([_401, "", "body"], ["HTTP/1.1 403 Forbidden", "", "body"], False),
        (["one"], ["one", "two"], False),
    ],
)  # fmt: skip
def test_the_comparison_reports_what_changed(
    shown: list[str], printed: list[str], ok: bool
) -> None:
    assert (matches(shown, printed) == []) is ok
