"""Stop signals handled off the main thread.

Python runs a signal handler on the main thread, between two bytecodes of
whatever that thread was doing. A handler that takes a lock the main thread may
hold at that moment (a worker's dispatcher runs on the main thread and holds the
worker's lock often) waits for itself for ever: the process then ignores
SIGTERM, and only SIGKILL ends it. So the handler here does one thing that takes
no lock, writing the signal's number to a pipe, and a thread of its own reads
the pipe and calls ``stop``, where taking locks is safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_CLOSE = b"\0"  # no signal has number 0: the relay's cue to end


@contextlib.contextmanager
def stopping_on_signals(
    stop: Callable[[int], None], signums: tuple[int, ...] = STOP_SIGNALS
) -> Iterator[None]:
    """While inside, each of ``signums`` calls ``stop(signum)`` on a relay
    thread, never inside the signal handler; the previous handlers are put back
    on the way out. Off the main thread (where Python cannot install a
    handler), it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()

    def relay() -> None:
        while (byte := os.read(read_fd, 1)) not in (b"", _CLOSE):
            try:
                stop(byte[0])
            except Exception:  # the relay must outlive a failing stop
                log.exception("stopping on signal %d failed", byte[0])

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        os.write(write_fd, bytes([signum]))  # no lock: safe whatever the thread held

    thread = threading.Thread(target=relay, name="sokka-signals", daemon=True)
    thread.start()
    previous = {signum: signal.signal(signum, on_signal) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.write(write_fd, _CLOSE)
        thread.join(timeout=5)
        os.close(write_fd)
        if not thread.is_alive():  # a stop still running keeps its end of the pipe
            os.close(read_fd)
