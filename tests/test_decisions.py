"""Every transition and every rejection of the session state machine and the thread gate,
decided purely (no log), with the protocol's error details."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.engine.outcomes import Accepted, Unchanged
from agentledger.schemas.errors import IllegalTransition, NotFound, ThreadClosed, ThreadNotEmpty
from tests.domain_harness import Thread

OWNER = {"kind": "agent", "id": "agt_a"}
SUMMARY = {"outcome": "succeeded", "text": "done"}

# command -> (extra fields, statuses it is allowed from, status after)
SESSION_COMMANDS: dict[str, tuple[dict[str, Any], set[str], str]] = {
    "session.start": ({}, {"idle"}, "active"),
    "session.request_input": ({"prompt": "ok?"}, {"active"}, "awaiting_hitl"),
    "session.provide_input": ({}, {"awaiting_hitl"}, "active"),
    "session.complete": ({"summary": SUMMARY}, {"active", "awaiting_hitl"}, "idle"),
    "session.cancel": ({"reason": "operator"}, {"active", "awaiting_hitl"}, "idle"),
    "session.fail": ({"reason": "boom"}, {"active", "awaiting_hitl"}, "failed"),
    "session.archive": ({}, {"idle", "failed"}, "archived"),
    "session.restore": ({}, {"archived"}, "idle"),
}

# how to bring a fresh session into each status
PATHS = {
    "idle": [],
    "active": ["session.start"],
    "awaiting_hitl": ["session.start", "session.request_input"],
    "failed": ["session.start", "session.fail"],
    "archived": ["session.archive"],
}


def thread_with_session(status: str) -> Thread:
    t = Thread()
    t.run("session.create", thread_id="thd_1", session_id="ses_1", owner=OWNER)
    for step in PATHS[status]:
        t.run(step, session_id="ses_1", **SESSION_COMMANDS[step][0])
    assert t.status("ses_1") == status
    return t


@pytest.mark.parametrize("status", sorted(PATHS))
@pytest.mark.parametrize("command", sorted(SESSION_COMMANDS))
def test_session_state_machine(status: str, command: str) -> None:
    fields, allowed, after = SESSION_COMMANDS[command]
    t = thread_with_session(status)
    if status in allowed:
        outcome = t.run(command, session_id="ses_1", **fields)
        assert isinstance(outcome, Accepted)
        assert t.status("ses_1") == after
        assert t.last.status == after
    else:
        error = t.error(command, session_id="ses_1", **fields)
        assert isinstance(error, IllegalTransition)
        assert (error.details.kind, error.details.id, error.details.from_, error.details.command) == (
            "session", "ses_1", status, command)


def test_awaiting_merge_only_returns_to_idle_by_the_last_recipient() -> None:
    t = thread_with_session("idle")
    t.run("handoff.broadcast", source_session_id="ses_1", expected_owner_version=0,
          recipients=[{"kind": "agent", "id": "agt_b"}, {"kind": "agent", "id": "agt_c"}])
    assert t.status("ses_1") == "awaiting_merge"
    for command in SESSION_COMMANDS:
        error = t.error(command, session_id="ses_1", **SESSION_COMMANDS[command][0])
        assert isinstance(error, IllegalTransition) and error.details.from_ == "awaiting_merge"


def test_complete_writes_a_summary_once() -> None:
    t = thread_with_session("active")
    outcome = t.run("session.complete", session_id="ses_1", summary=SUMMARY)
    assert isinstance(outcome, Accepted) and t.last.summary_id
    session = t.state.sessions["ses_1"]
    assert session.summary is not None and session.summary.text == "done"
    assert session.summary_id == t.last.summary_id


def test_unknown_session_is_not_found() -> None:
    error = Thread().error("session.start", session_id="ses_nope")
    assert isinstance(error, NotFound) and (error.details.kind, error.details.id) == ("session", "ses_nope")


# -- the archive gate ------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["active", "awaiting_hitl"])
def test_archive_is_blocked_by_running_sessions(status: str) -> None:
    t = thread_with_session(status)
    error = t.error("thread.archive", thread_id="thd_1")
    assert isinstance(error, ThreadNotEmpty)
    d = error.details
    assert (d.thread_id, d.tenant_id, d.op, d.total_blocking_sessions) == ("thd_1", "tnt_x", "archive", 1)
    assert [(b.session_id, b.status) for b in d.blocking_sessions] == [("ses_1", status)]


def test_archive_gate_lists_fifty_oldest_first_and_counts_all() -> None:
    t = Thread()
    for i in range(60):
        t.run("session.create", thread_id="thd_1", session_id=f"ses_{i:02d}", owner=OWNER)
    for i in reversed(range(60)):  # start newest first: the listing must still be oldest first
        t.run("session.start", session_id=f"ses_{i:02d}")
    error = t.error("thread.archive", thread_id="thd_1")
    assert error.details.total_blocking_sessions == 60
    assert [b.session_id for b in error.details.blocking_sessions] == [f"ses_{i:02d}" for i in range(50)]


@pytest.mark.parametrize("status", ["idle", "failed", "archived"])
def test_archive_passes_with_only_non_blocking_sessions(status: str) -> None:
    t = thread_with_session(status)
    outcome = t.run("thread.archive", thread_id="thd_1")
    assert isinstance(outcome, Accepted) and t.state.status == "archived"


def test_archive_of_archived_is_idempotent_and_unarchive_reopens() -> None:
    t = thread_with_session("idle")
    t.run("thread.archive", thread_id="thd_1")
    assert isinstance(t.run("thread.archive", thread_id="thd_1"), Unchanged)
    assert isinstance(t.run("thread.unarchive", thread_id="thd_1"), Accepted)
    assert t.state.status == "open"
    assert isinstance(t.run("thread.unarchive", thread_id="thd_1"), Unchanged)


@pytest.mark.parametrize("command,fields", [
    ("session.create", {"thread_id": "thd_1", "session_id": "ses_2", "owner": OWNER}),
    ("session.start", {"session_id": "ses_1"}),
    ("session.spawn", {"parent_session_id": "ses_1", "agent": OWNER}),
    ("handoff.single", {"source_session_id": "ses_1", "recipient": OWNER, "expected_owner_version": 0}),
])
def test_archived_thread_is_closed_to_new_work(command: str, fields: dict[str, Any]) -> None:
    t = thread_with_session("idle")
    t.run("thread.archive", thread_id="thd_1")
    error = t.error(command, **fields)
    assert isinstance(error, ThreadClosed)
    assert (error.details.thread_id, error.details.op) == ("thd_1", command)


def test_archived_thread_still_lets_idle_sessions_be_archived_and_restored() -> None:
    t = thread_with_session("idle")
    t.run("thread.archive", thread_id="thd_1")
    assert isinstance(t.run("session.archive", session_id="ses_1"), Accepted)
    assert isinstance(t.run("session.restore", session_id="ses_1"), Accepted)


def test_delete_needs_an_empty_thread_and_leaves_a_tombstone() -> None:
    t = thread_with_session("archived")
    error = t.error("thread.delete", thread_id="thd_1")
    assert isinstance(error, ThreadNotEmpty) and error.details.op == "delete"
    assert [(b.session_id, b.status) for b in error.details.blocking_sessions] == [("ses_1", "archived")]
    empty = Thread()
    assert isinstance(empty.run("thread.delete", thread_id="thd_1"), Accepted)
    assert empty.state.status == "deleted"
    assert isinstance(empty.run("thread.delete", thread_id="thd_1"), Unchanged)
    assert isinstance(empty.error("thread.archive", thread_id="thd_1"), NotFound)
    assert isinstance(empty.error("session.create", thread_id="thd_1", owner=OWNER), NotFound)
