"""What an accepted command returns: one result type per kind of answer, named by each command
(`Command.RESULT`), so a client reads `result.session_id` with no optional fields that never apply.

Every field is always sent (`null` where a value does not apply, such as a session without a
sandbox), and a repeated command id answers exactly the same result, derived from its event.
"""

from __future__ import annotations

import msgspec

from agentledger.schemas.common import SessionStatus, ThreadStatus
from agentledger.schemas.ids import EdgeId, HandoffId, ProjectId, SandboxId, SessionId, SummaryId, ThreadId
from agentledger.schemas.sandboxes import ExecOutcome, ExecStatus, SandboxStatus


class Result(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every command result."""


class ProjectCreateResult(Result):
    project_id: ProjectId


class ThreadCreateResult(Result):
    thread_id: ThreadId


class ThreadStatusResult(Result):
    """The thread's status after the command (archive, unarchive, delete)."""

    thread_id: ThreadId
    status: ThreadStatus


class SessionCreateResult(Result):
    session_id: SessionId
    sandbox_id: SandboxId | None = None


class SessionStatusResult(Result):
    """The session's status after the command (start, input, cancel, fail, archive, restore)."""

    session_id: SessionId
    status: SessionStatus


class SessionCompleteResult(Result):
    session_id: SessionId
    status: SessionStatus
    summary_id: SummaryId


class SessionSpawnResult(Result):
    session_id: SessionId
    edge_id: EdgeId
    depth: int
    sandbox_id: SandboxId | None = None


class HandoffSingleResult(Result):
    """`session_id` is the recipient's new session; `owner_version` the source's new version."""

    handoff_id: HandoffId
    session_id: SessionId
    owner_version: int


class HandoffBroadcastResult(Result):
    """`session_ids`: one new session per recipient, in the order of `recipients`."""

    handoff_id: HandoffId
    session_ids: list[SessionId]
    owner_version: int


class SandboxStatusResult(Result):
    """The sandbox's status as the command leaves it (a request: what it will be once carried out)."""

    sandbox_id: SandboxId
    status: SandboxStatus


class SandboxExecResult(Result):
    """An exec: `running` until its outcome is recorded; then `finished` with the `outcome`, or
    `failed` with the `error` (it did not run, or whether it ran is not known). The reply's
    `position` is the request's; `outcome_position` that of the outcome event, once there is one."""

    sandbox_id: SandboxId
    status: ExecStatus
    outcome_position: int | None = None
    outcome: ExecOutcome | None = None
    error: str | None = None
