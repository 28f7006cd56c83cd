"""A deterministic discrete-event simulator of lease supervision, in virtual time.

Only time, randomness and the actors are simulated. Every task change goes
through the real ``MemoryStore`` (so through ``core.transitions.apply``), and
the ``observed`` supervisor is the real core: ``mark``, ``sweep``,
``next_expiry``, ``settle`` and ``adapters.store.execute``.

The model (all times are ``int`` milliseconds of virtual time ``t``):

* **Store**: a ``MemoryStore`` whose clock is ``t`` (the one "store clock").
  Every call is a message: it takes effect ``latency_ms`` after it is sent
  (atomically: a listing reads every page at that instant) and its reply
  reaches the caller another ``latency_ms`` later.
* **Clocks**: each process has a wall clock ``offset + t + drift * t``. A
  supervisor's monotonic clock is its wall clock (the offset cancels out of
  every difference it takes; drift does not).
* **Workers** poll with the core's jittered ``Backoff``, reserve one task
  and run it for a sampled duration (uniform in ``[duration_min,
  duration_max]`` leases). Every lease decision is the real worker core's,
  ``sokka.core.holding``, the very functions ``sokka.shell.worker`` calls:
  ``take`` on the reserve's answer, ``due`` for keepalives, ``acknowledged``
  for their answers, ``tick`` for the self-fence, ``finished``/``record``/
  ``recorded`` for the outcome, and ``live`` when a paused worker resumes.
  The simulated worker wakes at the core's ``next_wakeup`` read on *its own
  clock*. A refused keepalive or outcome, or the fence, makes the worker drop
  the task (the handler's time is wasted work).
* **Pauses** (stop-the-world stalls) arrive as a Poisson process per worker
  (mean gap ``pause_every_ms``); a pause lasts uniform
  ``[pause_min, pause_max]`` leases. During a pause the worker does nothing
  (its handler makes no progress, timers and replies wait); on resuming it
  first checks its fence.
* **Crashes**: with probability ``crash_prob`` per task, the worker crashes
  at a uniform point of the handler. A crashed process never comes back;
  a *new* process (new pid) starts ``restart_ms`` later in its place, with
  the same clock.
* **Supervisors** (``supervisors`` of them, each with its own clock) list the
  leased tasks every ``interval_ms`` of their own clock.

Strategies (the workers are identical; only the revoke rule differs):

* ``observed``: sokka's. Mark with the supervisor's own clock, sweep, execute
  the ``RevokeLease`` commands, settle. It also wakes at ``next_expiry``.
* ``deadline``: the worker sends ``expires_at = its wall clock + lease`` with
  its reserve and each keepalive (kept in a side table keyed by
  ``(task_id, attempt)``); a supervisor revokes a listed running task when its
  own wall clock passes ``expires_at`` (``revoke_lease`` with the
  ``record_ver`` it read: compare-and-set still applies).
* ``store-clock``: the deadline is ``store time + lease`` at each write, and a
  listing marks the tasks whose deadline the store time has passed. The
  store's clock is ``t`` until ``store_step_at_ms``, then ``t +
  store_step_ms``: an NTP step on the database host, or a failover to a
  replica whose clock differs. ``observed`` and ``deadline`` never read it.

Limits: no network partitions or lost messages, no supervisor pauses or
crashes, no snoozes or handler failures, no task arrivals after the start,
and a listing is one atomic snapshot.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Final, Literal

from returns.result import Success

from sokka.adapters.memory import MemoryStore
from sokka.adapters.store import execute
from sokka.core import holding
from sokka.core.backoff import Backoff, Jitter
from sokka.core.commands import ExtendLeases, LeaseToken, RevokeLease, RevokeOutcome
from sokka.core.errors import ValidationError
from sokka.core.holding import Discarded, Holdings, Recording, WorkerPolicy
from sokka.core.outcomes import OkOutcome
from sokka.core.supervision import EMPTY, LeasePolicy, Monitored, mark, next_expiry, settle, sweep
from sokka.core.task import Status, Task, TaskSpec

__all__ = [
    "SCENARIOS",
    "STRATEGIES",
    "Report",
    "Scenario",
    "Strategy",
    "compare",
    "format_table",
    "scenario_named",
    "simulate",
]

Strategy = Literal["observed", "deadline", "store-clock"]
STRATEGIES: Final[tuple[Strategy, ...]] = ("observed", "deadline", "store-clock")
TOPIC: Final = "sim"
HOUR_MS: Final = 3_600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Every parameter of a run. Durations in ms; fractions are of the lease."""

    workers: int = 8
    tasks: int = 200
    lease_ms: int = 10_000
    keepalive: float = 0.7
    fence: float = 0.9
    duration_min: float = 0.2
    duration_max: float = 3.0
    poll_ms: int = 100
    poll_cap_ms: int = 2_000
    supervisors: int = 2
    interval_ms: int = 1_000
    latency_ms: int = 5
    skew_ms: int = 0
    drift: float = 0.0
    crash_prob: float = 0.0
    restart_ms: int = 5_000
    pause_every_ms: int = 0
    pause_min: float = 0.1
    pause_max: float = 2.0
    store_step_ms: int = 0
    store_step_at_ms: int = 0
    horizon_ms: int | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "tasks", "lease_ms", "supervisors", "interval_ms", "poll_ms"):
            if getattr(self, name) < 1:
                raise ValidationError(name, "must be at least 1")
        for name in ("latency_ms", "skew_ms", "restart_ms", "pause_every_ms", "store_step_at_ms"):
            if getattr(self, name) < 0:
                raise ValidationError(name, "must not be negative")
        if not 0 < self.keepalive < 1:
            raise ValidationError("keepalive", "must be a fraction of the lease in (0, 1)")
        if not self.keepalive < self.fence < 1:
            raise ValidationError("fence", "must be a fraction of the lease in (keepalive, 1)")
        if not 0 <= self.drift < 0.5:
            raise ValidationError("drift", "must be in [0, 0.5)")
        if not 0 <= self.crash_prob <= 1:
            raise ValidationError("crash_prob", "must be a probability")
        if not 0 < self.duration_min <= self.duration_max:
            raise ValidationError("duration_min", "need 0 < duration_min <= duration_max")
        if not 0 < self.pause_min <= self.pause_max:
            raise ValidationError("pause_min", "need 0 < pause_min <= pause_max")

    @property
    def horizon(self) -> int:
        """When the run stops at the latest: ample time to finish every task."""
        if self.horizon_ms is not None:
            return self.horizon_ms
        mean = (self.duration_min + self.duration_max) / 2 * self.lease_ms
        work = self.tasks * mean / self.workers
        return int(4 * work + 30 * self.lease_ms)


#: Named scenarios (``sokka simulate NAME``); any field can be overridden.
SCENARIOS: Final[dict[str, Scenario]] = {
    "skew": Scenario(skew_ms=HOUR_MS),
    "drift": Scenario(drift=0.05),
    "pauses": Scenario(pause_every_ms=60_000),
    "crashes": Scenario(crash_prob=0.1),
    "mixed": Scenario(
        skew_ms=HOUR_MS, drift=0.02, pause_every_ms=120_000, crash_prob=0.05, latency_ms=20
    ),
    # `sokka demo`'s world: 4 workers, 300 tasks of 100-400 ms, a 2 s lease, one
    # supervisor listing every 0.5 s; here workers crash instead of being killed.
    "demo": Scenario(
        workers=4, tasks=300, lease_ms=2_000, duration_min=0.05, duration_max=0.2,
        supervisors=1, interval_ms=500, latency_ms=1, crash_prob=0.05, poll_ms=20,
    ),
    # The database host's clock steps 30 s forward mid-run (an NTP correction).
    "store-step": Scenario(store_step_ms=30_000, store_step_at_ms=100_000),
    # A failover to a replica whose clock is 2 minutes behind, while workers crash.
    "store-step-back": Scenario(
        store_step_ms=-120_000, store_step_at_ms=150_000, crash_prob=0.2
    ),
}


@dataclass(frozen=True, slots=True)
class Report:
    """The metrics of one strategy on one scenario and seed."""

    strategy: str
    seed: int
    tasks: int
    terminated: int
    lost: int
    revocations: int
    false_revocations: int
    duplicates: int
    same_attempt_holders: int
    crashes: int
    rescues: int
    rescue_p50: float | None
    rescue_p99: float | None
    rescue_max: float | None
    wasted_ms: int
    store_writes: int
    end_ms: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# -- clocks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Clock:
    """A process's wall clock: ``offset + t + floor(drift * t)``."""

    offset: int
    drift: float

    def at(self, t: int) -> int:
        return self.offset + t + math.floor(self.drift * t)

    def when(self, local: int) -> int:
        """The first virtual time at which this clock reads ``local`` or more."""
        t = max(0, math.ceil((local - self.offset) / (1 + self.drift)) - 1)
        while self.at(t) < local:
            t += 1
        return t


# -- the run -------------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    slot: int
    pid: str
    clock: _Clock
    rng: random.Random
    holdings: Holdings  #: the worker core's value: every lease decision reads it
    alive: bool = True
    paused_until: int = -1
    last_pause_end: int = -(10**12)
    empty_polls: int = 0
    task: LeaseToken | None = None
    duration: int = 0
    done_ms: int = 0  # handler work done before the current running stretch
    resumed_at: int = 0
    running: bool = False  # handler running (not finished, not dropped)
    finishing: bool = False  # outcome sent, reply not yet received
    token: int = 0  # invalidates handler events of a dropped task
    wake_at: int | None = None  # virtual time of the core wake-up armed


@dataclass(slots=True)
class _Supervisor:
    name: str
    clock: _Clock
    monitored: Monitored = field(default_factory=lambda: EMPTY)
    wake: int = -1  # virtual time of the next scheduled cycle


class _Run:
    def __init__(self, scenario: Scenario, strategy: Strategy, seed: int) -> None:
        self.s = scenario
        self.strategy = strategy
        self.seed = seed
        self.now = 0
        self.heap: list[tuple[int, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.store = MemoryStore(clock=self._store_now, new_id=self._no_id)
        self.policy = LeasePolicy(
            lease_time_ms=scenario.lease_ms, default_snooze_ms=scenario.lease_ms
        )
        self.worker_policy = WorkerPolicy(
            lease_time_ms=scenario.lease_ms,
            keepalive_ratio=scenario.keepalive,
            fence_ratio=scenario.fence,
        )
        self.backoff = Backoff(
            base_ms=scenario.poll_ms,
            cap_ms=max(scenario.poll_ms, scenario.poll_cap_ms),
            jitter=Jitter.EQUAL,
        )
        self.expires: dict[tuple[str, int], int] = {}
        self.holders: dict[tuple[str, int], _Worker] = {}
        self.active: dict[str, set[tuple[str, int]]] = {}  # task -> (pid, attempt) running
        self.crashed: dict[tuple[str, int], int] = {}  # lease -> crash time
        self.rescue: list[int] = []
        self.terminated = 0
        self.revocations = 0
        self.false_revocations = 0
        self.duplicates = 0
        self.same_attempt = 0
        self.crashes = 0
        self.wasted = 0
        self.writes = 0
        actors = random.Random(f"{seed}:actors")
        self.workers = [
            self._new_worker(i, f"w{i}.0", self._clock(actors), random.Random(f"{seed}:worker:{i}"))
            for i in range(scenario.workers)
        ]
        self.supervisors = [
            _Supervisor(name=f"s{i}", clock=self._clock(actors))
            for i in range(scenario.supervisors)
        ]

    def _new_worker(self, slot: int, pid: str, clock: _Clock, rng: random.Random) -> _Worker:
        return _Worker(
            slot=slot, pid=pid, clock=clock, rng=rng,
            holdings=holding.holdings(pid, self.worker_policy),
        )  # fmt: skip

    def _store_now(self) -> int:
        """The store's own clock: virtual time, stepped once if the scenario says so."""
        if self.s.store_step_ms and self.now >= self.s.store_step_at_ms:
            return self.now + self.s.store_step_ms
        return self.now

    @staticmethod
    def _no_id() -> str:  # pragma: no cover - every task is created with an id
        raise AssertionError("the simulator names every task")

    def _clock(self, rng: random.Random) -> _Clock:
        offset = rng.randint(-self.s.skew_ms, self.s.skew_ms) if self.s.skew_ms else 0
        drift = rng.uniform(-self.s.drift, self.s.drift) if self.s.drift else 0.0
        return _Clock(offset, drift)

    # -- the event loop --------------------------------------------------------

    def at(self, t: int, action: Callable[[], None]) -> None:
        heapq.heappush(self.heap, (max(t, self.now), next(self.seq), action))

    def call(self, effect: Callable[[], None]) -> None:
        """A store call: ``effect`` runs when it reaches the store."""
        self.at(self.now + self.s.latency_ms, effect)

    def reply(self, action: Callable[[], None]) -> None:
        self.at(self.now + self.s.latency_ms, action)

    def run(self) -> Report:
        self.store.create_tasks(
            [TaskSpec(topic=TOPIC, task_id=f"t{i:05d}") for i in range(self.s.tasks)]
        )
        for w in self.workers:
            self._start_process(w)
        for sup in self.supervisors:
            self._schedule_cycle(sup, 0)
        horizon = self.s.horizon
        while self.heap and self.terminated < self.s.tasks:
            t, _, action = heapq.heappop(self.heap)
            if t > horizon:
                break
            self.now = t
            action()
        return self._report()

    # -- workers ---------------------------------------------------------------

    def _start_process(self, w: _Worker) -> None:
        self.at(self.now + w.rng.randrange(self.s.poll_ms), lambda: self._poll(w, w.pid))
        self._schedule_pause(w, w.pid)

    def _live(self, w: _Worker, pid: str, retry: Callable[[], None]) -> bool:
        """True when the process ``pid`` may act now; defers the action past a pause."""
        if not w.alive or w.pid != pid:
            return False
        if self.now < w.paused_until:
            self.at(w.paused_until, retry)
            return False
        return True

    def _poll(self, w: _Worker, pid: str) -> None:
        if not self._live(w, pid, lambda: self._poll(w, pid)):
            return
        if w.task is not None:
            return  # it holds a task already (a stale poll)
        sent_local = w.clock.at(self.now)

        def effect() -> None:
            self.writes += 1
            reserved = self.store.reserve_tasks(TOPIC, pid, limit=1)
            for task in reserved:
                key = (task.task_id, task.attempt)
                self.holders[key] = w
                self._set_deadline(key, sent_local)
            got = reserved[0] if reserved else None
            self.reply(lambda: self._reserved(w, pid, got, sent_local))

        self.call(effect)

    def _reserved(self, w: _Worker, pid: str, task: Task | None, sent_local: int) -> None:
        if not self._live(w, pid, lambda: self._reserved(w, pid, task, sent_local)):
            return
        if task is None:
            delay = max(1, self.backoff.delay_ms(w.empty_polls, w.rng.random()))
            w.empty_polls += 1
            self.at(self.now + delay, lambda: self._poll(w, pid))
            return
        w.empty_polls = 0
        lease = (task.task_id, task.attempt)
        # The lease counts from the reserve's send time, on the worker's clock.
        w.holdings = holding.take(w.holdings, [task], sent_local)
        w.holdings, _ = holding.started(w.holdings, lease, w.clock.at(self.now))
        w.task = LeaseToken(task.task_id, task.attempt)
        w.token += 1
        span = w.rng.uniform(self.s.duration_min, self.s.duration_max) * self.s.lease_ms
        w.duration = max(1, int(span))
        w.done_ms = 0
        w.finishing = False
        self._resume_handler(w)
        if w.rng.random() < self.s.crash_prob:
            crash_at = self.now + w.rng.randrange(w.duration)
            self.at(crash_at, lambda: self._crash(w, pid))
        self._arm(w)

    def _resume_handler(self, w: _Worker) -> None:
        assert w.task is not None
        w.running = True
        w.resumed_at = self.now
        token = w.token
        pid = w.pid
        self.at(self.now + w.duration - w.done_ms, lambda: self._handler_done(w, pid, token))
        holders = self.active.setdefault(w.task.task_id, set())
        if any(p != pid for p, _ in holders):
            self.duplicates += 1
        if any(p != pid and a == w.task.attempt for p, a in holders):
            self.same_attempt += 1
        holders.add((pid, w.task.attempt))

    def _stop_handler(self, w: _Worker) -> None:
        """The handler stops running (finished, dropped, paused or crashed)."""
        if w.task is None or not w.running:
            return
        w.running = False
        w.done_ms += self.now - w.resumed_at
        self.active.get(w.task.task_id, set()).discard((w.pid, w.task.attempt))

    def _drop(self, w: _Worker, *, wasted: bool) -> None:
        """The worker lets go of its task; its work is wasted if the outcome was refused."""
        if w.task is None:
            return
        self._stop_handler(w)
        if wasted:
            self.wasted += w.done_ms
        key = (w.task.task_id, w.task.attempt)
        if self.holders.get(key) is w:
            del self.holders[key]
        w.task = None
        w.token += 1
        w.finishing = False
        self.at(self.now, lambda: self._poll(w, w.pid))

    def _lost(self, w: _Worker, leases: Sequence[tuple[str, int]]) -> None:
        """The core gave these leases up (fence, refusal): drop the task if it is one."""
        if w.task is not None and (w.task.task_id, w.task.attempt) in leases:
            self._drop(w, wasted=True)

    # -- the worker core's timer: wake at next_wakeup, on the worker's own clock --

    def _arm(self, w: _Worker) -> None:
        wakeup = holding.next_wakeup(w.holdings)
        if wakeup is None:
            return
        t = max(self.now, w.clock.when(wakeup))
        if w.wake_at is not None and self.now <= w.wake_at <= t:
            return  # a wake-up no later than this one is armed already
        w.wake_at = t
        pid = w.pid
        self.at(t, lambda: self._wake(w, pid, t))

    def _wake(self, w: _Worker, pid: str, t: int) -> None:
        if w.wake_at != t or not w.alive or w.pid != pid:
            return  # superseded by an earlier wake-up, or the process is gone
        if self.now < w.paused_until:
            w.wake_at = w.paused_until
            self.at(w.paused_until, lambda: self._wake(w, pid, w.paused_until))
            return
        w.wake_at = None
        local = w.clock.at(self.now)
        w.holdings, cancels = holding.tick(w.holdings, local)
        self._lost(w, [c.lease for c in cancels if c.why.loses_lease])
        w.holdings, command = holding.due(w.holdings, local)
        if command is not None:
            self._send_keepalive(w, pid, command)
        self._arm(w)

    def _send_keepalive(self, w: _Worker, pid: str, command: ExtendLeases) -> None:
        def effect() -> None:
            self.writes += 1
            results = self.store.extend_leases(pid, list(command.leases))
            for token, result in zip(command.leases, results, strict=True):
                if isinstance(result, Success):
                    self._set_deadline((token.task_id, token.attempt), command.sent_ms)
            self.reply(lambda: self._kept(w, pid, command, results))

        self.call(effect)

    def _kept(self, w: _Worker, pid: str, command: ExtendLeases, results: Sequence[Any]) -> None:
        if not self._live(w, pid, lambda: self._kept(w, pid, command, results)):
            return
        w.holdings, cancels = holding.acknowledged(w.holdings, command, results)
        self._lost(w, [c.lease for c in cancels])
        self._arm(w)

    # -- the outcome -------------------------------------------------------------

    def _handler_done(self, w: _Worker, pid: str, token: int) -> None:
        if w.token != token or not self._live(w, pid, lambda: self._handler_done(w, pid, token)):
            return
        if not w.running:  # paused and resumed: a fresh completion event is scheduled
            return
        if w.done_ms + self.now - w.resumed_at < w.duration:
            return
        assert w.task is not None
        self._stop_handler(w)
        lease = (w.task.task_id, w.task.attempt)
        local = w.clock.at(self.now)
        w.holdings, verdict = holding.finished(w.holdings, lease, OkOutcome(), local)
        if isinstance(verdict, Discarded):
            self._drop(w, wasted=True)
            return
        w.holdings, recording = holding.record(w.holdings, [lease], local)
        w.finishing = True

        def effect() -> None:
            self.writes += 1
            results = self.store.finish_many(list(recording.finishes))
            self.terminated += sum(isinstance(r, Success) for r in results)
            self.reply(lambda: self._finished(w, pid, token, recording, results))

        self.call(effect)

    def _finished(
        self,
        w: _Worker,
        pid: str,
        token: int,
        recording: Recording,
        results: Sequence[Any],
    ) -> None:
        if w.token != token or not self._live(
            w, pid, lambda: self._finished(w, pid, token, recording, results)
        ):
            return
        w.holdings, _ = holding.recorded(w.holdings, recording, results)
        self._drop(w, wasted=not all(isinstance(r, Success) for r in results))

    # -- pauses and crashes ----------------------------------------------------------

    def _schedule_pause(self, w: _Worker, pid: str) -> None:
        if not self.s.pause_every_ms:
            return
        gap = max(1, int(w.rng.expovariate(1 / self.s.pause_every_ms)))
        self.at(self.now + gap, lambda: self._pause(w, pid))

    def _pause(self, w: _Worker, pid: str) -> None:
        if not w.alive or w.pid != pid:
            return
        length = max(1, int(w.rng.uniform(self.s.pause_min, self.s.pause_max) * self.s.lease_ms))
        self._stop_handler(w)
        w.paused_until = self.now + length
        token = w.token
        self.at(w.paused_until, lambda: self._resume(w, pid, token))

    def _resume(self, w: _Worker, pid: str, token: int) -> None:
        if not w.alive or w.pid != pid:
            return
        w.last_pause_end = self.now
        self._schedule_pause(w, pid)
        if w.token != token or w.task is None or w.finishing:
            return
        lease = (w.task.task_id, w.task.attempt)
        if not holding.live(w.holdings, lease, w.clock.at(self.now)):
            # past its fence: the core gives it up before the handler goes on
            w.holdings, _ = holding.tick(w.holdings, w.clock.at(self.now))
            self._drop(w, wasted=True)
            return
        self._resume_handler(w)

    def _crash(self, w: _Worker, pid: str) -> None:
        if not self._live(w, pid, lambda: self._crash(w, pid)):
            return
        self._stop_handler(w)
        w.alive = False
        if w.task is not None:
            held = self.store.get_task(w.task.task_id)
            if held.status is Status.RUNNING and (held.pid, held.attempt) == (pid, w.task.attempt):
                # The crash orphans a live lease: only a supervisor can rescue it.
                self.crashes += 1
                self.crashed[(w.task.task_id, w.task.attempt)] = self.now
        for key, holder in list(self.holders.items()):
            if holder is w:
                del self.holders[key]
        generation = int(pid.rsplit(".", 1)[1]) + 1

        def restart() -> None:
            fresh = self._new_worker(w.slot, f"w{w.slot}.{generation}", w.clock, w.rng)
            self.workers[w.slot] = fresh
            self._start_process(fresh)

        self.at(self.now + self.s.restart_ms, restart)

    # -- deadlines (the two alternative strategies) -----------------------------

    def _set_deadline(self, key: tuple[str, int], sent_local: int) -> None:
        if self.strategy == "deadline":
            self.expires[key] = sent_local + self.s.lease_ms
        elif self.strategy == "store-clock":
            self.expires[key] = self._store_now() + self.s.lease_ms

    # -- supervisors -----------------------------------------------------------

    def _schedule_cycle(self, sup: _Supervisor, t: int) -> None:
        if sup.wake > self.now and sup.wake <= t:
            return  # a cycle is already due sooner
        sup.wake = t
        self.at(t, lambda: self._cycle(sup, t))

    def _cycle(self, sup: _Supervisor, t: int) -> None:
        if sup.wake != t:
            return  # superseded by an earlier wake-up
        sup.wake = -1

        def effect() -> None:
            tasks: list[Task] = []
            cursor: str | None = None
            while True:
                page = self.store.list_leased_tasks(TOPIC, cursor)
                tasks.extend(page.tasks)
                cursor = page.next_cursor
                if cursor is None:
                    break
            expired = frozenset(
                task.task_id
                for task in tasks
                if self.strategy == "store-clock"
                and task.status is Status.RUNNING
                and self._store_now()
                > self.expires.get((task.task_id, task.attempt), self._store_now())
            )
            self.reply(lambda: self._listed(sup, tuple(tasks), expired))

        self.call(effect)
        local = sup.clock.at(self.now)
        self._schedule_cycle(sup, sup.clock.when(local + self.s.interval_ms))

    def _listed(self, sup: _Supervisor, tasks: tuple[Task, ...], expired: frozenset[str]) -> None:
        local = sup.clock.at(self.now)
        commands: list[RevokeLease] = []
        if self.strategy == "observed":
            sup.monitored = mark(sup.monitored, tasks, local, self.policy)
            commands.extend(sweep(sup.monitored, local))
            due = next_expiry(sup.monitored)
            if due is not None:
                self._schedule_cycle(sup, sup.clock.when(due + 1))
        else:
            for task in tasks:
                if task.status is not Status.RUNNING:
                    continue
                if self.strategy == "deadline":
                    deadline = self.expires.get((task.task_id, task.attempt))
                    late = deadline is not None and local > deadline
                else:
                    late = task.task_id in expired
                if late:
                    commands.append(
                        RevokeLease(
                            task_id=task.task_id,
                            record_ver=task.record_ver,
                            status=task.status,
                            overdue_ms=0,
                        )
                    )
        for command in commands:
            self.call(partial(self._revoke, sup, command))

    def _revoke(self, sup: _Supervisor, command: RevokeLease) -> None:
        self.writes += 1
        before = self.store.get_task(command.task_id)
        result = execute(self.store, command)
        if isinstance(result, Success):
            self._revoked((before.task_id, before.attempt))
        outcome = RevokeOutcome(command=command, result=result)
        if self.strategy == "observed":
            self.reply(lambda: setattr(sup, "monitored", settle(sup.monitored, [outcome])))

    def _revoked(self, key: tuple[str, int]) -> None:
        self.revocations += 1
        crashed_at = self.crashed.pop(key, None)
        if crashed_at is not None:
            self.rescue.append(self.now - crashed_at)
        holder = self.holders.get(key)
        if (
            holder is not None
            and holder.alive
            and self.now >= holder.paused_until
            and self.now - holder.last_pause_end >= self.s.lease_ms
        ):
            self.false_revocations += 1

    # -- the report ------------------------------------------------------------

    def _report(self) -> Report:
        lease = self.s.lease_ms
        rescue = sorted(self.rescue)

        def rank(q: float) -> float | None:
            if not rescue:
                return None
            return round(rescue[min(len(rescue) - 1, math.ceil(q * len(rescue)) - 1)] / lease, 3)

        return Report(
            strategy=self.strategy,
            seed=self.seed,
            tasks=self.s.tasks,
            terminated=self.terminated,
            lost=self.s.tasks - self.terminated,
            revocations=self.revocations,
            false_revocations=self.false_revocations,
            duplicates=self.duplicates,
            same_attempt_holders=self.same_attempt,
            crashes=self.crashes,
            rescues=len(rescue),
            rescue_p50=rank(0.5),
            rescue_p99=rank(0.99),
            rescue_max=round(rescue[-1] / lease, 3) if rescue else None,
            wasted_ms=self.wasted,
            store_writes=self.writes,
            end_ms=self.now,
        )


def simulate(scenario: Scenario, strategy: Strategy = "observed", seed: int = 0) -> Report:
    """Run one strategy on ``scenario`` with ``seed``: the same inputs give the same report."""
    if strategy not in STRATEGIES:
        raise ValidationError(
            "strategy", f"must be one of {', '.join(STRATEGIES)} (got {strategy!r})"
        )
    return _Run(scenario, strategy, seed).run()


def compare(
    scenario: Scenario, seed: int = 0, strategies: Sequence[Strategy] = STRATEGIES
) -> list[Report]:
    """Every strategy on the same scenario and seed."""
    return [simulate(scenario, strategy, seed) for strategy in strategies]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(scenario_name: str, scenario: Scenario, reports: Sequence[Report]) -> str:
    """A plain-text comparison of the strategies (deterministic, byte for byte)."""
    seed = reports[0].seed if reports else 0
    head = (
        f"scenario {scenario_name}, seed {seed}: {scenario.tasks} tasks, "
        f"{scenario.workers} workers, "
        f"{scenario.supervisors} supervisors, lease {scenario.lease_ms} ms, "
        f"keepalive {scenario.keepalive:g} lease, skew +-{scenario.skew_ms} ms, "
        f"drift +-{scenario.drift:g}, crash {scenario.crash_prob:g}/task, "
        f"pause every {scenario.pause_every_ms} ms, latency {scenario.latency_ms} ms"
    )
    columns = (
        "strategy", "false revokes", "duplicates", "lost", "revokes", "crashes",
        "rescue p50", "p99", "max (leases)", "wasted s", "writes",
    )  # fmt: skip
    rows = [
        (
            r.strategy,
            str(r.false_revocations),
            str(r.duplicates),
            str(r.lost),
            str(r.revocations),
            str(r.crashes),
            _num(r.rescue_p50),
            _num(r.rescue_p99),
            _num(r.rescue_max),
            f"{r.wasted_ms / 1000:.1f}",
            str(r.store_writes),
        )
        for r in reports
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = [head, ""]
    lines.append(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        )
    )
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ParameterSweep:
    """One parameter varied across runs, and the metric to watch (for ``--plot``)."""

    field: str  #: the ``Scenario`` field varied
    values: tuple[float, ...]
    scale: float  #: divide the values by this for the axis
    axis: str
    metric: str  #: the ``Report`` attribute plotted
    metric_label: str


#: What ``sokka simulate NAME --plot`` varies for each scenario.
SWEEPS: Final[dict[str, ParameterSweep]] = {
    "skew": ParameterSweep(
        "skew_ms", (0, 1_000, 10_000, 60_000, 600_000, HOUR_MS), 60_000,
        "largest clock offset between processes (minutes)", "false_revocations",
        "false revocations",
    ),
    "drift": ParameterSweep(
        "drift", (0.0, 0.01, 0.02, 0.05, 0.1, 0.2), 0.01,
        "largest clock drift (%)", "false_revocations", "false revocations",
    ),
    "pauses": ParameterSweep(
        "pause_every_ms", (0, 480_000, 240_000, 120_000, 60_000, 30_000), 1_000,
        "mean time between stop-the-world pauses (s; 0: none)", "duplicates",
        "duplicate executions",
    ),
    "crashes": ParameterSweep(
        "crash_prob", (0.0, 0.05, 0.1, 0.2, 0.3), 0.01,
        "crash probability per task (%)", "rescue_max", "slowest rescue (leases)",
    ),
    "mixed": ParameterSweep(
        "skew_ms", (0, 1_000, 10_000, 60_000, 600_000, HOUR_MS), 60_000,
        "largest clock offset between processes (minutes)", "false_revocations",
        "false revocations",
    ),
    "demo": ParameterSweep(
        "interval_ms", (100, 250, 500, 1_000, 2_000), 1_000,
        "supervisor listing interval (s)", "rescue_max", "slowest rescue (leases)",
    ),
    "store-step": ParameterSweep(
        "store_step_ms", (0, 1_000, 5_000, 10_000, 30_000, 60_000), 1_000,
        "forward step of the store's clock (s)", "false_revocations", "false revocations",
    ),
    "store-step-back": ParameterSweep(
        "store_step_ms", (0, -10_000, -30_000, -60_000, -120_000, -300_000), -1_000,
        "backward step of the store's clock (s)", "rescue_max", "slowest rescue (leases)",
    ),
}  # fmt: skip


def sweep_parameter(
    name: str, scenario: Scenario, seed: int = 0, strategies: Sequence[Strategy] = STRATEGIES
) -> dict[str, list[tuple[float, float]]]:
    """For each strategy, (x, metric) over the named scenario's sweep (deterministic)."""
    plan = SWEEPS[name]
    points: dict[str, list[tuple[float, float]]] = {s: [] for s in strategies}
    for value in plan.values:
        current = getattr(scenario, plan.field)
        changes: dict[str, Any] = {plan.field: value if isinstance(current, float) else int(value)}
        varied = replace(scenario, **changes)
        for report in compare(varied, seed, strategies):
            measured = getattr(report, plan.metric)
            points[report.strategy].append(
                (value / plan.scale, 0.0 if measured is None else float(measured))
            )
    return points


def scenario_named(name: str, **overrides: object) -> Scenario:
    """A named scenario with some fields replaced (``None`` values are ignored)."""
    if name not in SCENARIOS:
        raise ValidationError("scenario", f"must be one of {', '.join(SCENARIOS)} (got {name!r})")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(SCENARIOS[name], **changes)  # type: ignore[arg-type]
