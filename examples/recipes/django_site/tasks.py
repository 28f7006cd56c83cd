"""The site's sokka app: ``sokka worker --app examples.recipes.django_site.tasks:tasks``."""

import os

import sokka

tasks = sokka.App(os.environ.get("SOKKA_DB", "sqlite:///sokka.db"))


@tasks.handler("welcome-emails", concurrency=4, lease="30s", timeout="1m", max_attempts=5)
def send_welcome(task: sokka.Task, ctx: sokka.Context) -> sokka.Outcome:
    print(f"welcome mail to {task.data['to']}\n", end="", flush=True)
    return sokka.ok()
