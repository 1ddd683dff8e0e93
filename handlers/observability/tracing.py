"""OpenTelemetry traces across the log: a W3C `traceparent` on a command request becomes the
parent of the engine's span, is written into the appended event's headers, and is picked up by
the process manager and the effect handler from there, so spawn -> sandbox create -> provider
call is one trace. A request without one starts a trace.

Spans always get real ids (the SDK's tracer provider), so the ids reach the log and the log
lines even when nothing is exported; they are recorded only when something receives them.
Export is OTLP over HTTP when the standard variables say so (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, and `OTEL_TRACES_EXPORTER` not `none`); otherwise nothing
leaves the process."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
# The headers of the event a worker is handling (set by the durable worker around its handler).
delivered: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("agentledger_delivered",
                                                                                     default=None)


def exporting() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class _WhenExported(Sampler):
    """Record spans only when something receives them. Unrecorded spans still get ids, so the
    trace context still reaches the log and the log lines, at about half the CPU of a recorded one."""

    listening = False

    def should_sample(self, parent_context: otel_context.Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Any = None, links: Any = None,
                      trace_state: Any = None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.listening else Decision.DROP,
                              trace_state=parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return "AgentLedgerWhenExported"


_sampler = _WhenExported()


def provider() -> TracerProvider:
    """This process's tracer provider, made on first use from the OTEL_* environment."""
    global _provider
    if _provider is None:
        name = os.environ.get("OTEL_SERVICE_NAME") or "agentledger"
        _provider = TracerProvider(resource=Resource.create({"service.name": name}), sampler=_sampler)
        if exporting():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            add_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return _provider


def add_processor(processor: SpanProcessor) -> None:
    """Send finished spans somewhere (an exporter, or a test's in-memory list); spans are recorded from now on."""
    provider().add_span_processor(processor)
    _sampler.listening = True


def shutdown() -> None:
    """Flush spans still queued for export (at process exit)."""
    if _provider is not None:
        _provider.shutdown()


_tracer_made: trace.Tracer | None = None


def _tracer() -> trace.Tracer:
    """Made once (the provider is made once): getting it anew cost a deprecation check and a scope per span."""
    global _tracer_made
    if _tracer_made is None:
        _tracer_made = provider().get_tracer("agentledger")
    return _tracer_made


def current_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the active span, for a message we write or send."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


@contextlib.contextmanager
def _span(name: str, kind: SpanKind, parent: otel_context.Context | None = None,
          **attributes: str | int) -> Iterator[Span]:
    if not _sampler.listening:
        token = otel_context.attach(trace.set_span_in_context(_unrecorded(parent)))
        try:
            yield trace.get_current_span()
        finally:
            otel_context.detach(token)
        return
    with _tracer().start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as span:
        yield span


_ids = RandomIdGenerator()


def _unrecorded(parent: otel_context.Context | None) -> NonRecordingSpan:
    """What the SDK makes when nothing receives spans (ids, and the parent's trace), without its
    per-span bookkeeping for a span nobody records: a third of the request path's tracing CPU."""
    above = trace.get_current_span(parent).get_span_context()
    if above.is_valid:
        trace_id, state = above.trace_id, above.trace_state
        flags = TraceFlags(TraceFlags.RANDOM_TRACE_ID if above.trace_flags.random_trace_id else TraceFlags.DEFAULT)
    else:
        trace_id, state, flags = _ids.generate_trace_id(), None, TraceFlags(TraceFlags.RANDOM_TRACE_ID)
    return NonRecordingSpan(SpanContext(trace_id, _ids.generate_span_id(), is_remote=False, trace_flags=flags,
                                        trace_state=state))


_ROOT = otel_context.Context()  # no parent: a new trace


def request_span(kind: str, name: str, tenant: str, headers: Mapping[str, str] | None,
                 subject: str) -> contextlib.AbstractContextManager[Span]:
    """The engine's span for one request, child of the requester's `traceparent` if it sent one."""
    parent = _propagator.extract(carrier=dict(headers)) if headers and "traceparent" in headers else _ROOT
    return _span(f"{kind} {name}", SpanKind.SERVER, parent, **{
        "messaging.system": "nats", "messaging.destination.name": subject, "agentledger.tenant": tenant})


def event_span(consumer: str, event_type: str, position: int) -> contextlib.AbstractContextManager[Span]:
    """A worker handling one event: child of the span that appended it (from the event's headers)."""
    parent = _propagator.extract(carrier=dict(delivered.get() or {}))
    return _span(f"handle {event_type}", SpanKind.CONSUMER, parent, **{
        "messaging.system": "nats", "messaging.consumer.group.name": consumer, "agentledger.position": position})


def send_span(command: str) -> contextlib.AbstractContextManager[Span]:
    return _span(f"send {command}", SpanKind.PRODUCER, None)


def provider_span(provider_name: str, op: str, sandbox_id: str) -> contextlib.AbstractContextManager[Span]:
    return _span(f"provider {op}", SpanKind.CLIENT, None, **{
        "agentledger.provider": provider_name, "agentledger.sandbox_id": sandbox_id})


def outcome(span: Span, code: str) -> None:
    span.set_attribute("agentledger.outcome", code)
    if code in ("internal", "unavailable", "error"):
        span.set_status(Status(StatusCode.ERROR, code))


@contextlib.contextmanager
def delivering(headers: Mapping[str, str] | None) -> Iterator[None]:
    token = delivered.set(headers)
    try:
        yield
    finally:
        delivered.reset(token)
