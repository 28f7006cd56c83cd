"""Wake-up hints: how a store tells a waiting worker that a task may be ready.

A store that can tell (``Wakeable``) hands out a ``ReadySignal`` per waiter:
``wait(timeout_ms)`` returns True as soon as something may have become
ready on the topic (a task created, requeued, revoked, woken or released),
False when the timeout passed without a hint. A hint is only that: the
reservation stays the truth, so a waiter that wakes reserves and may find
nothing (another worker was faster), and a hint that is lost costs the
waiter at most its timeout, never a task. Waiters therefore always pass a
timeout (the worker's poll backoff) and poll when it passes.

``Doorbells`` is the registry a store keeps: one ``Doorbell`` per waiter,
by topic; the store rings a topic when it made a task of it ready (in its
own process at once, and from a listener thread for other processes'
changes: PostgreSQL's LISTEN/NOTIFY, SQLite's ``data_version``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from sokka.core.task import require_name

__all__ = ["Doorbell", "Doorbells", "ReadySignal", "Wakeable"]


class ReadySignal(Protocol):
    """One waiter's wake-up hint (see the module docstring)."""

    def wait(self, timeout_ms: int) -> bool:
        """Block until a hint arrives (True) or ``timeout_ms`` passes (False).

        A hint that arrived since the last ``wait`` returns at once: hints are
        kept, not lost between two waits.
        """
        ...

    def wake(self) -> None:
        """Give this waiter a hint from outside the store (its owner stopping, ...)."""
        ...

    def close(self) -> None:
        """Stop receiving hints; a closed signal's ``wait`` only times out."""
        ...


@runtime_checkable
class Wakeable(Protocol):
    """A store that can wake its waiters: optional beside ``TaskStore``."""

    def ready_signal(self, topic: str) -> ReadySignal:
        """A fresh signal for tasks of ``topic`` becoming ready; close it when done."""
        ...

    def subscribe_ready(self, topic: str, ring: Callable[[], None]) -> Callable[[], None]:
        """Call ``ring()`` on every hint for ``topic`` until the returned call unsubscribes.

        For waiters that must not block a thread (the HTTP server's long poll
        hops onto its event loop from ``ring``). ``ring`` runs on the thread
        that made the change, or on the store's listener: it must be quick,
        must not raise, and must not call the store.
        """
        ...


class Doorbell:
    """A ``ReadySignal`` kept by a ``Doorbells`` registry: a flag and a condition."""

    __slots__ = ("_cond", "_leave", "_rung")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._rung = False
        self._leave: Callable[[], None] | None = None  # set by Doorbells.signal

    def wait(self, timeout_ms: int) -> bool:
        with self._cond:
            if not self._rung:
                self._cond.wait(max(timeout_ms, 0) / 1000)
            rung, self._rung = self._rung, False
            return rung

    def wake(self) -> None:
        with self._cond:
            self._rung = True
            self._cond.notify_all()

    def close(self) -> None:
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()


class Doorbells:
    """The waiters of one store, by topic; thread-safe.

    ``ring(topics)`` wakes every waiter of those topics, ``ring_all()`` every
    waiter (a change whose topic is unknown). ``subscribe`` takes any callable
    (an asyncio waiter passes one that hops onto its loop); ``signal`` makes a
    ``Doorbell``. ``active`` tells a listener thread whether anyone still waits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_topic: dict[str, dict[int, Callable[[], None]]] = {}
        self._next = 0

    @property
    def active(self) -> bool:
        """Whether anyone waits (read without the lock: a hint for listeners)."""
        return bool(self._by_topic)

    def subscribe(self, topic: str, ring: Callable[[], None]) -> Callable[[], None]:
        """Call ``ring()`` on every hint for ``topic``; returns the unsubscribe call.

        ``ring`` runs on the ringing thread (a store call or a listener): it
        must be quick and must not call back into the store.
        """
        require_name("topic", topic)
        with self._lock:
            key = self._next
            self._next += 1
            self._by_topic.setdefault(topic, {})[key] = ring

        def unsubscribe() -> None:
            with self._lock:
                rings = self._by_topic.get(topic)
                if rings is not None:
                    rings.pop(key, None)
                    if not rings:
                        del self._by_topic[topic]

        return unsubscribe

    def signal(self, topic: str) -> Doorbell:
        """A ``Doorbell`` subscribed to ``topic``."""
        bell = Doorbell()
        bell._leave = self.subscribe(topic, bell.wake)
        return bell

    def ring(self, topics: Iterable[str]) -> None:
        if not self._by_topic:
            return  # the common case under load: nobody idle, nothing to do
        with self._lock:
            rings = [r for topic in set(topics) for r in self._by_topic.get(topic, {}).values()]
        for ring in rings:
            ring()

    def ring_all(self) -> None:
        with self._lock:
            rings = [r for by_key in self._by_topic.values() for r in by_key.values()]
        for ring in rings:
            ring()
