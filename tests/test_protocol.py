"""The wire contract over a real NATS server: every command and query answers, bad input gets
an error reply at once with a stable code, and nothing is appended for it."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from agentledger.handlers.app import Engine
from tests.conftest import AGENT, Client_, stream_messages

SUMMARY = {"outcome": "succeeded", "text": "all done", "deliverables": ["s3://out/report.md"]}


async def test_full_lifecycle_over_nats(client: Client_) -> None:
    created = await client.ok("project.create", name="research", config={"max_delegation_width": 3})
    project_id = created["result"]["project_id"]
    assert project_id.startswith("prj_") and len(project_id) == 16
    thread = (await client.ok("thread.create", project_id=project_id, title="t"))["result"]["thread_id"]
    session = (await client.ok("session.create", thread_id=thread, owner=AGENT))["result"]["session_id"]
    steps = [("session.start", {}, "active"), ("session.request_input", {"prompt": "approve?"}, "awaiting_hitl"),
             ("session.provide_input", {}, "active"), ("session.complete", {"summary": SUMMARY}, "idle"),
             ("session.archive", {}, "archived"), ("session.restore", {}, "idle"), ("session.start", {}, "active"),
             ("session.cancel", {"reason": "stop"}, "idle"), ("session.start", {}, "active"),
             ("session.fail", {"reason": "boom"}, "failed")]
    for command, fields, status in steps:
        reply = await client.ok(command, session_id=session, **fields)
        assert reply["result"]["status"] == status
        assert [e["type"] for e in reply["events"]] and reply["events"][0]["position"] == reply["position"]
    reply = await client.ok("thread.archive", thread_id=thread)
    assert reply["result"] == {"thread_id": thread, "status": "archived"}
    position = (await client.ok("thread.unarchive", thread_id=thread))["position"]

    got = await client.qry("thread.get", thread_id=thread, min_position=position)
    assert got["ok"] and got["position"] >= position
    assert got["result"]["thread"]["status"] == "open"
    assert got["result"]["thread"]["sessions"] == [{"session_id": session, "status": "failed"}]
    s = (await client.qry("session.get", session_id=session))["result"]["session"]
    assert (s["status"], s["thread_id"], s["owner"], s["depth"], s["parent_session_id"]) == (
        "failed", thread, AGENT, 0, None)
    assert s["summary"]["text"] == "all done"
    listed = (await client.qry("thread.list", project_id=project_id))["result"]["threads"]
    assert [t["thread_id"] for t in listed] == [thread]
    page = (await client.qry("events.read", thread_id=thread, limit=3))["result"]
    assert [e["type"] for e in page["events"]] == ["thread.created", "session.created", "session.started"]
    rest = (await client.qry("events.read", thread_id=thread, after=page["next_after"]))["result"]
    assert len(rest["events"]) == len(steps) + 2 - 1
    envelope = rest["events"][0]
    for key in ("event_id", "type", "schema_version", "tenant_id", "boundary", "command_id", "correlation_id",
                "causation_id", "actor", "at", "data", "position"):
        assert key in envelope


async def test_thread_delete_and_tombstone(client: Client_) -> None:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_x", owner=AGENT)
    refused = await client.cmd("thread.delete", thread_id="thd_t1")
    assert refused["error"]["code"] == "thread_not_empty" and refused["error"]["details"]["op"] == "delete"
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_empty")
    deleted = await client.ok("thread.delete", thread_id="thd_empty")
    assert deleted["result"]["status"] == "deleted" and deleted["events"][0]["type"] == "thread.deleted"
    again = await client.ok("thread.delete", thread_id="thd_empty")
    assert again["events"] == []
    absent = await client.ok("thread.delete", thread_id="thd_never")
    assert absent["events"] == []
    assert (await client.qry("thread.get", thread_id="thd_empty"))["result"]["thread"]["status"] == "deleted"


BAD_INPUT = [
    ("thread.create", b"{not json", "invalid_command"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_p1", "colour": "red"}',
     "invalid_command"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": 7}', "invalid_command"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_p1", "thread_id": "thd_a.b"}',
     "invalid_command"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_p1", "thread_id": "thd_*"}',
     "invalid_command"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_p1", "thread_id": "thd_>"}',
     "invalid_command"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "agt_1"}, "project_id": "prj_p1"}', "invalid_command"),
    ("thread.create", b'{"project_id": "prj_p1"}', "invalid_command"),
    ("session.start", b'{"actor": {"kind": "user", "id": "usr_1"}, "session_id": "ses_a b"}', "invalid_command"),
    ("session.teleport", b'{"actor": {"kind": "user", "id": "usr_1"}}', "unknown_command"),
    ("thread.archive", b'{"actor": {"kind": "user", "id": "usr_1"}, "thread_id": "thd_missing"}', "not_found"),
    ("session.start", b'{"actor": {"kind": "user", "id": "usr_1"}, "session_id": "ses_missing"}', "not_found"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_missing"}', "not_found"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_p1", "thread_id": "thd_t1"}',
     "already_exists"),
    ("project.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_p1", "name": "again"}',
     "already_exists"),
    ("session.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "thread_id": "thd_t2", "session_id": "ses_s",'
                       b' "owner": {"kind": "agent", "id": "agt_1"}}', "already_exists"),
    ("thread.create", b'{"actor": {"kind": "user", "id": "usr_1"}, "project_id": "prj_p1", "mode": "sideways"}',
     "invalid_command"),
    ("session.complete", b'{"actor": {"kind": "user", "id": "usr_1"}, "session_id": "ses_s",'
                         b' "summary": {"outcome": "succeeded", "text": "' + b"x" * 4001 + b'"}}', "invalid_command"),
]


@pytest.mark.parametrize("command,body,code", BAD_INPUT)
async def test_bad_input_is_answered_at_once_and_appends_nothing(
        client: Client_, engine: Engine, nc: Client, command: str, body: bytes, code: str) -> None:
    await client.setup_thread()
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_t2")
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_s", owner=AGENT)
    before = await stream_messages(nc, engine.config.stream)
    reply = await client.raw(f"{engine.config.prefix}.cmd.tnt_acme.{command}", body, timeout=2.0)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"]
    if code == "invalid_command":
        assert reply["error"]["details"]["errors"][0]["path"].startswith("$")
    assert await stream_messages(nc, engine.config.stream) == before


async def test_bad_tenant_token_and_bad_query_get_error_replies(client: Client_, engine: Engine, nc: Client) -> None:
    # a tenant's credentials cannot even reach a malformed tenant token; the deployment's can
    reply = await Client_(nc, engine.config).raw(f"{engine.config.prefix}.cmd.acme.thread.create", b"{}")
    assert reply["error"]["code"] == "invalid_command"
    reply = await client.raw(f"{engine.config.prefix}.qry.tnt_acme.thread.get", b'{"thread_id": 1}')
    assert reply["error"]["code"] == "invalid_command"
    reply = await client.raw(f"{engine.config.prefix}.qry.tnt_acme.thread.peek", b"{}")
    assert reply["error"]["code"] == "unknown_command"


async def test_other_tenants_ids_are_not_found(client: Client_, engine: Engine, nc: Client) -> None:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_mine", owner=AGENT)
    before = await stream_messages(nc, engine.config.stream)
    for command, fields in [("thread.archive", {"thread_id": "thd_t1"}), ("session.start", {"session_id": "ses_mine"}),
                            ("thread.create", {"project_id": "prj_p1"}),
                            ("session.create", {"thread_id": "thd_t1", "owner": AGENT}),
                            ("session.spawn", {"parent_session_id": "ses_mine", "agent": AGENT})]:
        reply = await client.cmd(command, tenant="tnt_other", **fields)
        assert reply["error"]["code"] == "not_found", (command, reply)
    for query, fields in [("thread.get", {"thread_id": "thd_t1"}), ("session.get", {"session_id": "ses_mine"})]:
        reply = await client.qry(query, tenant="tnt_other", **fields)
        assert reply["error"]["code"] == "not_found"
    page = await client.qry("events.read", tenant="tnt_other")
    assert page["result"]["events"] == []
    assert await stream_messages(nc, engine.config.stream) == before


async def test_domain_errors_carry_their_details(client: Client_) -> None:
    await client.setup_thread(config={"max_delegation_depth": 1, "max_delegation_width": 1})
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_root", owner=AGENT)
    err = (await client.cmd("session.provide_input", session_id="ses_root"))["error"]
    assert err == {"code": "illegal_transition", "message": err["message"], "retryable": False,
                   "details": {"kind": "session", "id": "ses_root", "from": "idle",
                               "command": "session.provide_input"}}
    await client.ok("session.start", session_id="ses_root")
    err = (await client.cmd("thread.archive", thread_id="thd_t1"))["error"]
    assert err["code"] == "thread_not_empty"
    assert err["details"] == {"thread_id": "thd_t1", "tenant_id": "tnt_acme", "op": "archive",
                              "blocking_sessions": [{"session_id": "ses_root", "status": "active"}],
                              "total_blocking_sessions": 1}
    await client.ok("session.spawn", parent_session_id="ses_root", session_id="ses_c1", agent=AGENT)
    err = (await client.cmd("session.spawn", parent_session_id="ses_root", agent=AGENT))["error"]
    assert err["code"] == "capacity_exceeded"
    assert err["details"] == {"dimension": "width", "current": 1, "limit": 1, "session_id": "ses_root"}
    err = (await client.cmd("session.spawn", parent_session_id="ses_c1", agent=AGENT))["error"]
    assert err["details"] == {"dimension": "depth", "current": 1, "limit": 1, "session_id": "ses_c1"}
    await client.ok("project.create", project_id="prj_p2", name="other")
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_t2")
    await client.ok("thread.create", project_id="prj_p2", thread_id="thd_t3")
    err = (await client.cmd("session.spawn", parent_session_id="ses_root", thread_id="thd_t2", agent=AGENT))["error"]
    assert err["code"] == "cross_thread" and err["details"]["parent_thread_id"] == "thd_t1"
    err = (await client.cmd("session.spawn", parent_session_id="ses_root", thread_id="thd_t3", agent=AGENT))["error"]
    assert err["code"] == "cross_project"
    err = (await client.cmd("handoff.single", source_session_id="ses_root", recipient=AGENT,
                            expected_owner_version=3))["error"]
    assert err["details"] == {"session_id": "ses_root", "expected": 3, "actual": 0}
    err = (await client.cmd("handoff.single", source_session_id="ses_root", recipient=AGENT,
                            expected_owner_version=0))["error"]
    assert err["code"] == "handoff_rejected" and err["details"] == {"session_id": "ses_root", "reason": "active_run"}
    await client.ok("session.complete", session_id="ses_root", summary=SUMMARY)
    still = (await client.cmd("thread.archive", thread_id="thd_t1"))["error"]
    assert still["details"]["blocking_sessions"] == [{"session_id": "ses_c1", "status": "active"}]
    await client.ok("session.complete", session_id="ses_c1", summary=SUMMARY)
    await client.ok("thread.archive", thread_id="thd_t1")
    err = (await client.cmd("session.start", session_id="ses_root"))["error"]
    assert err["code"] == "thread_closed" and err["details"] == {"thread_id": "thd_t1", "op": "session.start"}


async def test_repeated_command_id_returns_the_first_outcome(client: Client_, engine: Engine, nc: Client) -> None:
    await client.setup_thread()
    first = await client.ok("session.create", command_id="create-1", thread_id="thd_t1", owner=AGENT)
    before = await stream_messages(nc, engine.config.stream)
    again = await client.ok("session.create", command_id="create-1", thread_id="thd_t1", owner=AGENT)
    assert again == first
    assert await stream_messages(nc, engine.config.stream) == before
    # a create without a client id still lands in the same place on a retry: the id derives from command_id
    t1 = await client.ok("thread.create", command_id="mk-thread", project_id="prj_p1")
    t2 = await client.ok("thread.create", command_id="mk-thread", project_id="prj_p1")
    assert t1 == t2
    clash = await client.cmd("session.start", command_id="create-1", session_id=first["result"]["session_id"])
    assert clash["error"]["code"] == "already_exists" and clash["error"]["details"]["kind"] == "command"


async def test_min_position_waits_and_times_out_with_a_retryable_error(client: Client_, engine: Engine) -> None:
    assert engine.queries is not None
    engine.queries.wait_timeout = 0.3
    await client.setup_thread()
    reply = await client.qry("thread.get", thread_id="thd_t1", min_position=10_000)
    assert reply["error"]["code"] == "unavailable" and reply["error"]["retryable"] is True
