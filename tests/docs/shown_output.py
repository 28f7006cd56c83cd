"""Find the commands the docs show with their output, run them, compare.

A *pair* is a ```sh (or ```python) block followed, with only blank lines
between, by a ```text block: a command and what it printed. Every pair in
the docs carries a marker on the line before its command block:

    <!-- checked: NAME [session=SESSION] [setup=SETUP] [order=any] [varies=REGEX] -->
    <!-- not checked: the reason, for people -->

``NAME`` is unique within its file. Pairs of one ``SESSION`` (by default a
session of their own) run in document order in one ``bash``, in one fresh
temporary directory, like commands typed into one terminal: what an
earlier block exported or wrote is there for the next. ``SETUP`` names a
set-up script from ``SETUPS``, run quietly at the start of the session
(the state a section starts from). ``order=any`` compares the lines as a
multiset, for output that concurrent processes interleave; otherwise the
lines are compared in order. ``varies=REGEX`` (no spaces) normalises what
the regular expression matches, in this pair only: for a value that differs
between runs for a known reason, which the marker's neighbourhood should
say. A python block runs as ``python -``.

What legitimately differs from run to run is normalised on both sides
before comparing (``normalise``): times, worker names, UUIDs, epoch
milliseconds, measured durations, column widths. Everything else must be
printed as shown, so a changed or vanished message fails the check.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SETUPS",
    "Pair",
    "Parsed",
    "SessionRun",
    "compare",
    "normalise",
    "parse",
    "rewrite_output",
    "run_session",
]

REPO = Path(__file__).resolve().parents[2]

#: The state a session starts from, named by a marker's ``setup=``.
SETUPS: dict[str, str] = {
    # The guide's SQLite store, as its introduction sets it up.
    "guide-db": "export SOKKA_DB=sqlite:///guide.db\nsokka init",
    # The guide's PostgreSQL section runs on the default prefix of the test
    # database: start from no schema there, as on a fresh database.
    "postgres": (
        "python -c 'from sokka.adapters.sql import SQLStore; "
        'SQLStore("postgresql+psycopg://postgres@127.0.0.1:5432/test").drop_schema()'
        "'"
    ),
}

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(checked|not checked):\s*(.*?)\s*-->\s*$")
_COMMAND_LANGS = {"sh": "bash", "python": "python"}


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: its language and the 0-based lines of its fences."""

    lang: str
    start: int  # the opening fence
    end: int  # the closing fence
    body: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pair:
    """A checked command block and the output block shown after it."""

    path: Path
    name: str
    session: str
    setup: str | None
    any_order: bool
    varies: str | None
    command: Block
    output: Block

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.command.start + 1} ({self.name})"


@dataclass(frozen=True, slots=True)
class Parsed:
    """The checked pairs of one file, and what is wrong with its markers."""

    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        blocks.append(Block(match.group(1), i, end, tuple(lines[i + 1 : end])))
        i = end + 1
    return blocks


def _marker_before(lines: list[str], index: int) -> re.Match[str] | None:
    i = index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    return _MARKER.match(lines[i]) if i >= 0 else None


def _only_blank_between(lines: list[str], first: Block, second: Block) -> bool:
    return all(not line.strip() for line in lines[first.end + 1 : second.start])


def parse(path: Path) -> Parsed:
    """The checked pairs of the markdown file ``path``, in document order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = _blocks(lines)
    parsed = Parsed()
    names: set[str] = set()
    paired: set[int] = set()
    for first, second in itertools.pairwise(blocks):
        if not (
            first.lang in _COMMAND_LANGS
            and second.lang == "text"
            and _only_blank_between(lines, first, second)
        ):
            continue
        paired.add(first.start)
        where = f"{path.name}:{first.start + 1}"
        marker = _marker_before(lines, first.start)
        if marker is None:
            parsed.problems.append(
                f"{where}: a ```{first.lang} block with its output shown after it has no"
                " marker: add <!-- checked: NAME --> or <!-- not checked: REASON -->"
            )
            continue
        if marker.group(1) == "not checked":
            if not marker.group(2):
                parsed.problems.append(f"{where}: <!-- not checked: --> needs a reason")
            continue
        words = marker.group(2).split()
        if not words:
            parsed.problems.append(f"{where}: <!-- checked: --> needs a name")
            continue
        name, options = words[0], dict(w.partition("=")[::2] for w in words[1:])
        unknown = set(options) - {"session", "setup", "order", "varies"}
        if unknown:
            parsed.problems.append(f"{where}: unknown marker option(s) {sorted(unknown)}")
            continue
        if options.get("setup") is not None and options["setup"] not in SETUPS:
            parsed.problems.append(
                f"{where}: setup={options['setup']} is not one of {sorted(SETUPS)}"
            )
            continue
        if options.get("order", "any") != "any":
            parsed.problems.append(f"{where}: order= can only be 'any'")
            continue
        if options.get("varies") is not None:
            try:
                re.compile(options["varies"])
            except re.error as error:
                parsed.problems.append(f"{where}: varies= is not a regular expression: {error}")
                continue
        if name in names:
            parsed.problems.append(f"{where}: the name {name!r} is used twice")
            continue
        names.add(name)
        parsed.pairs.append(
            Pair(
                path=path,
                name=name,
                session=options.get("session", name),
                setup=options.get("setup"),
                any_order="order" in options,
                varies=options.get("varies"),
                command=first,
                output=second,
            )
        )
    for block in blocks:
        marker = _marker_before(lines, block.start)
        if marker is not None and block.start not in paired:
            parsed.problems.append(
                f"{path.name}:{block.start + 1}: a marker on a ```{block.lang} block"
                " that is not a command followed by a ```text block"
            )
    return parsed


# -- normalising what legitimately varies ----------------------------------

_VARYING: list[tuple[re.Pattern[str], str]] = [
    # 2026-11-28 01:25:02,679 (log lines) and 2026-11-28 01:25:02 (tables)
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?"), "<time>"),
    # task ids the store made up, with or without dashes
    (re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b"), "<uuid>"),
    # a worker's default name: host-pid-random (vm-27755-b184ef)
    (re.compile(r"\b[A-Za-z0-9][A-Za-z0-9._-]*-\d+-[0-9a-f]{6}\b"), "<worker>"),
    # created_at / updated_at in JSON: the store's clock in epoch milliseconds
    (re.compile(r"\b1[6-9]\d{11}\b"), "<epoch-ms>"),
    # measured durations: "4 ms overdue", "after 2000 ms", "for 901 ms", " 2.80s"
    (re.compile(r"\b\d+ ms overdue\b"), "N ms overdue"),
    (re.compile(r"\b(after|for) \d+ ms\b"), r"\1 N ms"),
    (re.compile(r"\b\d+\.\d+s\b"), "N.NNs"),
    # a traceback's frames: where the checkout is, and lines that move with edits
    (re.compile(r'File "[^"]*", line \d+'), 'File "<path>", line N'),
]
# The carets under a traceback's source line differ between Python versions.
_CARETS = re.compile(r"^\s*[\^~]+\s*$")


def normalise(line: str) -> str:
    """``line`` with what varies from run to run replaced by placeholders.

    >>> normalise("2026-11-28 01:25:44,155 INFO sokka.worker: worker vm-27755-b184ef: stopped")
    '<time> INFO sokka.worker: worker <worker>: stopped'
    >>> normalise("6a5701bb21b34e7ea6f7de8f948a4567  emails    terminated")
    '<uuid> emails terminated'
    >>> normalise('  File "/home/ann/sokka/examples/emails.py", line 43, in deliver')
    'File "<path>", line N, in deliver'
    """
    if _CARETS.match(line):
        return ""
    for pattern, replacement in _VARYING:
        line = pattern.sub(replacement, line)
    # Column widths follow from the values above; one space stands for any run.
    return re.sub(r"\s+", " ", line).strip()


def compare(
    shown: list[str], printed: list[str], *, any_order: bool, varies: str | None = None
) -> str | None:
    """None when ``printed`` matches ``shown``; else a description of the difference."""
    if varies is not None:
        shown = [re.sub(varies, "<varies>", line) for line in shown]
        printed = [re.sub(varies, "<varies>", line) for line in printed]
    want = [line for line in map(normalise, shown) if line]
    got = [line for line in map(normalise, printed) if line]
    if any_order:
        missing = collections.Counter(want) - collections.Counter(got)
        extra = collections.Counter(got) - collections.Counter(want)
        if not missing and not extra:
            return None
        report = [f"shown but not printed: {line}" for line in missing.elements()]
        report += [f"printed but not shown: {line}" for line in extra.elements()]
        return "\n".join(report)
    if want == got:
        return None
    diff = difflib.unified_diff(
        want, got, "shown (normalised)", "printed (normalised)", lineterm=""
    )
    return "\n".join(diff)


# -- running a session -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRun:
    """What each block of one session printed (stdout and stderr together)."""

    outputs: dict[str, list[str]]
    setup_output: str
    error: str | None = None  # the session could not run to its end


def _environment(extra_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOKKA_")}
    # `sokka` and `python` from this interpreter's environment; examples/ importable.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(extra_path)
    # A terminal line-buffers stdout; a file would not, and the order of the
    # handlers' prints and the logs would not be what a user sees.
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _block_script(pair: Pair) -> str:
    body = "\n".join(pair.command.body)
    if pair.command.lang == "python":
        return f"python - <<'SOKKA_DOCS_PYTHON'\n{body}\nSOKKA_DOCS_PYTHON"
    return body


#: How the docs show the directory a session runs in.
SHOWN_WORKDIR = "/home/me"


def run_session(pairs: list[Pair], *, timeout_s: float = 240.0, repo: Path = REPO) -> SessionRun:
    """Run ``pairs`` (one session, in order) in one bash in a fresh directory."""
    setup = pairs[0].setup
    with (
        tempfile.TemporaryDirectory(prefix="sokka-docs-") as work,
        tempfile.TemporaryDirectory(prefix="sokka-docs-out-") as out,
    ):
        # The outputs live outside the working directory, where the blocks cannot see them.
        parts = [f"{{\n{SETUPS[setup]}\n}} > {shlex.quote(out)}/setup 2>&1" if setup else ""]
        for n, pair in enumerate(pairs):
            parts.append(f"{{\n{_block_script(pair)}\n}} > {shlex.quote(out)}/{n} 2>&1")
        script = "\n".join(parts) + "\n"
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=work,
            env=_environment(repo),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: we end what it leaves behind
        )
        error = None
        try:
            leftover, _ = process.communicate(timeout=timeout_s)
            if leftover.strip():
                error = f"the session printed outside its blocks: {leftover!r}"
        except subprocess.TimeoutExpired:
            error = f"the session did not finish within {timeout_s:.0f} s"
        finally:
            with contextlib.suppress(ProcessLookupError):  # nothing was left
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        outputs: dict[str, list[str]] = {}
        for n, pair in enumerate(pairs):
            path = Path(out, str(n))
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            # The docs show the session's working directory as a reader's: /home/me.
            for shown_as in {str(Path(work).resolve()), work}:
                text = text.replace(shown_as, SHOWN_WORKDIR)
            outputs[pair.name] = text.splitlines()
        setup_path = Path(out, "setup")
        setup_output = setup_path.read_text(encoding="utf-8") if setup_path.exists() else ""
        return SessionRun(outputs=outputs, setup_output=setup_output, error=error)


def rewrite_output(path: Path, name: str, printed: list[str]) -> None:
    """Replace the text block of the pair ``name`` in ``path`` with ``printed``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for pair in parse(path).pairs:
        if pair.name == name:
            new = [line.rstrip() for line in printed]
            lines[pair.output.start + 1 : pair.output.end] = new
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            return
    raise KeyError(f"no checked pair named {name!r} in {path}")
