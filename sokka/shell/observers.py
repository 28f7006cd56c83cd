"""What the runtimes tell an observer: the events that metrics (or anything else) count.

The threaded and asyncio workers share ``WorkerCore`` and the two supervisors
share ``SupervisorCore``; each core calls its ``observer`` at the few points
where something happened, in every runtime alike. The default observers do
nothing, so a runtime without metrics pays one method call per event.
``sokka.shell.metrics`` implements both for Prometheus.

An observer is called on the runtime's own threads (or its event loop), often
under the worker's lock: it must be quick, must not block, and must not call
back into the worker or the supervisor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

from sokka.core.task import Task

if TYPE_CHECKING:
    from sokka.core.commands import RevokeOutcome
    from sokka.shell.supervisor import SupervisorReport

__all__ = [
    "NO_SUPERVISOR_OBSERVER",
    "NO_WORKER_OBSERVER",
    "HandlerResult",
    "Recorded",
    "StoreCall",
    "SupervisorObserver",
    "WorkerObserver",
]

#: How a handler's call ended, as the runtime saw it (before the store answered).
HandlerResult = Literal["ok", "failed", "snoozed", "cancelled"]
#: An outcome the store recorded: a success, a failed attempt, a snooze, or a lease
#: handed back unfinished at shutdown.
Recorded = Literal["succeeded", "failed", "snoozed", "released"]
#: The worker's store calls that can fail and be ridden out.
StoreCall = Literal["reserve_tasks", "extend_leases", "finish_many"]


class WorkerObserver:
    """Told what a worker did. Every method is a no-op here; override what you count.

    ``topic`` is the topic of the task concerned.
    """

    def started(self, task: Task) -> None:
        """A handler started on ``task``."""

    def finished(self, task: Task, result: HandlerResult, duration_ms: int) -> None:
        """A handler returned (or raised) after ``duration_ms`` on the worker's clock.

        Whether its outcome is recorded is told later, by ``recorded`` (or by
        ``fenced``, when the lease was lost meanwhile).
        """

    def recorded(self, topic: str, outcome: Recorded) -> None:
        """The store recorded an outcome of a task of ``topic``."""

    def timed_out(self, topic: str) -> None:
        """A handler ran past its timeout: it is cancelled and the attempt fails."""

    def lost(self, topic: str) -> None:
        """A lease was given up: the store refused it, or the self-fence passed."""

    def fenced(self, topic: str) -> None:
        """A handler's outcome was discarded because its lease had been lost."""

    def operator_cancelled(self, topic: str) -> None:
        """An operator cancelled a task this worker held: its handler was cancelled
        (or its outcome dropped), and nothing was reported."""

    def store_error(self, call: StoreCall, count: int = 1) -> None:
        """``count`` retryable store errors on ``call`` (the worker rides them out)."""

    def keepalive(self, leases: int, round_trip_ms: int) -> None:
        """A keepalive of ``leases`` leases was answered ``round_trip_ms`` after it was
        sent (a lease is credited from the send, so this is how late the news came)."""


class SupervisorObserver:
    """Told what a supervisor did. Every method is a no-op here."""

    def cycle(self, report: SupervisorReport, outcomes: Sequence[RevokeOutcome]) -> None:
        """One cycle ended: its report, and the outcome of every revoke (and wake) it
        executed, in order."""


NO_WORKER_OBSERVER: Final = WorkerObserver()
NO_SUPERVISOR_OBSERVER: Final = SupervisorObserver()
