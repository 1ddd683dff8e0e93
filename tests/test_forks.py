"""Thread forks: the fork sees its source's history up to the fork point, then its own events;
nothing is copied and the source never changes."""

from __future__ import annotations

from nats.aio.client import Client

from agentledger.handlers.app import Engine
from tests.conftest import AGENT, Client_, stream_messages


async def test_fork_sees_source_history_up_to_the_fork_point(client: Client_, engine: Engine, nc: Client) -> None:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    fork_point = (await client.ok("session.start", session_id="ses_a"))["position"]
    await client.ok("session.request_input", session_id="ses_a")  # after the fork point: not in the fork
    source_before = await client.qry("events.read", thread_id="thd_t1")
    count = await stream_messages(nc, engine.config.stream)

    fork = await client.ok("thread.create", project_id="prj_p1", thread_id="thd_f1", mode="fork",
                           source_thread_id="thd_t1", at_position=fork_point)
    assert await stream_messages(nc, engine.config.stream) == count + 1  # one event, no copies
    assert fork["events"][0]["data"]["forked_from"] == {"thread_id": "thd_t1", "position": fork_point}
    await client.ok("session.create", thread_id="thd_f1", session_id="ses_f", owner=AGENT)

    history = (await client.qry("events.read", thread_id="thd_f1"))["result"]["events"]
    assert [(e["type"], e["boundary"].split(".")[-2]) for e in history] == [
        ("thread.created", "thd_t1"), ("session.created", "thd_t1"), ("session.started", "thd_t1"),
        ("thread.created", "thd_f1"), ("session.created", "thd_f1")]
    assert all(e["position"] <= fork_point for e in history[:3])
    page = (await client.qry("events.read", thread_id="thd_f1", limit=2))["result"]
    rest = (await client.qry("events.read", thread_id="thd_f1", after=page["next_after"]))["result"]
    assert [e["position"] for e in page["events"] + rest["events"]] == [e["position"] for e in history]

    thread = (await client.qry("thread.get", thread_id="thd_f1"))["result"]["thread"]
    assert thread["forked_from"] == {"thread_id": "thd_t1", "position": fork_point}
    assert thread["sessions"] == [{"session_id": "ses_f", "status": "idle"}]
    assert await client.qry("events.read", thread_id="thd_t1") == source_before | {
        "position": (await client.qry("events.read", thread_id="thd_t1"))["position"]}
    assert (await client.qry("thread.get", thread_id="thd_t1"))["result"]["thread"]["forked_from"] is None

    # a fork of the fork carries the whole lineage
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_f2", mode="fork", source_thread_id="thd_f1")
    lineage = (await client.qry("events.read", thread_id="thd_f2"))["result"]["events"]
    assert [e["type"] for e in lineage] == [e["type"] for e in history] + ["thread.created"]


async def test_fork_defaults_to_the_source_head_and_rejects_bad_points(client: Client_, engine: Engine,
                                                                       nc: Client) -> None:
    await client.setup_thread()
    head = (await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT))["position"]
    fork = await client.ok("thread.create", project_id="prj_p1", mode="fork", source_thread_id="thd_t1")
    assert fork["events"][0]["data"]["forked_from"]["position"] == head
    count = await stream_messages(nc, engine.config.stream)
    for fields, code in [({"source_thread_id": "thd_none"}, "not_found"),
                         ({"source_thread_id": "thd_t1", "at_position": head + 1000}, "invalid_command"),
                         ({"source_thread_id": "thd_t1", "at_position": 0}, "invalid_command")]:
        reply = await client.cmd("thread.create", project_id="prj_p1", mode="fork", **fields)
        assert reply["error"]["code"] == code, reply
    reply = await client.cmd("thread.create", project_id="prj_p1", mode="fork")
    assert reply["error"]["code"] == "invalid_command" and "source_thread_id" in reply["error"]["message"]
    await client.ok("project.create", project_id="prj_other", name="o")
    reply = await client.cmd("thread.create", project_id="prj_other", mode="fork", source_thread_id="thd_t1")
    assert reply["error"]["code"] == "invalid_command"
    assert await stream_messages(nc, engine.config.stream) == count + 1
