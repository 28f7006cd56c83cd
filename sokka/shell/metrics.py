"""Prometheus metrics for workers, supervisors and the HTTP server (the ``metrics`` extra).

Each piece counts on a ``CollectorRegistry`` given to it, never on
prometheus-client's global one: several workers (or tests) in one process
keep their numbers apart, and a process exposes exactly what it runs.

* ``WorkerMetrics`` is a ``WorkerObserver``: ``watch(worker)`` makes the
  worker (threaded or asyncio) tell it what happens; the leases held and the
  keepalive lag are read from the worker's holdings when scraped.
* ``SupervisorMetrics`` is a ``SupervisorObserver``: it counts each cycle's
  revokes and wakes by outcome; the monitored leases are read when scraped.
* ``ServerMetrics`` wraps the HTTP application (``create_app`` does it) and
  counts requests by call and status, with their duration.

``serve_metrics(registry, host, port, token=...)`` exposes a registry at
``/metrics`` on a thread of its own (``sokka worker --metrics-port``, ``sokka
supervise --metrics-port``), behind a bearer token when given one
(``--metrics-token-file``); ``sokka serve`` answers ``/metrics`` itself,
behind its token. docs/operations.md lists every metric.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector
from returns.result import Failure, Success

from sokka.adapters.store import Counts
from sokka.core.commands import RevokeOutcome
from sokka.core.errors import NotFound, RetryableError, SokkaError
from sokka.core.task import Status, Task
from sokka.shell.observers import (
    HandlerResult,
    Recorded,
    StoreCall,
    SupervisorObserver,
    WorkerObserver,
)
from sokka.shell.supervisor import SupervisorCore, SupervisorReport
from sokka.shell.tokens import WRONG_TOKEN, Throttle, bearer_refusal, require_token
from sokka.shell.worker import WorkerCore

__all__ = [
    "CONTENT_TYPE",
    "MetricsServer",
    "ServerMetrics",
    "SupervisorMetrics",
    "WorkerMetrics",
    "exposition",
    "new_registry",
    "revoke_outcome",
    "serve_metrics",
]

_log = logging.getLogger("sokka.metrics")

#: The media type of ``exposition``'s answer (Prometheus' text format).
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

#: Handlers run from milliseconds to many minutes.
_HANDLER_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0,
)  # fmt: skip
#: Store calls and HTTP requests: milliseconds, up to a held long poll.
_CALL_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def new_registry() -> CollectorRegistry:
    """A registry of this process's own (not prometheus-client's global one)."""
    return CollectorRegistry(auto_describe=True)


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in Prometheus' text format (media type ``CONTENT_TYPE``)."""
    return generate_latest(registry)


class _Children:
    """A labelled metric's children, kept by label values: a dict lookup per event
    instead of ``labels()``'s checks and lock (a worker counts several events per task)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


# -- the worker ---------------------------------------------------------------------------


class WorkerMetrics(WorkerObserver):
    """A worker's counters, histograms and gauges, on ``registry``.

    ``watch`` any number of workers (each topic's worker of an app, say): their
    counts add up under the topic of each task.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._started = Counter(
            "sokka_worker_tasks_started", "Handlers started, by topic.", ["topic"],
            registry=registry,
        )  # fmt: skip
        self._outcomes = Counter(
            "sokka_worker_outcomes",
            "Outcomes the store recorded, by topic and outcome (succeeded, failed: an "
            "attempt that failed, retried or final; snoozed; released: handed back "
            "unfinished at shutdown).",
            ["topic", "outcome"],
            registry=registry,
        )
        self._timeouts = Counter(
            "sokka_worker_timeouts", "Handlers cancelled at their timeout (the attempt fails).",
            ["topic"], registry=registry,
        )  # fmt: skip
        self._fenced = Counter(
            "sokka_worker_fenced",
            "Handler outcomes discarded because their lease had been lost.",
            ["topic"],
            registry=registry,
        )
        self._lost = Counter(
            "sokka_worker_leases_lost",
            "Leases given up: a keepalive or an outcome refused, or the self-fence passed.",
            ["topic"],
            registry=registry,
        )
        self._durations = Histogram(
            "sokka_worker_handler_duration_seconds",
            "How long handlers ran, by topic and how they ended (ok, failed, snoozed, "
            "cancelled).",
            ["topic", "result"],
            buckets=_HANDLER_BUCKETS,
            registry=registry,
        )
        self._operator_cancels = Counter(
            "sokka_worker_operator_cancels",
            "Tasks an operator cancelled while this worker held them (nothing reported).",
            ["topic"],
            registry=registry,
        )
        self._store_errors = Counter(
            "sokka_worker_store_errors",
            "Retryable store errors the worker rode out, by store call.",
            ["call"],
            registry=registry,
        )
        self._keepalives = Histogram(
            "sokka_worker_keepalive_round_trip_seconds",
            "From sending a keepalive to its answer.",
            buckets=_CALL_BUCKETS,
            registry=registry,
        )
        # The events of every task: their children looked up once.
        self._started_in = _Children(self._started)
        self._outcome_in = _Children(self._outcomes)
        self._duration_in = _Children(self._durations)
        self._workers: list[WorkerCore] = []
        self._lock = threading.Lock()
        registry.register(_HoldingsCollector(self._watched))

    def watch(self, worker: WorkerCore) -> None:
        """Count what ``worker`` does (from now on), and read its leases when scraped;
        its embedded supervisor, if any, is not counted here (``SupervisorMetrics``)."""
        worker.observer = self
        with self._lock:
            self._workers.append(worker)
        for topic in worker.topics:  # every served topic shows, at zero at first
            self._started.labels(topic)

    def _watched(self) -> list[WorkerCore]:
        with self._lock:
            return list(self._workers)

    # -- WorkerObserver

    def started(self, task: Task) -> None:
        self._started_in(task.topic).inc()

    def finished(self, task: Task, result: HandlerResult, duration_ms: int) -> None:
        self._duration_in(task.topic, result).observe(duration_ms / 1000)

    def recorded(self, topic: str, outcome: Recorded) -> None:
        self._outcome_in(topic, outcome).inc()

    def timed_out(self, topic: str) -> None:
        self._timeouts.labels(topic).inc()

    def lost(self, topic: str) -> None:
        self._lost.labels(topic).inc()

    def fenced(self, topic: str) -> None:
        self._fenced.labels(topic).inc()

    def operator_cancelled(self, topic: str) -> None:
        self._operator_cancels.labels(topic).inc()

    def store_error(self, call: StoreCall, count: int = 1) -> None:
        self._store_errors.labels(call).inc(count)

    def keepalive(self, leases: int, round_trip_ms: int) -> None:
        self._keepalives.observe(round_trip_ms / 1000)


class _HoldingsCollector(Collector):
    """The gauges read from the workers' holdings at each scrape."""

    def __init__(self, workers: Callable[[], list[WorkerCore]]) -> None:
        self._workers = workers

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        held, lag = self._families()
        by_topic: dict[str, tuple[int, int]] = {}
        for worker in self._workers():
            for topic, leases in worker.leases_by_topic().items():
                count, longest = by_topic.get(topic, (0, 0))
                by_topic[topic] = (count + leases.held, max(longest, leases.keepalive_lag_ms))
        for topic, (count, longest) in sorted(by_topic.items()):
            held.add_metric([topic], count)
            lag.add_metric([topic], longest / 1000)
        return [held, lag]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        held = GaugeMetricFamily(
            "sokka_worker_leases_held",
            "Leases the worker holds now (waiting, running or being recorded), by topic.",
            labels=["topic"],
        )
        lag = GaugeMetricFamily(
            "sokka_worker_keepalive_lag_seconds",
            "The longest time a held lease has gone since its last successful keepalive "
            "(or its reserve) was sent; the worker gives a lease up at fence_ratio "
            "(0.9) of its lease time.",
            labels=["topic"],
        )
        return held, lag


# -- the supervisor -------------------------------------------------------------------------


def revoke_outcome(outcome: RevokeOutcome) -> tuple[str, str]:
    """``(kind, outcome)`` of one executed revoke, as the metrics label it.

    ``kind`` is ``revoke`` (a running task's expired lease) or ``wake`` (a
    snoozed task's). ``outcome``: ``revoked`` (back to starting), ``failed``
    (that was its last attempt), ``woken``, ``conflict`` (the task changed
    meanwhile: nothing done), ``not_found``, ``error`` (retryable: tried again
    next cycle).
    """
    kind = "wake" if outcome.command.status is Status.SNOOZED else "revoke"
    match outcome.result:
        case Success(task) if kind == "wake":
            return kind, "woken"
        case Success(task) if task.status is Status.FAILED:
            return kind, "failed"
        case Success(_):
            return kind, "revoked"
        case Failure(RetryableError()):
            return kind, "error"
        case Failure(NotFound()):
            return kind, "not_found"
        case _:
            return kind, "conflict"


class SupervisorMetrics(SupervisorObserver):
    """A supervisor's counters, histograms and gauges, on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._revocations = Counter(
            "sokka_supervisor_revocations",
            "Revokes of expired leases of running tasks, by outcome (revoked, failed: "
            "the last attempt was spent, conflict, not_found, error).",
            ["outcome"],
            registry=registry,
        )
        self._wakes = Counter(
            "sokka_supervisor_wakes",
            "Wakes of snoozed tasks, by outcome (woken, conflict, not_found, error).",
            ["outcome"],
            registry=registry,
        )
        self._cycles = Histogram(
            "sokka_supervisor_cycle_duration_seconds",
            "How long one cycle took: listing, revoking and settling.",
            buckets=_CALL_BUCKETS,
            registry=registry,
        )
        self._listed = Gauge(
            "sokka_supervisor_listed_leases",
            "Leased tasks the last cycle listed.",
            registry=registry,
        )
        self._listing_errors = Counter(
            "sokka_supervisor_listing_errors",
            "Listings of leased tasks that stopped early on a store error.",
            registry=registry,
        )
        self._supervisors: list[SupervisorCore] = []
        self._lock = threading.Lock()
        monitored = Gauge(
            "sokka_supervisor_monitored_leases",
            "Leases in the supervisor's memory (each with the version it last saw).",
            registry=registry,
        )
        monitored.set_function(self._monitored)
        # Shown at zero before the first cycle.
        for outcome in ("revoked", "failed", "conflict", "not_found", "error"):
            self._revocations.labels(outcome)
        for outcome in ("woken", "conflict", "not_found", "error"):
            self._wakes.labels(outcome)

    def watch(self, supervisor: SupervisorCore) -> None:
        """Count each cycle of ``supervisor`` (from now on) and read its memory when
        scraped."""
        supervisor.observer = self
        with self._lock:
            self._supervisors.append(supervisor)

    def _monitored(self) -> float:
        with self._lock:
            return float(sum(len(s.monitored) for s in self._supervisors))

    def cycle(self, report: SupervisorReport, outcomes: Sequence[RevokeOutcome]) -> None:
        for outcome in outcomes:
            kind, result = revoke_outcome(outcome)
            (self._wakes if kind == "wake" else self._revocations).labels(result).inc()
        self._cycles.observe(report.duration_ms / 1000)
        self._listed.set(report.listed)
        if report.listing_errors:
            self._listing_errors.inc(len(report.listing_errors))


# -- the HTTP server ----------------------------------------------------------------------

_ASGIApp = Callable[[dict[str, Any], Any, Any], Any]


class ServerMetrics:
    """The HTTP server's requests by call and status, and their duration.

    ``calls`` maps a request path to its call's name (``/v1/reserve_tasks`` to
    ``reserve_tasks``); any other path is counted under ``other``, so that
    requests for random paths cannot make a new series each.
    """

    def __init__(self, registry: CollectorRegistry, calls: Mapping[str, str]) -> None:
        self.registry = registry
        self._calls = dict(calls)
        self._requests = Counter(
            "sokka_http_requests", "Requests answered, by call and status.",
            ["call", "status"], registry=registry,
        )  # fmt: skip
        self._durations = Histogram(
            "sokka_http_request_duration_seconds",
            "From a request's arrival to the end of its answer, by call.",
            ["call"],
            buckets=_CALL_BUCKETS,
            registry=registry,
        )

    def watch_queue(self, count: Callable[[], Counts]) -> None:
        """Read the queue at each scrape with ``count`` (``store.count_tasks``): tasks
        by topic and status, the age of each topic's oldest ready task, and the
        failures of the last hour. One store call per scrape; run the exposition
        off the event loop."""
        self.registry.register(_QueueCollector(count))

    def call_of(self, path: str) -> str:
        """The ``call`` label of a request for ``path``."""
        call = self._calls.get(path)
        if call is not None:
            return call
        if path == "/ui" or path.startswith("/ui/"):
            return "ui"
        if path.startswith("/problems/"):
            return "problems"
        return "other"

    def middleware(self, app: _ASGIApp) -> _ASGIApp:
        """``app``, counting every HTTP request it answers (refusals included)."""
        return _Metered(app, self)

    def count(self, call: str, status: int, seconds: float) -> None:
        self._requests.labels(call, str(status)).inc()
        self._durations.labels(call).observe(seconds)


class _Metered:
    """ASGI middleware: time each HTTP request, and note the status it was answered."""

    def __init__(self, app: _ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what a client sees if the application fails before answering

        async def noting(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            self.metrics.count(
                self.metrics.call_of(scope["path"]), status, time.perf_counter() - began
            )


class _QueueCollector(Collector):
    """The gauges read from the store's counts at each scrape."""

    def __init__(self, count: Callable[[], Counts]) -> None:
        self._count = count

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        up, tasks, oldest, failed = self._families()
        try:
            counts = self._count()
        except SokkaError as error:
            _log.warning("metrics: counting the queue failed: %s", error)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        for topic in counts.topics:
            for status in Status:
                tasks.add_metric([topic.topic, str(status)], getattr(topic, status.value))
            age = counts.oldest_ready_age_ms(topic)
            oldest.add_metric([topic.topic], 0 if age is None else age / 1000)
            failed.add_metric([topic.topic], topic.failed_recently)
        return [up, tasks, oldest, failed]

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily
    ]:
        up = GaugeMetricFamily(
            "sokka_queue_counted", "1 when the store answered this scrape's count, else 0."
        )
        tasks = GaugeMetricFamily(
            "sokka_queue_tasks", "Tasks in the store, by topic and status.",
            labels=["topic", "status"],
        )  # fmt: skip
        oldest = GaugeMetricFamily(
            "sokka_queue_oldest_ready_age_seconds",
            "How long the topic's longest-waiting ready task has waited (0: none "
            "ready), on the store's clock.",
            labels=["topic"],
        )
        failed = GaugeMetricFamily(
            "sokka_queue_failed_last_hour", "Tasks of the topic that failed in the last hour.",
            labels=["topic"],
        )  # fmt: skip
        return up, tasks, oldest, failed


# -- exposing a registry --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running metrics endpoint: its URL, and how to stop it."""

    url: str
    stop: Callable[[], None]


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _guarded(app: Any, token: str, throttle: Throttle) -> Any:
    """The WSGI ``app``, answered only with ``Authorization: Bearer <token>`` (401
    otherwise; 429 for an address that sent too many wrong tokens)."""
    expected = token.encode()

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        address = str(environ.get("REMOTE_ADDR") or "unknown")
        wait_s = throttle.retry_after_s(address)
        if wait_s is not None:
            start_response("429 Too Many Requests", [
                ("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", str(wait_s)),
            ])  # fmt: skip
            return [f"too many wrong tokens: try again in {wait_s} s\n".encode()]
        header = environ.get("HTTP_AUTHORIZATION")
        # wsgiref joins repeated headers with ", ": a token never holds a comma.
        given = [] if header is None else [h.strip().encode("latin-1") for h in header.split(",")]
        refusal = bearer_refusal(given, expected)
        if refusal is None:
            return app(environ, start_response)
        if refusal == WRONG_TOKEN:
            throttle.wrong(address, "the metrics endpoint")
        challenge = 'Bearer realm="sokka-metrics"' + (', error="invalid_token"' if given else "")
        start_response("401 Unauthorized", [
            ("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", challenge),
        ])  # fmt: skip
        return [f"{refusal}\n".encode()]

    return guarded


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, *, token: str | None = None
) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` on a daemon thread (``port``
    0: a free one). An address that cannot be had raises ``OSError``.

    With ``token`` (``sokka.shell.tokens.require_token``'s rule), every request
    needs ``Authorization: Bearer <token>`` (401 otherwise), and an address that
    sends too many wrong ones is refused for a while (429, ``Throttle``).
    """
    if token is not None:
        require_token("token", token)
    family, *_, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    app = make_wsgi_app(registry)
    if token is not None:
        app = _guarded(app, token, Throttle(logger="sokka.metrics"))
    server = make_server(str(address[0]), port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="sokka-metrics", daemon=True)
    thread.start()
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return MetricsServer(f"http://{shown}:{bound}/metrics", stop)
