"""Command bodies, one Struct per command; `COMMANDS` maps the subject's command name to its type.

Unknown fields are rejected so a typo never silently becomes a default.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from agentledger.schemas.common import Actor, FailureMode, NonNegInt, PosInt, ProjectConfig, Summary
from agentledger.schemas.ids import CommandId, ProjectId, SandboxId, SessionId, ThreadId
from agentledger.schemas.results import (
    HandoffBroadcastResult,
    HandoffSingleResult,
    ProjectCreateResult,
    Result,
    SandboxExecResult,
    SandboxStatusResult,
    SessionCompleteResult,
    SessionCreateResult,
    SessionSpawnResult,
    SessionStatusResult,
    ThreadCreateResult,
    ThreadStatusResult,
)
from agentledger.schemas.sandboxes import (
    EXEC_STDIN_MAX,
    MAX_EXEC_TIMEOUT_MS,
    Argv,
    ExecOutcome,
    ProviderName,
    SandboxOp,
    SandboxOptions,
    SandboxSpec,
)

MAX_REQUEST_BYTES = 64 * 1024
"""A command or query body above this is `invalid_command` before it is decoded. With the
envelope around it an event stays far below NATS's default 1 MiB `max_payload`."""

Reason = Annotated[str, Meta(max_length=2000)]
Title = Annotated[str, Meta(max_length=300)]


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A command body. Its docstring's first line is its help (CLI, AsyncAPI); `RESULT` is the type
    of the `result` an accepted reply carries."""

    NAME: ClassVar[str]
    RESULT: ClassVar[type[Result]]
    command_id: CommandId | None = None
    actor: Actor
    correlation_id: Annotated[str, Meta(max_length=128)] | None = None
    causation_id: Annotated[str, Meta(max_length=128)] | None = None


class ProjectCreate(Command, kw_only=True):
    """Create a project."""

    NAME: ClassVar[str] = "project.create"
    RESULT: ClassVar[type[Result]] = ProjectCreateResult
    project_id: ProjectId | None = None
    name: Title
    config: ProjectConfig = ProjectConfig()


class ThreadCreate(Command, kw_only=True):
    """Create a thread in a project."""

    NAME: ClassVar[str] = "thread.create"
    RESULT: ClassVar[type[Result]] = ThreadCreateResult
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
    """Archive a thread (refused while a session is busy)."""

    NAME: ClassVar[str] = "thread.archive"
    RESULT: ClassVar[type[Result]] = ThreadStatusResult
    thread_id: ThreadId


class ThreadUnarchive(Command, kw_only=True):
    """Reopen an archived thread."""

    NAME: ClassVar[str] = "thread.unarchive"
    RESULT: ClassVar[type[Result]] = ThreadStatusResult
    thread_id: ThreadId


class ThreadDelete(Command, kw_only=True):
    """Delete a thread (refused while it has sessions)."""

    NAME: ClassVar[str] = "thread.delete"
    RESULT: ClassVar[type[Result]] = ThreadStatusResult
    thread_id: ThreadId


class SessionCreate(Command, kw_only=True):
    """Create an idle session in a thread."""

    NAME: ClassVar[str] = "session.create"
    RESULT: ClassVar[type[Result]] = SessionCreateResult
    session_id: SessionId | None = None
    thread_id: ThreadId
    owner: Actor
    budget: PosInt | None = None
    sandbox: SandboxSpec | None = None


class SessionCommand(Command, kw_only=True):
    """A command addressed to one existing session; its thread is found by the engine."""

    session_id: SessionId


class SessionStart(SessionCommand, kw_only=True):
    """Start a session."""

    NAME: ClassVar[str] = "session.start"
    RESULT: ClassVar[type[Result]] = SessionStatusResult


class SessionRequestInput(SessionCommand, kw_only=True):
    """Pause a session for human input."""

    NAME: ClassVar[str] = "session.request_input"
    RESULT: ClassVar[type[Result]] = SessionStatusResult
    prompt: Annotated[str, Meta(max_length=4000)] = ""


class SessionProvideInput(SessionCommand, kw_only=True):
    """Resume a session waiting for input."""

    NAME: ClassVar[str] = "session.provide_input"
    RESULT: ClassVar[type[Result]] = SessionStatusResult


class SessionComplete(SessionCommand, kw_only=True):
    """Complete a session with its summary."""

    NAME: ClassVar[str] = "session.complete"
    RESULT: ClassVar[type[Result]] = SessionCompleteResult
    summary: Summary
    usage: NonNegInt = 0


class SessionCancel(SessionCommand, kw_only=True):
    """Interrupt a session; it returns to idle."""

    NAME: ClassVar[str] = "session.cancel"
    RESULT: ClassVar[type[Result]] = SessionStatusResult
    reason: Reason = ""
    usage: NonNegInt = 0


class SessionFail(SessionCommand, kw_only=True):
    """Mark a session failed."""

    NAME: ClassVar[str] = "session.fail"
    RESULT: ClassVar[type[Result]] = SessionStatusResult
    reason: Reason = ""
    usage: NonNegInt = 0


class SessionArchive(SessionCommand, kw_only=True):
    """Archive a session."""

    NAME: ClassVar[str] = "session.archive"
    RESULT: ClassVar[type[Result]] = SessionStatusResult


class SessionRestore(SessionCommand, kw_only=True):
    """Restore an archived session."""

    NAME: ClassVar[str] = "session.restore"
    RESULT: ClassVar[type[Result]] = SessionStatusResult


class SessionSpawn(Command, kw_only=True):
    """Spawn a child session for an agent."""

    NAME: ClassVar[str] = "session.spawn"
    RESULT: ClassVar[type[Result]] = SessionSpawnResult
    parent_session_id: SessionId
    session_id: SessionId | None = None
    thread_id: ThreadId | None = None  # optional assertion: the parent must live in this thread
    agent: Actor
    failure_mode: FailureMode = "delegate"
    budget: PosInt | None = None
    sandbox: SandboxSpec | None = None


class HandoffSingle(Command, kw_only=True):
    """Hand a session over to one actor."""

    NAME: ClassVar[str] = "handoff.single"
    RESULT: ClassVar[type[Result]] = HandoffSingleResult
    source_session_id: SessionId
    recipient: Actor
    expected_owner_version: NonNegInt


class HandoffBroadcast(Command, kw_only=True):
    """Broadcast a session to several actors and wait for all of them."""

    NAME: ClassVar[str] = "handoff.broadcast"
    RESULT: ClassVar[type[Result]] = HandoffBroadcastResult
    source_session_id: SessionId
    recipients: Annotated[list[Actor], Meta(min_length=2, max_length=1000)]
    expected_owner_version: NonNegInt


class SandboxCreate(Command, kw_only=True):
    """Create a sandbox."""

    NAME: ClassVar[str] = "sandbox.create"
    RESULT: ClassVar[type[Result]] = SandboxStatusResult
    sandbox_id: SandboxId | None = None
    provider: ProviderName = "local"
    options: SandboxOptions = SandboxOptions()
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None


class SandboxFork(Command, kw_only=True):
    """Fork a sandbox into a new one."""

    NAME: ClassVar[str] = "sandbox.fork"
    RESULT: ClassVar[type[Result]] = SandboxStatusResult
    sandbox_id: SandboxId
    new_sandbox_id: SandboxId | None = None
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None


class SandboxPause(Command, kw_only=True):
    """Pause a sandbox."""

    NAME: ClassVar[str] = "sandbox.pause"
    RESULT: ClassVar[type[Result]] = SandboxStatusResult
    sandbox_id: SandboxId
    reason: Reason = ""


class SandboxResume(Command, kw_only=True):
    """Resume a paused sandbox."""

    NAME: ClassVar[str] = "sandbox.resume"
    RESULT: ClassVar[type[Result]] = SandboxStatusResult
    sandbox_id: SandboxId
    owner_session_id: SessionId | None = None
    thread_id: ThreadId | None = None


class SandboxDestroy(Command, kw_only=True):
    """Destroy a sandbox."""

    NAME: ClassVar[str] = "sandbox.destroy"
    RESULT: ClassVar[type[Result]] = SandboxStatusResult
    sandbox_id: SandboxId
    reason: Reason = ""


class SandboxExec(Command, kw_only=True):
    """Run a program in a sandbox as the session that holds it; the reply waits briefly for its outcome."""

    NAME: ClassVar[str] = "sandbox.exec"
    RESULT: ClassVar[type[Result]] = SandboxExecResult
    sandbox_id: SandboxId
    session_id: SessionId
    argv: Argv
    timeout_ms: Annotated[int, Meta(ge=1, le=MAX_EXEC_TIMEOUT_MS, description="milliseconds the program may run "
                                    "before it is killed")] = 60_000
    stdin: Annotated[str, Meta(max_length=EXEC_STDIN_MAX, description="text fed to the program")] = ""


class SandboxReportOutcome(Command, kw_only=True):
    """Sent by effect handlers: what the provider did with a `*_requested` event."""

    NAME: ClassVar[str] = "sandbox.report_outcome"
    RESULT: ClassVar[type[Result]] = SandboxStatusResult
    sandbox_id: SandboxId
    request_position: PosInt
    op: SandboxOp
    ok: bool
    location: Annotated[str, Meta(max_length=4096)] | None = None
    error: Annotated[str, Meta(max_length=4000)] | None = None
    exec: ExecOutcome | None = None  # op `exec` with ok: what the program did

    def __post_init__(self) -> None:
        if self.exec is not None and not (self.op == "exec" and self.ok):
            raise ValueError("exec goes only with a successful op 'exec'")


COMMANDS: dict[str, type[Command]] = {
    c.NAME: c
    for c in (
        ProjectCreate, ThreadCreate, ThreadArchive, ThreadUnarchive, ThreadDelete, SessionCreate,
        SessionStart, SessionRequestInput, SessionProvideInput, SessionComplete, SessionCancel,
        SessionFail, SessionArchive, SessionRestore, SessionSpawn, HandoffSingle, HandoffBroadcast,
        SandboxCreate, SandboxFork, SandboxPause, SandboxResume, SandboxDestroy, SandboxExec, SandboxReportOutcome,
    )
}
