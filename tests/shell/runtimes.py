"""The two runtimes behind one surface, so one scenario suite runs on both.

The threaded ``Worker``/``Supervisor`` are used as they are. For asyncio,
``AsyncWorkerInThread`` and ``AsyncSupervisorInThread`` run the asyncio
``Worker``/``Supervisor`` on an event loop of their own, in a background
thread, behind the threaded classes' methods (``start``, ``stop``, ``stats``,
``run_once``, ...). The tests' stores are synchronous (a ``MemoryStore``, an
``HTTPStore``, or a wrapper that injects faults); ``Awaited`` makes each call
awaitable I/O by running it in a thread, so a store call that hangs holds up
that call only, as with a real async driver. A test's plain handlers then run
in the asyncio worker's thread pool: a real path of that runtime.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sokka.core.holding import Holdings
from sokka.core.supervision import Monitored
from sokka.shell import supervisor as threaded_supervisor
from sokka.shell import worker as threaded_worker
from sokka.shell.aio import supervisor as aio_supervisor
from sokka.shell.aio import worker as aio_worker
from sokka.shell.supervisor import SupervisorReport
from sokka.shell.worker import WorkerStats

RUNTIMES = ["threads", "asyncio"]

T = TypeVar("T")


#: What an async store has as it is, not awaitable: the wake-up hints
#: (``sokka.adapters.ready``) and an HTTP store's longest long poll.
_PLAIN = frozenset({"ready_signal", "subscribe_ready", "max_wait_ms"})


class Awaited:
    """Every call of a synchronous store, awaitable (run in a thread).

    The call is looked up when it is made, so a test may replace a method of
    the wrapped store (``store.extend_leases = slow``) at any time. The
    store's hints and ``max_wait_ms``, if it has them, are passed as they are,
    as an async store has them.
    """

    def __init__(self, sync: Any) -> None:
        self.sync = sync

    def __getattr__(self, name: str) -> Any:
        if name in _PLAIN:  # plain on an async store too (AsyncMemoryStore, AsyncHTTPStore)
            return getattr(self.sync, name)
        if not hasattr(self.sync, name):  # a call the store lacks (reserve_and_finish)
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(getattr(self.sync, name), *args, **kwargs)

        call.__name__ = name
        return call


class LoopThread:
    """An event loop running in a daemon thread; ``call`` runs a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_the_rest() -> None:
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self.loop.shutdown_default_executor()

        if self.loop.is_running():
            self.call(cancel_the_rest())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


class AsyncWorkerInThread:
    """The asyncio ``Worker`` behind the threaded ``Worker``'s surface."""

    def __init__(
        self, store: Any, topic: str | None = None, handler: Any = None, **options: Any
    ) -> None:
        self.worker = aio_worker.Worker(Awaited(store), topic, handler, **options)
        self.pid = self.worker.pid
        self.error: BaseException | None = None
        self._stopped = threading.Event()

    @property
    def holdings(self) -> Holdings:
        return self.worker.holdings

    def stats(self) -> WorkerStats:
        return self.worker.stats()

    def stop(self) -> None:
        self.worker.stop()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"asyncio-{self.pid}", daemon=True)
        thread.start()
        return thread

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self.worker.run())
        except BaseException as error:  # kept for the test to see
            self.error = error
        finally:
            self._stopped.set()


class AsyncSupervisorInThread:
    """The asyncio ``Supervisor`` behind the threaded ``Supervisor``'s surface."""

    def __init__(
        self, store: Any, *args: Any, sleep: Callable[[float], object] | None = None, **kw: Any
    ) -> None:
        if sleep is not None:
            plain = sleep

            async def awaited(seconds: float) -> object:
                return plain(seconds)

            kw["sleep"] = awaited
        self._loop = LoopThread()
        self.supervisor = aio_supervisor.Supervisor(Awaited(store), *args, **kw)
        self._running: Any = None

    @property
    def monitored(self) -> Monitored:
        return self.supervisor.monitored

    @property
    def last_report(self) -> SupervisorReport | None:
        return self.supervisor.last_report

    def wait_ms(self) -> int:
        return self.supervisor.wait_ms()

    def run_once(self) -> SupervisorReport:
        return self._loop.call(self.supervisor.run_once())

    def start(self) -> None:
        self._running = asyncio.run_coroutine_threadsafe(self.supervisor.run(), self._loop.loop)

    def stop(self, timeout: float | None = 5.0) -> None:
        self.supervisor.stop()
        if self._running is not None:
            self._running.result(timeout)
            self._running = None

    def close(self) -> None:
        self._loop.close()


def worker_class(runtime: str) -> Any:
    return threaded_worker.Worker if runtime == "threads" else AsyncWorkerInThread


def supervisor_class(runtime: str) -> Any:
    return threaded_supervisor.Supervisor if runtime == "threads" else AsyncSupervisorInThread
