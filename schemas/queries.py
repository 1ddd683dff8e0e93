"""Query bodies and the read-model views they return."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from schemas.common import Actor, NonNegInt, Summary
from schemas.events import ForkPoint, StoredEvent
from schemas.ids import ProjectId, SandboxId, SessionId, ThreadId
from schemas.sandboxes import SandboxBinding


class Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    NAME: ClassVar[str]
    min_position: NonNegInt | None = None


class ThreadGet(Query, kw_only=True):
    NAME: ClassVar[str] = "thread.get"
    thread_id: ThreadId


class ThreadList(Query, kw_only=True):
    NAME: ClassVar[str] = "thread.list"
    project_id: ProjectId
    status: Literal["open", "archived", "deleted"] | None = None


class SessionGet(Query, kw_only=True):
    NAME: ClassVar[str] = "session.get"
    session_id: SessionId


class SessionTree(Query, kw_only=True):
    NAME: ClassVar[str] = "session.tree"
    session_id: SessionId


class EventsRead(Query, kw_only=True):
    NAME: ClassVar[str] = "events.read"
    thread_id: ThreadId | None = None
    after: NonNegInt = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class SandboxGet(Query, kw_only=True):
    NAME: ClassVar[str] = "sandbox.get"
    sandbox_id: SandboxId


class QuarantineList(Query, kw_only=True):
    """Messages of the log the engine skipped because they failed admission (an operator's query)."""

    NAME: ClassVar[str] = "quarantine.list"
    after: NonNegInt = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


QUERIES: dict[str, type[Query]] = {q.NAME: q for q in (ThreadGet, ThreadList, SessionGet, SessionTree, EventsRead, SandboxGet,
                                                        QuarantineList)}


class SessionRef(msgspec.Struct, frozen=True):
    session_id: str
    status: str


class SandboxHold(msgspec.Struct, frozen=True):
    """An owned sandbox not yet released (destroyed) by its session's policy or an archive."""

    sandbox_id: str
    session_id: str


class ThreadView(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: str
    project_id: str
    title: str
    status: str
    max_delegation_depth: int
    max_delegation_width: int
    created_position: int
    position: int
    sessions: list[SessionRef]
    blocking_sessions: int
    forked_from: ForkPoint | None = None
    held_sandboxes: list[SandboxHold] = []


class ThreadRow(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: str
    title: str
    status: str
    position: int
    session_count: int


class BudgetView(msgspec.Struct, frozen=True, kw_only=True):
    limit: int | None
    used: int
    reserved_for_children: int
    used_by_children: int
    remaining: int | None


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    thread_id: str
    project_id: str
    status: str
    owner: Actor
    owner_version: int
    previous_actors: list[Actor]
    depth: int
    parent_session_id: str | None
    root_session_id: str
    edge_id: str | None
    edge_kind: str | None
    edge_status: str | None
    failure_mode: str | None
    open_children: int
    summary_id: str | None
    summary: Summary | None
    budget: BudgetView
    merge_result: list[MergeEntry] | None
    sandbox: SandboxBinding | None
    held_sandboxes: list[str]
    created_position: int
    position: int


class MergeEntry(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    actor: Actor
    outcome: str
    summary_id: str | None


class TreeNode(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    status: str
    depth: int
    owner: Actor
    edge_kind: str | None
    edge_status: str | None
    summary_id: str | None
    summary: Summary | None
    budget: BudgetView
    open_children: int
    children: list[TreeNode]


class ThreadResult(msgspec.Struct, frozen=True):
    thread: ThreadView


class ThreadListResult(msgspec.Struct, frozen=True):
    threads: list[ThreadRow]


class SessionResult(msgspec.Struct, frozen=True):
    session: SessionView


class TreeResult(msgspec.Struct, frozen=True):
    tree: TreeNode


class EventsPage(msgspec.Struct, frozen=True):
    events: list[StoredEvent]
    next_after: int
    more: bool = False  # the page stopped at the reply's byte limit before `limit` events: ask again from next_after


class SandboxView(msgspec.Struct, frozen=True, kw_only=True):
    sandbox_id: str
    status: str
    intent: str
    provider: str
    owner_session_id: str | None
    thread_id: str | None
    forked_from: str | None
    location: str | None
    pending: list[str]
    last_error: str | None
    position: int


class SandboxResult(msgspec.Struct, frozen=True):
    sandbox: SandboxView


class Quarantined(msgspec.Struct, frozen=True, kw_only=True):
    """A message of the log that no model applies, and why."""

    position: int
    subject: str
    reason: str
    tenant_id: str | None = None  # the subject's tenant token, when it is a well-formed one


class QuarantineResult(msgspec.Struct, frozen=True, kw_only=True):
    count: int  # quarantined since this engine started (entries keeps the most recent)
    entries: list[Quarantined]
