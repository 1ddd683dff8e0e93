"""Spawn, caps, child endings, budgets and handoffs, decided purely (no log)."""

from __future__ import annotations

import msgspec
import pytest

from agentledger.engine.outcomes import Accepted
from agentledger.schemas.errors import (
    CapacityExceeded,
    HandoffRejected,
    IllegalTransition,
    InvalidCommand,
    NotFound,
    ThreadClosed,
    VersionConflict,
)
from tests.domain_harness import Thread

A = {"kind": "agent", "id": "agt_a"}
B = {"kind": "agent", "id": "agt_b"}
C = {"kind": "agent", "id": "agt_c"}
DONE = {"outcome": "succeeded", "text": "ok", "deliverables": ["ref://1"]}


def active_root(budget: int | None = None, **caps: int) -> Thread:
    t = Thread(**caps)
    t.run("session.create", thread_id="thd_1", session_id="ses_root", owner=A, budget=budget)
    t.run("session.start", session_id="ses_root")
    return t


def spawn(t: Thread, parent: str, child: str, **fields: object) -> Accepted:
    outcome = t.run("session.spawn", parent_session_id=parent, session_id=child, agent=B, **fields)
    assert isinstance(outcome, Accepted)
    return outcome


# -- spawn checks, in the spec's order --------------------------------------------------------
def test_spawn_records_child_edge_and_lineage_in_one_event() -> None:
    t = active_root()
    spawn(t, "ses_root", "ses_c")
    result = t.last
    spawn(t, "ses_c", "ses_g")
    assert result.depth == 1 and result.edge_id and result.session_id == "ses_c"
    grandchild = t.state.sessions["ses_g"]
    assert (grandchild.status, grandchild.depth, grandchild.parent_session_id, grandchild.root_session_id) == (
        "active", 2, "ses_c", "ses_root")
    edge = t.state.edges[result.edge_id]
    assert (edge.kind, edge.parent_session_id, edge.child_session_id, edge.status) == (
        "agent_spawn", "ses_root", "ses_c", "open")


def test_spawn_check_order_thread_then_parent_then_status_then_depth_then_width() -> None:
    t = active_root(max_depth=1, max_width=1)
    assert isinstance(t.error("session.spawn", parent_session_id="ses_nope", agent=B), NotFound)
    spawn(t, "ses_root", "ses_c")
    # width and depth are both exhausted for ses_c's would-be child: depth is reported first
    error = t.error("session.spawn", parent_session_id="ses_c", agent=B)
    assert isinstance(error, CapacityExceeded) and error.details.dimension == "depth"
    error = t.error("session.spawn", parent_session_id="ses_root", agent=B)
    assert isinstance(error, CapacityExceeded)
    assert (error.details.dimension, error.details.current, error.details.limit, error.details.session_id) == (
        "width", 1, 1, "ses_root")
    t.run("session.request_input", session_id="ses_root")
    t.run("session.complete", session_id="ses_c", summary=DONE)
    t.run("session.provide_input", session_id="ses_root")
    t.run("session.complete", session_id="ses_root", summary=DONE)
    t.run("thread.archive", thread_id="thd_1")
    # archived thread is reported before a missing parent
    assert isinstance(t.error("session.spawn", parent_session_id="ses_nope", agent=B), ThreadClosed)


@pytest.mark.parametrize("status,steps", [("idle", ["session.complete"]), ("failed", ["session.fail"]),
                                          ("archived", ["session.complete", "session.archive"])])
def test_spawn_from_an_ended_parent_is_illegal(status: str, steps: list[str]) -> None:
    t = active_root()
    for step in steps:
        t.run(step, session_id="ses_root", **({"summary": DONE} if step == "session.complete" else {}))
    error = t.error("session.spawn", parent_session_id="ses_root", agent=B)
    assert isinstance(error, IllegalTransition) and error.details.from_ == status


def test_spawn_while_awaiting_input_is_allowed() -> None:
    t = active_root()
    t.run("session.request_input", session_id="ses_root")
    spawn(t, "ses_root", "ses_c")


def test_width_counts_open_children_only() -> None:
    t = active_root(max_width=2)
    spawn(t, "ses_root", "ses_1")
    spawn(t, "ses_root", "ses_2")
    assert isinstance(t.error("session.spawn", parent_session_id="ses_root", agent=B), CapacityExceeded)
    t.run("session.complete", session_id="ses_1", summary=DONE)
    spawn(t, "ses_root", "ses_3")
    t.run("session.fail", session_id="ses_2")
    t.run("session.cancel", session_id="ses_3")
    for n in range(4, 6):
        spawn(t, "ses_root", f"ses_{n}")
    assert t.state.sessions["ses_root"].open_children == 2


# -- children ending ----------------------------------------------------------------------------
@pytest.mark.parametrize("command,edge_status,child_status", [
    ("session.complete", "completed", "idle"), ("session.fail", "failed", "failed"),
    ("session.cancel", "cancelled", "idle")])
def test_child_ending_closes_its_edge(command: str, edge_status: str, child_status: str) -> None:
    t = active_root()
    spawn(t, "ses_root", "ses_c")
    edge_id = t.last.edge_id
    t.run(command, session_id="ses_c", **({"summary": DONE} if command == "session.complete" else {}))
    assert t.state.edges[edge_id].status == edge_status
    assert t.state.sessions["ses_c"].status == child_status
    assert t.state.sessions["ses_root"].open_children == 0
    assert t.state.sessions["ses_root"].status == "active"
    assert "ses_c" not in t.state.blocking
    # an ended child does not come back to life outside its parent's cap
    if child_status == "idle":
        assert isinstance(t.error("session.start", session_id="ses_c"), IllegalTransition)


def test_fail_fast_fails_the_parent_in_the_same_decision_and_cascades() -> None:
    t = active_root()
    spawn(t, "ses_root", "ses_c", failure_mode="fail_fast")
    spawn(t, "ses_c", "ses_g", failure_mode="fail_fast")
    before = t.state.position
    t.run("session.fail", session_id="ses_g", reason="tool crashed")
    assert t.state.position == before + 1  # one event
    assert [t.status(s) for s in ("ses_g", "ses_c", "ses_root")] == ["failed", "failed", "failed"]
    assert t.state.sessions["ses_root"].open_children == 0
    assert not t.state.blocking


def test_fail_fast_stops_at_a_delegate_edge() -> None:
    t = active_root()
    spawn(t, "ses_root", "ses_c")
    spawn(t, "ses_c", "ses_g", failure_mode="fail_fast")
    t.run("session.fail", session_id="ses_g")
    assert [t.status(s) for s in ("ses_g", "ses_c", "ses_root")] == ["failed", "failed", "active"]
    assert t.state.sessions["ses_root"].open_children == 0


def test_delegate_mode_leaves_the_parent_to_decide() -> None:
    t = active_root()
    spawn(t, "ses_root", "ses_c")
    t.run("session.fail", session_id="ses_c")
    assert t.status("ses_root") == "active"


# -- budgets ------------------------------------------------------------------------------------
def test_budget_reserved_returned_and_rolled_up() -> None:
    t = active_root(budget=1000)
    spawn(t, "ses_root", "ses_c", budget=600)
    root = t.state.sessions["ses_root"]
    assert root.remaining_budget == 400
    error = t.error("session.spawn", parent_session_id="ses_root", agent=B, budget=500)
    assert isinstance(error, CapacityExceeded)
    assert (error.details.dimension, error.details.current, error.details.limit) == ("budget", 600, 1000)
    spawn(t, "ses_c", "ses_g", budget=100)
    t.run("session.complete", session_id="ses_g", summary=DONE, usage=40)
    t.run("session.complete", session_id="ses_c", summary=DONE, usage=200)
    assert t.state.sessions["ses_c"].total_usage == 240
    assert root.reserved_for_children == 0 and root.used_by_children == 240
    assert root.remaining_budget == 760
    t.run("session.complete", session_id="ses_root", summary=DONE, usage=10)
    assert root.total_usage == 250 and root.remaining_budget == 750


# -- handoffs -----------------------------------------------------------------------------------
def idle_root(**caps: int) -> Thread:
    t = Thread(**caps)
    t.run("session.create", thread_id="thd_1", session_id="ses_root", owner=A)
    return t


def test_single_handoff_moves_ownership_and_creates_an_active_recipient() -> None:
    t = idle_root()
    outcome = t.run("handoff.single", source_session_id="ses_root", recipient=B, expected_owner_version=0)
    assert isinstance(outcome, Accepted) and t.last.owner_version == 1
    source = t.state.sessions["ses_root"]
    assert source.owner.id == "agt_b" and [a.id for a in source.previous_actors] == ["agt_a"]
    assert source.owner_version == 1 and source.status == "idle"
    child = t.state.sessions[t.last.session_id]
    assert child.status == "active" and child.owner.id == "agt_b" and child.depth == 1
    assert t.state.edges[child.edge_id].kind == "handoff"  # type: ignore[index]
    error = t.error("handoff.single", source_session_id="ses_root", recipient=C, expected_owner_version=0)
    assert isinstance(error, VersionConflict) and (error.details.expected, error.details.actual) == (0, 1)


@pytest.mark.parametrize("steps,reason", [(["session.start"], "active_run"),
                                          (["session.start", "session.request_input"], "pending_hitl")])
def test_handoff_of_a_busy_source_is_rejected(steps: list[str], reason: str) -> None:
    t = idle_root()
    for step in steps:
        t.run(step, session_id="ses_root")
    error = t.error("handoff.single", source_session_id="ses_root", recipient=B, expected_owner_version=0)
    assert isinstance(error, HandoffRejected) and error.details.reason == reason


def test_handoff_with_an_open_child_is_pending_subsession() -> None:
    t = idle_root()
    t.run("handoff.single", source_session_id="ses_root", recipient=B, expected_owner_version=0)
    error = t.error("handoff.single", source_session_id="ses_root", recipient=C, expected_owner_version=1)
    assert isinstance(error, HandoffRejected) and error.details.reason == "pending_subsession"


def test_handoffs_obey_the_caps() -> None:
    t = idle_root(max_width=2)
    error = t.error("handoff.broadcast", source_session_id="ses_root", recipients=[A, B, C], expected_owner_version=0)
    assert isinstance(error, CapacityExceeded) and error.details.dimension == "width"
    t1 = idle_root(max_depth=1)
    out = t1.run("handoff.single", source_session_id="ses_root", recipient=B, expected_owner_version=0)
    assert isinstance(out, Accepted)
    recipient = t1.last.session_id
    t1.run("session.complete", session_id=recipient, summary=DONE)
    error = t1.error("handoff.single", source_session_id=recipient, recipient=C, expected_owner_version=0)
    assert isinstance(error, CapacityExceeded) and (error.details.dimension, error.details.limit) == ("depth", 1)


def test_broadcast_waits_for_every_recipient_then_merges() -> None:
    t = idle_root()
    outcome = t.run("handoff.broadcast", source_session_id="ses_root", recipients=[B, C], expected_owner_version=0)
    assert isinstance(outcome, Accepted)
    first, second = t.last.session_ids
    source = t.state.sessions["ses_root"]
    assert source.status == "awaiting_merge" and source.owner.id == "agt_a" and source.owner_version == 1
    assert "ses_root" in t.state.blocking
    t.run("session.complete", session_id=first, summary=DONE)
    assert source.status == "awaiting_merge"
    t.run("session.fail", session_id=second, reason="no luck")
    assert source.status == "idle" and "ses_root" not in t.state.blocking
    merged = {(m.session_id, m.actor.id, m.outcome, m.summary_id) for m in source.merge_result or []}
    assert merged == {(first, "agt_b", "succeeded", t.state.sessions[first].summary_id),
                      (second, "agt_c", "failed", None)}


def test_broadcast_input_errors() -> None:
    t = idle_root()
    error = t.error("handoff.broadcast", source_session_id="ses_root", recipients=[B, B], expected_owner_version=0)
    assert isinstance(error, InvalidCommand) and error.details.errors[0].path == "$.recipients"
    with pytest.raises(msgspec.ValidationError, match="length >= 2"):
        t.decide("handoff.broadcast", source_session_id="ses_root", recipients=[B], expected_owner_version=0)
