"""``sokka topic ...``: pause and resume a topic, list the paused ones.

A paused topic reserves nothing: workers on it stay idle, while leases they
already hold run on to their end. Resuming wakes them at once.
"""

from __future__ import annotations

import json

import click

from sokka.shell.cli.common import _db, _json, _prefix, _store, cli

__all__ = ["topic"]


@cli.group()
def topic() -> None:
    """Pause, resume and list paused topics."""


def _answer(topic: str, paused: bool, changed: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"topic": topic, "paused": paused, "changed": changed}))
        return
    state = "paused" if paused else "resumed"
    if changed:
        click.echo(f"topic {topic} {state}")
    else:
        click.echo(f"topic {topic} was {'paused' if paused else 'not paused'} already")


@topic.command("pause")
@_db
@_prefix
@_json
@click.argument("name")
def topic_pause(db: str, prefix: str, as_json: bool, name: str) -> None:
    """Workers reserve nothing from topic NAME until it is resumed (leases already
    held run on to their end)."""
    with _store(db, prefix) as store:
        changed = store.pause_topic(name)
    _answer(name, True, changed, as_json)


@topic.command("resume")
@_db
@_prefix
@_json
@click.argument("name")
def topic_resume(db: str, prefix: str, as_json: bool, name: str) -> None:
    """Workers may reserve from topic NAME again (idle ones are woken)."""
    with _store(db, prefix) as store:
        changed = store.resume_topic(name)
    _answer(name, False, changed, as_json)


@topic.command("list")
@_db
@_prefix
@_json
def topic_list(db: str, prefix: str, as_json: bool) -> None:
    """The paused topics, one per line."""
    with _store(db, prefix) as store:
        paused = store.paused_topics()
    if as_json:
        click.echo(json.dumps({"paused_topics": paused}))
    elif paused:
        click.echo("\n".join(paused))
    else:
        click.echo("no paused topics")
