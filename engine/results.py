"""The `result` of an accepted command, derived from its event alone, so that a repeated
command_id (also after a restart) is answered exactly as the first time."""

from __future__ import annotations

from agentledger.schemas.events import (
    AnyEvent,
    HandoffBroadcasted,
    HandoffTransferred,
    ProjectCreated,
    SandboxCreateRequested,
    SessionCompleted,
    SessionCreated,
    SessionSpawned,
    ThreadCreated,
)
from agentledger.schemas.replies import CommandResult

_STATUS_AFTER = {
    "thread.archived": "archived", "thread.unarchived": "open", "thread.deleted": "deleted",
    "session.started": "active", "session.input_requested": "awaiting_hitl", "session.input_provided": "active",
    "session.cancelled": "idle", "session.failed": "failed", "session.archived": "archived",
    "session.restored": "idle",
    "sandbox.pause_requested": "paused", "sandbox.resume_requested": "running", "sandbox.destroy_requested": "destroyed",
    "sandbox.created": "running", "sandbox.paused": "paused", "sandbox.resumed": "running",
    "sandbox.destroyed": "destroyed", "sandbox.failed": "failed",
}


def result_of(event: AnyEvent) -> CommandResult:
    match event:
        case ProjectCreated():
            return CommandResult(project_id=event.project_id)
        case ThreadCreated():
            return CommandResult(thread_id=event.thread_id)
        case SessionCreated():
            return CommandResult(session_id=event.session_id,
                                 sandbox_id=event.sandbox.sandbox_id if event.sandbox else None)
        case SessionCompleted():
            return CommandResult(session_id=event.session_id, status="idle", summary_id=event.summary_id)
        case SessionSpawned():
            return CommandResult(session_id=event.session_id, edge_id=event.edge_id, depth=event.depth,
                                 sandbox_id=event.sandbox.sandbox_id if event.sandbox else None)
        case SandboxCreateRequested():
            return CommandResult(sandbox_id=event.sandbox_id, status="creating")
        case HandoffTransferred():
            return CommandResult(handoff_id=event.handoff_id, session_id=event.recipient.session_id,
                                 owner_version=event.owner_version)
        case HandoffBroadcasted():
            return CommandResult(handoff_id=event.handoff_id, session_ids=[r.session_id for r in event.recipients],
                                 owner_version=event.owner_version)
    status = _STATUS_AFTER[type(event).__struct_config__.tag]  # type: ignore[index]
    if hasattr(event, "sandbox_id"):
        return CommandResult(sandbox_id=event.sandbox_id, status=status)  # type: ignore[union-attr]
    if hasattr(event, "session_id"):
        return CommandResult(session_id=event.session_id, status=status)  # type: ignore[union-attr]
    return CommandResult(thread_id=event.thread_id, status=status)  # type: ignore[union-attr]
