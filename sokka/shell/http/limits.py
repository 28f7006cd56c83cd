"""The server's limits and the ASGI types its parts share."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from sokka.shell.tokens import MIN_TOKEN_LENGTH

__all__ = [
    "BODY_TIMEOUT_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_SHUTDOWN_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "KEEP_ALIVE_S",
    "MAX_CONNECTIONS",
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
#: Seconds a client should wait before retrying a throttled or unavailable call.
RETRY_AFTER_S: Final = 1

# -- time and concurrency: what one client can hold of the server ---------------------
#: Seconds from a connection's first byte (or from its opening) to the end of a
#: request's headers; a client that sends its head slower is hung up on.
HEADER_TIMEOUT_S: Final = 10.0
#: Seconds to read a whole request body (8 MiB at 300 KB/s); slower: 408.
BODY_TIMEOUT_S: Final = 30.0
#: Seconds an idle kept-alive connection stays open (HTTPStore and proxies
#: reconnect at once when it has closed).
KEEP_ALIVE_S: Final = 5
#: Requests served at once (counted from their first byte of body to the last
#: of the answer); more get 503 with Retry-After. Each holds at most a request
#: body and an answer budget of memory.
DEFAULT_MAX_CONCURRENCY: Final = 64
#: Open connections, idle ones included; uvicorn answers 503 above it.
MAX_CONNECTIONS: Final = 1024
#: Seconds a stopping server waits for the requests in flight before it cancels
#: them; a second SIGTERM or SIGINT stops it at once.
DEFAULT_SHUTDOWN_TIMEOUT_S: Final = 10

_log = logging.getLogger("sokka.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
