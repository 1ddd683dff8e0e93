"""The `result` of an accepted command, derived from its event alone: the first reply and every
repeat of its command id (also after a restart) are built by the same function."""

from __future__ import annotations

from agentledger.schemas.common import SessionStatus, ThreadStatus
from agentledger.schemas.events import (
    Event,
    HandoffBroadcasted,
    HandoffTransferred,
    ProjectCreated,
    SandboxCreated,
    SandboxCreateRequested,
    SandboxDestroyed,
    SandboxDestroyRequested,
    SandboxExecFailed,
    SandboxExecFinished,
    SandboxExecRequested,
    SandboxFailed,
    SandboxPaused,
    SandboxPauseRequested,
    SandboxResumed,
    SandboxResumeRequested,
    SessionArchived,
    SessionCancelled,
    SessionCompleted,
    SessionCreated,
    SessionFailed,
    SessionInputProvided,
    SessionInputRequested,
    SessionRestored,
    SessionSpawned,
    SessionStarted,
    ThreadArchived,
    ThreadCreated,
    ThreadDeleted,
    ThreadUnarchived,
)
from agentledger.schemas.results import (
    HandoffBroadcastResult,
    HandoffSingleResult,
    ProjectCreateResult,
    SandboxExecResult,
    SandboxStatusResult,
    SessionCompleteResult,
    SessionCreateResult,
    SessionSpawnResult,
    SessionStatusResult,
    ThreadCreateResult,
    ThreadStatusResult,
)
from agentledger.schemas.sandboxes import SandboxStatus

ThreadStatusEvent = ThreadArchived | ThreadUnarchived | ThreadDeleted
SessionStatusEvent = (SessionStarted | SessionInputRequested | SessionInputProvided | SessionCancelled | SessionFailed
                      | SessionArchived | SessionRestored)
SandboxEvent = (SandboxCreateRequested | SandboxPauseRequested | SandboxResumeRequested | SandboxDestroyRequested
                | SandboxCreated | SandboxPaused | SandboxResumed | SandboxDestroyed | SandboxFailed
                | SandboxExecFinished | SandboxExecFailed)
ExecOutcomeEvent = SandboxExecFinished | SandboxExecFailed

THREAD_STATUS_AFTER: dict[type[Event], ThreadStatus] = {
    ThreadArchived: "archived", ThreadUnarchived: "open", ThreadDeleted: "deleted"}
SESSION_STATUS_AFTER: dict[type[Event], SessionStatus] = {
    SessionStarted: "active", SessionInputRequested: "awaiting_hitl", SessionInputProvided: "active",
    SessionCancelled: "idle", SessionFailed: "failed", SessionArchived: "archived", SessionRestored: "idle"}
SANDBOX_STATUS_AFTER: dict[type[Event], SandboxStatus] = {
    SandboxCreateRequested: "creating", SandboxPauseRequested: "paused", SandboxResumeRequested: "running",
    SandboxDestroyRequested: "destroyed", SandboxCreated: "running", SandboxPaused: "paused",
    SandboxResumed: "running", SandboxDestroyed: "destroyed", SandboxFailed: "failed"}
"""A sandbox request answers the status it asks for; an outcome, the status it records."""


def project_created(e: ProjectCreated) -> ProjectCreateResult:
    return ProjectCreateResult(project_id=e.project_id)


def thread_created(e: ThreadCreated) -> ThreadCreateResult:
    return ThreadCreateResult(thread_id=e.thread_id)


def thread_status(e: ThreadStatusEvent) -> ThreadStatusResult:
    return ThreadStatusResult(thread_id=e.thread_id, status=THREAD_STATUS_AFTER[type(e)])


def session_created(e: SessionCreated) -> SessionCreateResult:
    return SessionCreateResult(session_id=e.session_id, sandbox_id=e.sandbox.sandbox_id if e.sandbox else None)


def session_status(e: SessionStatusEvent) -> SessionStatusResult:
    return SessionStatusResult(session_id=e.session_id, status=SESSION_STATUS_AFTER[type(e)])


def session_completed(e: SessionCompleted) -> SessionCompleteResult:
    return SessionCompleteResult(session_id=e.session_id, status="idle", summary_id=e.summary_id)


def session_spawned(e: SessionSpawned) -> SessionSpawnResult:
    return SessionSpawnResult(session_id=e.session_id, edge_id=e.edge_id, depth=e.depth,
                              sandbox_id=e.sandbox.sandbox_id if e.sandbox else None)


def handoff_transferred(e: HandoffTransferred) -> HandoffSingleResult:
    return HandoffSingleResult(handoff_id=e.handoff_id, session_id=e.recipient.session_id, owner_version=e.owner_version)


def handoff_broadcasted(e: HandoffBroadcasted) -> HandoffBroadcastResult:
    return HandoffBroadcastResult(handoff_id=e.handoff_id, session_ids=[r.session_id for r in e.recipients],
                                  owner_version=e.owner_version)


def sandbox_status(e: SandboxEvent) -> SandboxStatusResult:
    if isinstance(e, SandboxExecFinished | SandboxExecFailed):  # an exec leaves the status as it was
        return SandboxStatusResult(sandbox_id=e.sandbox_id, status=e.sandbox_status)
    return SandboxStatusResult(sandbox_id=e.sandbox_id, status=SANDBOX_STATUS_AFTER[type(e)])


def sandbox_exec(e: SandboxExecRequested) -> SandboxExecResult:
    """From the request alone: `running`. Its outcome, once recorded, is added by `exec_outcome`."""
    return SandboxExecResult(sandbox_id=e.sandbox_id, status="running")


def exec_outcome(requested: SandboxExecResult, e: ExecOutcomeEvent, position: int) -> SandboxExecResult:
    """An exec's result once its outcome event (at `position`) is in the log."""
    if isinstance(e, SandboxExecFinished):
        return SandboxExecResult(sandbox_id=requested.sandbox_id, status="finished", outcome_position=position,
                                 outcome=e.outcome)
    return SandboxExecResult(sandbox_id=requested.sandbox_id, status="failed", outcome_position=position, error=e.error)
