"""Liveness, readiness and scrape-time gauges for an engine or a stand-alone effect handler.

Alive: no connection has been given up for lost and the embedded server (if any) still runs.
Ready: alive, every NATS connection up, every worker's durable consumer there (a deleted one is
reported until the worker has made it again), and the read models have applied the log's head as
it was when asked (a replica that is catching up after an outage is not ready)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentledger.engine.store import LogUnavailable
from agentledger.handlers.durable import DurableWorker
from agentledger.handlers.observability.metrics import EngineMetrics

if TYPE_CHECKING:
    from agentledger.handlers.app import Engine

ASK_TIMEOUT = 2.0  # a probe must answer well within a healthcheck's own timeout


class WorkerProbe:
    """A process that runs durable workers on one connection (`agentledger effects`)."""

    def __init__(self, metrics: EngineMetrics, stream: str, failure: Callable[[], str | None],
                 connections: Callable[[], Sequence[Client | None]],
                 workers: Callable[[], Sequence[DurableWorker]], js: Callable[[], JetStreamContext | None]) -> None:
        self.metrics, self.stream = metrics, stream
        self._failure, self._connections, self._workers, self._js = failure, connections, workers, js

    def failure(self) -> str | None:
        return self._failure()

    def _not_connected(self) -> str | None:
        if (reason := self.failure()) is not None:
            return reason
        conns = self._connections()
        if not conns or any(c is None for c in conns):
            return "starting"
        if not all(c.is_connected for c in conns if c is not None):
            return "nats disconnected; reconnecting"
        return None

    def _consumers_missing(self) -> str | None:
        missing = [w.missing for w in self._workers() if w.missing is not None]
        return "; ".join(missing) if missing else None

    async def not_ready(self) -> str | None:
        return self._not_connected() or self._consumers_missing()

    async def refresh(self) -> None:
        js = self._js()
        if js is None or self._not_connected() is not None:
            return
        for worker in self._workers():
            try:
                info = await asyncio.wait_for(js.consumer_info(self.stream, worker.durable), ASK_TIMEOUT)
            except (TimeoutError, nats.errors.Error):
                continue  # the scrape still answers; the gauge keeps its last value
            self.metrics.consumer_pending.labels(worker.durable).set(info.num_pending or 0)
            self.metrics.consumer_ack_pending.labels(worker.durable).set(info.num_ack_pending or 0)
            self.metrics.consumer_redelivered.labels(worker.durable).set(info.num_redelivered or 0)


class EngineProbe(WorkerProbe):
    def __init__(self, engine: Engine, server_failure: Callable[[], str | None] = lambda: None,
                 catch_up_wait: float = 1.0) -> None:
        def failure() -> str | None:
            return server_failure() or engine.failure

        def connections() -> list[Client | None]:
            return [engine.nc]

        super().__init__(engine.metrics, engine.config.stream, failure, connections, lambda: engine.workers,
                         lambda: engine.store.js if engine.store is not None else None)
        self.engine, self.catch_up_wait = engine, catch_up_wait

    async def _head(self) -> int:
        """The last event's position (the stream also holds session claims, which no follower reads)."""
        engine = self.engine
        assert engine.store is not None
        return await asyncio.wait_for(engine.store.last_position(engine.config.subjects.events_all), ASK_TIMEOUT)

    async def not_ready(self) -> str | None:
        if (reason := self._not_connected() or self._consumers_missing()) is not None:
            return reason
        try:
            head = await self._head()
        except (TimeoutError, nats.errors.Error, LogUnavailable) as e:
            return f"log unavailable: {type(e).__name__}"
        models = self.engine.models
        if not await models.wait_for(head, self.catch_up_wait):
            return f"catching up: applied position {models.position} of {head}"
        return None

    async def refresh(self) -> None:
        await super().refresh()
        position = self.engine.models.position
        self.metrics.log_position.set(position)
        if self._not_connected() is not None:
            return
        try:
            head = await self._head()
        except (TimeoutError, nats.errors.Error, LogUnavailable):
            return
        self.metrics.log_head.set(head)
        self.metrics.consumer_pending.labels("follower").set(max(0, head - position))
