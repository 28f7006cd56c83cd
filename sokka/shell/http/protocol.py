"""uvicorn, bounded: a deadline on request heads, and a server a second signal stops.

uvicorn times out idle kept-alive connections, but not a connection that
sends nothing, nor one that sends its request head a byte at a time (and
never the body: ``_Guard`` bounds that). ``_HeadTimedProtocol`` is uvicorn's
own HTTP/1.1 protocol (h11) with one more timer: from a connection's opening,
or from the first byte of each later request, to the end of that request's
head. Imported only where uvicorn runs (the ``http`` extra).
"""

from __future__ import annotations

import asyncio
from types import FrameType

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sokka.shell.http.limits import (
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    KEEP_ALIVE_S,
    MAX_CONNECTIONS,
    ASGIApp,
    _log,
)

__all__ = ["bounded_server"]


class _HeadTimedProtocol(H11Protocol):
    """uvicorn's h11 protocol that hangs up on a request head slower than
    ``head_timeout_s``."""

    head_timeout_s: float = HEADER_TIMEOUT_S
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_head_clock()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is None or self.cycle.response_complete:
            self._start_head_clock()  # a head has begun, and is not complete yet
        else:
            self._stop_head_clock()  # the head is in: the application has the request

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def _start_head_clock(self) -> None:
        # The clock runs from the head's first byte: more bytes do not reset it.
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            _log.info(
                "%s: no complete request head within %s s: hanging up",
                "{}:{}".format(*self.client) if self.client else "a client",
                self.head_timeout_s,
            )
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server, where a second SIGTERM stops at once as a second SIGINT does
    (uvicorn forces only on SIGINT)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        super().handle_exit(sig, frame)


def bounded_server(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    shutdown_timeout_s: int = DEFAULT_SHUTDOWN_TIMEOUT_S,
) -> uvicorn.Server:
    """A uvicorn server for ``app`` with every timeout and limit set.

    Request heads within ``header_timeout_s``; idle kept-alive connections
    closed after ``KEEP_ALIVE_S``; at most ``MAX_CONNECTIONS`` open (503
    above); a stop waits at most ``shutdown_timeout_s`` for the requests in
    flight, then cancels them, and a second signal stops it at once.
    """
    protocol = type(
        "SokkaHTTPProtocol", (_HeadTimedProtocol,), {"head_timeout_s": header_timeout_s}
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=shutdown_timeout_s,
    )
    return _Server(config)
