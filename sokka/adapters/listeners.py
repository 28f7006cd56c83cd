"""Threads that hear other processes' changes and ring a store's ``Doorbells``.

* ``PgListener``: one dedicated PostgreSQL connection per store that LISTENs
  on the store's channel; the store's statements ``pg_notify`` the topic of
  every task they make ready, in the transaction that makes it ready, so a
  notification is delivered only once the change is visible.
* ``DataVersionWatcher``: SQLite has no notifications, but ``PRAGMA
  data_version`` changes whenever another connection commits, and reading
  it costs a few microseconds: a thread reads it every few milliseconds while
  anyone waits, and rings every waiter when it moved.

Both are hints (see ``sokka.adapters.ready``): a listener that is down, or
reconnecting, costs waiters at most their timeout. After (re)connecting, a
listener rings every waiter once, since it may have missed changes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from sokka.adapters.ready import Doorbells

__all__ = ["DataVersionWatcher", "PgListener"]

log = logging.getLogger("sokka.store")

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0


class _Listener:
    """A daemon thread that runs ``_listen`` while anyone waits, reconnecting on errors.

    It starts with ``ensure_running`` (call it after subscribing a waiter) and
    ends by itself once nobody waits (``_listen`` returns when
    ``Doorbells.active`` is False), or at ``stop()``.
    """

    name = "sokka-listener"

    def __init__(self, connect: Callable[[], Any], bells: Doorbells) -> None:
        self._connect = connect
        self._bells = bells
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._listening = threading.Event()
        # Set when hints may have been lost (a failed or slow connection): ring
        # every waiter once listening again.
        self._missed = False

    def ensure_running(self, wait_s: float) -> None:
        """Start the thread unless it runs; wait up to ``wait_s`` until it listens."""
        with self._lock:
            if self._thread is None:
                self._halt = threading.Event()
                self._listening = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._halt, self._listening), name=self.name,
                    daemon=True,
                )  # fmt: skip
                self._thread.start()
            listening = self._listening
        if not listening.wait(wait_s):
            self._missed = True

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._halt.set()
        if thread is not None:
            thread.join(timeout=5)

    def _still_wanted(self, halt: threading.Event) -> bool:
        """Go on listening? If not, the thread is forgotten (under the lock, so that
        a waiter subscribing now makes ``ensure_running`` start a new one)."""
        with self._lock:
            if halt.is_set():
                return False
            if self._bells.active:
                return True
            if self._thread is threading.current_thread():
                self._thread = None
            return False

    def _run(self, halt: threading.Event, listening: threading.Event) -> None:
        delay = _RETRY_FIRST_S
        while self._still_wanted(halt):
            try:
                conn = self._connect()
            except Exception as error:
                log.warning("%s: cannot connect (retrying in %.2f s): %s", self.name, delay, error)
                self._missed = True
                halt.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            try:
                self._listen(conn, halt, listening)
                delay = _RETRY_FIRST_S
            except Exception as error:
                if not halt.is_set():
                    log.warning("%s: lost its connection (reconnecting): %s", self.name, error)
                    self._missed = True
                    halt.wait(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
            finally:
                listening.clear()
                with contextlib.suppress(Exception):  # a broken connection may refuse
                    conn.close()

    def _listening_now(self, listening: threading.Event) -> None:
        """Listening (again): if hints may have been lost meanwhile, ring everyone."""
        listening.set()
        if self._missed:
            self._missed = False
            self._bells.ring_all()

    def _listen(self, conn: Any, halt: threading.Event, listening: threading.Event) -> None:
        """Listen until halted or nobody waits (then return); raise if the connection fails."""
        raise NotImplementedError  # pragma: no cover


class PgListener(_Listener):
    """LISTEN on ``channel``; each notification's payload is a topic to ring.

    ``connect`` returns a psycopg connection (made on the listener's thread).
    """

    name = "sokka-pg-listener"

    def __init__(self, connect: Callable[[], Any], bells: Doorbells, channel: str) -> None:
        super().__init__(connect, bells)
        self._channel = channel

    def _listen(self, conn: Any, halt: threading.Event, listening: threading.Event) -> None:
        conn.autocommit = True
        conn.execute(f'LISTEN "{self._channel}"')
        self._listening_now(listening)
        ring = self._bells.ring
        while self._still_wanted(halt):
            # Ends after the timeout (to see halt, or that nobody waits any more).
            for note in conn.notifies(timeout=0.2):
                ring((note.payload,))


class DataVersionWatcher(_Listener):
    """Read ``PRAGMA data_version`` every ``interval_ms`` while anyone waits.

    ``connect`` returns an sqlite3 connection (made on the watcher's thread)
    that never writes: its data_version moves with every other connection's
    commit, this process's included.
    """

    name = "sokka-sqlite-watcher"

    def __init__(self, connect: Callable[[], Any], bells: Doorbells, interval_ms: int) -> None:
        super().__init__(connect, bells)
        self._interval_s = interval_ms / 1000

    def _listen(self, conn: Any, halt: threading.Event, listening: threading.Event) -> None:
        bells = self._bells
        read = "PRAGMA data_version"
        seen = conn.execute(read).fetchone()[0]
        self._listening_now(listening)
        while self._still_wanted(halt):
            version = conn.execute(read).fetchone()[0]
            if version != seen:
                seen = version
                bells.ring_all()
            halt.wait(self._interval_s)
