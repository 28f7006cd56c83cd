"""``connect(url)``: the async store a URL names.

The URLs are the command line's (``--db``), read by ``sokka.adapters.urls``
and refused with the same errors as the sync stores give them:

* ``memory://``: an ``AsyncMemoryStore`` (in this process only);
* ``sqlite:///file.db``, ``postgresql+psycopg://...`` (or ``postgresql://``):
  an ``AsyncSQLStore``; create its schema first (``sokka init`` or ``await
  store.create_schema()``);
* ``http://...``, ``https://...``: an ``AsyncHTTPStore`` on ``sokka serve``
  (the ``http`` extra).

``options`` are the chosen store's keyword arguments (``prefix=``, ``clock=``,
``token=``, ...); one it does not take is refused, naming it.
"""

from __future__ import annotations

from typing import Any

from sokka.adapters.aio.memory import AsyncMemoryStore
from sokka.adapters.aio.sql import AsyncSQLStore
from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.urls import check_options, store_kind
from sokka.core.errors import StoreError

__all__ = ["connect"]


def connect(url: str, **options: Any) -> AsyncTaskStore:
    """The async store ``url`` names, made with ``options``; nothing is connected yet.

    >>> import asyncio
    >>> asyncio.run(connect("memory://").list_tasks()).tasks
    ()
    """
    kind = store_kind(url)
    if kind == "memory":
        check_options(AsyncMemoryStore, options)
        return AsyncMemoryStore(**options)
    if kind == "http":
        try:
            from sokka.adapters.aio.http import AsyncHTTPStore
        except ImportError:
            raise StoreError("HTTP needs the http extra: pip install 'sokka[http]'") from None
        check_options(AsyncHTTPStore, options)
        return AsyncHTTPStore(url, **options)
    check_options(AsyncSQLStore, options)
    return AsyncSQLStore(url, **options)
