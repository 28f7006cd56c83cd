"""An async store presented as a sync one, so the contract suite runs unchanged on it.

``BlockingStore(store, loop)`` has every ``TaskStore`` call; each one runs the
async store's coroutine on ``loop`` (an event loop on a thread of its own,
``LoopThread``) and waits for its answer, or its exception, exactly as the
coroutine gave it. The waking calls (``ready_signal``, ``subscribe_ready``),
which an async store has as plain calls if it has them, are the store's own.
Nothing is translated: an answer or an error that differs
from the sync stores' is the async store's own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sokka.adapters.aio.store import AsyncTaskStore
from sokka.adapters.store import TaskStore

_T = TypeVar("_T")

#: The calls of the port: every method ``TaskStore`` declares.
CALLS = tuple(
    name for name in vars(TaskStore) if not name.startswith("_") and callable(vars(TaskStore)[name])
)


class LoopThread:
    """An asyncio event loop running on a daemon thread until ``close()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="async-store-loop", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the loop; its answer, or its exception raised here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class BlockingStore:
    """A ``TaskStore`` whose every call is the same call of an ``AsyncTaskStore``."""

    def __init__(self, store: AsyncTaskStore, loop: LoopThread) -> None:
        self.store = store
        self._loop = loop

    def __repr__(self) -> str:
        return f"BlockingStore({self.store!r})"

    def __getattr__(self, name: str) -> Any:
        # An async store's waking calls are plain (not awaited): the store's own,
        # so a store that has none is not ``Wakeable`` here either.
        if name in ("ready_signal", "subscribe_ready"):
            return getattr(self.store, name)
        raise AttributeError(name)


def _blocking(name: str) -> Any:
    def call(self: BlockingStore, *args: Any, **kwargs: Any) -> Any:
        return self._loop.run(getattr(self.store, name)(*args, **kwargs))

    call.__name__ = name
    return call


for _name in CALLS:
    setattr(BlockingStore, _name, _blocking(_name))
