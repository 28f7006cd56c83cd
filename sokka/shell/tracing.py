"""OpenTelemetry spans from a task's enqueue to each attempt's run (optional).

Install the extra (``pip install 'sokka[tracing]'``, the OpenTelemetry API)
and configure a tracer provider (the OpenTelemetry SDK's, with an exporter):

* ``App.enqueue`` (both runtimes) runs in a PRODUCER span ``"publish <topic>"``
  and writes the W3C trace context of that span (``traceparent``, and
  ``tracestate`` when there is one) into the task's ``trace_context``: the
  context travels with the task, in every store and over the HTTP API;
* each attempt's handler run (both runtimes' workers) is a CONSUMER span
  ``"process <topic>"`` whose parent is the context the task carries, so every
  attempt of a task, retries included, is in the trace of its enqueue. The
  span is current while the handler runs: a span the handler starts is its
  child. It ends with status OK when the handler returned ``ok()`` or
  ``snoozed()``, ERROR when it failed, raised (the exception is recorded as
  an event), timed out or was cancelled; ``sokka.outcome`` says which.

Without the OpenTelemetry API, or without a configured tracer provider (the
API's default proxy, or its no-op provider), nothing is traced and no
context is stored: an attempt costs one check. The API is imported here
only, on first use; sokka imports and runs without it.

Tracing is the shell's: no lease decision reads a span or a context.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from returns.result import Failure, Result, Success

from sokka.core.errors import AlreadyExists, SokkaError, ValidationError
from sokka.core.outcomes import FailedOutcome, OkOutcome, SnoozedOutcome
from sokka.core.task import Task, TaskSpec, encode_trace_context

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "AttemptOutcome", "AttemptSpan", "Publishing", "PublishingMany", "TracerProviderLike",
    "Tracing",
]

#: The instrumentation scope of sokka's spans, and its ``messaging.system``.
SCOPE: Final = "sokka"
#: How an attempt ended, as its span's ``sokka.outcome`` attribute says.
AttemptOutcome = Literal["ok", "snoozed", "failed", "cancelled"]


class TracerProviderLike(Protocol):
    """What ``tracer_provider=`` takes: an OpenTelemetry ``TracerProvider`` (the
    SDK's ``opentelemetry.sdk.trace.TracerProvider``, or any other implementation
    of the API's). A protocol of sokka's own, so that annotating with it needs
    no import of OpenTelemetry."""

    def get_tracer(self, instrumenting_module_name: str, /) -> Any:
        """The tracer of an instrumentation scope (sokka asks for ``"sokka"``)."""
        ...


class _Api:
    """The few OpenTelemetry API names this module uses, imported once."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.context = context
        self.trace = trace
        self.unconfigured = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        # W3C trace context only (not the global propagator's baggage): a task
        # carries a header's worth, within MAX_TRACE_CONTEXT_BYTES.
        self.propagator = TraceContextTextMapPropagator()


_api: _Api | None = None
_api_tried = False


def _loaded_api() -> _Api | None:
    """The OpenTelemetry API, or None when it is not installed (imported once)."""
    global _api, _api_tried
    if not _api_tried:
        try:
            _api = _Api()
        except ImportError:
            _api = None
        _api_tried = True
    return _api


class Tracing:
    """Where sokka's spans go: ``tracer_provider``, or the global provider.

    ``tracer_provider``: an OpenTelemetry ``TracerProvider`` (the SDK's); None
    (the default) reads the global one (``opentelemetry.trace
    .set_tracer_provider``) at each span, so a provider configured after the
    app or worker was made is used. Nothing is traced while OpenTelemetry is
    not installed or no provider is configured.
    """

    __slots__ = ("_cached", "_provider")

    def __init__(self, tracer_provider: TracerProviderLike | None = None) -> None:
        self._provider = tracer_provider
        self._cached: tuple[object, Tracer] | None = None

    def tracer(self) -> Tracer | None:
        """The tracer of sokka's spans, or None when nothing is to be traced."""
        api = _api if _api_tried else _loaded_api()
        if api is None:
            return None
        provider = self._provider or api.trace.get_tracer_provider()
        if isinstance(provider, api.unconfigured):
            return None
        cached = self._cached
        if cached is not None and cached[0] is provider:
            return cached[1]
        tracer: Tracer = provider.get_tracer(SCOPE)
        self._cached = (provider, tracer)
        return tracer

    def publishing(self, spec: TaskSpec) -> AbstractContextManager[Publishing]:
        """Enqueue ``spec`` inside a PRODUCER span ``"publish <topic>"``: the block
        creates ``publishing.spec`` (``spec`` carrying the span's context) and
        tells ``publishing.created(task)``. Untraced: ``publishing.spec`` is
        ``spec`` itself, and nothing else happens. An exception leaving the
        block is recorded on the span, which ends with status ERROR."""
        tracer = self.tracer()
        if tracer is None:
            return Publishing(spec)
        return _publishing(tracer, spec)

    def publishing_many(self, specs: Sequence[TaskSpec]) -> AbstractContextManager[PublishingMany]:
        """``publishing`` for a batch created in one call (a scheduler's slots): a
        PRODUCER span ``"publish <topic>"`` per spec, each a child of the current
        context (a root where there is none) and none of them current, so the
        batch's spans are siblings. The block creates ``publishing.specs`` and
        tells ``publishing.created(results)``; a spec the store refused ends its
        span with status ERROR (one that exists already, made by an earlier run
        or another scheduler, does not). Untraced: the specs as they are."""
        tracer = self.tracer()
        if tracer is None:
            return PublishingMany(specs)
        return _publishing_many(tracer, specs)

    def attempt(self, task: Task, pid: str) -> AbstractContextManager[AttemptSpan]:
        """Run one attempt of ``task`` by worker ``pid`` inside a CONSUMER span
        ``"process <topic>"``, child of the context ``task`` carries (a root
        span when it carries none), current in the block. Untraced: a shared
        span that records nothing."""
        tracer = self.tracer()
        if tracer is None:
            return _UNTRACED_ATTEMPT
        return _TracedAttempt(tracer, task, pid)


class Publishing:
    """An enqueue in progress: the spec to create, and where to say it was created."""

    __slots__ = ("_span", "spec")

    def __init__(self, spec: TaskSpec, span: Span | None = None) -> None:
        #: The spec to create: carrying the publish span's context when traced.
        self.spec = spec
        self._span = span

    def created(self, task: Task) -> None:
        """The task was created: its id becomes the span's ``messaging.message.id``."""
        if self._span is not None:
            self._span.set_attribute("messaging.message.id", task.task_id)

    def __enter__(self) -> Publishing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class PublishingMany:
    """A batch's enqueue in progress: the specs to create, and where to say what
    the store answered (``Tracing.publishing_many``)."""

    __slots__ = ("_spans", "specs")

    def __init__(self, specs: Sequence[TaskSpec], spans: Sequence[Span] = ()) -> None:
        #: The specs to create: each carrying its publish span's context when traced.
        self.specs = list(specs)
        self._spans = spans

    def created(self, results: Sequence[Result[Task, SokkaError]]) -> None:
        """The store's answer, element by element: a task's id becomes its span's
        ``messaging.message.id``; a refusal (not ``AlreadyExists``) an ERROR."""
        api = _loaded_api()
        if not self._spans:  # untraced
            return
        for span, result in zip(self._spans, results, strict=True):
            match result:
                case Success(task):
                    span.set_attribute("messaging.message.id", task.task_id)
                case Failure(AlreadyExists()):
                    pass  # made already, by another scheduler or an earlier run
                case Failure(error) if api is not None:
                    span.set_status(api.trace.Status(api.trace.StatusCode.ERROR, str(error)))

    def __enter__(self) -> PublishingMany:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _publish_attributes(spec: TaskSpec) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": SCOPE,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": spec.topic,
    }
    if spec.task_id is not None:
        attributes["messaging.message.id"] = spec.task_id
    return attributes


@contextmanager
def _publishing_many(tracer: Tracer, specs: Sequence[TaskSpec]) -> Iterator[PublishingMany]:
    api = _loaded_api()
    assert api is not None
    kind = api.trace.SpanKind.PRODUCER
    spans = [
        tracer.start_span(f"publish {spec.topic}", kind=kind, attributes=_publish_attributes(spec))
        for spec in specs
    ]
    try:
        carrying = []
        for spec, span in zip(specs, spans, strict=True):
            carrier: dict[str, str] = {}
            api.propagator.inject(carrier, context=api.trace.set_span_in_context(span))
            carrying.append(_carrying(spec, carrier))
        yield PublishingMany(carrying, spans)
    except BaseException as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(api.trace.Status(api.trace.StatusCode.ERROR, str(error)))
        raise
    finally:
        for span in spans:
            span.end()


@contextmanager
def _publishing(tracer: Tracer, spec: TaskSpec) -> Iterator[Publishing]:
    api = _loaded_api()
    assert api is not None
    kind = api.trace.SpanKind.PRODUCER
    with tracer.start_as_current_span(
        f"publish {spec.topic}", kind=kind, attributes=_publish_attributes(spec)
    ) as span:
        carrier: dict[str, str] = {}
        api.propagator.inject(carrier)
        yield Publishing(_carrying(spec, carrier), span)


def _carrying(spec: TaskSpec, carrier: dict[str, str]) -> TaskSpec:
    """``spec`` carrying ``carrier``; ``spec`` itself when the carrier is empty (an
    invalid span: nothing to carry). A ``tracestate`` over the task's bound
    is dropped, never the enqueue."""
    try:
        encode_trace_context(carrier)  # the bound, checked before the spec is remade
    except ValidationError:
        carrier = {k: v for k, v in carrier.items() if k == "traceparent"}
    if not carrier:
        return spec
    # Made again (its data encoded again): only when traced, for a valid carrier.
    return dataclasses.replace(spec, trace_context=carrier)


class AttemptSpan:
    """The span of one attempt, as a runtime tells it how the handler ended.

    This base records nothing: it is what an untraced attempt gets.
    """

    __slots__ = ()

    def raised(self, error: BaseException) -> None:
        """The handler raised ``error``: record it on the span (an exception event)."""

    def ended(self, outcome: object, ctx: Any, *, cancelled: bool = False) -> None:
        """The handler returned ``outcome`` (``cancelled``: it raised ``Cancelled``);
        ``ctx`` is its context, read only when traced (why it was cancelled)."""

    def __enter__(self) -> AttemptSpan:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_UNTRACED_ATTEMPT: Final = AttemptSpan()


def _outcome_of(outcome: object, *, cancelled: bool) -> tuple[AttemptOutcome, str | None]:
    """What a handler's return means for its span: the ``sokka.outcome`` and, for
    an attempt that did not succeed, the status description (None: status OK).

    >>> from sokka.core.outcomes import failed, ok
    >>> _outcome_of(ok(), cancelled=False), _outcome_of(failed("boom"), cancelled=False)
    (('ok', None), ('failed', 'boom'))
    >>> _outcome_of(None, cancelled=False)
    ('failed', 'the handler returned None, not an outcome')
    """
    if cancelled:
        return "cancelled", "cancelled"
    match outcome:
        case OkOutcome():
            return "ok", None
        case SnoozedOutcome():
            return "snoozed", None
        case FailedOutcome(error=error):
            return "failed", error
        case _:
            return "failed", f"the handler returned {reprlib.repr(outcome)}, not an outcome"


class _TracedAttempt(AttemptSpan):
    __slots__ = ("_pid", "_span", "_task", "_token", "_tracer")

    def __init__(self, tracer: Tracer, task: Task, pid: str) -> None:
        self._tracer, self._task, self._pid = tracer, task, pid
        self._span: Span | None = None
        self._token: object = None

    def __enter__(self) -> AttemptSpan:
        api = _loaded_api()
        assert api is not None
        task = self._task
        # From an empty context, never the current one: a task that carries no
        # (or no valid) context is a root span, whatever this thread or asyncio
        # task happened to have current when the worker was started.
        empty = api.context.Context()
        carried = task.trace_context
        parent = empty if carried is None else api.propagator.extract(carried, context=empty)
        span = self._tracer.start_span(
            f"process {task.topic}",
            context=parent,
            kind=api.trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": SCOPE,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": task.topic,
                "messaging.message.id": task.task_id,
                "sokka.task.attempt": task.attempt,
                "sokka.worker.pid": self._pid,
            },
        )
        self._span = span
        # Current on this thread (a handler thread) or in this asyncio task (the
        # runner awaiting the handler): the handler's own spans are its children.
        self._token = api.context.attach(api.trace.set_span_in_context(span))
        return self

    def raised(self, error: BaseException) -> None:
        if self._span is not None:
            self._span.record_exception(error)

    def ended(self, outcome: object, ctx: Any, *, cancelled: bool = False) -> None:
        span = self._span
        if span is None:
            return
        api = _loaded_api()
        assert api is not None
        cancelled = cancelled or bool(ctx.cancelled)
        kind, why = _outcome_of(outcome, cancelled=cancelled)
        if cancelled:
            why = ctx.cancel_reason or why
        span.set_attribute("sokka.outcome", kind)
        if why is None:
            span.set_status(api.trace.StatusCode.OK)
        else:
            span.set_status(api.trace.StatusCode.ERROR, why)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        api = _loaded_api()
        span = self._span
        if api is None or span is None:
            return
        try:
            if error is not None:  # the runtime itself was interrupted (a halt)
                span.record_exception(error)
                span.set_attribute("sokka.outcome", "cancelled")
                span.set_status(api.trace.StatusCode.ERROR, type(error).__name__)
        finally:
            api.context.detach(self._token)
            span.end()
