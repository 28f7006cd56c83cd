"""pytest fixtures for testing code that uses sokka (registered as a pytest plugin).

* ``sokka_clock``: a ``ManualClock`` at 0;
* ``sokka_store``: a ``MemoryStore`` on that clock;
* ``sokka_supervisor``: a ``Supervisor`` of every topic on that store and
  clock, never started: call ``run_once()`` after moving the clock;
* ``sokka_worker``: a factory, ``sokka_worker(topic, handler, **options)``,
  making a ``SteppedWorker`` on that store and clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sokka.adapters.memory import MemoryStore
from sokka.core.supervision import LeasePolicy
from sokka.shell.clock import ManualClock
from sokka.shell.supervisor import Supervisor
from sokka.shell.worker import Handler
from sokka.testing.stepped import SteppedWorker

__all__ = ["sokka_clock", "sokka_store", "sokka_supervisor", "sokka_worker"]


@pytest.fixture
def sokka_clock() -> ManualClock:
    """Time that moves only when the test calls ``advance(ms)``."""
    return ManualClock()


@pytest.fixture
def sokka_store(sokka_clock: ManualClock) -> MemoryStore:
    """An empty in-memory store whose timestamps come from ``sokka_clock``."""
    return MemoryStore(clock=sokka_clock)


@pytest.fixture
def sokka_supervisor(sokka_store: MemoryStore, sokka_clock: ManualClock) -> Supervisor:
    """A supervisor of every topic (lease 30 s), stepped with ``run_once()``."""
    policy = LeasePolicy(lease_time_ms=30_000, default_snooze_ms=60_000)
    return Supervisor(sokka_store, None, policy, sokka_clock)


@pytest.fixture
def sokka_worker(
    sokka_store: MemoryStore, sokka_clock: ManualClock
) -> Callable[..., SteppedWorker]:
    """``sokka_worker(topic, handler, **options)``: a ``SteppedWorker`` on the
    fixtures' store and clock (options as ``SteppedWorker`` takes them)."""

    def make(topic: str, handler: Handler, **options: Any) -> SteppedWorker:
        return SteppedWorker(sokka_store, topic, handler, clock=sokka_clock, **options)

    return make
