"""``connect(url)``: the store a URL names.

The URLs are the command line's (``--db``), read by ``sokka.adapters.urls``
(the asyncio twin is ``sokka.adapters.aio.connect``, with the same URLs and
the same refusals):

* ``memory://``: a ``MemoryStore`` (in this process only);
* ``sqlite:///file.db``, ``postgresql+psycopg://...`` (or ``postgresql://``):
  a ``SQLStore``; create its schema first (``sokka init`` or
  ``store.create_schema()``);
* ``http://...``, ``https://...``: an ``HTTPStore`` on ``sokka serve`` (the
  ``http`` extra).

``options`` are the chosen store's keyword arguments (``prefix=``,
``token=``, ``clock=``, ...); one it does not take is refused, naming it.
"""

from __future__ import annotations

from typing import Any

from sokka.adapters.memory import MemoryStore
from sokka.adapters.sql import SQLStore
from sokka.adapters.store import TaskStore
from sokka.adapters.urls import check_options, store_kind
from sokka.core.errors import StoreError

__all__ = ["connect"]


def connect(url: str, **options: Any) -> TaskStore:
    """The store ``url`` names, made with ``options``.

    >>> connect("memory://").list_tasks().tasks
    ()
    >>> connect("memory://", prefix="app_")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: prefix: is not an option of MemoryStore (its options: \
clock, new_id)
    """
    kind = store_kind(url)
    if kind == "memory":
        check_options(MemoryStore, options)
        return MemoryStore(**options)
    if kind == "http":
        try:
            from sokka.adapters.http import HTTPStore
        except ImportError:
            raise StoreError("HTTP needs the http extra: pip install 'sokka[http]'") from None
        check_options(HTTPStore, options)
        return HTTPStore(url, **options)
    check_options(SQLStore, options)
    return SQLStore(url, **options)
