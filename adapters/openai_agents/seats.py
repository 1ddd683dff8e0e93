"""Which ledger session each agent of a run speaks for.

A `Seat` is one session as the run knows it (its status, its owner version for the next handoff,
the tokens its own model calls used that are not charged yet). A `Frame` is one SDK run: the
top-level run, or the nested run of an agent used as a tool. Its seat moves to the recipient's
session on a handoff. The current frame travels in a context variable, which the SDK's tasks
(hooks, tool calls, nested runs) inherit, so parallel tool calls each see their own."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from agentledger.adapters.openai_agents.run import LedgerRun

Status = Literal["idle", "active", "awaiting_hitl", "failed", "ended"]


@dataclass
class Seat:
    session_id: str
    actor: str
    owner_version: int = 0
    status: Status = "idle"
    usage: int = 0  # tokens of this session's own model calls, charged when it ends
    delegated: bool = False  # a spawned child or a handoff recipient: it never runs again once ended
    fail_fast: bool = False  # its failure fails its parent (the spawn's failure mode)

    @property
    def running(self) -> bool:
        return self.status in ("active", "awaiting_hitl")

    def ended(self, outcome: Literal["completed", "failed", "cancelled"]) -> None:
        """Record how the session ended; the usage it carried is charged."""
        self.usage = 0
        self.status = "ended" if self.delegated else ("failed" if outcome == "failed" else "idle")


@dataclass
class Frame:
    run: LedgerRun
    seat: Seat
    parent: Frame | None = None
    error: BaseException | None = None  # a nested run's failure the SDK turned into tool output


_CURRENT: contextvars.ContextVar[Frame | None] = contextvars.ContextVar("agentledger_openai_agents_frame", default=None)


def current() -> Frame | None:
    return _CURRENT.get()


def enter(frame: Frame) -> contextvars.Token[Frame | None]:
    return _CURRENT.set(frame)


def leave(token: contextvars.Token[Frame | None]) -> None:
    _CURRENT.reset(token)
