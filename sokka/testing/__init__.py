"""Tools for testing code that uses sokka: a manual clock, a worker stepped
without threads on that clock, hypothesis strategies, and pytest fixtures.

* ``ManualClock``: time that moves only when a test says so;
* ``SteppedWorker``: the worker core (``sokka.core.holding``) driven one step
  at a time, handlers run inline: no threads, no sleeps, deterministic;
* ``sokka.testing.strategies``: hypothesis strategies for task specs, tasks
  in any status and lease schedules (needs hypothesis);
* the pytest plugin (``sokka.testing.plugin``, registered through the
  ``pytest11`` entry point): fixtures ``sokka_clock``, ``sokka_store``,
  ``sokka_supervisor`` and ``sokka_worker``.

See docs/testing.md.
"""

from sokka.shell.clock import ManualClock
from sokka.testing.stepped import SteppedWorker

__all__ = ["ManualClock", "SteppedWorker"]
