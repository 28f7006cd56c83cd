"""The output the docs show is what their commands print today.

Each ```sh (or ```python) block that is followed by a ```text block in
README.md or docs/*.md is a command and its output. It carries a marker,
``<!-- checked: NAME ... -->`` or ``<!-- not checked: REASON -->`` (see
tests/docs/shown_output.py for the options). The checked ones run here in
fresh temporary directories, with ``sokka`` and ``python`` from this
environment and the repository's root importable (``examples.*``); their
output, normalised for what varies from run to run, must match the text
block shown.

After a change to a message, regenerate the shown output from a real run:

    SOKKA_DOCS_UPDATE=1 pytest tests/docs/test_shown_output.py

then read the diff (`git diff docs/`) as a user would: the prose around a
block may need to follow. ``pytest -m "not docs"`` skips these runs (about
a minute of wall time, mostly the guide's own ``sleep``s); CI runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.databases import postgres_engine
from tests.docs.shown_output import (
    REPO,
    Pair,
    SessionRun,
    compare,
    normalise,
    parse,
    rewrite_output,
    run_session,
)

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
UPDATE = os.environ.get("SOKKA_DOCS_UPDATE") == "1"
# Sessions mostly sleep (the guide's own `sleep`s), but their commands start
# Python processes: more than two at once on a busy two-core machine delays
# them past the guide's sleeps. Two keep the run near the longest session.
PARALLEL_SESSIONS = 2

PAIRS = [pair for path in DOCS for pair in parse(path).pairs]


def _sessions(pairs: list[Pair]) -> dict[tuple[Path, str], list[Pair]]:
    sessions: dict[tuple[Path, str], list[Pair]] = {}
    for pair in pairs:
        sessions.setdefault((pair.path, pair.session), []).append(pair)
    return sessions


@pytest.fixture(scope="module")
def session_runs(
    request: pytest.FixtureRequest,
) -> Iterator[dict[tuple[Path, str], Future[SessionRun]]]:
    """The selected tests' sessions, started on a small pool; each test waits for its own."""
    selected: set[tuple[Path, str]] = set()
    for item in request.session.items:
        pair = item.callspec.params.get("pair") if hasattr(item, "callspec") else None
        if isinstance(pair, Pair):
            selected.add((pair.path, pair.session))
    sessions = {key: pairs for key, pairs in _sessions(PAIRS).items() if key in selected}
    # The sessions of most blocks (the guide's story) first, so the pool does not end on one.
    order = sorted(sessions, key=lambda key: -len(sessions[key]))
    with ThreadPoolExecutor(max_workers=PARALLEL_SESSIONS) as pool:
        yield {key: pool.submit(run_session, sessions[key]) for key in order}


@pytest.mark.docs
@pytest.mark.parametrize("pair", PAIRS, ids=[f"{p.path.name}:{p.name}" for p in PAIRS])
def test_shown_output_is_printed(
    pair: Pair, session_runs: dict[tuple[Path, str], Future[SessionRun]]
) -> None:
    if pair.setup == "postgres":
        postgres_engine()  # skip, or fail under SOKKA_REQUIRE_POSTGRES, without it
    run = session_runs[(pair.path, pair.session)].result()
    assert run.error is None, f"{pair.where}: {run.error}\nset-up printed:\n{run.setup_output}"
    printed = run.outputs[pair.name]
    if UPDATE:
        rewrite_output(pair.path, pair.name, printed)
        return
    difference = compare(
        list(pair.output.body), printed, any_order=pair.any_order, varies=pair.varies
    )
    assert difference is None, (
        f"{pair.where} does not show what its command prints"
        f" (SOKKA_DOCS_UPDATE=1 rewrites it from this run):\n{difference}"
        "\n-- printed --\n" + "\n".join(printed)
    )


def test_every_shown_output_is_marked() -> None:
    problems = [problem for path in DOCS for problem in parse(path).problems]
    assert problems == []


# -- the checker itself -----------------------------------------------------

GOOD_AND_BAD = """\
# A doc

<!-- checked: greet -->

```sh
echo "hello from $(basename "$PWD" | cut -c1-11)"
echo "at 2026-11-28 01:25:02,679 worker vm-27755-b184ef" >&2
```

```text
hello from sokka-docs-
at 2031-01-01 00:00:00,000 worker other-host-1-abcdef
```

<!-- checked: drifted session=greet -->

```sh
echo "revoked the lease of task t1 (record_ver 2, 4 ms overdue): now starting"
```

```text
revoked running task t1 (record_ver 2, 4 ms overdue): now starting
```

<!-- checked: counted order=any -->

```python
for name in ("b", "a"):
    print(name)
```

```text
a
b
```
"""


def test_checker_passes_what_varies_and_reports_a_changed_line(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(GOOD_AND_BAD)
    parsed = parse(doc)
    assert parsed.problems == []
    assert [(p.name, p.session, p.any_order) for p in parsed.pairs] == [
        ("greet", "greet", False),
        ("drifted", "greet", False),
        ("counted", "counted", True),
    ]
    greet, drifted, counted = parsed.pairs
    run = run_session([greet, drifted], repo=tmp_path)
    assert run.error is None
    assert compare(list(greet.output.body), run.outputs["greet"], any_order=False) is None
    difference = compare(list(drifted.output.body), run.outputs["drifted"], any_order=False)
    assert difference is not None
    assert "-revoked running task t1" in difference
    assert "+revoked the lease of task t1" in difference
    printed = run_session([counted], repo=tmp_path).outputs["counted"]
    assert printed == ["b", "a"]
    assert compare(list(counted.output.body), printed, any_order=True) is None
    assert compare(["a", "b"], printed, any_order=False) is not None
    # Any order is still every line: one that is not printed is reported.
    assert compare(["a", "b", "c"], printed, any_order=True) == "shown but not printed: c"
    # varies= loosens only what its pattern matches.
    assert (
        compare(["fenced=0 lost=0"], ["fenced=1 lost=0"], any_order=False, varies=r"fenced=\d")
        is None
    )
    assert compare(["fenced=0 lost=0"], ["fenced=1 lost=1"], any_order=False, varies=r"fenced=\d")


def test_checker_reports_unmarked_and_misplaced_markers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```sh\necho hi\n```\n\n```text\nhi\n```\n\n"
        "<!-- not checked: needs a cluster -->\n```sh\necho x\n```\n\n```text\nx\n```\n\n"
        "<!-- checked: lonely -->\n```sh\necho alone\n```\n\n"
        "<!-- checked: odd setup=nowhere -->\n```sh\necho x\n```\n```text\nx\n```\n"
    )
    problems = parse(doc).problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("doc.md:1: a ```sh block with its output shown after it has no")
    assert problems[1].startswith("doc.md:24: setup=nowhere is not one of")
    assert problems[2].startswith("doc.md:19: a marker on a ```sh block that is not")
    assert parse(doc).pairs == []


def test_update_rewrites_only_the_named_block(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(GOOD_AND_BAD)
    new = "revoked the lease of task t1 (record_ver 2, 9 ms overdue): now starting"
    rewrite_output(doc, "drifted", [new])
    again = parse(doc)
    assert [p.name for p in again.pairs] == ["greet", "drifted", "counted"]
    assert again.pairs[1].output.body == (new,)
    assert again.pairs[0].output.body == parse(tmp_path / "doc.md").pairs[0].output.body
    assert normalise(again.pairs[0].output.body[0]) == "hello from sokka-docs-"
