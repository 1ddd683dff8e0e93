"""Query bodies and the read-model views they return."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta

from agentledger.schemas.common import (
    Actor,
    EdgeKind,
    EdgeStatus,
    FailureMode,
    NonNegInt,
    SessionStatus,
    Summary,
    ThreadStatus,
)
from agentledger.schemas.events import ForkPoint, StoredEvent
from agentledger.schemas.ids import EdgeId, ProjectId, SandboxId, SessionId, SummaryId, TenantId, ThreadId
from agentledger.schemas.sandboxes import SandboxBinding, SandboxIntent, SandboxOp, SandboxStatus


class Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    NAME: ClassVar[str]
    min_position: NonNegInt | None = None


class ThreadGet(Query, kw_only=True):
    """Show a thread and its sessions."""

    NAME: ClassVar[str] = "thread.get"
    thread_id: ThreadId


class ThreadList(Query, kw_only=True):
    """List a project's threads (without a project id, the tenant's), oldest first, a page at a time.

    Those created after position `after`, at most `limit`. A `status` filter applies within the
    page, so a page may hold fewer rows than `limit`; ask again from `next_after` while `more`
    is true."""

    NAME: ClassVar[str] = "thread.list"
    project_id: ProjectId | None = None
    status: ThreadStatus | None = None
    after: NonNegInt = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class SessionGet(Query, kw_only=True):
    """Show one session."""

    NAME: ClassVar[str] = "session.get"
    session_id: SessionId


class SessionTree(Query, kw_only=True):
    """Show the delegation tree under a session."""

    NAME: ClassVar[str] = "session.tree"
    session_id: SessionId


class EventsRead(Query, kw_only=True):
    """Read one page of the event log.

    Events after `after`, oldest first, at most `limit`: the tenant's, a thread's history
    (`thread_id`), or one sandbox's (`sandbox_id`). With `sandboxes`, a thread's history also
    holds the events of every sandbox its sessions were bound to, each from the binding on. With
    `before`, the page ends there instead: the last `limit` events with after < position < before
    (paging backwards)."""

    NAME: ClassVar[str] = "events.read"
    thread_id: ThreadId | None = None
    sandbox_id: SandboxId | None = None
    sandboxes: bool = False
    after: NonNegInt = 0
    before: Annotated[int, Meta(ge=1)] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100

    def __post_init__(self) -> None:
        if self.thread_id is not None and self.sandbox_id is not None:
            raise ValueError("give thread_id or sandbox_id, not both")
        if self.sandboxes and self.thread_id is None:
            raise ValueError("sandboxes goes with thread_id (a thread's history with its sandboxes' events)")


class SandboxGet(Query, kw_only=True):
    """Show one sandbox."""

    NAME: ClassVar[str] = "sandbox.get"
    sandbox_id: SandboxId


class SandboxListLive(Query, kw_only=True):
    """List the deployment's sandboxes, every tenant's, created and not destroyed (the deployment's only).

    What a reconciler compares with its provider, without reading the log itself: those whose
    creation was recorded after position `after`, at most `limit` creations per page, oldest
    first; ask again from `next_after` while `more` is true. The subject's tenant only routes it."""

    NAME: ClassVar[str] = "sandbox.list_live"
    after: NonNegInt = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class QuarantineList(Query, kw_only=True):
    """List log messages skipped because they failed admission (an operator's query)."""

    NAME: ClassVar[str] = "quarantine.list"
    after: NonNegInt = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


QUERIES: dict[str, type[Query]] = {q.NAME: q for q in (ThreadGet, ThreadList, SessionGet, SessionTree, EventsRead, SandboxGet,
                                                        SandboxListLive, QuarantineList)}


class SessionRef(msgspec.Struct, frozen=True):
    session_id: SessionId
    status: SessionStatus


class SandboxHold(msgspec.Struct, frozen=True):
    """An owned sandbox not yet released (destroyed) by its session's policy or an archive."""

    sandbox_id: SandboxId
    session_id: SessionId


class ThreadView(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: ThreadId
    project_id: ProjectId
    title: str
    status: ThreadStatus
    max_delegation_depth: int
    max_delegation_width: int
    created_position: int
    position: int
    sessions: list[SessionRef]
    blocking_sessions: int
    forked_from: ForkPoint | None = None
    held_sandboxes: list[SandboxHold] = []


class ThreadRow(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: ThreadId
    title: str
    status: ThreadStatus
    position: int
    session_count: int
    project_id: ProjectId
    forked_from: ForkPoint | None = None


class BudgetView(msgspec.Struct, frozen=True, kw_only=True):
    limit: int | None
    used: int
    reserved_for_children: int
    used_by_children: int
    remaining: int | None


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    session_id: SessionId
    thread_id: ThreadId
    project_id: ProjectId
    status: SessionStatus
    owner: Actor
    owner_version: int
    previous_actors: list[Actor]
    depth: int
    parent_session_id: SessionId | None
    root_session_id: SessionId
    edge_id: EdgeId | None
    edge_kind: EdgeKind | None
    edge_status: EdgeStatus | None
    failure_mode: FailureMode | None
    open_children: int
    summary_id: SummaryId | None
    summary: Summary | None
    budget: BudgetView
    merge_result: list[MergeEntry] | None
    sandbox: SandboxBinding | None
    held_sandboxes: list[SandboxId]
    created_position: int
    position: int


class MergeEntry(msgspec.Struct, frozen=True, kw_only=True):
    session_id: SessionId
    actor: Actor
    outcome: str
    summary_id: SummaryId | None


class TreeNode(msgspec.Struct, frozen=True, kw_only=True):
    session_id: SessionId
    status: SessionStatus
    depth: int
    owner: Actor
    edge_kind: EdgeKind | None
    edge_status: EdgeStatus | None
    summary_id: SummaryId | None
    summary: Summary | None
    budget: BudgetView
    open_children: int
    children: list[TreeNode]


class ThreadResult(msgspec.Struct, frozen=True):
    thread: ThreadView


class ThreadListResult(msgspec.Struct, frozen=True):
    threads: list[ThreadRow]
    next_after: int = 0  # the position to ask `after` for the next page (the last thread's creation)
    more: bool = False


class SessionResult(msgspec.Struct, frozen=True):
    session: SessionView


class TreeResult(msgspec.Struct, frozen=True):
    tree: TreeNode


class EventsPage(msgspec.Struct, frozen=True):
    events: list[StoredEvent]
    next_after: int
    more: bool = False  # the page stopped at the reply's byte limit before `limit` events: ask again from next_after


class SandboxView(msgspec.Struct, frozen=True, kw_only=True):
    sandbox_id: SandboxId
    status: SandboxStatus
    intent: SandboxIntent
    provider: str
    owner_session_id: SessionId | None
    thread_id: ThreadId | None
    forked_from: SandboxId | None
    location: str | None
    pending: list[SandboxOp]  # the ops requested and not yet carried out, oldest first
    pending_positions: list[int]  # the log position of each request in `pending`
    last_error: str | None
    position: int


class SandboxResult(msgspec.Struct, frozen=True):
    sandbox: SandboxView


class LiveSandbox(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: TenantId
    sandbox: SandboxView


class SandboxListResult(msgspec.Struct, frozen=True, kw_only=True):
    sandboxes: list[LiveSandbox]
    next_after: int = 0  # the position to ask `after` for the next page (the last creation read)
    more: bool = False


class Quarantined(msgspec.Struct, frozen=True, kw_only=True):
    """A message of the log that no model applies, and why."""

    position: int
    subject: str
    reason: str
    tenant_id: TenantId | None = None  # the subject's tenant token, when it is a well-formed one


class QuarantineResult(msgspec.Struct, frozen=True, kw_only=True):
    count: int  # quarantined since this engine started (entries keeps the most recent)
    entries: list[Quarantined]


# What each query answers with; the published reply schemas (and the typed clients generated
# from them) come from this table, and a test keeps it complete.
QUERY_RESULTS: dict[str, type[msgspec.Struct]] = {
    ThreadGet.NAME: ThreadResult,
    ThreadList.NAME: ThreadListResult,
    SessionGet.NAME: SessionResult,
    SessionTree.NAME: TreeResult,
    EventsRead.NAME: EventsPage,
    SandboxGet.NAME: SandboxResult,
    SandboxListLive.NAME: SandboxListResult,
    QuarantineList.NAME: QuarantineResult,
}
