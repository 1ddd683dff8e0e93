"""Events: each class is at once the wire schema (a msgspec tagged union on `type`) and the
domain event that the boundary models apply with `@event` (eventsourcing's DCB `Decision`).

One event per accepted command: the fact may touch several entities of its boundary.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from eventsourcing.dcb.msgpack import Decision
from msgspec import Meta

from agentledger.schemas.common import Actor, FailureMode, ProjectConfig, Summary
from agentledger.schemas.ids import EdgeId, HandoffId, ProjectId, SandboxId, SessionId, SummaryId, TenantId, ThreadId
from agentledger.schemas.sandboxes import (
    ExecOutcome,
    SandboxAction,
    SandboxBinding,
    SandboxOp,
    SandboxOptions,
    SandboxStatus,
)

SCHEMA_VERSION = 1


class Event(Decision, tag_field="type", kw_only=True, frozen=True):
    pass


class ProjectCreated(Event, kw_only=True, tag="project.created"):
    project_id: ProjectId
    name: str
    config: ProjectConfig


class ForkPoint(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: ThreadId
    position: int


class ThreadCreated(Event, kw_only=True, tag="thread.created"):
    """Carries the project's caps: project config is immutable, so the thread boundary can
    enforce them without reading another boundary. A fork names its source and the position
    it sees the source's history up to; no event is copied."""

    thread_id: ThreadId
    project_id: ProjectId
    title: str
    max_delegation_depth: int
    max_delegation_width: int
    forked_from: ForkPoint | None = None


class ThreadArchived(Event, kw_only=True, tag="thread.archived"):
    thread_id: ThreadId
    sandbox_actions: list[SandboxAction] = []


class ThreadUnarchived(Event, kw_only=True, tag="thread.unarchived"):
    thread_id: ThreadId


class ThreadDeleted(Event, kw_only=True, tag="thread.deleted"):
    """Tombstone: the thread id stays taken, its history stays readable for audit."""

    thread_id: ThreadId


class SessionCreated(Event, kw_only=True, tag="session.created"):
    session_id: SessionId
    owner: Actor
    budget: int | None = None
    sandbox: SandboxBinding | None = None


class SessionStarted(Event, kw_only=True, tag="session.started"):
    session_id: SessionId
    sandbox_actions: list[SandboxAction] = []


class SessionInputRequested(Event, kw_only=True, tag="session.input_requested"):
    session_id: SessionId
    prompt: str = ""


class SessionInputProvided(Event, kw_only=True, tag="session.input_provided"):
    session_id: SessionId


class SessionCompleted(Event, kw_only=True, tag="session.completed"):
    session_id: SessionId
    summary_id: SummaryId
    summary: Summary
    usage: int = 0
    sandbox_actions: list[SandboxAction] = []


class SessionCancelled(Event, kw_only=True, tag="session.cancelled"):
    """Interrupted marker: the session returns to idle without a summary."""

    session_id: SessionId
    reason: str = ""
    usage: int = 0
    sandbox_actions: list[SandboxAction] = []


class SessionFailed(Event, kw_only=True, tag="session.failed"):
    session_id: SessionId
    reason: str = ""
    usage: int = 0
    sandbox_actions: list[SandboxAction] = []


class SessionArchived(Event, kw_only=True, tag="session.archived"):
    session_id: SessionId


class SessionRestored(Event, kw_only=True, tag="session.restored"):
    session_id: SessionId


class SessionSpawned(Event, kw_only=True, tag="session.spawned"):
    """Child session + delegation edge + lineage, as one fact."""

    session_id: SessionId
    parent_session_id: SessionId
    root_session_id: SessionId
    depth: int
    edge_id: EdgeId
    agent: Actor
    failure_mode: FailureMode
    budget: int | None = None
    sandbox: SandboxBinding | None = None


class HandoffRecipient(msgspec.Struct, frozen=True, kw_only=True):
    actor: Actor
    session_id: SessionId
    edge_id: EdgeId


class HandoffTransferred(Event, kw_only=True, tag="handoff.transferred"):
    """Single handoff: ownership moves to the recipient, who gets an active child session."""

    handoff_id: HandoffId
    source_session_id: SessionId
    previous_owner: Actor
    owner_version: int
    depth: int
    recipient: HandoffRecipient


class HandoffBroadcasted(Event, kw_only=True, tag="handoff.broadcast"):
    """Broadcast: the source waits in awaiting_merge until every recipient has ended."""

    handoff_id: HandoffId
    source_session_id: SessionId
    owner_version: int
    depth: int
    recipients: Annotated[list[HandoffRecipient], Meta(min_length=2)]


# -- the sandbox boundary: intent (`*_requested`) and the provider's outcome ------------------
class SandboxCreateRequested(Event, kw_only=True, tag="sandbox.create_requested"):
    """Create (or, with `forked_from`, copy) a sandbox."""

    sandbox_id: SandboxId
    provider: str
    options: SandboxOptions = SandboxOptions()
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None
    forked_from: SandboxId | None = None


class SandboxPauseRequested(Event, kw_only=True, tag="sandbox.pause_requested"):
    sandbox_id: SandboxId
    reason: str = ""


class SandboxResumeRequested(Event, kw_only=True, tag="sandbox.resume_requested"):
    sandbox_id: SandboxId
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None


class SandboxDestroyRequested(Event, kw_only=True, tag="sandbox.destroy_requested"):
    sandbox_id: SandboxId
    reason: str = ""


class SandboxExecRequested(Event, kw_only=True, tag="sandbox.exec_requested"):
    """Run `argv` in the sandbox, asked by the session that held it. Carried out in log order with
    the sandbox's other requests; its outcome is `sandbox.exec_finished` or `sandbox.exec_failed`."""

    sandbox_id: SandboxId
    session_id: SessionId
    argv: list[str]
    timeout_ms: int
    stdin: str = ""


class SandboxCreated(Event, kw_only=True, tag="sandbox.created"):
    sandbox_id: SandboxId
    location: str
    request_position: int


class SandboxPaused(Event, kw_only=True, tag="sandbox.paused"):
    sandbox_id: SandboxId
    request_position: int


class SandboxResumed(Event, kw_only=True, tag="sandbox.resumed"):
    sandbox_id: SandboxId
    request_position: int


class SandboxDestroyed(Event, kw_only=True, tag="sandbox.destroyed"):
    sandbox_id: SandboxId
    request_position: int


class SandboxFailed(Event, kw_only=True, tag="sandbox.failed"):
    """The provider could not carry out a request; recorded, never hidden, and never changes
    the outcome of the session that caused the request."""

    sandbox_id: SandboxId
    request_position: int
    op: SandboxOp
    error: str


class SandboxExecFinished(Event, kw_only=True, tag="sandbox.exec_finished"):
    """The program of the exec at `request_position` ran: what it did. An exec leaves the sandbox's
    status as it was (`sandbox_status`)."""

    sandbox_id: SandboxId
    request_position: int
    outcome: ExecOutcome
    sandbox_status: SandboxStatus


class SandboxExecFailed(Event, kw_only=True, tag="sandbox.exec_failed"):
    """The exec at `request_position` did not run (refused by the provider: a program the deployment
    does not allow, a sandbox that is gone), or whether it ran is not known (`interrupted: …`)."""

    sandbox_id: SandboxId
    request_position: int
    error: str
    sandbox_status: SandboxStatus


AnyEvent = (
    ProjectCreated | ThreadCreated | ThreadArchived | ThreadUnarchived | ThreadDeleted
    | SessionCreated | SessionStarted | SessionInputRequested | SessionInputProvided
    | SessionCompleted | SessionCancelled | SessionFailed | SessionArchived | SessionRestored
    | SessionSpawned | HandoffTransferred | HandoffBroadcasted
    | SandboxCreateRequested | SandboxPauseRequested | SandboxResumeRequested | SandboxDestroyRequested
    | SandboxCreated | SandboxPaused | SandboxResumed | SandboxDestroyed | SandboxFailed
    | SandboxExecRequested | SandboxExecFinished | SandboxExecFailed
)


Role = Literal["member", "auditor", "admin", "engine", "effects"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who sent a command, as the broker authenticated it (never a field of the command): the
    user named in its credentials, its role, and its public nkey when it is a tenant's user.
    Commands from inside the engine's own account are the deployment's (`admin`), the engine's, or
    the effect handler's (`effects`: sandbox outcomes, on the subject only it may publish on)."""

    id: str
    role: Role
    key: str | None = None


class Envelope(msgspec.Struct, kw_only=True, frozen=True):
    """What is stored as one JetStream message. The stream sequence is the position."""

    event_id: str
    type: str
    schema_version: int = SCHEMA_VERSION
    tenant_id: TenantId
    boundary: str
    command: str
    command_id: str
    correlation_id: str
    causation_id: str | None = None
    actor: Actor
    principal: Principal | None = None  # absent on events written before principals were recorded
    at: str
    data: AnyEvent


class StoredEvent(Envelope, kw_only=True, frozen=True):
    """An envelope as read back from the log, with its position."""

    position: int
