"""Error replies: a tagged union on the stable `code`, each with its own typed `details`."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.common import SessionStatus
from agentledger.schemas.ids import SandboxId, SessionId, TenantId, ThreadId

CommandName = Literal[tuple(COMMANDS)]  # type: ignore[valid-type]
EntityKind = Literal["project", "thread", "session", "sandbox", "command", "stream"]
TransitionFrom = Literal[SessionStatus, "ended", "destroyed", "paused", "in_use"]
"""What a command found that it may not follow: a session status, a delegated session whose run
has `ended`, a `destroyed` or `paused` sandbox, or a sandbox `in_use` by another session of the thread."""
CapacityDimension = Literal["depth", "width", "budget"]
HandoffRejectReason = Literal["active_run", "pending_hitl", "pending_subsession"]
CallerRole = Literal["member", "auditor", "admin", "engine", "effects", "unknown"]
SandboxOperation = Literal["fork", "pause"]
RateLimit = Literal["requests_waiting", "bytes_waiting", "waits_parked", "commands_per_second", "queries_per_second"]
"""Which share or rate a tenant reached: the engine's share of its workers (requests or bytes
waiting for one, `min_position` waits parked) or a rate the operator set for the tenant."""
Quota = Literal["events"]


class ErrorDetails(msgspec.Struct, frozen=True, kw_only=True):
    pass


class PathError(msgspec.Struct, frozen=True):
    path: str
    message: str


class InvalidCommandDetails(ErrorDetails, kw_only=True):
    errors: list[PathError]


class UnknownCommandDetails(ErrorDetails, kw_only=True):
    command: str  # what the subject named: anything a client sent


class EntityDetails(ErrorDetails, kw_only=True):
    kind: EntityKind
    id: str


class ThreadClosedDetails(ErrorDetails, kw_only=True):
    thread_id: ThreadId
    op: CommandName


class BlockingSession(msgspec.Struct, frozen=True):
    session_id: SessionId
    status: SessionStatus


class ThreadNotEmptyDetails(ErrorDetails, kw_only=True):
    thread_id: ThreadId
    tenant_id: TenantId
    op: Literal["archive", "delete"]
    blocking_sessions: list[BlockingSession]
    total_blocking_sessions: int


class IllegalTransitionDetails(ErrorDetails, kw_only=True):
    kind: Literal["session", "sandbox"]
    id: str
    from_: TransitionFrom = msgspec.field(name="from")
    command: CommandName


class CapacityDetails(ErrorDetails, kw_only=True):
    dimension: CapacityDimension
    current: int
    limit: int
    session_id: SessionId


class CrossDetails(ErrorDetails, kw_only=True):
    session_id: SessionId
    parent_session_id: SessionId
    thread_id: ThreadId
    parent_thread_id: ThreadId


class VersionConflictDetails(ErrorDetails, kw_only=True):
    session_id: SessionId
    expected: int
    actual: int


class HandoffRejectedDetails(ErrorDetails, kw_only=True):
    session_id: SessionId
    reason: HandoffRejectReason


class NotHolderDetails(ErrorDetails, kw_only=True):
    sandbox_id: SandboxId
    session_id: SessionId  # the session the command named
    holder: SessionId | None  # the session that holds the sandbox, if one does


class ConflictDetails(ErrorDetails, kw_only=True):
    boundary: str


class TraceDetails(ErrorDetails, kw_only=True):
    trace_id: str


class UnsupportedDetails(ErrorDetails, kw_only=True):
    provider: str
    operation: SandboxOperation


class ForbiddenDetails(ErrorDetails, kw_only=True):
    principal: str  # "unknown" when the broker's account or role is not recognised
    role: CallerRole
    tenant: str  # the tenant the subject named


class RateLimitedDetails(ErrorDetails, kw_only=True):
    tenant: str  # the tenant the subject named
    limit: RateLimit
    allowed: float  # the limit's value: a count, bytes, or per second
    retry_after: float  # seconds: when a retry is likely to be taken


class QuotaExceededDetails(ErrorDetails, kw_only=True):
    tenant: str
    quota: Quota
    limit: int
    used: int


class Error(msgspec.Struct, tag_field="code", frozen=True, kw_only=True):
    RETRYABLE: ClassVar[bool] = False
    message: str
    retryable: bool = False


class InvalidCommand(Error, tag="invalid_command", kw_only=True):
    details: InvalidCommandDetails


class UnknownCommand(Error, tag="unknown_command", kw_only=True):
    details: UnknownCommandDetails


class NotFound(Error, tag="not_found", kw_only=True):
    details: EntityDetails


class AlreadyExists(Error, tag="already_exists", kw_only=True):
    details: EntityDetails


class ThreadClosed(Error, tag="thread_closed", kw_only=True):
    details: ThreadClosedDetails


class ThreadNotEmpty(Error, tag="thread_not_empty", kw_only=True):
    details: ThreadNotEmptyDetails


class IllegalTransition(Error, tag="illegal_transition", kw_only=True):
    details: IllegalTransitionDetails


class CapacityExceeded(Error, tag="capacity_exceeded", kw_only=True):
    details: CapacityDetails


class CrossThread(Error, tag="cross_thread", kw_only=True):
    details: CrossDetails


class CrossProject(Error, tag="cross_project", kw_only=True):
    details: CrossDetails


class VersionConflict(Error, tag="version_conflict", kw_only=True):
    details: VersionConflictDetails


class HandoffRejected(Error, tag="handoff_rejected", kw_only=True):
    details: HandoffRejectedDetails


class Unsupported(Error, tag="unsupported", kw_only=True):
    details: UnsupportedDetails


class NotHolder(Error, tag="not_holder", kw_only=True):
    details: NotHolderDetails


class Forbidden(Error, tag="forbidden", kw_only=True):
    details: ForbiddenDetails


class Conflict(Error, tag="conflict", kw_only=True):
    retryable: bool = True
    details: ConflictDetails


class Unavailable(Error, tag="unavailable", kw_only=True):
    retryable: bool = True
    details: ErrorDetails = ErrorDetails()


class RateLimited(Error, tag="rate_limited", kw_only=True):
    retryable: bool = True
    details: RateLimitedDetails


class QuotaExceeded(Error, tag="quota_exceeded", kw_only=True):
    details: QuotaExceededDetails


class Internal(Error, tag="internal", kw_only=True):
    details: TraceDetails


AnyError = (
    InvalidCommand | UnknownCommand | NotFound | AlreadyExists | ThreadClosed | ThreadNotEmpty
    | IllegalTransition | CapacityExceeded | CrossThread | CrossProject | VersionConflict
    | HandoffRejected | Unsupported | NotHolder | Forbidden | Conflict | Unavailable | RateLimited | QuotaExceeded
    | Internal
)


class DomainError(Exception):
    """Raised by decisions and the engine; carries the reply's error body."""

    def __init__(self, error: AnyError) -> None:
        super().__init__(error.message)
        self.error = error
