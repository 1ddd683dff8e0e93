"""Human approval of tool calls, across processes. A run that stops for approvals records its pause
(`store.Pause`) and asks for input (`session.request_input`, the prompt naming each call); an
approver anywhere reads what is asked (`pending_approval`), records a decision next to the pause and
sends `session.provide_input` (`decide`); the run goes on when that event lands (`LedgerRun.resume`).

`provide_input` carries no payload, so the decision travels through the tenant's bucket, keyed by
the session and bound to the pause by its id. A call the decision does not approve is rejected, and
so is every call when the input came without a decision (`agentledger session provide-input` by hand):
only an explicit approval lets a tool run."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentledger.adapters.openai_agents.errors import NothingToResume
from agentledger.adapters.openai_agents.store import Decision, Pause, PendingCall, RunStore
from agentledger.client import Actor, Ledger

NO_DECISION = "rejected: the input came without a decision"
REJECTED = "rejected by the approver"


def new_pause_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Verdict:
    call_id: str
    approved: bool
    message: str  # what the model sees for a rejected call


def verdicts(calls: Sequence[PendingCall], decision: Decision | None) -> list[Verdict]:
    """Each pending call approved or rejected by the decision (None: no decision, every call rejected)."""
    if decision is None:
        return [Verdict(c.call_id, False, NO_DECISION) for c in calls]
    message = decision.message or REJECTED
    return [Verdict(c.call_id, decision.approvals.get(c.call_id, False), message) for c in calls]


@dataclass(frozen=True)
class PendingApproval:
    """What a paused session asks to approve."""

    session_id: str
    thread_id: str
    pause_id: str
    calls: list[PendingCall]


async def _pause_of(ledger: Ledger, session_id: str) -> tuple[RunStore, Pause]:
    view = (await ledger.session.get(session_id=session_id)).session
    store = await RunStore.open(ledger.nc)
    found = await store.pause(view.root_session_id)
    if found is None or found[0].seat.session_id != session_id:
        raise NothingToResume(f"session {session_id} has no run paused for approval")
    return store, found[0]


async def pending_approval(ledger: Ledger, session_id: str) -> PendingApproval:
    """The calls the run paused in `session_id` waits to have approved. Raises NothingToResume."""
    _, pause = await _pause_of(ledger, session_id)
    return PendingApproval(session_id, pause.thread_id, pause.pause_id, list(pause.calls))


async def decide(ledger: Ledger, session_id: str, *, approve: bool | Mapping[str, bool], message: str | None = None,
                 actor: Actor | str | None = None) -> Decision:
    """Approve (True) or reject (False) every call the run paused in `session_id` waits on, or each by
    its call id; then `session.provide_input`, as `actor` (the client's actor by default). `message`
    is what the model sees for a rejected call."""
    store, pause = await _pause_of(ledger, session_id)
    ids = {c.call_id for c in pause.calls}
    if not isinstance(approve, bool) and not set(approve) <= ids:
        raise ValueError(f"no pending calls {sorted(set(approve) - ids)} in session {session_id}; pending: {sorted(ids)}")
    approvals = dict.fromkeys(ids, approve) if isinstance(approve, bool) else {i: bool(approve.get(i, False)) for i in ids}
    decision = Decision(pause_id=pause.pause_id, approvals=approvals, message=message)
    await store.put_decision(session_id, decision)
    await ledger.session.provide_input(session_id=session_id, actor=actor)
    return decision
