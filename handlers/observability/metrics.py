"""Prometheus metrics, one registry per engine (tests run several engines in one process).

Commands are counted at the composition root around `CommandService.execute`, so the service
itself stays free of metrics code; lag is read from JetStream consumer info when scraped."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from agentledger.handlers.observability import tracing
from agentledger.handlers.observability.logs import bind
from agentledger.providers.base import (
    ExecResult,
    ProviderError,
    ProviderInfo,
    SandboxProvider,
    SandboxRef,
    SandboxStatus,
)
from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.queries import QUERIES
from agentledger.schemas.replies import CommandReply, QueryReply
from agentledger.schemas.sandboxes import SandboxOptions

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

disable_created_metrics()  # the *_created series double the scrape and say nothing an operator uses

Execute = Callable[..., Awaitable[CommandReply]]  # (tenant, name, body[, principal])
Query = Callable[[str, str, bytes], Awaitable[QueryReply]]

# Latency buckets around what a command costs here: a fraction of a millisecond to seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _outcome(reply: CommandReply | QueryReply) -> str:
    return "ok" if reply.error is None else type(reply.error).__struct_config__.tag  # type: ignore[return-value]


class EngineMetrics:
    """Every metric an engine or a stand-alone effect handler exports. Names start `agentledger_`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.commands = Counter("agentledger_commands", "Commands answered, by command name and outcome "
                                "(ok or the error code)", ["command", "outcome"], registry=r)
        self.command_seconds = Histogram("agentledger_command_duration_seconds", "Time from request to reply",
                                         ["command"], buckets=BUCKETS, registry=r)
        self.queries = Counter("agentledger_queries", "Queries answered, by query name and outcome",
                               ["query", "outcome"], registry=r)
        self.provider_calls = Counter("agentledger_sandbox_provider_calls", "Sandbox provider calls, by provider, "
                                      "operation and outcome (ok or error)", ["provider", "op", "outcome"], registry=r)
        self.consumer_pending = Gauge("agentledger_consumer_lag_events", "Events in the log this consumer has not "
                                      "handled yet (follower: log head minus applied position)", ["consumer"],
                                      registry=r)
        self.consumer_ack_pending = Gauge("agentledger_consumer_ack_pending", "Events handed to a worker and not "
                                          "acknowledged yet", ["consumer"], registry=r)
        self.consumer_redelivered = Gauge("agentledger_consumer_redelivered", "Events a worker's consumer is "
                                          "delivering again after a failure or a timeout", ["consumer"], registry=r)
        self.log_position = Gauge("agentledger_log_position", "Last log position this engine's read models applied",
                                  registry=r)
        self.log_head = Gauge("agentledger_log_head", "Position of the last event in the log", registry=r)
        self.ready = Gauge("agentledger_ready", "1 when the engine is connected and caught up (as /readyz)",
                           registry=r)
        self.nats_reconnects = Counter("agentledger_nats_reconnects", "Times a NATS connection came back after a "
                                       "disconnection", ["connection"], registry=r)
        self.nats_disconnects = Counter("agentledger_nats_disconnects", "Times a NATS connection was lost",
                                        ["connection"], registry=r)
        self.nats_malformed = Counter("agentledger_nats_malformed_messages", "Messages a NATS connection dropped "
                                      "because they could not be read (a header, status line or subject that is "
                                      "not valid, from whichever client sent it)", ["connection"], registry=r)

    def read_counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Export a counter kept elsewhere as a plain number (e.g. the service's append conflicts)."""
        self.registry.register(_ReadCounter(name, documentation, lambda: {(): read()}))

    def read_counters(self, name: str, documentation: str, labels: tuple[str, ...],
                      read: Callable[[], dict[tuple[str, ...], float]]) -> None:
        """The same, one series per label value (e.g. quarantined events per reader)."""
        self.registry.register(_ReadCounter(name, documentation, read, labels))

    def commands_observed(self, execute: Execute) -> Execute:
        known = frozenset(COMMANDS)
        # each series looked up once: `labels()` takes a lock and builds a key on every call
        seconds: dict[str, Any] = {}
        counts: dict[tuple[str, str], Any] = {}

        async def observed(tenant: str, name: str, body: bytes, *principal: Any) -> CommandReply:
            started = time.perf_counter()
            label = name if name in known else "unknown"  # a client-chosen name must not mint series
            with bind(tenant=tenant, command=label):
                reply = await execute(tenant, name, body, *principal)
            timer = seconds.get(label) or seconds.setdefault(label, self.command_seconds.labels(label))
            timer.observe(time.perf_counter() - started)
            key = (label, _outcome(reply))
            (counts.get(key) or counts.setdefault(key, self.commands.labels(*key))).inc()
            return reply

        return observed

    def queries_observed(self, execute: Query) -> Query:
        known = frozenset(QUERIES)

        async def observed(tenant: str, name: str, body: bytes) -> QueryReply:
            reply = await execute(tenant, name, body)
            self.queries.labels(name if name in known else "unknown", _outcome(reply)).inc()
            return reply

        return observed


class _ReadCounter(Collector):
    def __init__(self, name: str, documentation: str, read: Callable[[], dict[tuple[str, ...], float]],
                 labels: tuple[str, ...] = ()) -> None:
        self.name, self.documentation, self.read, self.labels = name, documentation, read, labels

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, value in self.read().items():
            family.add_metric(list(values), value)
        yield family


class ObservedProvider:
    """A sandbox provider that counts its calls by outcome; the effect handler sees no difference."""

    def __init__(self, provider: SandboxProvider, metrics: EngineMetrics) -> None:
        self.inner = provider
        self.name = provider.name
        self.capabilities = provider.capabilities
        self._calls = metrics.provider_calls

    async def _call(self, op: str, ref: SandboxRef, call: Callable[[], Awaitable[object]]) -> object:
        with tracing.provider_span(self.name, op, ref.sandbox_id) as span:
            try:
                result = await call()
            except (ProviderError, OSError):
                self._calls.labels(self.name, op, "error").inc()
                tracing.outcome(span, "error")
                raise
        self._calls.labels(self.name, op, "ok").inc()
        return result

    async def create(self, ref: SandboxRef, options: SandboxOptions) -> str:
        return str(await self._call("create", ref, lambda: self.inner.create(ref, options)))

    async def fork(self, source: SandboxRef, target: SandboxRef, options: SandboxOptions) -> str:
        return str(await self._call("fork", target, lambda: self.inner.fork(source, target, options)))

    async def pause(self, ref: SandboxRef) -> None:
        await self._call("pause", ref, lambda: self.inner.pause(ref))

    async def resume(self, ref: SandboxRef) -> None:
        await self._call("resume", ref, lambda: self.inner.resume(ref))

    async def destroy(self, ref: SandboxRef) -> None:
        await self._call("destroy", ref, lambda: self.inner.destroy(ref))

    async def exec(self, ref: SandboxRef, argv: list[str], timeout: float, stdin: bytes = b"") -> ExecResult:
        result = await self._call("exec", ref, lambda: self.inner.exec(ref, argv, timeout, stdin))
        assert isinstance(result, ExecResult)
        return result

    def info(self) -> ProviderInfo:
        return self.inner.info()

    async def list(self) -> list[SandboxRef]:
        return await self.inner.list()

    async def status(self, ref: SandboxRef) -> SandboxStatus:
        return await self.inner.status(ref)
