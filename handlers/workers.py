"""The durable workers an engine or an effect handler runs, built from the configuration: the
sandbox process manager and the sandbox effect handler, each with its log lines and trace."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.client import Client

from agentledger.engine.admission import Quarantine
from agentledger.engine.store import EventStore
from agentledger.engine.subjects import Subjects
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.durable import DurableWorker, Handler
from agentledger.handlers.effects import Query, SandboxEffects
from agentledger.handlers.lease import Lease
from agentledger.handlers.observability import tracing
from agentledger.handlers.observability.logs import bind
from agentledger.handlers.observability.metrics import EngineMetrics, ObservedProvider
from agentledger.handlers.process_manager import ACTS_ON as PM_ACTS_ON
from agentledger.handlers.process_manager import SandboxProcessManager, Send
from agentledger.handlers.reconciler import EffectsWorker, Reconciler
from agentledger.handlers.sandbox_setup import export, open_providers, provider_config
from agentledger.providers.base import SandboxProvider
from agentledger.schemas.errors import Unavailable
from agentledger.schemas.events import Envelope
from agentledger.schemas.replies import CommandReply, QueryReply
from agentledger.schemas.sandboxes import ProviderCapabilities


def provider_catalog() -> dict[str, ProviderCapabilities]:
    """The providers this deployment knows, with what they can do (checked before recording)."""
    return {"local": ProviderCapabilities(fork=True, pause=True)}


def worker_counters(metrics: EngineMetrics, workers: Callable[[], list[DurableWorker]]) -> None:
    """Each worker's parked messages and retries, as counters (the workers keep the numbers)."""
    metrics.read_counters("agentledger_parked_events", "Events a worker gave up on after its retries "
                          "(`agentledger workers parked`)", ("consumer",),
                          lambda: {(w.durable,): w.parked for w in workers()})
    metrics.read_counters("agentledger_worker_retries", "Times a worker tried an event again after a failure "
                          "or a retryable refusal", ("consumer",),
                          lambda: {(w.durable,): w.retries for w in workers()})
    metrics.read_counters("agentledger_consumers_recreated", "Times a worker found its durable consumer gone "
                          "(deleted) and made it again, after the last position it knew acknowledged", ("consumer",),
                          lambda: {(w.durable,): w.recreated for w in workers()})


def _with_log_ids(durable: str, handle: Handler) -> Handler:
    """Every log line written while an event is handled names the event and the consumer, and
    the work continues the trace of the command that appended the event."""

    async def handler(envelope: Envelope, position: int) -> bool:
        with bind(consumer=durable, event_id=envelope.event_id, event_type=envelope.type, position=position), \
                tracing.event_span(durable, envelope.type, position):
            return await handle(envelope, position)

    return handler


def traced_send(send: Send) -> Send:
    """A worker's command, sent in process: a span of the worker's trace."""

    async def traced(tenant: str, name: str, body: bytes) -> CommandReply:
        with tracing.send_span(name):
            return await send(tenant, name, body)

    return traced


def _unreachable(e: Exception) -> Unavailable:
    """No engine answered: an engine restart or an outage, which a worker waits out (never parks for)."""
    return Unavailable(message=f"no engine answered ({type(e).__name__}); retry")


def nats_sender(nc: Client, subjects: Subjects, timeout: float = 10.0) -> Send:
    """Send the effect handler's commands to the engine over NATS, on the subject only its identity
    may publish on (for an effect handler running outside an engine)."""
    decoder = msgspec.json.Decoder(CommandReply)

    async def send(tenant: str, name: str, body: bytes) -> CommandReply:
        with tracing.send_span(name):
            try:
                msg = await nc.request(subjects.effects_command(tenant, name), body, timeout=timeout,
                                       headers=tracing.current_headers())
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as e:
                return CommandReply(ok=False, error=_unreachable(e))  # not now: the same command id again later
        return decoder.decode(msg.data)

    return send


def nats_query(nc: Client, subjects: Subjects, timeout: float = 10.0) -> Query:
    """Ask the engines a query over NATS (what an effect handler outside an engine reads instead of the log)."""
    decoder = msgspec.json.Decoder(QueryReply)

    async def query(tenant: str, name: str, body: bytes) -> QueryReply:
        try:
            msg = await nc.request(subjects.query(tenant, name), body, timeout=timeout, headers=tracing.current_headers())
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as e:
            return QueryReply(ok=False, error=_unreachable(e))
        return decoder.decode(msg.data)

    return query


def process_manager_worker(cfg: EngineConfig, store: EventStore, send: Send,
                           quarantine: Quarantine | None = None) -> DurableWorker:
    """Each tenant's thread events in log order, several tenants at once, reading ahead so one
    tenant's backlog does not hold back another's; one replica at a time (the lease), so a tenant's
    order holds across replicas too."""
    pm = SandboxProcessManager(send)
    durable = cfg.subjects.durable("pm")
    tenant = tenant_of(cfg.subjects)
    lease = Lease(store.js, f"{cfg.stream}_LEASES", durable, ttl=cfg.pm_lease_ttl, replicas=cfg.replicas)
    return DurableWorker(store.js, cfg.stream, cfg.subjects.thread_events_of(PM_ACTS_ON), durable,
                         _with_log_ids(durable, pm.handle), cfg.subjects, ack_wait=cfg.worker_ack_wait,
                         quarantine=quarantine, retry_delay=cfg.worker_retry_delay, max_attempts=cfg.worker_max_attempts,
                         key=tenant, concurrency=cfg.pm_concurrency, window=cfg.pm_window, group=tenant, gate=lease,
                         check_every=cfg.worker_check_every)


def effects_worker(cfg: EngineConfig, store: EventStore, send: Send, query: Query, quarantine: Quarantine | None = None,
                   providers: dict[str, SandboxProvider] | None = None,
                   metrics: EngineMetrics | None = None) -> EffectsWorker:
    """The effect handler over every sandbox event (it acts on the requests), with its reconciler:
    `send` records outcomes, `query` reads a sandbox's pending requests from the engines (never the
    log itself)."""
    if providers is None:
        assert cfg.sandbox_dir is not None
        providers = open_providers(cfg.sandbox_provider, provider_config(cfg.sandbox_dir, cfg.sandbox_commands,
                                                                         cfg.sandbox_repos, cfg.sandbox_settings))
    if metrics is not None:  # counted and traced, and otherwise the same provider
        providers = {name: ObservedProvider(p, metrics) for name, p in providers.items()}  # type: ignore[misc]
    effects = SandboxEffects(query, providers, send)
    durable = cfg.subjects.durable("fx")
    reconciler = Reconciler(query, providers, send, cfg.reconcile_every)
    if metrics is not None:
        export(metrics, providers, reconciler)
    return EffectsWorker(store.js, cfg.stream, cfg.subjects.sandbox_events_all, durable,
                         _with_log_ids(durable, effects.handle), cfg.subjects, ack_wait=cfg.worker_ack_wait,
                         quarantine=quarantine, retry_delay=cfg.worker_retry_delay, max_attempts=cfg.worker_max_attempts,
                         key=cfg.subjects.boundary_of, concurrency=cfg.effects_concurrency, on_park=effects.give_up,
                         window=cfg.effects_window, group=tenant_of(cfg.subjects), check_every=cfg.worker_check_every,
                         reconciler=reconciler)


def tenant_of(subjects: Subjects) -> Callable[[str], str]:
    """The tenant an event's subject belongs to: the effect handler's turns are shared by tenant."""
    return lambda subject: subjects.parse_boundary(subjects.boundary_of(subject)).tenant

