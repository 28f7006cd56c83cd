"""A stop signal is never handled while the main thread holds a lock the stop
needs: Python runs a signal handler on the main thread between two of its
bytecodes, so a handler that takes such a lock waits for itself for ever (a
worker that then ignores SIGTERM until SIGKILL: seen once in CI, in
``tests/e2e/test_processes.py``). ``stopping_on_signals`` relays the signal to a
thread of its own; these tests deliver the signal exactly while the lock is held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from sokka.shell.signals import stopping_on_signals

ROOT = Path(__file__).resolve().parents[2]


def test_a_signal_that_lands_while_the_main_thread_holds_the_stops_lock_still_stops() -> None:
    lock = threading.Lock()
    stopped = threading.Event()
    got: list[tuple[int, bool]] = []

    def stop(signum: int) -> None:
        acquired = lock.acquire(timeout=5)  # inside the handler, this would wait on itself
        got.append((signum, acquired))
        if acquired:
            lock.release()
        stopped.set()

    with stopping_on_signals(stop):
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
            held_while_signalled = lock.locked()
        assert stopped.wait(10)
    assert held_while_signalled
    assert got == [(signal.SIGTERM, True)]


def test_the_previous_handlers_are_back_afterwards_and_each_signal_is_relayed() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    seen: list[int] = []
    both = threading.Event()

    def stop(signum: int) -> None:
        seen.append(signum)
        if len(seen) == 2:
            both.set()

    with stopping_on_signals(stop):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert both.wait(10)
    assert sorted(seen) == sorted([signal.SIGINT, signal.SIGTERM])
    assert {s: signal.getsignal(s) for s in before} == before
    assert not [t for t in threading.enumerate() if t.name == "sokka-signals"]


def test_off_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    inside: list[object] = []

    def elsewhere() -> None:
        with stopping_on_signals(lambda _signum: None):
            inside.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert inside == [before]


# A worker on the main thread whose clock sends the process SIGTERM from inside
# the dispatcher's locked section (the dispatcher reads the clock under the
# worker's lock): the signal lands while the lock is held. It runs in a child
# process, so a regression hangs the child, not the test run.
_WORKER_SIGNALLED_UNDER_ITS_LOCK = textwrap.dedent("""
    import os, signal, sys
    from sokka.adapters.memory import MemoryStore
    from sokka.shell.clock import MonotonicClock
    from sokka.shell.worker import Worker, ok

    class SignallingClock(MonotonicClock):
        rounds = 0
        def now_ms(self):
            if sys._getframe(1).f_code.co_name == "_dispatch":  # under the worker's lock
                SignallingClock.rounds += 1
                if SignallingClock.rounds == 3:
                    held = worker._lock.locked()
                    os.kill(os.getpid(), signal.SIGTERM)  # handled before the print
                    print("signalled, lock held:", held, flush=True)
            return super().now_ms()

    worker = Worker(MemoryStore(), "t", lambda task: ok(), clock=SignallingClock())
    worker.run()
    print("stopped", flush=True)
""")


def test_a_worker_signalled_while_its_dispatcher_holds_the_lock_stops() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_SIGNALLED_UNDER_ITS_LOCK],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["signalled, lock held: True", "stopped"], done.stderr
