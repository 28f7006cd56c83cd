"""The server's limits and the ASGI types its parts share."""

from __future__ import annotations

import logging
import string
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MIN_TOKEN_LENGTH",
    "RETRY_AFTER_S",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
]

#: 8 MiB: a batch of 1,000 specs with a few KiB of data each, or one task with
#: the largest data (256 KiB) in any encoding.
DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
MIN_TOKEN_LENGTH: Final = 16
#: Seconds a client should wait before retrying a throttled or unavailable call.
RETRY_AFTER_S: Final = 1

_log = logging.getLogger("sokka.http")
_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-._~+/=")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
