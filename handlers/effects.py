"""The sandbox effect handler: it reads `sandbox.*_requested` events from its consumer, asks the
engines for the sandbox's pending requests (`sandbox.get`: it never reads the log itself), calls
the provider, and records the outcome with `sandbox.report_outcome`.

It can run inside an engine or on its own (`agentledger effects`, e.g. on the machine that
hosts the sandboxes). Every step survives a crash: the provider call is idempotent for the
sandbox id, the outcome's command id derives from the request event, and the request is
acknowledged only after its outcome is in the log. An exec is the exception, since a program
cannot be run idempotently: handlers/sandbox_exec.py runs each at most once and records one
whose handler stopped as `interrupted`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import msgspec

from agentledger.handlers.durable import delivery
from agentledger.handlers.sandbox_exec import ExecRunner
from agentledger.providers.base import ProviderError, SandboxProvider, SandboxRef
from agentledger.schemas.commands import SandboxReportOutcome
from agentledger.schemas.common import Actor
from agentledger.schemas.events import (
    Envelope,
    SandboxCreateRequested,
    SandboxDestroyRequested,
    SandboxExecRequested,
    SandboxPauseRequested,
    SandboxResumeRequested,
)
from agentledger.schemas.queries import SandboxGet, SandboxResult
from agentledger.schemas.replies import CommandReply, QueryReply
from agentledger.schemas.sandboxes import ExecOutcome, SandboxOp

log = logging.getLogger("agentledger.effects")
FX_ACTOR = Actor(kind="system", id="sys_sandbox_effects")
CRASH_ENV = "AGENTLEDGER_FX_CRASH_AFTER_PROVIDER"  # fault injection for tests: die between call and outcome

Send = Callable[[str, str, bytes], Awaitable[CommandReply]]
Query = Callable[[str, str, bytes], Awaitable[QueryReply]]
REQUESTS = (SandboxCreateRequested, SandboxPauseRequested, SandboxResumeRequested, SandboxDestroyRequested,
            SandboxExecRequested)
ACTS_ON = tuple(r.__struct_config__.tag for r in REQUESTS)  # type: ignore[misc]
"""The sandbox event types the effect handler fetches: requests, not outcomes."""


class Pending(msgspec.Struct, frozen=True):
    """What the effect handler needs of a sandbox: its provider and its requests still without an outcome."""

    provider: str = ""
    pending: dict[int, SandboxOp] = {}  # request position -> op


_sandbox = msgspec.json.Decoder(SandboxResult)


class SandboxEffects:
    def __init__(self, query: Query, providers: dict[str, SandboxProvider], send: Send) -> None:
        self.query = query  # the engines' `sandbox.get`: the effect handler never reads the log itself
        self.providers = providers
        self.send = send
        self.execs = ExecRunner()

    async def _state_at(self, tenant: str, sandbox_id: str, position: int | None) -> Pending | None:
        """The sandbox as the engines have it once they applied `position` (a sandbox they do not
        know has nothing pending); None when they cannot say now (`unavailable`: try again later)."""
        reply = await self.query(tenant, SandboxGet.NAME, msgspec.json.encode(SandboxGet(sandbox_id=sandbox_id,
                                                                                          min_position=position)))
        if reply.error is not None:
            if type(reply.error).__struct_config__.tag == "not_found":
                return Pending()
            if reply.error.retryable:
                return None
            raise RuntimeError(f"sandbox.get {sandbox_id}: {reply.error.message}")
        view = _sandbox.decode(msgspec.json.encode(reply.result)).sandbox
        return Pending(provider=view.provider, pending=dict(zip(view.pending_positions, view.pending, strict=True)))

    async def handle(self, envelope: Envelope, position: int) -> bool:
        data = envelope.data
        if not isinstance(data, REQUESTS):
            return True
        tenant = envelope.tenant_id
        state = await self._state_at(tenant, data.sandbox_id, position)
        if state is None:
            return False
        if position not in state.pending:
            # Its outcome is already recorded, or the boundary never took the request (quarantined:
            # say, a forged second create): either way there is nothing to carry out.
            return True
        if min(state.pending) < position:
            # Requests of one sandbox are carried out in log order, whichever replica holds them:
            # an earlier one still without an outcome goes first (we are asked again later).
            state = await self._state_at(tenant, data.sandbox_id, position)
            if state is None:
                return False
            if position not in state.pending:
                return True
            if min(state.pending) < position:
                return False
        provider = self.providers.get(state.provider)
        ref = SandboxRef(tenant, data.sandbox_id)
        op, location, error, ran = _op(data), None, None, None
        try:
            if provider is None:
                raise ProviderError(f"no provider {state.provider!r} configured in this effect handler")
            match data:
                case SandboxCreateRequested(forked_from=None):
                    location = await provider.create(ref, data.options)
                case SandboxCreateRequested(forked_from=source):
                    op = "fork"
                    assert source is not None
                    location = await provider.fork(SandboxRef(tenant, source), ref, data.options)
                case SandboxPauseRequested():
                    op = "pause"
                    await provider.pause(ref)
                case SandboxResumeRequested():
                    op = "resume"
                    await provider.resume(ref)
                case SandboxDestroyRequested():
                    op = "destroy"
                    await provider.destroy(ref)
                case SandboxExecRequested():
                    ran = await self._exec(envelope, position, provider, ref, data)
        except ProviderError as e:
            error = str(e)[:4000]
        except OSError as e:
            error = f"{type(e).__name__}: {e}"[:4000]
        if os.environ.get(CRASH_ENV):
            os._exit(86)
        report = SandboxReportOutcome(
            command_id=f"fx-{envelope.event_id}", actor=FX_ACTOR, correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id, sandbox_id=data.sandbox_id, request_position=position, op=op,  # type: ignore[arg-type]
            ok=error is None, location=location, error=error, exec=ran)
        done = await self._report(envelope, position, report)
        if done:
            self.execs.recorded(envelope.event_id)
        return done

    async def _exec(self, envelope: Envelope, position: int, provider: SandboxProvider, ref: SandboxRef,
                    request: SandboxExecRequested) -> ExecOutcome:
        async def destroy_requested() -> int | None:
            return await self._destroy_requested(ref.tenant_id, ref.sandbox_id, position)

        return await self.execs.run(envelope.event_id, delivery(), provider, ref, request, destroy_requested)

    async def _destroy_requested(self, tenant: str, sandbox_id: str, after: int) -> int | None:
        """A destroy of the sandbox requested after position `after`, as the engines have it now
        (asked while an exec runs: a destroy does not wait for it)."""
        state = await self._state_at(tenant, sandbox_id, None)
        if state is None:
            return None
        return min((p for p, op in state.pending.items() if op == "destroy" and p > after), default=None)

    async def _report(self, envelope: Envelope, position: int, report: SandboxReportOutcome) -> bool:
        reply = await self.send(envelope.tenant_id, report.NAME, msgspec.json.encode(report))
        if not reply.ok:
            log.warning("outcome of %s at %s not recorded: %s", envelope.type, position, reply.error)
            assert reply.error is not None
            if reply.error.retryable:
                return False
            if type(reply.error).__struct_config__.tag == "internal":
                raise RuntimeError(f"recording the outcome failed: {reply.error.message}")
        return True

    async def give_up(self, envelope: Envelope, position: int, error: str) -> None:
        """A request parked after its retries is recorded as failed, so the sandbox's later
        requests (which wait for it) go on."""
        data = envelope.data
        if not isinstance(data, REQUESTS):
            return
        op = _op(data)
        report = SandboxReportOutcome(
            command_id=f"fx-{envelope.event_id}", actor=FX_ACTOR, correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id, sandbox_id=data.sandbox_id, request_position=position, op=op,  # type: ignore[arg-type]
            ok=False, error=f"gave up: {error}"[:4000])
        await self._report(envelope, position, report)
        self.execs.recorded(envelope.event_id)


def _op(data: object) -> str:
    match data:
        case SandboxCreateRequested(forked_from=None):
            return "create"
        case SandboxCreateRequested():
            return "fork"
        case SandboxPauseRequested():
            return "pause"
        case SandboxResumeRequested():
            return "resume"
        case SandboxExecRequested():
            return "exec"
    return "destroy"
