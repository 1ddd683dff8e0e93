"""Read-model views: what `thread.get`, `session.get`, `session.tree` and `replay` show."""

from __future__ import annotations

from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.thread_model import Session, ThreadState
from agentledger.schemas.queries import (
    BudgetView,
    SandboxHold,
    SandboxView,
    SessionRef,
    SessionView,
    ThreadRow,
    ThreadView,
    TreeNode,
)
from agentledger.schemas.replay import Replay


def thread_view(state: ThreadState) -> ThreadView:
    return ThreadView(
        thread_id=state.thread_id, project_id=state.project_id, title=state.title, status=state.status,
        max_delegation_depth=state.max_depth, max_delegation_width=state.max_width,
        created_position=state.created_position, position=state.position,
        sessions=[SessionRef(s.session_id, s.status) for s in state.sessions.values()],
        blocking_sessions=len(state.blocking), forked_from=state.forked_from,
        held_sandboxes=[SandboxHold(sbx, sid) for sbx, sid in state.live_sandboxes.items()])


def thread_row(state: ThreadState) -> ThreadRow:
    return ThreadRow(thread_id=state.thread_id, title=state.title, status=state.status, position=state.position,
                     session_count=len(state.sessions), project_id=state.project_id, forked_from=state.forked_from)


def budget_view(session: Session) -> BudgetView:
    return BudgetView(limit=session.budget, used=session.used, reserved_for_children=session.reserved_for_children,
                      used_by_children=session.used_by_children, remaining=session.remaining_budget)


def session_view(state: ThreadState, session: Session) -> SessionView:
    edge = state.edges.get(session.edge_id) if session.edge_id else None
    return SessionView(
        session_id=session.session_id, thread_id=state.thread_id, project_id=state.project_id,
        status=session.status, owner=session.owner, owner_version=session.owner_version,
        previous_actors=list(session.previous_actors), depth=session.depth,
        parent_session_id=session.parent_session_id, root_session_id=session.root_session_id,
        edge_id=session.edge_id, edge_kind=edge.kind if edge else None, edge_status=edge.status if edge else None,
        failure_mode=edge.failure_mode if edge else None, open_children=session.open_children,
        summary_id=session.summary_id, summary=session.summary, budget=budget_view(session),
        merge_result=session.merge_result, sandbox=session.sandbox, held_sandboxes=state.held_by(session.session_id),
        created_position=session.created_position, position=state.position)


def tree(state: ThreadState, session: Session) -> TreeNode:
    edge = state.edges.get(session.edge_id) if session.edge_id else None
    return TreeNode(
        session_id=session.session_id, status=session.status, depth=session.depth, owner=session.owner,
        edge_kind=edge.kind if edge else None, edge_status=edge.status if edge else None,
        summary_id=session.summary_id, summary=session.summary, budget=budget_view(session),
        open_children=session.open_children,
        children=[tree(state, state.sessions[c]) for c in session.children])


def sandbox_view(state: SandboxState) -> SandboxView:
    return SandboxView(sandbox_id=state.sandbox_id, status=state.status, intent=state.intent, provider=state.provider,
                       owner_session_id=state.owner_session_id, thread_id=state.thread_id,
                       forked_from=state.forked_from, location=state.location,
                       pending=[state.pending[p] for p in sorted(state.pending)], pending_positions=sorted(state.pending),
                       last_error=state.last_error,
                       position=state.position)


def replay_view(state: ThreadState, at: int | None, history_events: int) -> Replay:
    """What `replay` shows: the thread, each session, and one delegation tree per root session."""
    sessions = list(state.sessions.values())
    return Replay(at=at, thread=thread_view(state), sessions=[session_view(state, s) for s in sessions],
                  trees=[tree(state, s) for s in sessions if s.parent_session_id is None],
                  history_events=history_events)
