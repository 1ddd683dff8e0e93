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
import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from agentledger.handlers.durable import DurableWorker
from agentledger.handlers.effects import Query
from agentledger.handlers.process_manager import Send
from agentledger.handlers.tasks import ended
from agentledger.providers.base import SandboxProvider, SandboxRef
from agentledger.schemas.commands import SandboxDestroy
from agentledger.schemas.common import Actor
from agentledger.schemas.queries import Query as Query_
from agentledger.schemas.queries import SandboxGet, SandboxListLive, SandboxListResult, SandboxResult, SandboxView

log = logging.getLogger("agentledger.reconciler")
RECONCILER = Actor(kind="system", id="sys_sandbox_reconciler")
LOST = "lost: gone at the provider"
ROUTE = "tnt_deployment"  # a tenant token for the deployment's own queries: `sandbox.list_live` spans tenants
R = TypeVar("R")


@dataclass
class ReconcileReport:
    orphans: list[SandboxRef] = field(default_factory=list)
    lost: list[SandboxRef] = field(default_factory=list)


class Reconciler:
    """Compares the provider's sandboxes with the ledger's, as the engines answer for it (`sandbox.get`,
    `sandbox.list_live`): like the effect handler, it never reads the log itself."""

    def __init__(self, query: Query, providers: dict[str, SandboxProvider], send: Send, every: float = 60.0) -> None:
        self.query, self.providers, self.send, self.every = query, providers, send, every
        self.orphans = 0  # destroyed since start
        self.lost = 0  # reported since start
        self.runs = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def _ask(self, tenant: str, query: Query_, result: type[R]) -> R | None:
        """The query's result; None for `not_found`; any other refusal ends this pass (tried again next time)."""
        reply = await self.query(tenant, query.NAME, msgspec.json.encode(query))
        if reply.error is not None:
            if type(reply.error).__struct_config__.tag == "not_found":
                return None
            raise RuntimeError(f"{query.NAME}: {reply.error.message}")
        return msgspec.convert(reply.result, result)

    async def _ledger(self, ref: SandboxRef) -> SandboxView | None:
        found = await self._ask(ref.tenant_id, SandboxGet(sandbox_id=ref.sandbox_id), SandboxResult)
        return None if found is None else found.sandbox

    @staticmethod
    def _dead(view: SandboxView | None) -> bool:
        return view is None or (view.intent == "destroyed" and not view.pending)

    @staticmethod
    def _live(view: SandboxView | None) -> bool:
        return (view is not None and view.intent != "destroyed" and not view.pending
                and view.status in ("running", "paused"))

    async def _ledger_candidates(self) -> list[tuple[SandboxRef, SandboxView]]:
        """Every tenant's sandboxes created and not destroyed, a page at a time (the subject's tenant only routes)."""
        found: list[tuple[SandboxRef, SandboxView]] = []
        after = 0
        while True:
            page = await self._ask(ROUTE, SandboxListLive(after=after, limit=1000), SandboxListResult)
            if page is None:
                return found
            found += [(SandboxRef(live.tenant_id, live.sandbox.sandbox_id), live.sandbox) for live in page.sandboxes]
            if not page.more:
                return found
            after = page.next_after

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
        for ref, view in sorted(await self._ledger_candidates(), key=lambda c: (c[0].tenant_id, c[0].sandbox_id)):
            provider = self.providers.get(view.provider)
            if provider is None or not self._live(view):
                continue
            if (await provider.status(ref)).exists:
                continue
            state = await self._ledger(ref)  # asked after the provider said it is gone
            if state is None or not self._live(state):
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
        """Until stopped: the flag ends it, since a request can turn a cancellation into an error
        of its own, which a failed pass is."""
        while not self._stopping:
            try:
                await self.run_once()
            except Exception as e:  # a failed pass is tried again next time
                self.failures += 1
                log.warning("reconciler pass failed: %s: %s", type(e).__name__, e)
            if not self._stopping:
                await asyncio.sleep(self.every)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="sandbox-reconciler")

    async def stop(self) -> None:
        self._stopping = True
        await ended(self._task)
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
