"""Command bodies, one Struct per command; `COMMANDS` maps the subject's command name to its type.

Unknown fields are rejected so a typo never silently becomes a default.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from agentledger.schemas.common import Actor, FailureMode, NonNegInt, PosInt, ProjectConfig, Summary
from agentledger.schemas.ids import CommandId, ProjectId, SandboxId, SessionId, ThreadId
from agentledger.schemas.sandboxes import ProviderName, SandboxOp, SandboxOptions, SandboxSpec

MAX_REQUEST_BYTES = 64 * 1024
"""A command or query body above this is `invalid_command` before it is decoded. With the
envelope around it an event stays far below NATS's default 1 MiB `max_payload`."""

Reason = Annotated[str, Meta(max_length=2000)]
Title = Annotated[str, Meta(max_length=300)]


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    NAME: ClassVar[str]
    command_id: CommandId | None = None
    actor: Actor
    correlation_id: Annotated[str, Meta(max_length=128)] | None = None
    causation_id: Annotated[str, Meta(max_length=128)] | None = None


class ProjectCreate(Command, kw_only=True):
    NAME: ClassVar[str] = "project.create"
    project_id: ProjectId | None = None
    name: Title
    config: ProjectConfig = ProjectConfig()


class ThreadCreate(Command, kw_only=True):
    NAME: ClassVar[str] = "thread.create"
    thread_id: ThreadId | None = None
    project_id: ProjectId
    title: Title = ""
    mode: Literal["new", "fork"] = "new"
    source_thread_id: ThreadId | None = None
    at_position: NonNegInt | None = None

    def __post_init__(self) -> None:
        if self.mode == "fork" and self.source_thread_id is None:
            raise ValueError("mode 'fork' needs source_thread_id")
        if self.mode == "new" and (self.source_thread_id is not None or self.at_position is not None):
            raise ValueError("source_thread_id and at_position only go with mode 'fork'")


class ThreadArchive(Command, kw_only=True):
    NAME: ClassVar[str] = "thread.archive"
    thread_id: ThreadId


class ThreadUnarchive(Command, kw_only=True):
    NAME: ClassVar[str] = "thread.unarchive"
    thread_id: ThreadId


class ThreadDelete(Command, kw_only=True):
    NAME: ClassVar[str] = "thread.delete"
    thread_id: ThreadId


class SessionCreate(Command, kw_only=True):
    NAME: ClassVar[str] = "session.create"
    session_id: SessionId | None = None
    thread_id: ThreadId
    owner: Actor
    budget: PosInt | None = None
    sandbox: SandboxSpec | None = None


class SessionCommand(Command, kw_only=True):
    """A command addressed to one existing session; its thread is found by the engine."""

    session_id: SessionId


class SessionStart(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.start"


class SessionRequestInput(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.request_input"
    prompt: Annotated[str, Meta(max_length=4000)] = ""


class SessionProvideInput(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.provide_input"


class SessionComplete(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.complete"
    summary: Summary
    usage: NonNegInt = 0


class SessionCancel(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.cancel"
    reason: Reason = ""
    usage: NonNegInt = 0


class SessionFail(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.fail"
    reason: Reason = ""
    usage: NonNegInt = 0


class SessionArchive(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.archive"


class SessionRestore(SessionCommand, kw_only=True):
    NAME: ClassVar[str] = "session.restore"


class SessionSpawn(Command, kw_only=True):
    NAME: ClassVar[str] = "session.spawn"
    parent_session_id: SessionId
    session_id: SessionId | None = None
    thread_id: ThreadId | None = None  # optional assertion: the parent must live in this thread
    agent: Actor
    failure_mode: FailureMode = "delegate"
    budget: PosInt | None = None
    sandbox: SandboxSpec | None = None


class HandoffSingle(Command, kw_only=True):
    NAME: ClassVar[str] = "handoff.single"
    source_session_id: SessionId
    recipient: Actor
    expected_owner_version: NonNegInt


class HandoffBroadcast(Command, kw_only=True):
    NAME: ClassVar[str] = "handoff.broadcast"
    source_session_id: SessionId
    recipients: Annotated[list[Actor], Meta(min_length=2, max_length=1000)]
    expected_owner_version: NonNegInt


class SandboxCreate(Command, kw_only=True):
    NAME: ClassVar[str] = "sandbox.create"
    sandbox_id: SandboxId | None = None
    provider: ProviderName = "local"
    options: SandboxOptions = SandboxOptions()
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None


class SandboxFork(Command, kw_only=True):
    NAME: ClassVar[str] = "sandbox.fork"
    sandbox_id: SandboxId
    new_sandbox_id: SandboxId | None = None
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None


class SandboxPause(Command, kw_only=True):
    NAME: ClassVar[str] = "sandbox.pause"
    sandbox_id: SandboxId
    reason: Reason = ""


class SandboxResume(Command, kw_only=True):
    NAME: ClassVar[str] = "sandbox.resume"
    sandbox_id: SandboxId
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None


class SandboxDestroy(Command, kw_only=True):
    NAME: ClassVar[str] = "sandbox.destroy"
    sandbox_id: SandboxId
    reason: Reason = ""


class SandboxReportOutcome(Command, kw_only=True):
    """Sent by effect handlers: what the provider did with a `*_requested` event."""

    NAME: ClassVar[str] = "sandbox.report_outcome"
    sandbox_id: SandboxId
    request_position: PosInt
    op: SandboxOp
    ok: bool
    location: Annotated[str, Meta(max_length=4096)] | None = None
    error: Annotated[str, Meta(max_length=4000)] | None = None


COMMANDS: dict[str, type[Command]] = {
    c.NAME: c
    for c in (
        ProjectCreate, ThreadCreate, ThreadArchive, ThreadUnarchive, ThreadDelete, SessionCreate,
        SessionStart, SessionRequestInput, SessionProvideInput, SessionComplete, SessionCancel,
        SessionFail, SessionArchive, SessionRestore, SessionSpawn, HandoffSingle, HandoffBroadcast,
        SandboxCreate, SandboxFork, SandboxPause, SandboxResume, SandboxDestroy, SandboxReportOutcome,
    )
}
