"""Value types shared by commands, events and read models."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from agentledger.schemas.ids import id_pattern

ActorKind = Literal["user", "agent", "system"]
_ACTOR_PREFIX = {"user": "usr_", "agent": "agt_", "system": "sys_"}
_ACTOR_RE = {k: re.compile(id_pattern(p)) for k, p in _ACTOR_PREFIX.items()}


class Actor(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who issues a command or owns a session; the id prefix must match the kind."""

    kind: ActorKind
    id: str

    def __post_init__(self) -> None:
        if not _ACTOR_RE[self.kind].match(self.id):
            raise ValueError(f"actor id for kind {self.kind!r} must match {_ACTOR_RE[self.kind].pattern}")


SYSTEM_ACTOR = Actor(kind="system", id="sys_engine")

MAX_SAFE_INT = 2**53 - 1  # the largest integer every JSON reader (JavaScript's numbers) holds exactly
NonNegInt = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]
PosInt = Annotated[int, Meta(ge=1, le=MAX_SAFE_INT)]
Cap = Annotated[int, Meta(ge=1, le=1000)]

DEFAULT_MAX_DEPTH = 4
DEFAULT_MAX_WIDTH = 8


class ProjectConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_delegation_depth: Cap = DEFAULT_MAX_DEPTH
    max_delegation_width: Cap = DEFAULT_MAX_WIDTH


Outcome = Literal["succeeded", "partial", "failed"]
SummaryText = Annotated[str, Meta(max_length=4000)]


class Summary(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Written once when a session completes."""

    outcome: Outcome
    text: SummaryText
    deliverables: Annotated[list[Annotated[str, Meta(max_length=2000)]], Meta(max_length=100)] = []


SessionStatus = Literal["idle", "active", "awaiting_hitl", "locked", "awaiting_merge", "failed", "archived"]
BLOCKING_STATUSES: frozenset[SessionStatus] = frozenset({"active", "awaiting_hitl", "locked", "awaiting_merge"})
"""Statuses that keep a thread from being archived."""
RUNNING_STATUSES: tuple[SessionStatus, ...] = ("active", "awaiting_hitl")
"""A session in a run: it may complete, cancel, fail or spawn, and it holds its sandbox."""
ThreadStatus = Literal["open", "archived", "deleted"]
FailureMode = Literal["delegate", "fail_fast"]
EdgeKind = Literal["agent_spawn", "handoff", "broadcast"]
EdgeStatus = Literal["open", "completed", "failed", "cancelled"]


class ParkedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A log message a worker gave up on after its retries, kept for an operator (`workers parked`)."""

    worker: str  # the durable consumer's name
    position: int
    subject: str
    error: str
    attempts: int
    at: str
