"""Store URLs: which kind of store a URL names, decided without connecting.

One reading of a URL for every entry point that opens a store from one (the
command line's ``--db``, ``sokka.adapters.aio.connect``): an ``http://`` or
``https://`` URL is a sokka server, ``memory://`` the in-process memory
store, and anything else a database URL, which the SQL store's own parser
accepts or refuses (naming the URLs it supports).
"""

from __future__ import annotations

import inspect
from typing import Any, Final, Literal

from sokka.core.errors import ValidationError

__all__ = ["MEMORY_URL", "StoreKind", "check_options", "is_http_url", "store_kind"]

#: The in-process memory store (nothing is kept when the process ends).
MEMORY_URL: Final = "memory://"

StoreKind = Literal["memory", "http", "sql"]


def is_http_url(url: str) -> bool:
    """Whether ``url`` names a sokka server (``sokka serve``).

    >>> is_http_url("https://queue.internal:8080"), is_http_url("sqlite:///sokka.db")
    (True, False)
    """
    return url.startswith(("http://", "https://"))


def store_kind(url: object) -> StoreKind:
    """The kind of store ``url`` names; a database URL is checked by the SQL store.

    >>> store_kind("memory://"), store_kind("http://localhost:8080"), store_kind("sqlite:///x.db")
    ('memory', 'http', 'sql')
    >>> store_kind("memory://shared")
    Traceback (most recent call last):
    ...
    sokka.core.errors.ValidationError: url: memory:// takes nothing after it \
(each memory store is private to the process and the object that made it)
    """
    if not isinstance(url, str):
        return "sql"  # the SQL store's parser refuses it, naming the URLs it supports
    if is_http_url(url):
        return "http"
    if url.startswith(MEMORY_URL):
        if url != MEMORY_URL:
            raise ValidationError(
                "url",
                "memory:// takes nothing after it "
                "(each memory store is private to the process and the object that made it)",
            )
        return "memory"
    return "sql"


def check_options(store: type[Any], options: dict[str, Any]) -> None:
    """Refuse an option ``store``'s constructor does not take, naming it and the
    ones it does take (``connect(url, **options)`` passes them on)."""
    accepted = [
        name
        for name, param in inspect.signature(store).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    for name in options:
        if name not in accepted:
            raise ValidationError(
                name,
                f"is not an option of {store.__name__} (its options: {', '.join(accepted)})",
            )
