"""``sokka init`` and ``sokka task ...``: create the schema; create, inspect,
requeue and cancel tasks (a running one too)."""

from __future__ import annotations

import contextlib
import json

import click
from returns.result import Failure

from sokka.adapters.store import MAX_PAGE_SIZE, TaskFilter
from sokka.core.errors import TaskFailed, ValidationError
from sokka.core.task import Status, Task, TaskSpec
from sokka.shell.admin import requeue_failed
from sokka.shell.cli.common import (
    DURATION,
    _db,
    _is_http,
    _json,
    _prefix,
    _show,
    _store,
    _table,
    _task_json,
    cli,
)
from sokka.shell.results import wait_for_result

__all__ = ["init", "task"]


@cli.command()
@_db
@_prefix
def init(db: str, prefix: str) -> None:
    """Create the store's schema if it is missing, or upgrade an older one in place
    (safe to run again)."""
    from sokka.adapters.sql import SQLStore

    if _is_http(db):
        raise click.UsageError("init creates a database schema: run it against the database "
                               "the server uses, not against the server")  # fmt: skip
    with SQLStore(db, prefix=prefix) as store:
        found = store.schema_version()
        created = store.create_schema()
        url = store.engine.url.render_as_string(hide_password=True)
    if found is None:
        what = "created"
    elif found < created:
        what = f"upgraded from version {found}"
    else:
        what = "already there"
    click.echo(f"sokka schema version {created} {what} in {url} (prefix {prefix!r})")


@cli.group()
def task() -> None:
    """Create, inspect and administer tasks."""


@task.command("create")
@_db
@_prefix
@_json
@click.option("--topic", required=True, help="The topic workers reserve from.")
@click.option("--data", default="null", show_default=True, help="The task's data, as JSON.")
@click.option("--id", "task_id", default=None, help="The task id (default: a new UUID).")
@click.option("--group", default=None, help="The task group id (default: the task id).")
@click.option("--sub-topic", default="default", show_default=True, help="A finer topic.")
@click.option("--description", default="", help="Free text for people.")
@click.option("--max-attempts", type=int, default=None, help="Failures allowed before it fails.")
@click.option("--lease-time", type=DURATION, default=None, help="This task's own lease time.")
@click.option("--timeout", type=DURATION, default=None, help="How long one attempt may run.")
@click.option(
    "--delay", type=DURATION, default=None,
    help="Run it no sooner than this (it waits snoozed; a supervisor wakes it on its own clock).",
)  # fmt: skip
@click.option("--count", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="Create this many such tasks (ids are generated).")  # fmt: skip
def task_create(
    db: str, prefix: str, as_json: bool, topic: str, data: str, task_id: str | None,
    group: str | None, sub_topic: str, description: str, max_attempts: int | None,
    lease_time: int | None, timeout: int | None, delay: int | None, count: int,
) -> None:  # fmt: skip
    """Create a task (or --count of them)."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as error:
        raise ValidationError("data", f"is not JSON: {error}") from None
    if count > 1 and task_id is not None:
        raise ValidationError("id", "cannot be given with --count above 1")
    specs = [
        TaskSpec(
            topic=topic,
            data=value,
            task_id=task_id,
            task_group_id=group,
            sub_topic=sub_topic,
            description=description,
            max_attempts=max_attempts,
            lease_time_ms=lease_time,
            timeout_ms=timeout,
            delay_ms=delay,
        )
        for _ in range(count)
    ]
    created: list[Task] = []
    with _store(db, prefix) as store:
        for start in range(0, len(specs), 1000):
            for result in store.create_tasks(specs[start : start + 1000]):
                if isinstance(result, Failure):
                    raise result.failure()
                created.append(result.unwrap())
    if count > 1 and not as_json:
        click.echo(f"created {len(created)} tasks on topic {topic!r}")
        return
    _show(created, as_json)


@task.command("get")
@_db
@_prefix
@_json
@click.option("--wait", type=DURATION, default=None,
              help="First wait up to this long (30s, 5m) for the task to end, terminated "
                   "or failed; exit status 1 if it has not.")  # fmt: skip
@click.argument("task_id")
def task_get(db: str, prefix: str, as_json: bool, wait: int | None, task_id: str) -> None:
    """Show one task, with its data and, once it terminated, the result its handler kept."""
    with _store(db, prefix) as store:
        if wait is not None:
            with contextlib.suppress(TaskFailed):  # failed has ended too: shown below
                wait_for_result(store, task_id, wait)
        found = store.get_task(task_id)
    if as_json:
        click.echo(json.dumps(_task_json(found), indent=2))
        return
    click.echo(_table([found]))
    click.echo(f"data: {found.data_json}")
    if found.result_json is not None:
        click.echo(f"result: {found.result_json}")
    for line in found.errors:
        click.echo(f"error: {line}")


@task.command("list")
@_db
@_prefix
@_json
@click.option("--topic", default=None, help="Only this topic.")
@click.option("--sub-topic", default=None, help="Only this sub-topic.")
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None,
              help="Only this status.")  # fmt: skip
@click.option("--group", default=None, help="Only this task group.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=50, show_default=True,
              help="Tasks per page.")  # fmt: skip
@click.option("--cursor", default=None, help="Continue after a previous page.")
@click.option("--all", "every", is_flag=True, help="Follow every page.")
def task_list(
    db: str, prefix: str, as_json: bool, topic: str | None, sub_topic: str | None,
    status: str | None, group: str | None, limit: int, cursor: str | None, every: bool,
) -> None:  # fmt: skip
    """List tasks in creation order, a page at a time."""
    wanted = TaskFilter(
        topic=topic, sub_topic=sub_topic, task_group_id=group,
        status=None if status is None else Status(status),
    )  # fmt: skip
    found: list[Task] = []
    with _store(db, prefix) as store:
        while True:
            page = store.list_tasks(wanted, cursor, limit)
            found.extend(page.tasks)
            cursor = page.next_cursor
            if not every or cursor is None:
                break
    _show(found, as_json, cursor)


@task.command("group")
@_db
@_prefix
@_json
@click.argument("group_id")
def task_group(db: str, prefix: str, as_json: bool, group_id: str) -> None:
    """List every task of a group."""
    # Paged as a listing: tasks_in_group answers only the first of a large group.
    group = TaskFilter(task_group_id=group_id)
    found: list[Task] = []
    cursor = None
    with _store(db, prefix) as store:
        while True:
            page = store.list_tasks(group, cursor, MAX_PAGE_SIZE)
            found.extend(page.tasks)
            cursor = page.next_cursor
            if cursor is None:
                break
    _show(found, as_json)


@task.command("requeue")
@_db
@_prefix
@_json
@click.argument("task_id", required=False)
@click.option("--status", type=click.Choice(["failed"]), default=None,
              help="Requeue every task of --topic in this status, instead of TASK_ID.")  # fmt: skip
@click.option("--topic", default=None, help="With --status: the topic whose tasks to requeue.")
def task_requeue(
    db: str, prefix: str, as_json: bool, task_id: str | None, status: str | None,
    topic: str | None,
) -> None:  # fmt: skip
    """Give a failed task (TASK_ID, or every failed task of --topic with --status
    failed) a fresh failure budget and queue it again."""
    if task_id is not None:
        if status is not None or topic is not None:
            raise click.UsageError("give TASK_ID, or --status failed --topic T, not both")
        with _store(db, prefix) as store:
            _show([store.requeue(task_id)], as_json)
        return
    if status is None or topic is None:
        raise click.UsageError("give TASK_ID, or --status failed --topic T for every failed "
                               "task of a topic")  # fmt: skip
    TaskFilter(topic=topic)  # a malformed topic is refused before the store is opened
    with _store(db, prefix) as store:
        done = requeue_failed(store, topic)
    if as_json:
        click.echo(json.dumps({"requeued": done.requeued, "moved_on": done.moved_on}))
        return
    click.echo(f"requeued {done.requeued} failed tasks of topic {topic!r} "
               f"({done.moved_on} had moved on)")  # fmt: skip


@task.command("cancel")
@_db
@_prefix
@_json
@click.argument("task_id")
@click.option("--reason", default="cancelled by an operator", show_default=True)
def task_cancel(db: str, prefix: str, as_json: bool, task_id: str, reason: str) -> None:
    """Fail a task that is starting, snoozed or running.

    A running task's worker learns it at its next keepalive (within ~0.7 of
    its lease): it stops the handler (an async one is cancelled; a thread
    one is told through ctx.cancelled) and reports nothing.
    """
    with _store(db, prefix) as store:
        before = store.get_task(task_id)
        cancelled = store.cancel(task_id, reason)
        _show([cancelled], as_json)
    if before.status is Status.RUNNING:
        click.echo(
            f"task {task_id} was running (worker {before.pid}, attempt {before.attempt}): "
            "that worker stops its handler at its next keepalive and reports nothing",
            err=True,
        )
