"""What a replay shows: a thread rebuilt from its history as of a position, and the difference
between two such positions. The CLI (`replay --json`) and the web timeline return these."""

from __future__ import annotations

import msgspec

from agentledger.schemas.queries import SandboxHold, SessionView, ThreadView, TreeNode
from agentledger.schemas.sandboxes import ExecOutcome, ExecStatus

Scalar = str | int | bool | None


class ExecView(msgspec.Struct, frozen=True, kw_only=True):
    """One `sandbox.exec` in a sandbox of the thread, as of the replay's position: `running` while
    its outcome lies beyond it."""

    sandbox_id: str
    request_position: int
    session_id: str
    argv: list[str]
    status: ExecStatus
    outcome_position: int | None = None
    outcome: ExecOutcome | None = None
    error: str | None = None


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    """The thread, every session and the delegation trees, as of `at` (None: the latest).

    `history_events` counts the events of the thread's history (a fork's lineage included) at or
    before `at`; `log_end` is the last position of the log when it was read, so a reader can tell
    when `at` lies beyond it."""

    at: int | None
    thread: ThreadView
    sessions: list[SessionView]
    trees: list[TreeNode]
    history_events: int = 0
    log_end: int | None = None
    execs: list[ExecView] = []  # in the sandboxes the thread's sessions were bound to (`agentledger replay`)


class FieldChange(msgspec.Struct, frozen=True, kw_only=True):
    """One field that differs; structured values are given as compact JSON text."""

    field: str
    before: Scalar
    after: Scalar


class SessionChange(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    changes: list[FieldChange]


class ReplayDiff(msgspec.Struct, frozen=True, kw_only=True):
    """How the thread changed from position `from_position` to `to_position` (from <= to)."""

    thread_id: str
    from_position: int
    to_position: int
    events_between: int
    thread_changes: list[FieldChange]
    sessions_added: list[SessionView]
    sessions_removed: list[str]
    session_changes: list[SessionChange]
    sandboxes_acquired: list[SandboxHold]
    sandboxes_released: list[SandboxHold]
