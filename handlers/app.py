"""The composition root: one engine = a log connection, the read models following the log, and
FastStream subscribers (in a queue group, so replicas share the load) that always reply.

Handlers are thin on purpose: subject -> (tenant, name), then the command or query service,
which turns every failure into an error reply. FastStream sends no reply when a handler
raises, so nothing here may raise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import msgspec
import nats
import nats.errors
from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from nats.aio.client import Client

from engine.service import CommandService
from engine.store import EventStore
from engine.subjects import Subjects
from projections.models import LedgerModels
from projections.queries import QueryService
from schemas.errors import InvalidCommand, InvalidCommandDetails, PathError
from schemas.replies import CommandReply, QueryReply

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
    subjects: Subjects = field(init=False)

    def __post_init__(self) -> None:
        self.subjects = Subjects(self.prefix)


def _bad_tenant(error: ValueError) -> InvalidCommand:
    return InvalidCommand(message=str(error), details=InvalidCommandDetails(errors=[PathError("subject", str(error))]))


def build_broker(config: EngineConfig, commands: CommandService, queries: QueryService) -> NatsBroker:
    broker = NatsBroker(config.nats_url, logger=None)
    subjects = config.subjects

    @broker.subscriber(subjects.commands_all, queue=config.queue_group, max_workers=config.max_workers,
                       title="commands", description="`<prefix>.cmd.<tenant>.<command>`: JSON command body")
    async def on_command(msg: NatsMessage) -> bytes:
        try:
            tenant, name = subjects.parse_request(msg.raw_message.subject)
        except ValueError as e:
            return _encode(CommandReply(ok=False, error=_bad_tenant(e)))
        return _encode(await commands.execute(tenant, name, msg.body))

    @broker.subscriber(subjects.queries_all, queue=config.queue_group, max_workers=config.max_workers,
                       title="queries", description="`<prefix>.qry.<tenant>.<query>`: JSON query body")
    async def on_query(msg: NatsMessage) -> bytes:
        try:
            tenant, name = subjects.parse_request(msg.raw_message.subject)
        except ValueError as e:
            return _encode(QueryReply(ok=False, error=_bad_tenant(e)))
        return _encode(await queries.execute(tenant, name, msg.body))

    return broker


class Engine:
    """One engine replica. Start it, and it has caught up with the log before it takes requests."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.nc: Client | None = None
        self.store: EventStore | None = None
        self.models = LedgerModels(config.subjects)
        self.commands: CommandService | None = None
        self.queries: QueryService | None = None
        self.broker: NatsBroker | None = None
        self._follower = None

    async def start(self, serve: bool = True) -> None:
        cfg = self.config
        self.nc = await nats.connect(servers=[cfg.nats_url], name="agentledger-engine", max_reconnect_attempts=-1)
        self.store = EventStore(self.nc, cfg.stream)
        await self.store.ensure_stream([cfg.subjects.events_all], replicas=cfg.replicas)
        head = (await self.store.js.stream_info(cfg.stream)).state.last_seq
        self._follower = await self.store.follow(cfg.subjects.events_all, 0, self.models.follow)
        if not await self.models.wait_for(head, cfg.catch_up_timeout):
            raise RuntimeError(f"read models did not catch up to position {head} in {cfg.catch_up_timeout}s")
        self.commands = CommandService(self.store, self.models, cfg.subjects)
        self.queries = QueryService(self.store, self.models)
        if serve:
            self.broker = build_broker(cfg, self.commands, self.queries)
            await self.broker.start()
            # the server must hold our subscriptions before anyone is told we are ready
            await self.broker.connection.flush()

    async def stop(self) -> None:
        """Stop taking requests, let in-flight ones finish, then close the log connection."""
        broker, follower, nc = self.broker, self._follower, self.nc
        self.broker = self._follower = self.nc = None
        try:
            if broker is not None:
                await broker.stop()
            if follower is not None:
                await follower.unsubscribe()
        except nats.errors.Error as e:  # the server went first; nothing left to drain
            log.warning("engine stop: %s", e)
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except nats.errors.Error:
                await nc.close()


def asyncapi_app(config: EngineConfig | None = None) -> FastStream:
    """A FastStream app over the same subscribers, for `faststream docs` (AsyncAPI)."""
    cfg = config or EngineConfig()
    models = LedgerModels(cfg.subjects)
    store = EventStore.__new__(EventStore)
    return FastStream(build_broker(cfg, CommandService(store, models, cfg.subjects), QueryService(store, models)))
