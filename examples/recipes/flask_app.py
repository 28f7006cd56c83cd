"""Flask with Flask-SQLAlchemy: a signup and its welcome email commit together.

    export DATABASE_URL=sqlite:////srv/app/app.db   # an absolute path (see below)
    sokka init --db "$DATABASE_URL"                  # sokka's tables, once
    flask --app examples.recipes.flask_app run        # the web app
    sokka worker --app examples.recipes.flask_app:tasks --supervise   # the worker

``POST /signups`` with ``{"email": "ann@example.com"}`` stores a ``Signup``
row and enqueues its welcome email on the same SQLAlchemy session
(``connection=db.session``), so both are in one transaction: the task
exists if and only if the row is committed. An address the app refuses
after the row was added (here, one at ``example.invalid``) rolls both back.

Flask-SQLAlchemy reads a relative SQLite path against the app's instance
folder, sokka against the working directory: give an absolute path so
both name the same file (sokka refuses a session on another database).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sokka

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///app.db")


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Signup(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "signups"
    email: Mapped[str] = mapped_column(String(320), primary_key=True)


# The tasks live in the web app's own database, so they can share its transactions.
tasks = sokka.App(DATABASE_URL)


@tasks.handler("welcome-emails", concurrency=4, lease="30s", timeout="1m", max_attempts=5)
def send_welcome(task: sokka.Task, ctx: sokka.Context) -> sokka.Outcome:
    print(f"welcome mail to {task.data['to']}\n", end="", flush=True)
    return sokka.ok()


def create_app() -> Flask:
    """The web app, on ``DATABASE_URL``."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = DATABASE_URL
    db.init_app(app)
    with app.app_context():
        db.create_all()  # the app's own table (sokka's come from `sokka init`)

    @app.post("/signups")
    def signup() -> tuple[dict[str, Any], int]:
        email = str((request.get_json(silent=True) or {}).get("email", ""))
        db.session.add(Signup(email=email))
        # Same session, same transaction: nothing is visible to a worker yet.
        task = tasks.enqueue("welcome-emails", {"to": email}, connection=db.session)
        if "@" not in email or email.endswith("@example.invalid"):
            db.session.rollback()  # the row and the task go together
            return {"error": f"cannot sign up {email!r}"}, 422
        db.session.commit()  # the row and the task, at once
        return {"email": email, "task_id": task.task_id}, 201

    return app


app = create_app()
