"""A writer that can publish on event subjects (a compromised internal client) tries to change
models, wedge workers or break a cold start. Every such message is quarantined: skipped, counted
and listed; the engine keeps serving, before and after a restart, with its workers running."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from agentledger.engine import codec
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.projections.history import Replayer
from agentledger.schemas.common import Actor
from agentledger.schemas.events import Envelope, Event, SessionStarted, StoredEvent, ThreadArchived, ThreadCreated
from tests.conftest import AGENT, Client_
from tests.sandbox_support import sandbox_engine, settled

FORGER = Actor(kind="user", id="usr_forger")


def forged(tenant: str, boundary: str, event: Event, **over: Any) -> bytes:
    fields: dict[str, Any] = {"event_id": uuid.uuid4().hex, "type": type(event).__struct_config__.tag, "tenant_id": tenant,
                                  "boundary": boundary, "command": "forged", "command_id": f"forged-{uuid.uuid4().hex[:8]}",
                                  "correlation_id": "forged", "actor": FORGER, "at": "2026-01-01T00:00:00+00:00", "data": event}
    fields.update(over)
    return codec.encode(Envelope(**fields))


async def publish(nc: Client, config: EngineConfig, subject: str, data: bytes) -> int:
    return int((await nc.jetstream().publish(subject, data, stream=config.stream)).seq)


async def quarantined(client: Client_, after_position: int) -> dict[str, Any]:
    reply = await client.qry("quarantine.list", min_position=after_position)
    assert reply["ok"], reply
    return reply["result"]  # type: ignore[no-any-return]


@pytest.fixture
async def workers_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ack_wait=2.0) as eng:
        yield eng


async def busy_thread(client: Client_) -> None:
    await client.setup_thread()
    for sid in ("ses_a", "ses_b"):
        await client.ok("session.create", thread_id="thd_t1", session_id=sid, owner=AGENT)
        await client.ok("session.start", session_id=sid)


async def test_forged_archive_of_a_busy_thread_is_quarantined_and_the_thread_keeps_working(
        nc: Client, workers_engine: Engine, engine_config: EngineConfig) -> None:
    client = Client_(nc, engine_config)
    await busy_thread(client)
    subjects = engine_config.subjects
    boundary = subjects.thread_filter("tnt_acme", "thd_t1")
    position = await publish(nc, engine_config, subjects.event_subject(boundary, "thread.archived"),
                             forged("tnt_acme", boundary, ThreadArchived(thread_id="thd_t1")))
    # a live event that does not fit makes the engine re-read the thread in order when next used
    thread = (await client.qry("thread.get", thread_id="thd_t1", min_position=position))["result"]["thread"]
    assert thread["status"] == "open" and thread["blocking_sessions"] == 2
    result = await quarantined(client, position)
    assert [(e["position"], e["tenant_id"]) for e in result["entries"]] == [(position, "tnt_acme")]
    assert "prevent archiving" in result["entries"][0]["reason"]
    # the quarantined message still counts for the boundary's expected position: appends go on
    done = await client.ok("session.complete", session_id="ses_a", summary={"outcome": "succeeded", "text": "ok"})
    assert done["position"] > position
    refused = await client.cmd("thread.archive", thread_id="thd_t1")
    assert refused["error"]["code"] == "thread_not_empty"
    # a replay of the history (what `agentledger replay` and the timeline do) skips it as the engine did
    page = (await client.qry("events.read", thread_id="thd_t1", limit=1000))["result"]
    assert position in [e["position"] for e in page["events"]]  # the audit trail shows what the log holds
    replayer = Replayer("thd_t1")
    for event in msgspec.convert(page["events"], list[StoredEvent]):
        replayer.feed(event, event.position)
    assert replayer.state is not None and replayer.state.status == "open" and replayer.skipped.count == 1

    await workers_engine.stop()
    again = Engine(engine_config)
    await again.start()
    try:
        thread = (await client.qry("thread.get", thread_id="thd_t1"))["result"]["thread"]
        assert again.models.quarantine.count == 1  # skipped again when the restarted engine loads the thread
        assert thread["status"] == "open" and thread["blocking_sessions"] == 1
        await client.ok("session.complete", session_id="ses_b", summary={"outcome": "succeeded", "text": "ok"})
        await client.ok("thread.archive", thread_id="thd_t1")
    finally:
        await again.stop()


async def test_envelope_naming_another_tenants_boundary_changes_nothing(
        nc: Client, engine: Engine, engine_config: EngineConfig) -> None:
    victim, attacker = Client_(nc, engine_config, "tnt_victim"), Client_(nc, engine_config, "tnt_evil")
    await busy_thread(victim)
    await attacker.setup_thread(project_id="prj_e", thread_id="thd_e")
    subjects = engine_config.subjects
    victim_boundary = subjects.thread_filter("tnt_victim", "thd_t1")
    own = subjects.thread_filter("tnt_evil", "thd_e")
    started = SessionStarted(session_id="ses_a")
    positions = [
        # on the attacker's own subject, the envelope claims the victim's boundary and tenant
        await publish(nc, engine_config, subjects.event_subject(own, "thread.archived"),
                      forged("tnt_victim", victim_boundary, ThreadArchived(thread_id="thd_t1"))),
        # on the victim's subject, the envelope names the attacker's tenant
        await publish(nc, engine_config, subjects.event_subject(victim_boundary, "thread.archived"),
                      forged("tnt_evil", victim_boundary, ThreadArchived(thread_id="thd_t1"))),
        # subject and envelope agree on the victim's thread, the event names another thread
        await publish(nc, engine_config, subjects.event_subject(victim_boundary, "thread.created"),
                      forged("tnt_victim", victim_boundary, ThreadCreated(thread_id="thd_other", project_id="prj_p1",
                             title="", max_delegation_depth=1, max_delegation_width=1))),
        # the type in the subject is not the event's type
        await publish(nc, engine_config, subjects.event_subject(victim_boundary, "session.started"),
                      forged("tnt_victim", victim_boundary, ThreadArchived(thread_id="thd_t1"), type="session.started")),
        # a session event where the session does not exist
        await publish(nc, engine_config, subjects.event_subject(victim_boundary, "session.started"),
                      forged("tnt_victim", victim_boundary, SessionStarted(session_id="ses_ghost"))),
        # a valid event type on a boundary kind that does not have it
        await publish(nc, engine_config, subjects.event_subject(subjects.project_filter("tnt_victim", "prj_p1"),
                                                                "session.started"),
                      forged("tnt_victim", subjects.project_filter("tnt_victim", "prj_p1"), started)),
    ]
    thread = (await victim.qry("thread.get", thread_id="thd_t1", min_position=positions[-1]))["result"]["thread"]
    assert thread["status"] == "open" and thread["blocking_sessions"] == 2
    result = await quarantined(victim, positions[-1])
    assert [e["position"] for e in result["entries"]] == positions and result["count"] == len(positions)
    assert (await victim.qry("session.get", session_id="ses_ghost"))["error"]["code"] == "not_found"
    assert (await attacker.qry("thread.get", thread_id="thd_e"))["result"]["thread"]["status"] == "open"
    await victim.ok("session.complete", session_id="ses_a", summary={"outcome": "succeeded", "text": "ok"})
    await attacker.ok("thread.archive", thread_id="thd_e")


PM_SEES = 2  # of the targets below, those on the thread event types the process manager acts on
GARBAGE = [b"", b"\xff\xfe not json", b"{}", b'{"type": "thread.archived"}', b"[" * 5000]


async def test_undecodable_messages_wedge_neither_workers_nor_cold_start(
        nc: Client, workers_engine: Engine, engine_config: EngineConfig) -> None:
    client = Client_(nc, engine_config)
    await client.setup_thread()
    subjects = engine_config.subjects
    thread = subjects.thread_filter("tnt_acme", "thd_t1")
    sandbox = subjects.sandbox_filter("tnt_acme", "sbx_s1")
    targets = [subjects.event_subject(thread, "session.created"), subjects.event_subject(sandbox, "sandbox.create_requested"),
               f"{engine_config.prefix}.evt.tnt_acme.zzz", f"{engine_config.prefix}.evt.bad-tenant.thr.thd_t1.thread.archived",
               subjects.event_subject(subjects.thread_filter("tnt_acme", "thd_t2"), "thread.created")]
    last = 0
    for target in targets:
        for data in GARBAGE:
            last = await publish(nc, engine_config, target, data)
    # the engine checks the boundaries it holds (the thread) as they arrive, the others when it loads them
    assert (await quarantined(client, last))["count"] >= len(GARBAGE)  # the follower's, on the loaded thread

    # both workers flow on: the process manager turns the binding into a create, the effect
    # handler creates the sandbox on the very boundary the garbage was published on
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_s", owner=AGENT,
                    sandbox={"mode": "new", "sandbox_id": "sbx_s1", "shutdown": "destroy"})
    await client.ok("session.start", session_id="ses_s")
    view = await settled(client, "sbx_s1", "running")
    assert Path(view["location"]).is_dir()
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_t2")
    skipped = {w.durable.rsplit("-", 1)[1]: w.quarantine.count for w in workers_engine.workers}
    assert skipped == {"pm": PM_SEES * len(GARBAGE), "fx": len(GARBAGE)}
    # the engine's list holds what any of its readers skipped, once: all but the subject no reader matches
    assert workers_engine.models.quarantine.count == (len(targets) - 1) * len(GARBAGE)
    assert (await quarantined(client, last))["count"] == (len(targets) - 1) * len(GARBAGE)

    await workers_engine.stop()
    again = Engine(engine_config)
    await again.start()  # a start over the garbage reads none of it
    try:
        await client.ok("session.complete", session_id="ses_s", summary={"outcome": "succeeded", "text": "ok"})
        await settled(client, "sbx_s1", "destroyed")
        assert again.models.quarantine.count == 2 * len(GARBAGE)  # loading thd_t1 and sbx_s1 skipped theirs again
    finally:
        await again.stop()
