"""Pure decisions: (boundary state, command) -> Accepted | Unchanged, or raise DomainError.

No I/O and no mutation: the event is applied to the model only after the log accepted it.
Checks run in the order the domain rules give, and stop at the first failure.
"""

from __future__ import annotations

from agentledger.engine.context import Context
from agentledger.engine.outcomes import Accepted, Outcome, Unchanged, already_exists, illegal, not_found, thread_closed
from agentledger.engine.project_model import ProjectState
from agentledger.engine.sandbox_decisions import (
    bind_sandbox,
    plan_session_end,
    plan_session_start,
    plan_thread_archive,
)
from agentledger.engine.thread_model import Session, ThreadState
from agentledger.schemas.commands import (
    HandoffBroadcast,
    HandoffSingle,
    ProjectCreate,
    SessionArchive,
    SessionCancel,
    SessionComplete,
    SessionCreate,
    SessionFail,
    SessionProvideInput,
    SessionRequestInput,
    SessionRestore,
    SessionSpawn,
    SessionStart,
    ThreadArchive,
    ThreadCreate,
    ThreadDelete,
    ThreadUnarchive,
)
from agentledger.schemas.common import RUNNING_STATUSES, SessionStatus
from agentledger.schemas.errors import (
    BlockingSession,
    CapacityDetails,
    CapacityExceeded,
    CrossDetails,
    CrossProject,
    CrossThread,
    DomainError,
    HandoffRejected,
    HandoffRejectedDetails,
    InvalidCommand,
    InvalidCommandDetails,
    PathError,
    ThreadNotEmpty,
    ThreadNotEmptyDetails,
    VersionConflict,
    VersionConflictDetails,
)
from agentledger.schemas.events import (
    ForkPoint,
    HandoffBroadcasted,
    HandoffRecipient,
    HandoffTransferred,
    ProjectCreated,
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
from agentledger.schemas.results import ThreadStatusResult

MAX_LISTED_BLOCKERS = 50


# -- project ----------------------------------------------------------------------------------
def _invalid(path: str, message: str) -> DomainError:
    return DomainError(InvalidCommand(message=message, details=InvalidCommandDetails(errors=[PathError(path, message)])))


def decide_project_create(state: ProjectState, cmd: ProjectCreate, ctx: Context) -> Outcome:
    assert cmd.project_id is not None
    if state.exists:
        raise already_exists("project", cmd.project_id)
    return Accepted(ProjectCreated(project_id=cmd.project_id, name=cmd.name, config=cmd.config))


# -- thread -----------------------------------------------------------------------------------
def _fork_point(cmd: ThreadCreate, source: ThreadState | None) -> ForkPoint | None:
    if cmd.mode != "fork":
        return None
    assert cmd.source_thread_id is not None
    if source is None or not source.exists or source.status == "deleted":
        raise not_found("thread", cmd.source_thread_id)
    if source.project_id != cmd.project_id:
        raise _invalid("$.project_id", f"a fork stays in its source's project {source.project_id}")
    position = source.position if cmd.at_position is None else cmd.at_position
    if not source.created_position <= position <= source.position:
        raise _invalid("$.at_position", f"the source's history spans positions {source.created_position}.."
                                        f"{source.position}; {position} is outside it")
    return ForkPoint(thread_id=source.thread_id, position=position)


def decide_thread_create(state: ThreadState, cmd: ThreadCreate, ctx: Context) -> Outcome:
    assert cmd.thread_id is not None and ctx.project is not None
    project = ctx.project
    if not project.exists:
        raise not_found("project", cmd.project_id)
    fork = _fork_point(cmd, ctx.source_thread)
    if state.exists:
        raise already_exists("thread", cmd.thread_id)
    return Accepted(ThreadCreated(thread_id=cmd.thread_id, project_id=cmd.project_id, title=cmd.title,
                                  max_delegation_depth=project.config.max_delegation_depth,
                                  max_delegation_width=project.config.max_delegation_width, forked_from=fork))


def _live_thread(state: ThreadState) -> None:
    if not state.exists or state.status == "deleted":
        raise not_found("thread", state.thread_id)


def _open_thread(state: ThreadState, op: str) -> None:
    _live_thread(state)
    if state.status != "open":
        raise thread_closed(state.thread_id, op)


def _not_empty(state: ThreadState, op: str, session_ids: list[str]) -> DomainError:
    ordered = sorted(session_ids, key=lambda s: state.sessions[s].created_position)
    listed = [BlockingSession(s, state.sessions[s].status) for s in ordered[:MAX_LISTED_BLOCKERS]]
    return DomainError(ThreadNotEmpty(
        message=f"thread {state.thread_id} cannot be {op}d: {len(ordered)} session(s) prevent it",
        details=ThreadNotEmptyDetails(thread_id=state.thread_id, tenant_id=state.tenant_id, op=op,
                                      blocking_sessions=listed, total_blocking_sessions=len(ordered))))


def decide_thread_archive(state: ThreadState, cmd: ThreadArchive, ctx: Context) -> Outcome:
    _live_thread(state)
    if state.blocking:
        raise _not_empty(state, "archive", list(state.blocking))
    if state.status == "archived":
        return Unchanged(ThreadStatusResult(thread_id=state.thread_id, status="archived"))
    return Accepted(ThreadArchived(thread_id=state.thread_id, sandbox_actions=plan_thread_archive(state)))


def decide_thread_unarchive(state: ThreadState, cmd: ThreadUnarchive, ctx: Context) -> Outcome:
    _live_thread(state)
    if state.status == "open":
        return Unchanged(ThreadStatusResult(thread_id=state.thread_id, status="open"))
    return Accepted(ThreadUnarchived(thread_id=state.thread_id))


def decide_thread_delete(state: ThreadState, cmd: ThreadDelete, ctx: Context) -> Outcome:
    if not state.exists or state.status == "deleted":
        return Unchanged(ThreadStatusResult(thread_id=state.thread_id, status="deleted"))
    if state.sessions:
        raise _not_empty(state, "delete", list(state.sessions))
    return Accepted(ThreadDeleted(thread_id=state.thread_id))


# -- sessions ---------------------------------------------------------------------------------
def _session(state: ThreadState, session_id: str) -> Session:
    session = state.sessions.get(session_id) if state.exists and state.status != "deleted" else None
    if session is None:
        raise not_found("session", session_id)
    return session


def _expect(session: Session, allowed: tuple[SessionStatus, ...], command: str) -> None:
    if session.status not in allowed:
        raise illegal("session", session.session_id, session.status, command)


def decide_session_create(state: ThreadState, cmd: SessionCreate, ctx: Context) -> Outcome:
    assert cmd.session_id is not None
    _open_thread(state, cmd.NAME)
    if cmd.session_id in state.sessions:
        raise already_exists("session", cmd.session_id)
    binding = bind_sandbox(state, cmd.sandbox, cmd.NAME, ctx)
    return Accepted(SessionCreated(session_id=cmd.session_id, owner=cmd.owner, budget=cmd.budget, sandbox=binding))


def decide_session_start(state: ThreadState, cmd: SessionStart, ctx: Context) -> Outcome:
    session = _session(state, cmd.session_id)
    if state.status != "open":
        raise thread_closed(state.thread_id, cmd.NAME)
    _expect(session, ("idle",), cmd.NAME)
    if state.delegation_ended(session):
        # A delegated session ends for good: restarting it would run outside its parent's width cap.
        raise illegal("session", session.session_id, "ended", cmd.NAME)
    return Accepted(SessionStarted(session_id=session.session_id, sandbox_actions=plan_session_start(state, session.session_id)))


def decide_session_request_input(state: ThreadState, cmd: SessionRequestInput, ctx: Context) -> Outcome:
    session = _session(state, cmd.session_id)
    _expect(session, ("active",), cmd.NAME)
    return Accepted(SessionInputRequested(session_id=session.session_id, prompt=cmd.prompt))


def decide_session_provide_input(state: ThreadState, cmd: SessionProvideInput, ctx: Context) -> Outcome:
    session = _session(state, cmd.session_id)
    _expect(session, ("awaiting_hitl",), cmd.NAME)
    return Accepted(SessionInputProvided(session_id=session.session_id))


def decide_session_complete(state: ThreadState, cmd: SessionComplete, ctx: Context) -> Outcome:
    session = _session(state, cmd.session_id)
    _expect(session, RUNNING_STATUSES, cmd.NAME)
    summary_id = ctx.mint("sum_")
    return Accepted(SessionCompleted(session_id=session.session_id, summary_id=summary_id, summary=cmd.summary,
                                     usage=cmd.usage,
                                     sandbox_actions=plan_session_end(state, session.session_id, failing=False)))


def _end_run(state: ThreadState, cmd: SessionCancel | SessionFail, event: type[SessionCancelled | SessionFailed]) -> Outcome:
    """cancel and fail: the run stops without a summary; only the event (and so the status) differs."""
    session = _session(state, cmd.session_id)
    _expect(session, RUNNING_STATUSES, cmd.NAME)
    failing = event is SessionFailed
    return Accepted(event(session_id=session.session_id, reason=cmd.reason, usage=cmd.usage,
                          sandbox_actions=plan_session_end(state, session.session_id, failing=failing)))


def decide_session_cancel(state: ThreadState, cmd: SessionCancel, ctx: Context) -> Outcome:
    return _end_run(state, cmd, SessionCancelled)


def decide_session_fail(state: ThreadState, cmd: SessionFail, ctx: Context) -> Outcome:
    return _end_run(state, cmd, SessionFailed)


def decide_session_archive(state: ThreadState, cmd: SessionArchive, ctx: Context) -> Outcome:
    session = _session(state, cmd.session_id)
    _expect(session, ("idle", "failed"), cmd.NAME)
    return Accepted(SessionArchived(session_id=session.session_id))


def decide_session_restore(state: ThreadState, cmd: SessionRestore, ctx: Context) -> Outcome:
    session = _session(state, cmd.session_id)
    _expect(session, ("archived",), cmd.NAME)
    return Accepted(SessionRestored(session_id=session.session_id))


# -- delegation -------------------------------------------------------------------------------
def _capacity(dimension: str, current: int, limit: int, session_id: str) -> DomainError:
    return DomainError(CapacityExceeded(
        message=f"{dimension} cap reached under session {session_id}: {current} of {limit}",
        details=CapacityDetails(dimension=dimension, current=current, limit=limit, session_id=session_id)))


def _check_caps(state: ThreadState, parent: Session, new_children: int) -> None:
    if parent.depth + 1 > state.max_depth:
        raise _capacity("depth", parent.depth, state.max_depth, parent.session_id)
    if parent.open_children + new_children > state.max_width:
        raise _capacity("width", parent.open_children, state.max_width, parent.session_id)


def decide_session_spawn(state: ThreadState, cmd: SessionSpawn, ctx: Context) -> Outcome:
    assert cmd.session_id is not None
    _open_thread(state, cmd.NAME)
    if ctx.parent_location is not None:
        parent_thread, parent_project = ctx.parent_location
        details = CrossDetails(session_id=cmd.session_id, parent_session_id=cmd.parent_session_id,
                               thread_id=state.thread_id, parent_thread_id=parent_thread)
        if parent_project != state.project_id:
            raise DomainError(CrossProject(message="parent session is in another project", details=details))
        raise DomainError(CrossThread(message="parent session is in another thread", details=details))
    parent = _session(state, cmd.parent_session_id)
    _expect(parent, RUNNING_STATUSES, cmd.NAME)
    _check_caps(state, parent, 1)
    if cmd.session_id in state.sessions:
        raise already_exists("session", cmd.session_id)
    remaining = parent.remaining_budget
    if cmd.budget is not None and remaining is not None and cmd.budget > remaining:
        assert parent.budget is not None
        raise _capacity("budget", parent.budget - remaining, parent.budget, parent.session_id)
    binding = bind_sandbox(state, cmd.sandbox, cmd.NAME, ctx)
    edge_id = ctx.mint("sub_")
    return Accepted(SessionSpawned(session_id=cmd.session_id, parent_session_id=parent.session_id,
                                   root_session_id=parent.root_session_id, depth=parent.depth + 1, edge_id=edge_id,
                                   agent=cmd.agent, failure_mode=cmd.failure_mode, budget=cmd.budget, sandbox=binding))


_REJECT_REASON = {"active": "active_run", "awaiting_hitl": "pending_hitl",
                  "awaiting_merge": "pending_subsession", "locked": "pending_subsession"}


def _handoff_source(state: ThreadState, source_id: str, expected: int, command: str, new_children: int) -> Session:
    _open_thread(state, command)
    source = _session(state, source_id)
    if source.owner_version != expected:
        raise DomainError(VersionConflict(
            message=f"session {source_id} owner version is {source.owner_version}, not {expected}",
            details=VersionConflictDetails(session_id=source_id, expected=expected, actual=source.owner_version)))
    if source.status in _REJECT_REASON or (source.status == "idle" and source.open_children):
        reason = _REJECT_REASON.get(source.status, "pending_subsession")
        raise DomainError(HandoffRejected(message=f"session {source_id} cannot be handed off: {reason}",
                                          details=HandoffRejectedDetails(session_id=source_id, reason=reason)))
    _expect(source, ("idle",), command)
    _check_caps(state, source, new_children)
    return source


def decide_handoff_single(state: ThreadState, cmd: HandoffSingle, ctx: Context) -> Outcome:
    mint = ctx.mint
    source = _handoff_source(state, cmd.source_session_id, cmd.expected_owner_version, cmd.NAME, 1)
    handoff_id, session_id = mint("hof_"), mint("ses_")
    version = source.owner_version + 1
    return Accepted(HandoffTransferred(
        handoff_id=handoff_id, source_session_id=source.session_id, previous_owner=source.owner,
        owner_version=version, depth=source.depth + 1,
        recipient=HandoffRecipient(actor=cmd.recipient, session_id=session_id, edge_id=mint("sub_"))))


def decide_handoff_broadcast(state: ThreadState, cmd: HandoffBroadcast, ctx: Context) -> Outcome:
    mint = ctx.mint
    if len(set(cmd.recipients)) != len(cmd.recipients):
        raise DomainError(InvalidCommand(
            message="recipients must be distinct actors",
            details=InvalidCommandDetails(errors=[PathError("$.recipients", "duplicate recipient")])))
    source = _handoff_source(state, cmd.source_session_id, cmd.expected_owner_version, cmd.NAME, len(cmd.recipients))
    handoff_id = mint("hof_")
    recipients = [HandoffRecipient(actor=a, session_id=mint("ses_"), edge_id=mint("sub_")) for a in cmd.recipients]
    version = source.owner_version + 1
    return Accepted(HandoffBroadcasted(handoff_id=handoff_id, source_session_id=source.session_id,
                                       owner_version=version, depth=source.depth + 1, recipients=recipients))

