"""What the engine lets into its models from the log: nothing it has not checked.

Anyone who can publish on an event subject can put bytes in the log, so every reader (the live
follower, a refresh read, the workers) passes each message through `admit` first. A message is
admitted only when its subject is a well-formed event subject, it decodes to an envelope, and the
subject, the envelope's tenant and boundary, and the event's type and own ids all agree; `fits`
then checks the event against the boundary's state, so a forged event cannot, say, archive a
thread with running sessions. Whatever fails is *quarantined*: skipped (its position still counts
as applied, so nothing waits for it), counted, logged once and listed by `quarantine.list`.

Every replica applies the same checks to the same log, so they all skip the same messages and
their models agree.
"""

from __future__ import annotations

import logging
import re
import typing
from collections import OrderedDict
from dataclasses import dataclass

import msgspec

from agentledger.engine.boundary_model import BoundaryModel
from agentledger.engine.project_model import ProjectState
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.store import RawEvent
from agentledger.engine.subjects import Subjects
from agentledger.engine.thread_model import ThreadState
from agentledger.schemas import events as ev
from agentledger.schemas.common import RUNNING_STATUSES, SessionStatus
from agentledger.schemas.events import Envelope
from agentledger.schemas.ids import TENANT_RE, id_pattern
from agentledger.schemas.queries import Quarantined

log = logging.getLogger("agentledger.quarantine")

_decoder = msgspec.json.Decoder(Envelope)
_TENANT = re.compile(TENANT_RE)
_TYPES: dict[str, type[ev.Event]] = {t.__struct_config__.tag: t for t in typing.get_args(ev.AnyEvent)}  # type: ignore[misc]


@dataclass(frozen=True)
class _Kind:
    entity: re.Pattern[str]
    id_field: str  # the field of the kind's events that names the boundary's entity, where they have it
    types: frozenset[str]  # the event types its model applies


def _kind(model: type[BoundaryModel]) -> _Kind:
    return _Kind(re.compile(id_pattern(model.ID_PREFIX)), model.ID_FIELD,
                 frozenset(t.__struct_config__.tag for t in model.projected_types))  # type: ignore[attr-defined]


_KINDS = {"thr": _kind(ThreadState), "prj": _kind(ProjectState), "sbx": _kind(SandboxState)}
"""Each boundary kind's subject token, with what its model accepts: a new event needs only its `@event` there."""
_SANDBOX_ID = re.compile(id_pattern("sbx_"))
_SESSION_ID = re.compile(id_pattern("ses_"))


def _refuse(raw: RawEvent, reason: str, tenant: str | None = None) -> Quarantined:
    return Quarantined(position=raw.position, subject=raw.subject, reason=reason, tenant_id=tenant)


def admit(raw: RawEvent, subjects: Subjects) -> Envelope | Quarantined:
    """The envelope of `raw` when subject, tenant, boundary, type and ids all agree (pure)."""
    parsed = subjects.parse_event(raw.subject)
    if parsed is None:
        return _refuse(raw, "not an event subject: <prefix>.evt.<tenant>.<kind>.<id>.<type>")
    tenant, kind_token, entity, subject_type = parsed.tenant, parsed.kind, parsed.entity, parsed.type
    project_token = parsed.project  # `thread.created` carries its project as a last token
    if not _TENANT.fullmatch(tenant):
        return _refuse(raw, f"tenant token {tenant!r} is not a tenant id")
    kind = _KINDS.get(kind_token)
    if kind is None:
        return _refuse(raw, f"unknown boundary kind {kind_token!r}", tenant)
    if not kind.entity.fullmatch(entity):
        return _refuse(raw, f"{entity!r} is not a valid id for a {kind_token} boundary", tenant)
    if subject_type not in kind.types:
        return _refuse(raw, f"event type {subject_type!r} does not belong to a {kind_token} boundary", tenant)
    try:
        envelope = _decoder.decode(raw.data)
    except (msgspec.DecodeError, ValueError, TypeError) as e:
        return _refuse(raw, f"undecodable: {str(e)[:200]}", tenant)
    if envelope.tenant_id != tenant:
        return _refuse(raw, f"envelope tenant {envelope.tenant_id!r} differs from the subject's", tenant)
    if envelope.boundary != subjects.boundary_of(raw.subject):
        return _refuse(raw, f"envelope boundary {envelope.boundary[:200]!r} differs from the subject's", tenant)
    data = envelope.data
    tag = type(data).__struct_config__.tag
    if envelope.type != subject_type or tag != subject_type:
        return _refuse(raw, f"types disagree: subject {subject_type!r}, envelope {envelope.type!r}, data {tag!r}", tenant)
    if project_token is not None and getattr(data, "project_id", None) != project_token:
        return _refuse(raw, f"project token {project_token[:80]!r} differs from the event's project", tenant)
    own = getattr(data, kind.id_field, entity)
    if own != entity:
        return _refuse(raw, f"{kind.id_field} {str(own)[:80]!r} differs from the subject's {entity!r}", tenant)
    reason = _ids_well_formed(data)
    if reason is not None:
        return _refuse(raw, reason, tenant)
    return envelope


def _ids_well_formed(data: ev.Event) -> str | None:
    """Ids that later become paths or subjects (a fork's source sandbox, new sessions) must be ids."""
    if isinstance(data, ev.SandboxCreateRequested) and data.forked_from is not None \
            and not _SANDBOX_ID.fullmatch(data.forked_from):
        return f"forked_from {data.forked_from[:80]!r} is not a sandbox id"
    new: list[str] = []
    if isinstance(data, (ev.SessionCreated, ev.SessionSpawned)):
        new = [data.session_id]
        if data.sandbox is not None and not _SANDBOX_ID.fullmatch(data.sandbox.sandbox_id):
            return "the session's sandbox id is not a sandbox id"
    elif isinstance(data, ev.HandoffTransferred):
        new = [data.recipient.session_id]
    elif isinstance(data, ev.HandoffBroadcasted):
        new = [r.session_id for r in data.recipients]
    for sid in new:
        if not _SESSION_ID.fullmatch(sid):
            return f"{sid[:80]!r} is not a session id"
    return None


# -- does the event fit the state it is applied to? ---------------------------------------------
_SESSION_FROM: dict[type[ev.Event], tuple[SessionStatus, ...]] = {
    ev.SessionStarted: ("idle",),
    ev.SessionInputRequested: ("active",),
    ev.SessionInputProvided: ("awaiting_hitl",),
    ev.SessionCompleted: RUNNING_STATUSES,
    ev.SessionCancelled: RUNNING_STATUSES,
    ev.SessionFailed: RUNNING_STATUSES,
    ev.SessionArchived: ("idle", "failed"),
    ev.SessionRestored: ("archived",),
}


def fits(model: BoundaryModel, envelope: Envelope) -> str | None:
    """Why `envelope` cannot follow the model's current state, or None when it can (pure).

    The same preconditions the engine's decisions check, so an event the engine appended always
    fits, and one forged past them never does."""
    data = envelope.data
    if isinstance(model, ThreadState):
        return _fits_thread(model, data)
    if isinstance(model, ProjectState):
        return "project already exists" if model.exists else None
    if isinstance(model, SandboxState):
        return _fits_sandbox(model, data)
    return f"no model for {envelope.boundary!r}"


def _fits_thread(state: ThreadState, data: ev.Event) -> str | None:
    if isinstance(data, ev.ThreadCreated):
        return "thread already exists" if state.exists else None
    if not state.exists:
        return "thread does not exist"
    if state.status == "deleted":
        return "thread is deleted"
    match data:
        case ev.ThreadArchived():
            if state.status != "open":
                return "thread is not open"
            return f"{len(state.blocking)} session(s) prevent archiving" if state.blocking else None
        case ev.ThreadUnarchived():
            return None if state.status == "archived" else "thread is not archived"
        case ev.ThreadDeleted():
            return "thread has sessions" if state.sessions else None
        case ev.SessionCreated():
            return _new_sessions(state, [data.session_id], opening=True)
        case ev.SessionSpawned():
            parent = state.sessions.get(data.parent_session_id)
            if parent is None or parent.status not in RUNNING_STATUSES:
                return f"parent session {data.parent_session_id!r} is not running in this thread"
            if data.edge_id in state.edges:
                return f"edge {data.edge_id!r} already exists"
            return _new_sessions(state, [data.session_id], opening=True)
        case ev.HandoffTransferred() | ev.HandoffBroadcasted():
            source = state.sessions.get(data.source_session_id)
            if source is None or source.status != "idle":
                return f"source session {data.source_session_id!r} is not idle in this thread"
            if data.handoff_id in state.handoffs:
                return f"handoff {data.handoff_id!r} already exists"
            recipients = [data.recipient] if isinstance(data, ev.HandoffTransferred) else data.recipients
            if any(r.edge_id in state.edges for r in recipients):
                return "a recipient's edge already exists"
            return _new_sessions(state, [r.session_id for r in recipients], opening=True)
    allowed = _SESSION_FROM.get(type(data))
    session = state.sessions.get(getattr(data, "session_id", ""))
    if allowed is None:
        return None
    if session is None:
        return "session not in thread"
    if session.status not in allowed:
        return f"session is {session.status}, not {' or '.join(allowed)}"
    if isinstance(data, ev.SessionStarted) and state.status != "open":
        return "thread is not open"
    return None


def _new_sessions(state: ThreadState, session_ids: list[str], opening: bool) -> str | None:
    if opening and state.status != "open":
        return "thread is not open"
    if len(set(session_ids)) != len(session_ids) or any(s in state.sessions for s in session_ids):
        return "session already exists"
    return None


def _fits_sandbox(state: SandboxState, data: ev.Event) -> str | None:
    if isinstance(data, ev.SandboxCreateRequested):
        return "sandbox already exists" if state.exists else None
    if not state.exists:
        return "sandbox does not exist"
    if isinstance(data, ev.SandboxExecRequested) and state.intent != "running":
        return f"sandbox is {state.intent}"
    position = getattr(data, "request_position", None)
    if position is None:
        return None
    op = state.pending.get(position)
    if op is None:
        return f"no pending request at {position}"
    if isinstance(data, ev.SandboxExecFinished | ev.SandboxExecFailed) != (op == "exec"):
        return f"the request at {position} is {op!r}, which a {type(data).__struct_config__.tag} does not answer"
    return None


# -- the record -------------------------------------------------------------------------------
class Quarantine:
    """What one reader skipped: a total count and the most recent entries, each logged once.

    A worker's record forwards to its engine's, so `quarantine.list` shows what any reader in the
    process skipped, each message once; only the record at the root logs."""

    def __init__(self, keep: int = 1000, forward: Quarantine | None = None, quiet: bool = False) -> None:
        self.keep = keep
        self.forward = forward
        self.quiet = quiet  # count, but do not log (a replay that meets what the engine already logged)
        self.count = 0
        self._entries: OrderedDict[int, Quarantined] = OrderedDict()

    def add(self, entry: Quarantined) -> None:
        if entry.position in self._entries:
            return
        self.count += 1
        self._entries[entry.position] = entry
        if len(self._entries) > self.keep:
            self._entries.popitem(last=False)
        if self.forward is not None:
            self.forward.add(entry)
            return
        if self.quiet:
            return
        log.warning("quarantined event at %s on %s: %s", entry.position, entry.subject[:200], entry.reason)

    def entries(self, after: int = 0, limit: int = 100) -> list[Quarantined]:
        return sorted((e for e in self._entries.values() if e.position > after), key=lambda e: e.position)[:limit]


def skip(model: BoundaryModel, position: int) -> None:
    """A quarantined message still occupies its position in the boundary's subject filter, so the
    next append must expect it: the model moves past it without applying anything."""
    model.position = max(model.position, position)


def enter(model: BoundaryModel, envelope: Envelope, position: int, quarantine: Quarantine, subject: str) -> bool:
    """Apply an admitted envelope to its model if it fits there; quarantine it otherwise."""
    if position <= model.position:
        return False
    reason = fits(model, envelope)
    if reason is None:
        try:
            return model.apply(envelope, position)
        except Exception as e:  # a check above missed a case: never let one event wedge the boundary
            reason = f"cannot be applied: {type(e).__name__}: {e}"
    skip(model, position)
    quarantine.add(Quarantined(position=position, subject=subject, reason=reason, tenant_id=envelope.tenant_id))
    return False
