"""``sokka status``: how many tasks each topic has in each status, how long the
oldest ready task has waited, and the failures of the last hour, from one
``count_tasks`` call (no task is listed); and which topics are paused."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from sokka.adapters.store import Counts, TaskStore
from sokka.core.task import Status
from sokka.shell.ages import format_age
from sokka.shell.cli.common import DURATION, _db, _json, _prefix, _store, cli

__all__ = ["status", "status_json", "status_table"]

_COLUMNS = ("TOPIC", *(s.value.upper() for s in Status), "LEASED", "OLDEST READY", "FAILED 1H")


def _window(ms: int) -> str:
    return format_age(ms).replace("1h00m", "1h")


def status_table(counts: Counts, paused: Sequence[str] = ()) -> str:
    """The counts as a table, one row per topic and a total row; then the
    ``paused`` topics (``pause_topic``), if any, on a line of their own."""
    table = _counts_table(counts)
    if not paused:
        return table
    return (
        f"{table}\npaused: {', '.join(paused)} (workers reserve nothing from "
        f"{'it' if len(paused) == 1 else 'them'}: sokka topic resume TOPIC)"
    )


def _counts_table(counts: Counts) -> str:
    header = list(_COLUMNS)
    header[-1] = f"FAILED {_window(counts.failed_within_ms).upper()}"
    rows: list[list[str]] = []
    for topic in counts.topics:
        rows.append(
            [
                topic.topic,
                *(str(topic.count(s)) for s in Status),
                str(topic.leased),
                format_age(counts.oldest_ready_age_ms(topic)),
                str(topic.failed_recently),
            ]
        )
    if not rows:
        return "no tasks"
    if len(rows) > 1:
        ages = [a for t in counts.topics if (a := counts.oldest_ready_age_ms(t)) is not None]
        rows.append(
            [
                "(all)",
                *(str(sum(t.count(s) for t in counts.topics)) for s in Status),
                str(sum(t.leased for t in counts.topics)),
                format_age(max(ages) if ages else None),
                str(sum(t.failed_recently for t in counts.topics)),
            ]
        )
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    # The topic left-aligned, the numbers right-aligned.
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    )


def status_json(counts: Counts, paused: Sequence[str] = ()) -> dict[str, Any]:
    """The counts for scripts: the store clock, the window, per topic every count
    and whether it is paused, and every paused topic (with tasks or not)."""
    return {
        "now": counts.now,
        "failed_within_ms": counts.failed_within_ms,
        "paused_topics": list(paused),
        "topics": [
            {
                "topic": t.topic,
                "paused": t.topic in paused,
                "counts": {s.value: t.count(s) for s in Status},
                "leased": t.leased,
                "oldest_ready_at": t.oldest_ready_at,
                "oldest_ready_age_ms": counts.oldest_ready_age_ms(t),
                "failed_recently": t.failed_recently,
            }
            for t in counts.topics
        ],
    }


@cli.command()
@_db
@_prefix
@_json
@click.option("--topic", default=None, help="Only this topic.")
@click.option("--failed-within", type=DURATION, default="1h", show_default=True,
              help="Count the failures of this last stretch of time.")  # fmt: skip
@click.option("--watch", is_flag=True, help="Show it again every --every until Ctrl-C.")
@click.option("--every", type=DURATION, default="2s", show_default=True,
              help="How often --watch refreshes.")  # fmt: skip
def status(
    db: str, prefix: str, as_json: bool, topic: str | None, failed_within: int, watch: bool,
    every: int,
) -> None:  # fmt: skip
    """Count the tasks per topic and status (ages are on the store's clock)."""
    with _store(db, prefix) as store:
        if not watch:
            counts = store.count_tasks(topic, None, failed_within)
            _show(counts, _paused(store, topic), as_json, indent=2)
            return
        clear = sys.stdout.isatty() and not as_json
        try:
            while True:
                counts = store.count_tasks(topic, None, failed_within)
                if clear:
                    click.echo("\x1b[H\x1b[2J", nl=False)
                if not as_json:
                    shown = datetime.now(tz=UTC).strftime("%H:%M:%S")
                    click.echo(f"-- {shown} UTC, every {format_age(every)} (Ctrl-C to stop)")
                _show(counts, _paused(store, topic), as_json)
                sys.stdout.flush()
                time.sleep(every / 1000)
        except KeyboardInterrupt:
            # Ctrl-C is how a watch ends: not an error.
            return


def _paused(store: TaskStore, topic: str | None) -> list[str]:
    paused = store.paused_topics()
    return paused if topic is None else [p for p in paused if p == topic]


def _show(counts: Counts, paused: Sequence[str], as_json: bool, indent: int | None = None) -> None:
    if as_json:
        # --watch --json: one line per frame, a stream of JSON lines.
        click.echo(json.dumps(status_json(counts, paused), indent=indent))
        return
    click.echo(status_table(counts, paused))
