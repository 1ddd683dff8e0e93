"""The composition root: an engine replica, or a stand-alone effect handler, built from its
configuration. Nothing here decides or answers anything; each collaborator is built with what it
needs, and `start` wires them in the order the log and the requests require."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentledger.engine.repository import Repository
from agentledger.engine.service import CommandService
from agentledger.engine.snapshots import SnapshotStore
from agentledger.engine.store import RawEvent
from agentledger.handlers.auth.identity import TenantDirectory
from agentledger.handlers.auth.keys import open_snapshot_key, snapshot_key
from agentledger.handlers.auth.permissions import EFFECTS_INBOX
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.pipeline import RequestPipeline
from agentledger.handlers.process import LedgerProcess
from agentledger.handlers.quotas import TenantQuotas
from agentledger.handlers.responder import Responder
from agentledger.handlers.workers import (
    effects_worker,
    nats_query,
    nats_sender,
    process_manager_worker,
    provider_catalog,
    traced_send,
)
from agentledger.projections.queries import QueryService

log = logging.getLogger("agentledger")
PONG = b'{"ok":true}'


class Engine(LedgerProcess):
    """One engine replica. Start it, and it has caught up with the log before it takes requests."""

    role = "engine"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.models = self._repository()  # empty until `start`, which builds it with its snapshot bucket
        self.commands: CommandService | None = None
        self.queries: QueryService | None = None
        self.responder: Responder | None = None
        self.quotas: TenantQuotas | None = None
        self._follower: JetStreamContext.PushSubscription | None = None
        self._refollowing: asyncio.Task[None] | None = None
        self.metrics.read_counter("agentledger_append_conflicts", "Appends the log refused because another writer "
                                  "moved the boundary first (each is re-decided)",
                                  lambda: self.commands.conflicts if self.commands is not None else 0)
        self.metrics.read_counters("agentledger_quarantined_events", "Log messages skipped because they failed "
                                   "admission (`agentledger quarantine list`): engine = any reader here, each once; "
                                   "or one worker's", ("reader",),
                                   lambda: {("engine",): self.models.quarantine.count,
                                            **{(w.durable,): w.quarantine.count for w in self.workers}})
        self.metrics.read_counters("agentledger_refused_requests", "Tenants' requests refused before any work: over "
                                   "their share of this replica's workers (share) or over a rate or quota their "
                                   "operator set (quota)", ("reason",), self._refusals)
        self.metrics.read_counter("agentledger_model_cache_evictions", "Boundary models dropped from this replica's "
                                  "cache (over --cache-size or --cache-bytes)", lambda: self.models.evictions)
        self.metrics.read_counter("agentledger_quarantined_snapshots", "Snapshots refused because their seal did not "
                                  "verify (not written by an engine of this deployment): ignored, the boundary read "
                                  "from the log", lambda: self.models.snapshots.quarantined if self.models.snapshots else 0)

    def _repository(self, snapshots: SnapshotStore | None = None) -> Repository:
        cfg = self.config
        return Repository(cfg.subjects, cache_size=cfg.cache_size, snapshots=snapshots, snapshot_every=cfg.snapshot_every,
                          cache_bytes=cfg.cache_bytes)

    def _refusals(self) -> dict[tuple[str, ...], float]:
        return {("share",): self.responder.refused if self.responder is not None else 0,
                ("quota",): self.quotas.refused if self.quotas is not None else 0}

    def _followed(self, raw: RawEvent) -> None:
        """The live follower's feed: the models, and the tenants' event counts (quotas)."""
        if self.quotas is not None:
            self.quotas.observe(raw)
        self.models.follow(raw)

    def _snapshot_key(self) -> bytes:
        """From the engine's credentials, so every replica with the deployment's engine.creds seals and
        verifies alike; without credentials (a server without authentication, where any client may
        write the log itself) a key every engine derives from the stream's name."""
        cfg = self.config
        if cfg.creds is None:
            log.warning("no credentials: snapshots are sealed with a key any engine derives (a server without "
                        "authentication lets any client write the log and its snapshots)")
            return open_snapshot_key(cfg.stream)
        return snapshot_key(Path(cfg.creds).read_text(), cfg.stream)

    async def start(self, serve: bool = True) -> None:
        cfg = self.config
        store = await self._connect()
        await store.ensure_stream(cfg.subjects.stream_subjects, replicas=cfg.replicas)
        self.models = self._repository(await SnapshotStore.open(store.js, cfg.stream, self._snapshot_key(), cfg.replicas))
        # Nothing is replayed: models load on demand, and the follower starts at the stream's head.
        head = (await store.js.stream_info(cfg.stream)).state.last_seq
        self.models.position = head
        self.quotas = TenantQuotas(store.js, store, cfg.subjects, cfg.tenants_bucket)
        self._follower = await store.follow(cfg.subjects.events_all, head, self._followed)
        self.commands = CommandService(store, self.models, cfg.subjects, catalog=provider_catalog(),
                                       decide_within=cfg.decide_within, outcome_within=cfg.exec_reply_within)
        self.queries = QueryService(store, self.models)
        execute = self.metrics.commands_observed(self.commands.execute)
        send = traced_send(execute)
        workers = []
        if cfg.process_manager:
            workers.append(process_manager_worker(cfg, store, send, self.models.quarantine))
        if cfg.sandbox_dir is not None:
            workers.append(effects_worker(cfg, store, send, self.queries.execute, self.models.quarantine,
                                          metrics=self.metrics))
        await self._start_workers(workers)
        if serve:
            assert self.nc is not None
            self.responder = Responder(self.nc, cfg.max_workers, cfg.shares)
            pipeline = RequestPipeline(cfg.subjects, execute, self.metrics.queries_observed(self.queries.execute),
                                       TenantDirectory(store.js, cfg.tenants_bucket), limits=self.quotas,
                                       query_wait=self.queries.wait_needed)
            await pipeline.serve(self.responder, cfg.queue_group, cfg.query_shares)
            await self.responder.serve(cfg.subjects.ping, cfg.queue_group, self._pong, lambda subject: PONG)
            # the server must hold our subscriptions before anyone is told we are ready
            await self.nc.flush()
            await self._answering()

    @staticmethod
    async def _pong(msg: Msg) -> bytes:
        return PONG

    def _reconnected(self) -> None:
        """After a reconnect, follow again from the applied position at once. The ordered consumer
        would notice a lost server-side consumer only after missed heartbeats (~10 s), and until
        then this replica would not see other replicas' writes."""
        self._refollowing = asyncio.create_task(self._follow_again())

    async def _follow_again(self) -> None:
        if self._follower is None:
            return
        try:
            await self.follow_again()
        except nats.errors.Error as e:  # lost again meanwhile: the next reconnect tries again
            log.warning("follow again after reconnect: %s: %s", type(e).__name__, e)

    @property
    def follower(self) -> JetStreamContext.PushSubscription | None:
        """The live follower's subscription: an ordered consumer of every event, from the head at start."""
        return self._follower

    async def follow_again(self, feed: Callable[[RawEvent], None] | None = None) -> None:
        """Replace the live follower with a new one from the position applied so far, feeding
        `feed` (the models and the quotas by default; a test may put itself in between)."""
        assert self.store is not None
        old, self._follower = self._follower, None
        if old is not None:
            with contextlib.suppress(nats.errors.Error):
                await old.unsubscribe()
        self._follower = await self.store.follow(self.config.subjects.events_all, self.models.position,
                                                 feed or self._followed)

    async def _answering(self, attempts: int = 200) -> None:
        """Ping until the server routes the engines' ping subject to a responder (any replica's):
        requests sent after the ready line then find one, instead of meeting "no responders"."""
        assert self.nc is not None
        ping = self.config.subjects.ping
        for attempt in range(attempts):
            try:
                await self.nc.request(ping, b"", timeout=1.0)
                if attempt:
                    log.warning("ping answered after %d attempts", attempt + 1)
                return
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.01)
        raise RuntimeError(f"no responder on {ping} after {attempts} attempts")

    async def stop(self) -> None:
        """Stop taking requests, let in-flight ones finish, then close the log connection."""
        responder, follower = self.responder, self._follower
        self.responder = self._follower = None
        await self._stop_workers()
        try:
            if responder is not None:
                await responder.stop()
            if follower is not None:
                await follower.unsubscribe()
        except nats.errors.Error as e:  # the server went first; nothing left to drain
            log.warning("engine stop: %s", e)
        await self.models.flush()
        await self._close()


class EffectsProcess(LedgerProcess):
    """An effect handler on its own: sandboxes live where this runs; the engine may be elsewhere."""

    role = "effects"
    inbox_prefix = EFFECTS_INBOX  # its identity may read no other inbox of the engine's account

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.metrics.read_counters("agentledger_quarantined_events", "Log messages a worker skipped because they "
                                   "failed admission", ("reader",),
                                   lambda: {(w.durable,): w.quarantine.count for w in self.workers})

    async def start(self) -> None:
        store = await self._connect()
        assert self.nc is not None
        subjects = self.config.subjects
        await self._start_workers([effects_worker(self.config, store, nats_sender(self.nc, subjects),
                                                  nats_query(self.nc, subjects), metrics=self.metrics)])

    async def stop(self) -> None:
        await self._stop_workers()
        await self._close()
