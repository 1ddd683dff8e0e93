"""The thread boundary: the thread, its sessions, delegation edges and handoffs.

Everything the archive gate and the caps need is kept as a lookup here (blocking sessions,
open children per parent, owner versions), so a check never scans the thread's history.
Derived changes (closing a child's edge, a fail_fast parent failing, a broadcast source
returning to idle) happen while applying the event, so replay reproduces them exactly.
"""

from __future__ import annotations

import msgspec
from eventsourcing.domain import event

from agentledger.engine.boundary_model import BoundaryModel
from agentledger.schemas.common import (
    BLOCKING_STATUSES,
    RUNNING_STATUSES,
    Actor,
    EdgeKind,
    EdgeStatus,
    FailureMode,
    SessionStatus,
    Summary,
    ThreadStatus,
)
from agentledger.schemas.events import (
    ForkPoint,
    HandoffBroadcasted,
    HandoffRecipient,
    HandoffTransferred,
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
from agentledger.schemas.queries import MergeEntry
from agentledger.schemas.sandboxes import SandboxAction, SandboxBinding


class Edge(msgspec.Struct, kw_only=True):
    edge_id: str
    kind: EdgeKind
    parent_session_id: str
    child_session_id: str
    failure_mode: FailureMode
    status: EdgeStatus = "open"
    handoff_id: str | None = None


class Session(msgspec.Struct, kw_only=True):
    session_id: str
    status: SessionStatus
    owner: Actor
    owner_version: int = 0
    previous_actors: list[Actor] = []
    depth: int = 0
    parent_session_id: str | None = None
    root_session_id: str
    edge_id: str | None = None
    created_position: int
    children: list[str] = []
    open_children: int = 0
    summary_id: str | None = None
    summary: Summary | None = None
    budget: int | None = None
    used: int = 0
    reserved_for_children: int = 0
    used_by_children: int = 0
    merge_handoff_id: str | None = None
    merge_result: list[MergeEntry] | None = None
    sandbox: SandboxBinding | None = None

    @property
    def total_usage(self) -> int:
        return self.used + self.used_by_children

    @property
    def remaining_budget(self) -> int | None:
        if self.budget is None:
            return None
        return self.budget - self.used - self.reserved_for_children - self.used_by_children


class Handoff(msgspec.Struct, kw_only=True):
    handoff_id: str
    source_session_id: str
    pending: list[str]
    results: list[MergeEntry] = []


class ThreadState(BoundaryModel):
    ID_PREFIX = "thd_"
    ID_FIELD = "thread_id"
    thread_id: str
    status: ThreadStatus
    project_id: str
    title: str
    max_depth: int
    max_width: int
    created_position: int
    forked_from: ForkPoint | None
    live_sandboxes: dict[str, str]  # owned, not yet destroyed: sandbox id -> session id
    released_sandboxes: set[str]  # live, but their owner's run has ended since it took them
    destroyed_sandboxes: set[str]  # destroyed by this thread's decisions (maybe not yet by the provider)
    sessions: dict[str, Session]
    edges: dict[str, Edge]
    handoffs: dict[str, Handoff]
    blocking: dict[str, None]  # sessions in a BLOCKING_STATUSES status, in the order they entered one

    def __init__(self, tenant_id: str, boundary: str, thread_id: str) -> None:
        super().__init__(tenant_id, boundary)
        self.thread_id = thread_id
        self.status = "open"
        self.project_id = ""
        self.title = ""
        self.max_depth = 0
        self.max_width = 0
        self.created_position = 0
        self.forked_from = None
        self.live_sandboxes = {}
        self.released_sandboxes = set()
        self.destroyed_sandboxes = set()
        self.sessions = {}
        self.edges = {}
        self.handoffs = {}
        self.blocking = {}

    # -- read-only helpers shared by decisions and apply ---------------------------------------
    def fail_fast_chain(self, session_id: str) -> list[str]:
        """The ancestors that fail with `session_id` because each edge on the way is fail_fast."""
        chain: list[str] = []
        session = self.sessions[session_id]
        while session.edge_id is not None:
            edge = self.edges[session.edge_id]
            parent = self.sessions[edge.parent_session_id]
            if edge.status != "open" or edge.failure_mode != "fail_fast" or parent.status not in RUNNING_STATUSES:
                break
            chain.append(parent.session_id)
            session = parent
        return chain

    # -- helpers used while applying -------------------------------------------------------
    def _bind(self, session: Session, binding: SandboxBinding | None) -> None:
        session.sandbox = binding
        if binding is not None and binding.owned:
            self.live_sandboxes[binding.sandbox_id] = session.session_id
            self.released_sandboxes.discard(binding.sandbox_id)

    def delegation_ended(self, session: Session) -> bool:
        """A spawned child or handoff recipient whose edge to its parent is closed."""
        return session.edge_id is not None and self.edges[session.edge_id].status != "open"

    def sandbox_holder(self, sandbox_id: str) -> str | None:
        """The session that holds a sandbox of this thread: its owner, from taking it until the
        end of the owner's run (and again when the owner runs again). A `continue` needs none."""
        owner = self.live_sandboxes.get(sandbox_id)
        return None if owner is None or sandbox_id in self.released_sandboxes else owner

    def held_by(self, session_id: str) -> list[str]:
        """Sandboxes paused for `session_id` under pause-until-parent-close: owned by a child of it
        that has ended, and not destroyed since. They are destroyed when `session_id` ends."""
        held = []
        for sandbox_id, owner_id in self.live_sandboxes.items():
            owner = self.sessions[owner_id]
            binding = owner.sandbox
            if (owner.parent_session_id == session_id and binding is not None
                    and binding.shutdown == "pause-until-parent-close" and self.delegation_ended(owner)):
                held.append(sandbox_id)
        return held

    def _carry_out(self, actions: list[SandboxAction]) -> None:
        for action in actions:
            if action.action == "destroy":
                self.live_sandboxes.pop(action.sandbox_id, None)
                self.released_sandboxes.discard(action.sandbox_id)
                self.destroyed_sandboxes.add(action.sandbox_id)

    def _set_status(self, session: Session, status: SessionStatus) -> None:
        was_running = session.status in RUNNING_STATUSES
        session.status = status
        binding = session.sandbox
        if binding is not None and self.live_sandboxes.get(binding.sandbox_id) == session.session_id:
            if status in RUNNING_STATUSES:
                self.released_sandboxes.discard(binding.sandbox_id)
            elif was_running:
                self.released_sandboxes.add(binding.sandbox_id)
        if status in BLOCKING_STATUSES:
            self.blocking[session.session_id] = None
        else:
            self.blocking.pop(session.session_id, None)

    def _add_session(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        self._set_status(session, session.status)

    def _add_child(self, parent: Session, child_id: str, owner: Actor, edge_id: str, kind: EdgeKind,
                   failure_mode: FailureMode, handoff_id: str | None = None, budget: int | None = None) -> None:
        self._add_session(Session(
            session_id=child_id, status="active", owner=owner, depth=parent.depth + 1,
            parent_session_id=parent.session_id, root_session_id=parent.root_session_id,
            edge_id=edge_id, created_position=self._applying_position, budget=budget,
        ))
        self.edges[edge_id] = Edge(edge_id=edge_id, kind=kind, parent_session_id=parent.session_id,
                                   child_session_id=child_id, failure_mode=failure_mode, handoff_id=handoff_id)
        parent.children.append(child_id)
        parent.open_children += 1
        if budget is not None:
            parent.reserved_for_children += budget

    def _session_ended(self, session: Session, edge_status: EdgeStatus) -> None:
        """Close the session's edge to its parent (once) and apply what that means upstream."""
        edge = self.edges.get(session.edge_id) if session.edge_id else None
        if edge is None or edge.status != "open":
            return
        fails_parent = edge_status == "failed" and bool(self.fail_fast_chain(session.session_id))
        edge.status = edge_status
        parent = self.sessions[edge.parent_session_id]
        parent.open_children -= 1
        if session.budget is not None:
            parent.reserved_for_children -= session.budget
        parent.used_by_children += session.total_usage
        if edge.handoff_id is not None and edge.kind == "broadcast":
            handoff = self.handoffs[edge.handoff_id]
            handoff.pending.remove(session.session_id)
            outcome = session.summary.outcome if edge_status == "completed" and session.summary else edge_status
            handoff.results.append(MergeEntry(session_id=session.session_id, actor=session.owner,
                                              outcome=outcome, summary_id=session.summary_id))
            if not handoff.pending and parent.status == "awaiting_merge":
                self._set_status(parent, "idle")
                parent.merge_result = list(handoff.results)
        if fails_parent:
            self._set_status(parent, "failed")
            self._session_ended(parent, "failed")

    # -- thread events -----------------------------------------------------------------------
    @event(ThreadCreated)
    def thread_created(self, project_id: str, title: str, max_delegation_depth: int, max_delegation_width: int,
                       forked_from: ForkPoint | None) -> None:
        self.forked_from = forked_from
        self.exists = True
        self.status = "open"
        self.project_id = project_id
        self.title = title
        self.max_depth = max_delegation_depth
        self.max_width = max_delegation_width
        self.created_position = self._applying_position

    @event(ThreadArchived)
    def thread_archived(self, sandbox_actions: list[SandboxAction]) -> None:
        self.status = "archived"
        self._carry_out(sandbox_actions)

    @event(ThreadUnarchived)
    def thread_unarchived(self) -> None:
        self.status = "open"

    @event(ThreadDeleted)
    def thread_deleted(self) -> None:
        self.status = "deleted"

    # -- session lifecycle ------------------------------------------------------------------
    @event(SessionCreated)
    def session_created(self, session_id: str, owner: Actor, budget: int | None, sandbox: SandboxBinding | None) -> None:
        self._add_session(Session(session_id=session_id, status="idle", owner=owner, root_session_id=session_id,
                                  created_position=self._applying_position, budget=budget))
        self._bind(self.sessions[session_id], sandbox)

    @event(SessionStarted)
    def session_started(self, session_id: str) -> None:
        self._set_status(self.sessions[session_id], "active")  # a `resume` action leaves ownership as it is

    @event(SessionInputRequested)
    def session_input_requested(self, session_id: str) -> None:
        self._set_status(self.sessions[session_id], "awaiting_hitl")

    @event(SessionInputProvided)
    def session_input_provided(self, session_id: str) -> None:
        self._set_status(self.sessions[session_id], "active")

    @event(SessionCompleted)
    def session_completed(self, session_id: str, summary_id: str, summary: Summary, usage: int,
                          sandbox_actions: list[SandboxAction]) -> None:
        session = self.sessions[session_id]
        self._carry_out(sandbox_actions)
        session.summary_id, session.summary = summary_id, summary
        session.used += usage
        self._set_status(session, "idle")
        self._session_ended(session, "completed")

    @event(SessionCancelled)
    def session_cancelled(self, session_id: str, usage: int, sandbox_actions: list[SandboxAction]) -> None:
        session = self.sessions[session_id]
        self._carry_out(sandbox_actions)
        session.used += usage
        self._set_status(session, "idle")
        self._session_ended(session, "cancelled")

    @event(SessionFailed)
    def session_failed(self, session_id: str, usage: int, sandbox_actions: list[SandboxAction]) -> None:
        session = self.sessions[session_id]
        self._carry_out(sandbox_actions)
        session.used += usage
        self._set_status(session, "failed")
        self._session_ended(session, "failed")

    @event(SessionArchived)
    def session_archived(self, session_id: str) -> None:
        self._set_status(self.sessions[session_id], "archived")

    @event(SessionRestored)
    def session_restored(self, session_id: str) -> None:
        self._set_status(self.sessions[session_id], "idle")

    # -- delegation ---------------------------------------------------------------------------
    @event(SessionSpawned)
    def session_spawned(self, session_id: str, parent_session_id: str, edge_id: str, agent: Actor, failure_mode: FailureMode,
                        budget: int | None, sandbox: SandboxBinding | None) -> None:
        self._add_child(self.sessions[parent_session_id], session_id, agent, edge_id, "agent_spawn",
                        failure_mode, budget=budget)
        self._bind(self.sessions[session_id], sandbox)

    @event(HandoffTransferred)
    def handoff_transferred(self, handoff_id: str, source_session_id: str, previous_owner: Actor, owner_version: int,
                            recipient: HandoffRecipient) -> None:
        source = self.sessions[source_session_id]
        source.previous_actors.append(previous_owner)
        source.owner = recipient.actor
        source.owner_version = owner_version
        self._add_child(source, recipient.session_id, recipient.actor, recipient.edge_id, "handoff", "delegate",
                        handoff_id=handoff_id)

    @event(HandoffBroadcasted)
    def handoff_broadcasted(self, handoff_id: str, source_session_id: str, owner_version: int,
                            recipients: list[HandoffRecipient]) -> None:
        source = self.sessions[source_session_id]
        source.owner_version = owner_version
        source.merge_handoff_id, source.merge_result = handoff_id, None
        self._set_status(source, "awaiting_merge")
        self.handoffs[handoff_id] = Handoff(handoff_id=handoff_id, source_session_id=source_session_id,
                                            pending=[r.session_id for r in recipients])
        for r in recipients:
            self._add_child(source, r.session_id, r.actor, r.edge_id, "broadcast", "delegate", handoff_id=handoff_id)
