"""``sokka purge``: delete finished tasks older than a given age, batch by batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from sokka.adapters.store import MAX_BATCH, check_purge
from sokka.core.errors import ValidationError
from sokka.core.task import Status
from sokka.shell.cli.common import DURATION, _db, _json, _prefix, _store, cli
from sokka.shell.retention import RetentionPolicy, count_purgeable, purge_all

__all__ = ["periodic_purge_options", "purge", "retention_policy"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The option of ``sokka purge`` each field of ``TaskStore.purge`` comes from.
_OPTIONS = {"statuses": "--status", "older_than_ms": "--older-than", "topic": "--topic",
            "limit": "--batch"}  # fmt: skip


def parse_statuses(text: str) -> list[Status]:
    """``terminated,failed`` as statuses, in the order given, checked as ``purge``
    checks them.

    >>> parse_statuses("failed, terminated,failed")
    [<Status.FAILED: 'failed'>, <Status.TERMINATED: 'terminated'>]
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    try:
        check_purge(names, 0, None, 1)
    except ValidationError as error:
        raise click.BadParameter(error.rule, param_hint="--status") from None
    return list(dict.fromkeys(Status(name) for name in names))


@cli.command()
@_db
@_prefix
@_json
@click.option("--status", "statuses", default="terminated,failed", show_default=True,
              help="The final statuses to delete, comma-separated (a running, snoozed "
              "or starting task is never deleted).")  # fmt: skip
@click.option("--older-than", type=DURATION, required=True,
              help="Delete tasks unchanged this long or more (store clock), e.g. 7d.")  # fmt: skip
@click.option("--topic", default=None, help="Only this topic (default: every topic).")
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=MAX_BATCH,
              show_default=True, help="Tasks deleted per statement (one short transaction "
              "each).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def purge(
    db: str, prefix: str, as_json: bool, statuses: str, older_than: int, topic: str | None,
    batch: int, dry_run: bool,
) -> None:  # fmt: skip
    """Delete finished tasks older than --older-than, a batch at a time until none is left."""
    chosen = parse_statuses(statuses)
    try:
        check_purge(chosen, older_than, topic, batch)
    except ValidationError as error:
        raise click.BadParameter(error.rule, param_hint=_OPTIONS.get(error.field)) from None
    with _store(db, prefix) as store:
        if dry_run:
            found = count_purgeable(store, chosen, older_than, topic)
        else:
            found = purge_all(store, chosen, older_than, topic, batch)
    if as_json:
        click.echo(json.dumps({"would_delete" if dry_run else "deleted": found}))
        return
    what = "/".join(s.value for s in chosen)
    where = f" of topic {topic!r}" if topic else ""
    verb = "would delete" if dry_run else "deleted"
    age = duration_text(older_than)
    click.echo(f"{verb} {found} {what} tasks{where} unchanged for {age} or more")


def duration_text(ms: int) -> str:
    """Milliseconds in the largest unit that writes them whole.

    >>> duration_text(7 * 86_400_000), duration_text(90_000), duration_text(1_500)
    ('7d', '90s', '1500ms')
    """
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def periodic_purge_options(command: _F) -> _F:
    """``--purge-after`` and ``--purge-every``, for the long-running commands."""
    command = click.option(
        "--purge-every", type=DURATION, default="10m", show_default=True,
        help="With --purge-after: how often the purge runs.",
    )(command)  # fmt: skip
    return click.option(
        "--purge-after", type=DURATION, default=None,
        help="Also delete terminated and failed tasks unchanged this long (store clock), "
        "e.g. 7d, in the background (default: never).",
    )(command)  # fmt: skip


def retention_policy(purge_after: int | None, purge_every: int) -> RetentionPolicy | None:
    """The periodic purge those options ask for (None: off, the default)."""
    if purge_after is None:
        return None
    return RetentionPolicy(older_than_ms=purge_after, every_ms=purge_every)
