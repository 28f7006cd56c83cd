"""sokka against an earlier sokka: one configuration's drain rate, this tree beside a git revision.

A goal such as "batch 1 at least 1.5x what it was" is a ratio to a commit, and
a figure written down on another day, or on another machine, is no baseline:
this machine's disk and neighbours move the rate by tens of percent from hour
to hour. So both are measured here, in one run, taking turns:

* the revision's tree is exported (``git archive REV``, into a temporary
  directory; the repository is not touched) and its own
  ``bench.throughput.run_sokka`` drains N no-op tasks on PostgreSQL at the
  given concurrency and batch size, as ``bench/throughput.py`` does (its
  worker a process of its own, the same checks: every task done exactly
  once), importing ``sokka`` and ``bench`` from that tree;
* then this tree's ``run_sokka`` does the same; the next round the two go in
  the other order, so that a slow spell of the machine falls on both alike.

It prints each run's rate, each side's median, and the ratio of the medians
with the range of the rounds' ratios. The revision must have
``bench/throughput.py`` with ``run_sokka(url, store, n, concurrency, batch)``
(every commit since the benchmark was written).

Run: ``python bench/against.py REV [--concurrency 1] [--batch 1] [--tasks 3000]
[--rounds 5] [--runtime threads|asyncio] [--postgres-url URL]``; for example,
the issue's "batch 1" goal: ``python bench/against.py 32009df`` (the commit
the speed issue was filed at).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: bench's parent first, not bench/ itself
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import json
import os
import statistics
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence

from bench.harness import (
    ROOT,
    BenchFailure,
    add_postgres_url,
    fmt_rate,
    parser_for,
    positive_int,
    round_ratios,
)

#: What a side runs, in a fresh interpreter whose ``sys.path`` starts at its tree.
_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import sokka
from bench.throughput import run_sokka
url, n, concurrency, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
runtime = {} if sys.argv[6] == "threads" else {"runtime": sys.argv[6]}
row = run_sokka(url, "postgres", n, concurrency, batch, **runtime)
print("RESULT " + json.dumps({"n": row.n, "seconds": row.drain_s,
                              "problems": list(row.problems), "sokka": sokka.__file__}))
"""


def export(rev: str, into: Path) -> Path:
    """``rev``'s tree, exported into ``into`` (``git archive``); a ``BenchFailure``
    naming the revision if git does not know it."""
    archive = into / "tree.tar"
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), rev],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchFailure(f"git archive {rev}: {done.stderr.strip() or done.returncode}")
    tree = into / "tree"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    if not (tree / "bench" / "throughput.py").exists():
        raise BenchFailure(f"{rev} has no bench/throughput.py to measure it with")
    return tree


def drain_rate(
    tree: Path, url: str, n: int, concurrency: int, batch: int, runtime: str = "threads"
) -> float:
    """One drain by ``tree``'s own code: its rate in tasks per second (its checks must pass)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree)  # its worker processes import from it too
    args = [str(tree), url, str(n), str(concurrency), str(batch), runtime]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise BenchFailure(f"the drain by {tree} failed (exit {done.returncode}):\n{tail}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    if result["problems"]:
        raise BenchFailure(f"the drain by {tree} failed its checks: {result['problems']}")
    if not Path(result["sokka"]).resolve().is_relative_to(tree.resolve()):
        raise BenchFailure(f"the drain by {tree} imported sokka from {result['sokka']}")
    return float(result["n"]) / float(result["seconds"])


def summary(rev: str, baseline: Sequence[float], ours: Sequence[float]) -> list[str]:
    """The lines after the runs: each side's median and runs, and the ratio.

    >>> print("\\n".join(summary("abc", [100.0, 120.0, 110.0], [150.0, 190.0, 160.0])))
    abc       median      110  (100, 120, 110)
    this tree median      160  (150, 190, 160)
    this tree / abc: 1.45x (medians); the rounds' ratios 1.45x-1.58x
    """
    ratios = round_ratios(ours, baseline)
    width = max(len(rev), len("this tree"))
    rates = lambda xs: ", ".join(fmt_rate(x) for x in xs)  # noqa: E731
    return [
        f"{rev:<{width}} median {fmt_rate(statistics.median(baseline)):>8}  ({rates(baseline)})",
        f"{'this tree':<{width}} median {fmt_rate(statistics.median(ours)):>8}  ({rates(ours)})",
        f"this tree / {rev}: {statistics.median(ours) / statistics.median(baseline):.2f}x "
        f"(medians); the rounds' ratios {min(ratios):.2f}x-{max(ratios):.2f}x",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("rev", help="the git revision to measure against (a commit, a tag)")
    parser.add_argument("--concurrency", type=positive_int, default=1, help="default 1")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    parser.add_argument("--tasks", type=positive_int, default=3000, help="N (default 3000)")
    parser.add_argument("--rounds", type=positive_int, default=5, help="default 5")
    parser.add_argument(
        "--runtime", choices=("threads", "asyncio"), default="threads",
        help="sokka's worker (default threads; asyncio needs a revision that has it)",
    )  # fmt: skip
    add_postgres_url(parser)
    args = parser.parse_args(argv)
    url = args.postgres_url
    if not url:
        parser.error("--postgres-url: the comparison runs on PostgreSQL; give its URL")
    print(
        f"sokka ({args.runtime}) against {args.rev}: {args.tasks:,} no-op tasks on PostgreSQL, "
        f"concurrency {args.concurrency}, batch {args.batch}, {args.rounds} rounds taking turns"
    )
    baseline: list[float] = []
    ours: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="sokka-against-") as scratch:
            tree = export(args.rev, Path(scratch))
            sides = [(args.rev, tree, baseline), ("this tree", ROOT, ours)]
            for k in range(args.rounds):
                for name, root, rates in sides if k % 2 == 0 else sides[::-1]:
                    rate = drain_rate(
                        root, url, args.tasks, args.concurrency, args.batch, args.runtime
                    )
                    rates.append(rate)
                    print(f"  round {k + 1}: {name:<12} {fmt_rate(rate):>8} tasks/s", flush=True)
    except BenchFailure as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary(args.rev, baseline, ours)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
