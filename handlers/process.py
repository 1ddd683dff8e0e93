"""What an engine replica and a stand-alone effect handler share: one NATS connection, watched so
that a connection lost for good ends the process (`failure`, `failed`), the durable workers with
their counters, and a stop that lets work in hand finish before the connection drains."""

from __future__ import annotations

import asyncio
import logging

import nats
import nats.errors
from nats.aio.client import Client

from agentledger.engine.store import EventStore
from agentledger.handlers.config import EngineConfig, connect_options
from agentledger.handlers.durable import DurableWorker
from agentledger.handlers.natsfix import apply as drop_malformed_messages
from agentledger.handlers.observability import tracing
from agentledger.handlers.observability.connection import ConnectionWatch
from agentledger.handlers.observability.metrics import EngineMetrics
from agentledger.handlers.workers import worker_counters

log = logging.getLogger("agentledger")


class LedgerProcess:
    role = "process"  # names the connection (`agentledger-<role>`) and its metrics
    inbox_prefix = "_INBOX"  # where replies to this process's requests come back

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.metrics = EngineMetrics()
        self.nc: Client | None = None
        self.store: EventStore | None = None
        self.workers: list[DurableWorker] = []
        self.failure: str | None = None  # set when the NATS connection is lost for good: the process must exit
        self.failed = asyncio.Event()
        self.watch = ConnectionWatch(self.role, self._lost, self.metrics, self._reconnected)
        worker_counters(self.metrics, lambda: self.workers)

    def _lost(self, reason: str) -> None:
        self.failure = self.failure or reason
        self.failed.set()

    def _reconnected(self) -> None:
        """Called after the connection came back; the engine follows the log again from here."""

    async def _connect(self) -> EventStore:
        cfg = self.config
        drop_malformed_messages()  # no frame a client sends may stop this connection's reading
        self.nc = await nats.connect(servers=cfg.servers, name=f"agentledger-{self.role}", **connect_options(cfg),
                                     inbox_prefix=self.inbox_prefix, **self.watch.options(cfg.reconnect))
        await self.watch.check_reading(self.nc, cfg.reconnect)  # and if reading stops anyway, the process exits
        # an appended event carries the trace of the command that made it
        self.store = EventStore(self.nc, cfg.stream, header_source=tracing.current_headers)
        return self.store

    async def _start_workers(self, workers: list[DurableWorker]) -> None:
        self.workers = workers
        for worker in workers:
            await worker.start()

    async def _stop_workers(self) -> None:
        """An event in hand is left unacknowledged and comes back (to this or another replica)."""
        self.watch.closing = True
        for worker in self.workers:
            await worker.stop()
        self.workers = []

    async def _close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except nats.errors.Error:
                await nc.close()
