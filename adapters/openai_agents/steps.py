"""Each step of a run as the ledger command that records it, sent as the agent that takes the step
(its actor) under the run's correlation id, so a run reads as one thread of cause in the log."""

from __future__ import annotations

import asyncio
from typing import Literal

from agentledger.adapters.openai_agents import words
from agentledger.adapters.openai_agents.seats import Seat
from agentledger.client import Ledger, SandboxSpec, Summary

CAUSATION_MAX = 128  # the contract's limit


class Steps:
    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self.ledger, self.run_id = ledger, run_id

    async def start(self, seat: Seat) -> None:
        """`session.start`, unless the session already runs (a spawned child, a handoff recipient, a resumed run)."""
        if seat.status != "idle":
            return
        await self.ledger.session.start(session_id=seat.session_id, actor=seat.actor, correlation_id=self.run_id)
        seat.status = "active"

    async def complete(self, seat: Seat, summary: Summary) -> None:
        await self.ledger.session.complete(session_id=seat.session_id, summary=summary, usage=seat.usage,
                                           actor=seat.actor, correlation_id=self.run_id)
        seat.ended("completed")

    async def end(self, seat: Seat, error: BaseException) -> None:
        """`session.cancel` for a cancelled run, `session.fail` for any other error; nothing once it ended."""
        if not seat.running:
            return
        outcome: Literal["cancelled", "failed"] = "cancelled" if isinstance(error, asyncio.CancelledError) else "failed"
        send = self.ledger.session.cancel if outcome == "cancelled" else self.ledger.session.fail
        await send(session_id=seat.session_id, reason=words.reason(error), usage=seat.usage, actor=seat.actor,
                   correlation_id=self.run_id)
        seat.ended(outcome)

    async def handoff(self, source: Seat, recipient: str) -> Seat:
        """`handoff.single` from an idle source: the recipient's new session, running."""
        result = await self.ledger.handoff.single(source_session_id=source.session_id, recipient=recipient,
                                                  expected_owner_version=source.owner_version, actor=source.actor,
                                                  correlation_id=self.run_id)
        source.owner_version = result.owner_version
        return Seat(session_id=result.session_id, actor=recipient, status="active", delegated=True)

    async def spawn(self, parent: Seat, agent: str, *, fail_fast: bool, budget: int | None, sandbox: SandboxSpec | None,
                    cause: str | None) -> Seat:
        """`session.spawn` of a child for `agent` under the parent's caps: the child's session, running."""
        result = await self.ledger.session.spawn(
            parent_session_id=parent.session_id, agent=agent, failure_mode="fail_fast" if fail_fast else "delegate",
            budget=budget, sandbox=sandbox, actor=parent.actor, correlation_id=self.run_id,
            causation_id=None if cause is None else cause[:CAUSATION_MAX])
        return Seat(session_id=result.session_id, actor=agent, status="active", delegated=True, fail_fast=fail_fast)

    async def request_input(self, seat: Seat, prompt: str) -> None:
        await self.ledger.session.request_input(session_id=seat.session_id, prompt=prompt, actor=seat.actor,
                                                correlation_id=self.run_id)
        seat.status = "awaiting_hitl"

    async def status(self, session_id: str) -> str:
        """The session's status as the ledger has it now (read after this client's own writes)."""
        view = await self.ledger.session.get(session_id=session_id, min_position=self.ledger.position or None)
        return view.session.status
