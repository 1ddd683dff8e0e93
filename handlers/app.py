"""The composition root: one engine = a log connection, the read models following the log, and
request subscriptions (in a queue group, so replicas share the load) that always reply.

Handlers are thin on purpose: subject -> (tenant, name), then the command or query service,
which turns every failure into an error reply (and `handlers.responder` answers `internal` if
one raises anyway), so a requester never waits for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentledger.engine import codec
from agentledger.engine.admission import Quarantine
from agentledger.engine.outcomes import unexpected
from agentledger.engine.service import CommandService
from agentledger.engine.snapshots import SnapshotStore
from agentledger.engine.store import EventStore
from agentledger.engine.subjects import Subjects
from agentledger.handlers.auth.identity import TENANTS_BUCKET, TenantDirectory, authorize, identify
from agentledger.handlers.durable import DurableWorker, Handler
from agentledger.handlers.effects import ACTS_ON as FX_ACTS_ON
from agentledger.handlers.effects import SandboxEffects
from agentledger.handlers.observability import tracing
from agentledger.handlers.observability.connection import ConnectionWatch, Reconnect
from agentledger.handlers.observability.logs import bind
from agentledger.handlers.observability.metrics import EngineMetrics, ObservedProvider
from agentledger.handlers.process_manager import ACTS_ON as PM_ACTS_ON
from agentledger.handlers.process_manager import SandboxProcessManager, Send
from agentledger.handlers.reconciler import EffectsWorker, Reconciler
from agentledger.handlers.responder import Answer, Responder
from agentledger.handlers.sandbox_setup import export, open_providers, provider_config
from agentledger.projections.models import LedgerModels
from agentledger.projections.queries import QueryService
from agentledger.providers.base import ProviderConfig, SandboxProvider
from agentledger.schemas.errors import InvalidCommand, InvalidCommandDetails, PathError, Unavailable
from agentledger.schemas.events import Envelope, Principal
from agentledger.schemas.replies import CommandReply, QueryReply
from agentledger.schemas.sandboxes import ProviderCapabilities

log = logging.getLogger("agentledger")
_encode = msgspec.json.Encoder().encode


@dataclass
class EngineConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "ledger"
    stream: str = "LEDGER"
    replicas: int = 1
    queue_group: str = "agentledger"
    max_workers: int = 64
    catch_up_timeout: float = 60.0
    cache_size: int = 4_000  # boundary models kept in memory; others are loaded from the log on demand
    snapshot_every: int = 100  # events on a boundary between its snapshots (a load reads at most about this tail)
    decide_within: float = 2.0  # seconds after its arrival a command may still be decided; later: `unavailable`
    sandbox_dir: Path | None = None  # run the local sandbox effect handler here; None: effects run elsewhere
    sandbox_commands: tuple[str, ...] = ()  # programs a sandbox may run (argv[0]); none by default
    sandbox_repos: tuple[str, ...] = ()  # directories whose git repositories a sandbox may check out
    sandbox_provider: str = "auto"  # an `agentledger.providers` entry point; auto: bubblewrap, else directory
    sandbox_settings: ProviderConfig | None = None  # env, network, limits, private paths (docs/sandboxes.md)
    reconcile_every: float = 60.0  # seconds between the sandbox reconciler's passes (one at start)
    process_manager: bool = True
    worker_ack_wait: float = 30.0
    reconnect: Reconnect = field(default_factory=Reconnect)  # past its budget a lost NATS ends the process
    worker_retry_delay: float = 0.05  # first backoff of a failing worker event (doubling, at most 5 s)
    worker_max_attempts: int = 8  # a worker event failing this often is parked (`agentledger workers parked`)
    effects_concurrency: int = 16  # sandboxes the effect handler works on at once (each one's requests in order)
    creds: str | Path | None = None  # this replica's NATS credentials (.creds); None: the server needs none
    tenants_bucket: str = TENANTS_BUCKET  # where `tenant add` records which account is which tenant
    subjects: Subjects = field(init=False)

    def __post_init__(self) -> None:
        self.subjects = Subjects(self.prefix)

    @property
    def servers(self) -> list[str]:
        """`nats_url` may list a cluster's servers, comma-separated (nats-py wants a list)."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


def _too_large(size: int) -> InvalidCommand:
    message = f"the reply would be {size} bytes, above the limit of {codec.MAX_REPLY_BYTES}; page or narrow the request"
    return InvalidCommand(message=message, details=InvalidCommandDetails(errors=[PathError("$", message)]))


def _bad_tenant(error: ValueError) -> InvalidCommand:
    return InvalidCommand(message=str(error), details=InvalidCommandDetails(errors=[PathError("subject", str(error))]))


CommandHandler = Callable[[str, str, bytes, Principal], Awaitable[CommandReply]]
QueryHandler = Callable[[str, str, bytes], Awaitable[QueryReply]]


def connect_options(config: EngineConfig) -> dict[str, Any]:
    return {} if config.creds is None else {"user_credentials": str(config.creds)}


async def serve_requests(config: EngineConfig, responder: Responder, execute_command: CommandHandler,
                         execute_query: QueryHandler, directory: TenantDirectory | None = None) -> None:
    """Answer `<prefix>.cmd.<tenant>.<command>` and `<prefix>.qry.<tenant>.<query>` in the queue group."""
    subjects = config.subjects

    async def caller(headers: dict[str, str] | None, tenant: str,
                     kind: Literal["command", "query"]) -> Principal | Any:
        """The authenticated principal, or the error to reply with (tenant from the broker, role allowed)."""
        try:
            who = await identify(headers, directory)
        except Exception as e:  # the tenant directory could not be read: the caller may retry
            log.warning("identify: %s", e)
            return Unavailable(message="cannot check the caller's tenant now; retry")
        return authorize(who, tenant, kind) or who.principal  # type: ignore[union-attr]

    def reply_to(kind: Literal["command", "query"],
                 reply_type: type[CommandReply] | type[QueryReply]) -> tuple[Answer, Callable[[str], bytes]]:
        """The subject's handler, and the `internal` reply if that handler raises anyway."""

        def failed(error: Any) -> bytes:
            return _encode(reply_type(ok=False, error=error))

        async def handle(msg: Msg) -> bytes:
            try:
                tenant, name = subjects.parse_request(msg.subject)
            except ValueError as e:
                return failed(_bad_tenant(e))
            with tracing.request_span(kind, name, tenant, msg.headers, msg.subject) as span:
                who = await caller(msg.headers, tenant, kind)
                if not isinstance(who, Principal):
                    return failed(who)
                if kind == "command":
                    reply: CommandReply | QueryReply = await execute_command(tenant, name, msg.data, who)
                else:
                    reply = await execute_query(tenant, name, msg.data)
                tracing.outcome(span, "ok" if reply.error is None else type(reply.error).__struct_config__.tag)
                data = _encode(reply)
            if len(data) > codec.MAX_REPLY_BYTES:  # never hand NATS a message it refuses
                return failed(_too_large(len(data)))
            return data

        def internal(subject: str) -> bytes:
            return failed(unexpected(log, subject))

        return handle, internal

    await responder.serve(subjects.commands_all, config.queue_group, *reply_to("command", CommandReply))
    await responder.serve(subjects.queries_all, config.queue_group, *reply_to("query", QueryReply))


class Engine:
    """One engine replica. Start it, and it has caught up with the log before it takes requests."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.nc: Client | None = None
        self.store: EventStore | None = None
        self.models = LedgerModels(config.subjects, cache_size=config.cache_size, snapshot_every=config.snapshot_every)
        self.commands: CommandService | None = None
        self.queries: QueryService | None = None
        self.responder: Responder | None = None
        self._follower = None
        self.workers: list[DurableWorker] = []
        self.metrics = EngineMetrics()
        self.metrics.read_counter("agentledger_append_conflicts", "Appends the log refused because another writer "
                                  "moved the boundary first (each is re-decided)",
                                  lambda: self.commands.conflicts if self.commands is not None else 0)
        self.metrics.read_counters("agentledger_quarantined_events", "Log messages skipped because they failed "
                                   "admission (`agentledger quarantine list`): engine = any reader here, each once; "
                                   "or one worker's", ("reader",),
                                   lambda: {("engine",): self.models.quarantine.count,
                                            **{(w.durable,): w.quarantine.count for w in self.workers}})
        worker_counters(self.metrics, lambda: self.workers)
        self.failure: str | None = None  # set when a NATS connection is lost for good: the process must exit
        self.failed = asyncio.Event()
        self._watches: list[ConnectionWatch] = []
        self._refollowing: asyncio.Task[None] | None = None

    def _lost(self, reason: str) -> None:
        self.failure = self.failure or reason
        self.failed.set()

    def _watch(self, name: str, on_back: Callable[[], None] | None = None) -> dict[str, Any]:
        watch = ConnectionWatch(name, self._lost, self.metrics, on_back)
        self._watches.append(watch)
        return watch.options(self.config.reconnect)

    async def start(self, serve: bool = True) -> None:
        cfg = self.config
        self.nc = await nats.connect(servers=cfg.servers, name="agentledger-engine", **connect_options(cfg),
                                     **self._watch("engine", self._refollow))
        self.store = EventStore(self.nc, cfg.stream)
        self.store.header_source = tracing.current_headers  # an appended event carries its command's trace
        await self.store.ensure_stream(cfg.subjects.stream_subjects, replicas=cfg.replicas)
        self.models.snapshots = await SnapshotStore.open(self.store.js, cfg.stream, cfg.replicas)
        # Nothing is replayed: models load on demand, and the follower starts at the stream's head.
        head = (await self.store.js.stream_info(cfg.stream)).state.last_seq
        self.models.position = head
        self._follower = await self.store.follow(cfg.subjects.events_all, head, self.models.follow)
        self.commands = CommandService(self.store, self.models, cfg.subjects, catalog=provider_catalog(),
                                       decide_within=cfg.decide_within)
        self.queries = QueryService(self.store, self.models)
        execute = self.metrics.commands_observed(self.commands.execute)
        if cfg.process_manager:
            self.workers.append(process_manager_worker(cfg, self.store, traced_send(execute), self.models.quarantine))
        if cfg.sandbox_dir is not None:
            self.workers.append(effects_worker(cfg, self.store, traced_send(execute), self.models.quarantine,
                                               metrics=self.metrics))
        for worker in self.workers:
            await worker.start()
        if serve:
            directory = TenantDirectory(self.store.js, cfg.tenants_bucket)
            self.responder = Responder(self.nc, cfg.max_workers)
            await serve_requests(cfg, self.responder, execute, self.metrics.queries_observed(self.queries.execute),
                                 directory)
            # the server must hold our subscriptions before anyone is told we are ready
            await self.nc.flush()
            await self._answering()

    def _refollow(self) -> None:
        """After a reconnect, follow again from the applied position at once. The ordered consumer
        would notice a lost server-side consumer only after missed heartbeats (~10 s), and until
        then this replica would not see other replicas' writes."""
        self._refollowing = asyncio.create_task(self._follow_again())

    async def _follow_again(self) -> None:
        old, store = self._follower, self.store
        if old is None or store is None:
            return
        try:
            with contextlib.suppress(nats.errors.Error):
                await old.unsubscribe()
            self._follower = await store.follow(self.config.subjects.events_all, self.models.position,
                                                self.models.follow)
        except nats.errors.Error as e:  # lost again meanwhile: the next reconnect tries again
            log.warning("follow again after reconnect: %s: %s", type(e).__name__, e)

    async def _answering(self, attempts: int = 200) -> None:
        """Ask our own query subject until the server routes it to a responder (any replica's):
        requests sent after the ready line then find one, instead of meeting "no responders"."""
        assert self.nc is not None
        probe = self.config.subjects.query("tnt_probe", "engine.ready")
        for attempt in range(attempts):
            try:
                await self.nc.request(probe, b"{}", timeout=1.0)
                if attempt:
                    log.warning("query subject answered after %d probes", attempt + 1)
                return
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.01)
        raise RuntimeError(f"no responder on {probe} after {attempts} probes")

    async def stop(self) -> None:
        """Stop taking requests, let in-flight ones finish, then close the log connection."""
        for watch in self._watches:
            watch.closing = True
        responder, follower, nc = self.responder, self._follower, self.nc
        self.responder = self._follower = self.nc = None
        for worker in self.workers:
            await worker.stop()
        self.workers = []
        try:
            if responder is not None:
                await responder.stop()
            if follower is not None:
                await follower.unsubscribe()
        except nats.errors.Error as e:  # the server went first; nothing left to drain
            log.warning("engine stop: %s", e)
        await self.models.flush()
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except nats.errors.Error:
                await nc.close()


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


def _durable_name(prefix: str, role: str) -> str:
    return f"{prefix}-{role}".replace(".", "_")


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


def process_manager_worker(cfg: EngineConfig, store: EventStore, send: Send,
                           quarantine: Quarantine | None = None) -> DurableWorker:
    pm = SandboxProcessManager(send)
    durable = _durable_name(cfg.prefix, "pm")
    return DurableWorker(store.js, cfg.stream, cfg.subjects.thread_events_of(PM_ACTS_ON), durable,
                         _with_log_ids(durable, pm.handle), cfg.subjects, ack_wait=cfg.worker_ack_wait,
                         quarantine=quarantine, retry_delay=cfg.worker_retry_delay, max_attempts=cfg.worker_max_attempts)


def effects_worker(cfg: EngineConfig, store: EventStore, send: Send, quarantine: Quarantine | None = None,
                   providers: dict[str, SandboxProvider] | None = None,
                   metrics: EngineMetrics | None = None) -> DurableWorker:
    assert cfg.sandbox_dir is not None or providers is not None
    if providers is None:
        assert cfg.sandbox_dir is not None
        providers = open_providers(cfg.sandbox_provider, provider_config(cfg.sandbox_dir, cfg.sandbox_commands,
                                                                         cfg.sandbox_repos, cfg.sandbox_settings))
    if metrics is not None:  # counted and traced, and otherwise the same provider
        providers = {name: ObservedProvider(p, metrics) for name, p in providers.items()}  # type: ignore[misc]
    effects = SandboxEffects(store, cfg.subjects, providers, send)
    quarantine = quarantine or Quarantine()  # on its own: one record for the worker and its models, logged once
    effects.models.quarantine = Quarantine(forward=quarantine)
    durable = _durable_name(cfg.prefix, "fx")
    worker = EffectsWorker(store.js, cfg.stream, cfg.subjects.sandbox_events_of(FX_ACTS_ON), durable,
                           _with_log_ids(durable, effects.handle), cfg.subjects, ack_wait=cfg.worker_ack_wait,
                           quarantine=quarantine, retry_delay=cfg.worker_retry_delay,
                           max_attempts=cfg.worker_max_attempts, key=cfg.subjects.boundary_of,
                           concurrency=cfg.effects_concurrency, on_park=effects.give_up)
    worker.reconciler = Reconciler(store, cfg.subjects, cfg.stream, providers, send, cfg.reconcile_every)
    worker.reconciler.models.quarantine = Quarantine(forward=quarantine)
    if metrics is not None:
        export(metrics, providers, worker.reconciler)
    return worker


def nats_sender(nc: Client, subjects: Subjects, timeout: float = 10.0) -> Send:
    """Send commands to the engine over NATS (for workers running outside an engine)."""
    decoder = msgspec.json.Decoder(CommandReply)

    async def send(tenant: str, name: str, body: bytes) -> CommandReply:
        with tracing.send_span(name):
            msg = await nc.request(subjects.command(tenant, name), body, timeout=timeout,
                                   headers=tracing.current_headers())
        return decoder.decode(msg.data)

    return send


class EffectsProcess:
    """An effect handler on its own: sandboxes live where this runs; the engine may be elsewhere."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.metrics = EngineMetrics()
        self.nc: Client | None = None
        self.store: EventStore | None = None
        self.workers: list[DurableWorker] = []
        self.metrics.read_counters("agentledger_quarantined_events", "Log messages a worker skipped because they "
                                   "failed admission", ("reader",),
                                   lambda: {(w.durable,): w.quarantine.count for w in self.workers})
        worker_counters(self.metrics, lambda: self.workers)
        self.failure: str | None = None
        self.failed = asyncio.Event()
        self._watch = ConnectionWatch("effects", self._lost, self.metrics)

    def _lost(self, reason: str) -> None:
        self.failure = self.failure or reason
        self.failed.set()

    async def start(self) -> None:
        cfg = self.config
        self.nc = await nats.connect(servers=cfg.servers, name="agentledger-effects", **connect_options(cfg),
                                     **self._watch.options(cfg.reconnect))
        self.store = EventStore(self.nc, cfg.stream)
        self.workers = [effects_worker(cfg, self.store, nats_sender(self.nc, cfg.subjects), metrics=self.metrics)]
        for worker in self.workers:
            await worker.start()

    async def stop(self) -> None:
        self._watch.closing = True
        for worker in self.workers:
            await worker.stop()
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except nats.errors.Error:
                await self.nc.close()


async def run_effects(cfg: EngineConfig, stop: asyncio.Event) -> None:
    """Run an effect handler until `stop` is set."""
    process = EffectsProcess(cfg)
    await process.start()
    try:
        await stop.wait()
    finally:
        await process.stop()
