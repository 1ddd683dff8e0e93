"""What a decision returns, and the error constructors decisions share."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Literal

import msgspec

from agentledger.schemas.errors import (
    AlreadyExists,
    DomainError,
    EntityDetails,
    EntityKind,
    IllegalTransition,
    IllegalTransitionDetails,
    Internal,
    NotFound,
    ThreadClosed,
    ThreadClosedDetails,
    TraceDetails,
    TransitionFrom,
    Unavailable,
)
from agentledger.schemas.events import Event
from agentledger.schemas.results import Result

Mint = Callable[[str], str]


class Accepted(msgspec.Struct, frozen=True):
    """Append this event; the reply's result is derived from it (`CommandSpec.result`)."""

    event: Event


class Unchanged(msgspec.Struct, frozen=True):
    """Idempotent no-op: nothing to append, reply ok with this result."""

    result: Result


Outcome = Accepted | Unchanged


def log_unavailable(error: Exception) -> Unavailable:
    return Unavailable(message=f"the event log is unavailable: {error}")


def unexpected(log: logging.Logger, what: str) -> Internal:
    """A bug: logged with a trace id the reply carries, so the requester still gets an answer."""
    trace_id = uuid.uuid4().hex
    log.exception("internal error in %s (trace %s)", what, trace_id)
    return Internal(message=f"internal error; trace {trace_id}", details=TraceDetails(trace_id=trace_id))


def not_found(kind: EntityKind, id_: str) -> DomainError:
    return DomainError(NotFound(message=f"{kind} {id_} not found", details=EntityDetails(kind=kind, id=id_)))


def already_exists(kind: EntityKind, id_: str) -> DomainError:
    return DomainError(AlreadyExists(message=f"{kind} {id_} already exists", details=EntityDetails(kind=kind, id=id_)))


def illegal(kind: Literal["session", "sandbox"], id_: str, from_: TransitionFrom, command: str) -> DomainError:
    return DomainError(IllegalTransition(
        message=f"{command} is not allowed on {kind} {id_} in status {from_}",
        details=IllegalTransitionDetails(kind=kind, id=id_, from_=from_, command=command)))


def thread_closed(thread_id: str, op: str) -> DomainError:
    return DomainError(ThreadClosed(message=f"thread {thread_id} is archived; {op} needs an open thread",
                                    details=ThreadClosedDetails(thread_id=thread_id, op=op)))
