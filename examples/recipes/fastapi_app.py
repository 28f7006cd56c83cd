"""FastAPI with SQLAlchemy sessions: an order and its invoice task commit together.

    export DATABASE_URL=postgresql+psycopg://app@db/app   # or sqlite:///app.db
    sokka init --db "$DATABASE_URL"                        # sokka's tables, once
    uvicorn examples.recipes.fastapi_app:app               # the web app
    sokka worker --app examples.recipes.fastapi_app:tasks --supervise   # the worker

``POST /orders`` with ``{"order_id": "o-1", "cents": 1250}`` inserts the
order and enqueues its invoice on the request's SQLAlchemy ``Session``
(``connection=session``): one transaction, so the task exists if and only
if the order is committed. An order the app refuses after inserting it
(here, a total of zero or less) is rolled back with its task.

The handlers are plain functions run by ``sokka worker --app`` on threads;
the endpoint is synchronous too (FastAPI runs it in its thread pool), since
``App.enqueue`` and SQLAlchemy's ``Session`` block.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import Integer, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sokka

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///app.db")


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cents: Mapped[int] = mapped_column(Integer)


engine = create_engine(DATABASE_URL)
Base.metadata.create_all(engine)  # the app's own table (sokka's come from `sokka init`)

# The tasks live in the web app's own database, so they can share its transactions.
tasks = sokka.App(DATABASE_URL)


@tasks.handler("invoices", concurrency=2, lease="1m", timeout="5m", max_attempts=3)
def make_invoice(task: sokka.Task, ctx: sokka.Context) -> sokka.Outcome:
    print(f"invoice for {task.data['order_id']}\n", end="", flush=True)
    return sokka.ok()


def get_session() -> Iterator[Session]:
    """One session per request; whatever the endpoint did not commit is rolled back."""
    with Session(engine) as session:
        yield session


class NewOrder(BaseModel):
    order_id: str
    cents: int


app = FastAPI()


@app.post("/orders", status_code=201)
def create_order(
    order: NewOrder, session: Annotated[Session, Depends(get_session)]
) -> dict[str, str]:
    session.add(Order(order_id=order.order_id, cents=order.cents))
    # Same session, same transaction: no worker sees the task before the commit.
    task = tasks.enqueue(
        "invoices", {"order_id": order.order_id}, task_id=f"invoice-{order.order_id}",
        connection=session,
    )  # fmt: skip
    if order.cents <= 0:
        session.rollback()  # the order and its task go together
        raise HTTPException(422, f"order {order.order_id}: the total must be positive")
    session.commit()
    return {"order_id": order.order_id, "task_id": task.task_id}
