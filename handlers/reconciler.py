"""The sandbox reconciler: at start and periodically, the ledger's sandboxes against the provider's.

- An **orphan** is alive at the provider and not live in the ledger (unknown there, or destroyed
  with nothing pending): destroyed, logged and counted.
- A **lost** sandbox is live in the ledger (running or paused, nothing pending) and gone at the
  provider: recorded with `sandbox.destroy` whose reason says it was lost, so the log, the
  sandbox's status and its session's view all say it is gone.

Each side is read so that a request in flight is never mistaken for either: the provider is
asked first, the ledger (fresh from the log) second, and a sandbox with a request still pending
is left to the effect handler. One sandbox root serves one deployment's ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agentledger.engine.admission import Quarantine
from agentledger.engine.repository import Repository
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.store import EventStore
from agentledger.engine.subjects import Subjects
from agentledger.handlers.durable import DurableWorker
from agentledger.handlers.process_manager import Send
from agentledger.providers.base import SandboxProvider, SandboxRef
from agentledger.schemas.commands import SandboxDestroy
from agentledger.schemas.common import Actor

log = logging.getLogger("agentledger.reconciler")
RECONCILER = Actor(kind="system", id="sys_sandbox_reconciler")
LOST = "lost: gone at the provider"


@dataclass
class ReconcileReport:
    orphans: list[SandboxRef] = field(default_factory=list)
    lost: list[SandboxRef] = field(default_factory=list)


class Reconciler:
    def __init__(self, store: EventStore, subjects: Subjects, stream: str, providers: dict[str, SandboxProvider],
                 send: Send, every: float = 60.0, quarantine: Quarantine | None = None) -> None:
        self.store, self.subjects, self.stream = store, subjects, stream
        self.models = Repository(subjects, cache_size=1000, quarantine=quarantine)
        self.providers, self.send, self.every = providers, send, every
        self.orphans = 0  # destroyed since start
        self.lost = 0  # reported since start
        self.runs = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def _ledger(self, ref: SandboxRef) -> SandboxState:
        state = self.models.sandbox(ref.tenant_id, ref.sandbox_id)
        await self.models.refresh(self.store, state)
        return state

    @staticmethod
    def _dead(state: SandboxState) -> bool:
        return not state.exists or (state.intent == "destroyed" and not state.pending)

    @staticmethod
    def _live(state: SandboxState) -> bool:
        return state.exists and state.intent != "destroyed" and not state.pending and state.status in ("running", "paused")

    async def _ledger_candidates(self) -> set[SandboxRef]:
        """Sandboxes the log says were created and not destroyed (read from its subjects, not replayed)."""
        found: dict[str, set[SandboxRef]] = {}
        for kind in ("sandbox.created", "sandbox.destroyed"):
            refs: set[SandboxRef] = set()
            for pattern in self.subjects.sandbox_events_of((kind,)):
                info = await self.store.js.stream_info(self.stream, subjects_filter=pattern)
                for subject in (info.state.subjects or {}):
                    named = self.subjects.parse_boundary(self.subjects.boundary_of(subject))
                    refs.add(SandboxRef(named.tenant, named.entity))
            found[kind] = refs
        return found["sandbox.created"] - found["sandbox.destroyed"]

    async def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        for name, provider in self.providers.items():
            for ref in await provider.list():  # the provider first, then the ledger as it is now
                if not self._dead(await self._ledger(ref)):
                    continue
                if self._dead(await self._ledger(ref)):  # read again just before: the narrowest window
                    await provider.destroy(ref)
                    report.orphans.append(ref)
                    self.orphans += 1
                    log.warning("reconciler: destroyed orphan sandbox %s/%s at provider %s (not live in the ledger)",
                                ref.tenant_id, ref.sandbox_id, name)
        for ref in sorted(await self._ledger_candidates(), key=lambda r: (r.tenant_id, r.sandbox_id)):
            state = self.models.sandbox(ref.tenant_id, ref.sandbox_id)
            await self.models.loaded(self.store, state)
            provider = self.providers.get(state.provider)
            if provider is None or not self._live(state):
                continue
            if (await provider.status(ref)).exists:
                continue
            state = await self._ledger(ref)  # asked after the provider said it is gone
            if not self._live(state):
                continue
            command = SandboxDestroy(command_id=f"rc-lost-{ref.sandbox_id}-{state.position}", actor=RECONCILER,
                                     sandbox_id=ref.sandbox_id, reason=f"{LOST} {state.provider}")
            reply = await self.send(ref.tenant_id, command.NAME, msgspec.json.encode(command))
            if reply.ok:
                report.lost.append(ref)
                self.lost += 1
                log.warning("reconciler: sandbox %s/%s is live in the ledger and gone at provider %s; recorded as "
                            "destroyed (%s)", ref.tenant_id, ref.sandbox_id, state.provider, LOST)
            else:
                log.warning("reconciler: recording lost sandbox %s failed: %s", ref.sandbox_id, reply.error)
        self.runs += 1
        return report

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as e:  # a failed pass is tried again next time
                self.failures += 1
                log.warning("reconciler pass failed: %s: %s", type(e).__name__, e)
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sandbox-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class EffectsWorker(DurableWorker):
    """The effect handler's worker, with the reconciler started and stopped alongside it."""

    def __init__(self, *args: Any, reconciler: Reconciler | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reconciler = reconciler

    async def start(self) -> None:
        await super().start()
        if self.reconciler is not None:
            self.reconciler.start()

    async def stop(self) -> None:
        if self.reconciler is not None:
            await self.reconciler.stop()
        await super().stop()
