"""The in-memory store: the reference implementation of ``TaskStore``.

Thread-safe (one lock, no threads of its own). Every change goes through
``core.transitions.apply``; this module only keeps the indexes that make the
queries cheap. Nothing survives the process: use it for tests, simulations
and single-process tools.
"""

from __future__ import annotations

import bisect
import heapq
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from returns.result import Failure, Result, Success

from sokka.adapters.ready import Doorbell, Doorbells
from sokka.adapters.store import (
    DEFAULT_FAILED_WITHIN_MS,
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    Counts,
    EventCalls,
    Page,
    Purged,
    TaskFilter,
    TopicCounts,
    capture,
    check_counting,
    check_leased_listing,
    check_listing,
    check_purge,
    check_topic,
    encode_cursor,
    require_batch,
    require_limit,
    require_spec,
)
from sokka.core.errors import AlreadyExists, NotFound, SokkaError
from sokka.core.task import Status, Task, TaskSpec, require_name
from sokka.core.transitions import (
    Event,
    Reserve,
    apply,
)

__all__ = ["MemoryStore", "wall_clock_ms"]


def wall_clock_ms() -> int:
    """Milliseconds since the epoch: only for the informational timestamps."""
    return time.time_ns() // 1_000_000


def _new_id() -> str:
    return uuid.uuid4().hex


class MemoryStore(EventCalls):
    """A ``TaskStore`` in a dict, guarded by a lock.

    ``clock`` gives the informational ``created_at``/``updated_at``
    (milliseconds); ``new_id`` makes ids for specs that have none.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self._clock = clock
        self._new_id = new_id
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._seq: dict[str, int] = {}  # task_id -> creation position, from 1
        # Task ids in creation order, and their positions (the same length, both
        # ascending): a purge removes from the middle, so a position is found by
        # bisecting ``_seqs``, not by indexing.
        self._order: list[str] = []
        self._seqs: list[int] = []
        self._last_seq = 0
        self._groups: dict[str, list[str]] = {}
        # Per topic, (seq, task_id) of tasks that became ready; stale entries
        # (the task moved on) are skipped when popped.
        self._ready: dict[str, list[tuple[int, str]]] = {}
        self._leased: set[str] = set()
        self._paused: dict[str, int] = {}  # topic -> when it was paused (store clock)
        self._bells = Doorbells()  # waiters for tasks becoming ready (ready_signal)

    def ready_signal(self, topic: str) -> Doorbell:
        """A hint that tasks of ``topic`` may be ready: rung by every change that
        makes one ready (``sokka.adapters.ready``)."""
        require_name("topic", topic)
        return self._bells.signal(topic)

    def subscribe_ready(self, topic: str, ring: Callable[[], None]) -> Callable[[], None]:
        """``ring()`` on every hint for ``topic``; returns the unsubscribe call."""
        return self._bells.subscribe(topic, ring)

    # -- creating and reading ---------------------------------------------

    def create_task(self, spec: TaskSpec) -> Task:
        require_spec(spec)
        with self._lock:
            task_id = spec.task_id or self._new_id()
            if task_id in self._tasks:
                raise AlreadyExists(task_id)
            task = spec.to_task(task_id, self._clock())
            self._last_seq += 1
            self._order.append(task_id)
            self._seqs.append(self._last_seq)
            self._seq[task_id] = self._last_seq
            self._groups.setdefault(task.task_group_id, []).append(task_id)
            self._store(None, task)
            return task

    def create_tasks(self, specs: Sequence[TaskSpec]) -> list[Result[Task, SokkaError]]:
        require_batch("specs", specs)
        with self._lock:
            return [capture(partial(self.create_task, spec)) for spec in specs]

    def get_task(self, task_id: str) -> Task:
        require_name("task_id", task_id)
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(task_id)
        return task

    def tasks_in_group(self, task_group_id: str, limit: int = MAX_PAGE_SIZE) -> list[Task]:
        require_name("task_group_id", task_group_id)
        require_limit("limit", limit, MAX_PAGE_SIZE)
        with self._lock:
            return [self._tasks[t] for t in self._groups.get(task_group_id, ())[:limit]]

    def list_tasks(
        self,
        filter: TaskFilter | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page:
        wanted, after = check_listing(filter, cursor, limit)
        with self._lock:
            order = self._order
            start = bisect.bisect_right(self._seqs, after)
            candidates = (self._tasks[order[i]] for i in range(start, len(order)))
            return self._page(candidates, wanted.matches, limit)

    def list_leased_tasks(
        self,
        topic: str | None = None,
        cursor: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Page:
        after = check_leased_listing(topic, cursor, limit)
        with self._lock:
            found = sorted((s, t) for t in self._leased if (s := self._seq[t]) > after)
            candidates = (self._tasks[t] for _, t in found)
            return self._page(candidates, lambda t: topic is None or t.topic == topic, limit)

    def count_tasks(
        self,
        topic: str | None = None,
        status: Status | None = None,
        failed_within_ms: int = DEFAULT_FAILED_WITHIN_MS,
    ) -> Counts:
        topic, wanted, window = check_counting(topic, status, failed_within_ms)
        with self._lock:
            now = self._clock()
            since = now - window
            found: dict[str, dict[str, int]] = {}
            oldest: dict[str, int] = {}
            for task in self._tasks.values():
                if (topic is not None and task.topic != topic) or (
                    wanted is not None and task.status is not wanted
                ):
                    continue
                counts = found.setdefault(task.topic, {"failed_recently": 0})
                counts[task.status.value] = counts.get(task.status.value, 0) + 1
                if task.status is Status.STARTING:
                    seen = oldest.get(task.topic)
                    oldest[task.topic] = task.updated_at if seen is None else min(
                        seen, task.updated_at
                    )
                elif task.status is Status.FAILED and task.updated_at >= since:
                    counts["failed_recently"] += 1
        topics = tuple(
            TopicCounts(topic=name, oldest_ready_at=oldest.get(name), **found[name])
            for name in sorted(found)
        )
        return Counts(now=now, failed_within_ms=window, topics=topics)

    def purge(
        self,
        statuses: Sequence[Status],
        older_than_ms: int,
        topic: str | None = None,
        limit: int = MAX_BATCH,
    ) -> Purged:
        wanted, older_than_ms, topic, limit = check_purge(statuses, older_than_ms, topic, limit)
        with self._lock:
            cutoff = self._clock() - older_than_ms
            doomed: list[str] = []
            for task_id in self._order:
                task = self._tasks[task_id]
                if (
                    task.status in wanted
                    and task.updated_at <= cutoff
                    and (topic is None or task.topic == topic)
                ):
                    doomed.append(task_id)
                    if len(doomed) == limit:
                        break
            self._forget(doomed)
        return Purged(deleted=len(doomed), more=len(doomed) == limit)

    def _forget(self, task_ids: Sequence[str]) -> None:
        """Remove finished tasks and every index entry that names them."""
        if not task_ids:
            return
        gone = set(task_ids)
        groups = {self._tasks[t].task_group_id for t in gone}
        for task_id in gone:
            del self._tasks[task_id]
            del self._seq[task_id]
        kept = [(s, t) for s, t in zip(self._seqs, self._order, strict=True) if t not in gone]
        self._seqs = [s for s, _ in kept]
        self._order = [t for _, t in kept]
        for group in groups:
            members = [t for t in self._groups[group] if t not in gone]
            if members:
                self._groups[group] = members
            else:
                del self._groups[group]

    def _page(self, candidates: Iterable[Task], keep: Callable[[Task], bool], limit: int) -> Page:
        found: list[Task] = []
        for task in candidates:
            if not keep(task):
                continue
            if len(found) == limit:
                # There is at least one more: the cursor resumes after the last kept.
                return Page(tuple(found), encode_cursor(self._seq[found[-1].task_id]))
            found.append(task)
        return Page(tuple(found), None)

    # -- leases ------------------------------------------------------------

    def reserve_tasks(self, topic: str, pid: str, limit: int = 1) -> list[Task]:
        require_name("topic", topic)
        event = Reserve(pid=pid)
        require_limit("limit", limit, MAX_BATCH)
        reserved: list[Task] = []
        with self._lock:
            if topic in self._paused:
                return reserved
            ready = self._ready.get(topic, [])
            while ready and len(reserved) < limit:
                seq, task_id = heapq.heappop(ready)
                task = self._tasks.get(task_id)
                if task is None or task.status is not Status.STARTING or self._seq[task_id] != seq:
                    # A stale entry: the task moved on since it was queued, or was
                    # purged (and perhaps created again, with a new position).
                    continue
                reserved.append(self._transition(task_id, event).unwrap())
        return reserved

    # -- pausing topics ------------------------------------------------------

    def pause_topic(self, topic: str) -> bool:
        check_topic(topic)
        with self._lock:
            if topic in self._paused:
                return False
            self._paused[topic] = self._clock()
            return True

    def resume_topic(self, topic: str) -> bool:
        check_topic(topic)
        with self._lock:
            if self._paused.pop(topic, None) is None:
                return False
        self._bells.ring((topic,))  # its ready tasks may be taken again
        return True

    def paused_topics(self) -> list[str]:
        with self._lock:
            return sorted(self._paused)

    def _apply_events(self, items: Sequence[tuple[str, Event]]) -> list[Result[Task, SokkaError]]:
        with self._lock:
            return [self._transition(task_id, event) for task_id, event in items]

    # -- the one place a task changes --------------------------------------

    def _transition(self, task_id: str, event: Event) -> Result[Task, SokkaError]:
        old = self._tasks.get(task_id)
        if old is None:
            return Failure(NotFound(task_id))
        result = apply(old, event, self._clock())
        match result:
            case Success(new):
                self._store(old, new)
        return result

    def _store(self, old: Task | None, new: Task) -> None:
        task_id = new.task_id
        self._tasks[task_id] = new
        if old is not None and old.status is new.status:
            return
        if new.status.is_leased:
            self._leased.add(task_id)
        else:
            self._leased.discard(task_id)
        if new.status is Status.STARTING:
            heapq.heappush(self._ready.setdefault(new.topic, []), (self._seq[task_id], task_id))
            self._bells.ring((new.topic,))
