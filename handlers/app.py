"""The composition root: one engine = a log connection, the read models following the log, and
FastStream subscribers (in a queue group, so replicas share the load) that always reply.

Handlers are thin on purpose: subject -> (tenant, name), then the command or query service,
which turns every failure into an error reply. FastStream sends no reply when a handler
raises, so nothing here may raise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import nats
import nats.errors
from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from faststream.nats.security import NatsCredentials
from nats.aio.client import Client

from engine import codec
from engine.admission import Quarantine
from engine.service import CommandService
from engine.snapshots import SnapshotStore
from engine.store import EventStore
from engine.subjects import Subjects
from handlers.auth.identity import TENANTS_BUCKET, TenantDirectory, authorize, identify
from handlers.durable import DurableWorker
from handlers.effects import ACTS_ON as FX_ACTS_ON
from handlers.effects import SandboxEffects
from handlers.process_manager import ACTS_ON as PM_ACTS_ON
from handlers.process_manager import SandboxProcessManager, Send
from handlers.providers.base import SandboxProvider
from handlers.providers.local import LocalProvider
from projections.models import LedgerModels
from projections.queries import QueryService
from schemas.errors import InvalidCommand, InvalidCommandDetails, PathError, Unavailable
from schemas.events import Principal
from schemas.replies import CommandReply, QueryReply
from schemas.sandboxes import ProviderCapabilities

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
    cache_size: int = 10_000  # boundary models kept in memory; others are loaded from the log on demand
    snapshot_every: int = 500  # events on a boundary between its snapshots (a load reads at most about this tail)
    sandbox_dir: Path | None = None  # run the local sandbox effect handler here; None: effects run elsewhere
    sandbox_commands: tuple[str, ...] = ()  # programs a sandbox may run (argv[0]); none by default
    sandbox_repos: tuple[str, ...] = ()  # directories whose git repositories a sandbox may check out
    process_manager: bool = True
    worker_ack_wait: float = 30.0
    worker_retry_delay: float = 0.05  # first backoff of a failing worker event (doubling, at most 5 s)
    worker_max_attempts: int = 8  # a worker event failing this often is parked (`agentledger workers parked`)
    effects_concurrency: int = 16  # sandboxes the effect handler works on at once (each one's requests in order)
    creds: str | Path | None = None  # this replica's NATS credentials (.creds); None: the server needs none
    tenants_bucket: str = TENANTS_BUCKET  # where `tenant add` records which account is which tenant
    subjects: Subjects = field(init=False)

    def __post_init__(self) -> None:
        self.subjects = Subjects(self.prefix)


def _too_large(size: int) -> InvalidCommand:
    message = f"the reply would be {size} bytes, above the limit of {codec.MAX_REPLY_BYTES}; page or narrow the request"
    return InvalidCommand(message=message, details=InvalidCommandDetails(errors=[PathError("$", message)]))


def _bad_tenant(error: ValueError) -> InvalidCommand:
    return InvalidCommand(message=str(error), details=InvalidCommandDetails(errors=[PathError("subject", str(error))]))


CommandHandler = Callable[[str, str, bytes, Principal], Awaitable[CommandReply]]
QueryHandler = Callable[[str, str, bytes], Awaitable[QueryReply]]


def connect_options(config: EngineConfig) -> dict[str, Any]:
    return {} if config.creds is None else {"user_credentials": str(config.creds)}


def build_broker(config: EngineConfig, execute_command: CommandHandler, execute_query: QueryHandler,
                 directory: TenantDirectory | None = None) -> NatsBroker:
    # No dependency injection: the handlers need the raw message only, and FastStream's per-message
    # injection costs about 0.45 ms of CPU (a context manager run in a worker thread); measured in
    # BENCHMARKS.md. The decoder hands the handler the message itself.
    security = None if config.creds is None else NatsCredentials(str(config.creds))
    broker = NatsBroker(config.nats_url, logger=None, apply_types=False, security=security)
    subjects = config.subjects

    async def as_message(msg: NatsMessage, original: object = None) -> NatsMessage:
        return msg

    async def caller(msg: NatsMessage, tenant: str, kind: Literal["command", "query"]) -> Principal | Any:
        """The authenticated principal, or the error to reply with (tenant from the broker, role allowed)."""
        headers = msg.raw_message.headers
        try:
            who = await identify(headers, directory)
        except Exception as e:  # the tenant directory could not be read: the caller may retry
            log.warning("identify: %s", e)
            return Unavailable(message="cannot check the caller's tenant now; retry")
        return authorize(who, tenant, kind) or who.principal  # type: ignore[union-attr]

    def reply_to(kind: Literal["command", "query"], failed: Callable[[Any], object]) -> Any:
        async def handle(msg: NatsMessage) -> bytes:
            try:
                tenant, name = subjects.parse_request(msg.raw_message.subject)
            except ValueError as e:
                return _encode(failed(_bad_tenant(e)))
            who = await caller(msg, tenant, kind)
            if not isinstance(who, Principal):
                return _encode(failed(who))
            if kind == "command":
                data = _encode(await execute_command(tenant, name, msg.body, who))
            else:
                data = _encode(await execute_query(tenant, name, msg.body))
            if len(data) > codec.MAX_REPLY_BYTES:  # never hand NATS a message it refuses
                return _encode(failed(_too_large(len(data))))
            return data

        return handle

    broker.subscriber(subjects.commands_all, queue=config.queue_group, max_workers=config.max_workers,
                      decoder=as_message, title="commands", description="`<prefix>.cmd.<tenant>.<command>`: JSON command body")(
        reply_to("command", lambda error: CommandReply(ok=False, error=error)))
    broker.subscriber(subjects.queries_all, queue=config.queue_group, max_workers=config.max_workers,
                      decoder=as_message, title="queries", description="`<prefix>.qry.<tenant>.<query>`: JSON query body")(
        reply_to("query", lambda error: QueryReply(ok=False, error=error)))
    return broker


class Engine:
    """One engine replica. Start it, and it has caught up with the log before it takes requests."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.nc: Client | None = None
        self.store: EventStore | None = None
        self.models = LedgerModels(config.subjects, cache_size=config.cache_size, snapshot_every=config.snapshot_every)
        self.commands: CommandService | None = None
        self.queries: QueryService | None = None
        self.broker: NatsBroker | None = None
        self._follower = None
        self.workers: list[DurableWorker] = []

    async def start(self, serve: bool = True) -> None:
        cfg = self.config
        self.nc = await nats.connect(servers=[cfg.nats_url], name="agentledger-engine", max_reconnect_attempts=-1,
                                     **connect_options(cfg))
        self.store = EventStore(self.nc, cfg.stream)
        await self.store.ensure_stream(cfg.subjects.stream_subjects, replicas=cfg.replicas)
        self.models.snapshots = await SnapshotStore.open(self.store.js, cfg.stream, cfg.replicas)
        # Nothing is replayed: models load on demand, and the follower starts at the stream's head.
        head = (await self.store.js.stream_info(cfg.stream)).state.last_seq
        self.models.position = head
        self._follower = await self.store.follow(cfg.subjects.events_all, head, self.models.follow)
        self.commands = CommandService(self.store, self.models, cfg.subjects, catalog=provider_catalog())
        self.queries = QueryService(self.store, self.models)
        if cfg.process_manager:
            self.workers.append(process_manager_worker(cfg, self.store, self.commands.execute, self.models.quarantine))
        if cfg.sandbox_dir is not None:
            self.workers.append(effects_worker(cfg, self.store, self.commands.execute, self.models.quarantine))
        for worker in self.workers:
            await worker.start()
        if serve:
            directory = TenantDirectory(self.store.js, cfg.tenants_bucket)
            self.broker = build_broker(cfg, self.commands.execute, self.queries.execute, directory)
            await self.broker.start()
            # the server must hold our subscriptions before anyone is told we are ready
            await self.broker.connection.flush()
            await self._answering()

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
        broker, follower, nc = self.broker, self._follower, self.nc
        self.broker = self._follower = self.nc = None
        for worker in self.workers:
            await worker.stop()
        self.workers = []
        try:
            if broker is not None:
                await broker.stop()
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


def asyncapi_app(config: EngineConfig | None = None) -> FastStream:
    """The same subscribers, unstarted, for `faststream docs` (AsyncAPI: channels, queue group).
    Payload schemas come from `agentledger schema` (msgspec), which AsyncAPI generation cannot read."""

    async def never(tenant: str, name: str, body: bytes, principal: Principal | None = None) -> Any:
        raise AssertionError("documentation only")

    return FastStream(build_broker(config or EngineConfig(), never, never))


def provider_catalog() -> dict[str, ProviderCapabilities]:
    """The providers this deployment knows, with what they can do (checked before recording)."""
    return {LocalProvider.name: LocalProvider.capabilities}


def _durable_name(prefix: str, role: str) -> str:
    return f"{prefix}-{role}".replace(".", "_")


def process_manager_worker(cfg: EngineConfig, store: EventStore, send: Send,
                           quarantine: Quarantine | None = None) -> DurableWorker:
    pm = SandboxProcessManager(send)
    return DurableWorker(store.js, cfg.stream, cfg.subjects.thread_events_of(PM_ACTS_ON), _durable_name(cfg.prefix, "pm"),
                         pm.handle, cfg.subjects, ack_wait=cfg.worker_ack_wait, quarantine=quarantine,
                         retry_delay=cfg.worker_retry_delay, max_attempts=cfg.worker_max_attempts)


def effects_worker(cfg: EngineConfig, store: EventStore, send: Send, quarantine: Quarantine | None = None,
                   providers: dict[str, SandboxProvider] | None = None) -> DurableWorker:
    assert cfg.sandbox_dir is not None or providers is not None
    if providers is None:
        assert cfg.sandbox_dir is not None
        providers = {LocalProvider.name: LocalProvider(cfg.sandbox_dir, cfg.sandbox_commands, cfg.sandbox_repos)}
    effects = SandboxEffects(store, cfg.subjects, providers, send)
    quarantine = quarantine or Quarantine()  # on its own: one record for the worker and its models, logged once
    effects.models.quarantine = Quarantine(forward=quarantine)
    return DurableWorker(store.js, cfg.stream, cfg.subjects.sandbox_events_of(FX_ACTS_ON), _durable_name(cfg.prefix, "fx"),
                         effects.handle, cfg.subjects, ack_wait=cfg.worker_ack_wait, quarantine=quarantine,
                         retry_delay=cfg.worker_retry_delay, max_attempts=cfg.worker_max_attempts,
                         key=cfg.subjects.boundary_of, concurrency=cfg.effects_concurrency, on_park=effects.give_up)


def nats_sender(nc: Client, subjects: Subjects, timeout: float = 10.0) -> Send:
    """Send commands to the engine over NATS (for workers running outside an engine)."""
    decoder = msgspec.json.Decoder(CommandReply)

    async def send(tenant: str, name: str, body: bytes) -> CommandReply:
        msg = await nc.request(subjects.command(tenant, name), body, timeout=timeout)
        return decoder.decode(msg.data)

    return send


async def run_effects(cfg: EngineConfig, stop: asyncio.Event) -> None:
    """An effect handler on its own: sandboxes live where this runs; the engine may be elsewhere."""
    nc = await nats.connect(servers=[cfg.nats_url], name="agentledger-effects", max_reconnect_attempts=-1,
                            **connect_options(cfg))
    store = EventStore(nc, cfg.stream)
    worker = effects_worker(cfg, store, nats_sender(nc, cfg.subjects))
    await worker.start()
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await nc.drain()
