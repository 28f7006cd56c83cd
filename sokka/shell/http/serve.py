"""Running the application: uvicorn on a thread, for tests, benchmarks and embedding."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sokka.shell.http.limits import DEFAULT_SHUTDOWN_TIMEOUT_S, HEADER_TIMEOUT_S, ASGIApp

__all__ = ["serve_in_background"]

# -- running it -------------------------------------------------------------------------


@contextmanager
def serve_in_background(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout_s: float = 10.0,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    shutdown_timeout_s: int = DEFAULT_SHUTDOWN_TIMEOUT_S,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a thread of this process; yield its base URL.

    ``port=0`` takes a free port. The server stops (finishing the requests in
    flight, for at most ``shutdown_timeout_s``) when the block exits. It is the
    server ``sokka serve`` runs (``protocol.bounded_server``), with the same
    timeouts and limits. For tests, benchmarks and embedding; ``sokka serve``
    runs it in the foreground instead.
    """
    from sokka.shell.http.protocol import bounded_server

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    server = bounded_server(
        app, header_timeout_s=header_timeout_s, shutdown_timeout_s=shutdown_timeout_s
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sokka-http", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.005)
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        yield f"http://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
