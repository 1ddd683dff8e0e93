"""Auditors get what the log knows: every append carries the position its decision was based on
and its boundary in headers that survive sourcing into the tenant's audit stream (the
`Nats-Expected-*` ones do not), the audit stream answers direct gets, and the client's `audit()`
yields them through a durable consumer that resumes where it stopped. `replay()` is
`agentledger replay`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import msgspec
import nats
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from agentledger.client import AuditRecord
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import AUDIT_API, AUDIT_DELIVERY, Deployment
from agentledger.handlers.auth.tenants import add_audit_stream
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.schemas.accounts import audit_stream
from agentledger.schemas.replay import Replay, ReplayDiff
from tests.client_support import HANG, creds_file, ledger_for
from tests.conftest import Tenants

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


async def _history(config: EngineConfig, creds: Path) -> list[tuple[int, str]]:
    async with ledger_for(config, creds) as ledger:
        return [(e.position, e.type) async for e in ledger.events(follow=False)]


async def test_the_audit_stream_keeps_what_each_decision_was_based_on_and_answers_direct_gets(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        tenants: Tenants, tmp_path: Path) -> None:
    member = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, member) as ledger:
        await ledger.project.create(name="p", project_id="prj_a")
        await ledger.thread.create(project_id="prj_a", thread_id="thd_a")
        await ledger.session.create(thread_id="thd_a", session_id="ses_a", owner="agt_a")
        await ledger.session.start(session_id="ses_a")
        stored = [e async for e in ledger.events(thread_id="thd_a", follow=False)]
    name = await add_audit_stream(nats_server.url, deployment, "tnt_acme", engine_config.prefix, engine_config.stream)
    auditor = await nats.connect(nats_server.url, user_credentials=deployment.tenant_creds("tnt_acme", "usr_aud",
                                                                                            "auditor").raw())
    try:
        js = auditor.jetstream(timeout=HANG)
        sub = await js.pull_subscribe(engine_config.subjects.thread_filter("tnt_acme", "thd_a"), durable="raw", stream=name)
        msgs: list[nats.aio.msg.Msg] = []
        while len(msgs) < len(stored):  # the audit stream fills while we read
            msgs += await sub.fetch(len(stored) - len(msgs), timeout=HANG)
        boundary = engine_config.subjects.thread_filter("tnt_acme", "thd_a")
        for msg, event, expected in zip(msgs, stored, [0, *[e.position for e in stored]], strict=False):
            headers = msg.headers or {}
            assert headers["Ledger-Boundary"] == boundary and headers["Ledger-Expected-Position"] == str(expected)
            assert headers["traceparent"].startswith("00-")
            assert "Nats-Expected-Last-Subject-Sequence" not in headers  # what JetStream drops when sourcing
            assert headers["Nats-Stream-Source"].split()[1] == str(event.position)
        assert (await js.stream_info(name)).config.allow_direct
        direct = await auditor.request(f"$JS.API.DIRECT.GET.{name}", json.dumps({"seq": 1}).encode(), timeout=HANG)
        assert (direct.headers or {})["Nats-Sequence"] == "1" and "Ledger-Boundary" in (direct.headers or {})
    finally:
        await auditor.close()


async def test_an_audit_stream_made_before_direct_gets_is_updated(engine_config: EngineConfig, deployment: Deployment,
                                                                  nats_server: EmbeddedNats, tenants: Tenants) -> None:
    await tenants.add("tnt_acme")
    name = audit_stream(engine_config.stream)
    source = StreamSource(name=engine_config.stream, filter_subject=engine_config.subjects.tenant_filter("tnt_acme"),
                          external=ExternalStream(api=AUDIT_API, deliver=f"{AUDIT_DELIVERY}.tnt_acme"))
    nc = await nats.connect(nats_server.url, user_credentials=deployment.provisioner_creds("tnt_acme").raw())
    try:  # as `tenant add` made it before
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=name, subjects=[], sources=[source], storage=StorageType.FILE))
        assert not (await js.stream_info(name)).config.allow_direct
        await add_audit_stream(nats_server.url, deployment, "tnt_acme", engine_config.prefix, engine_config.stream)
        info = await js.stream_info(name)
        assert info.config.allow_direct and [s.name for s in info.config.sources or []] == [engine_config.stream]
    finally:
        await nc.close()


async def test_audit_yields_each_event_with_its_headers_and_resumes_with_the_same_durable(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        tenants: Tenants, tmp_path: Path) -> None:
    member = await creds_file(deployment, tenants, tmp_path)
    auditor = await creds_file(deployment, tenants, tmp_path, user="usr_aud", role="auditor")
    async with ledger_for(engine_config, member) as ledger:
        await ledger.project.create(name="p", project_id="prj_b")
        await ledger.thread.create(project_id="prj_b", thread_id="thd_b")
        for n in range(3):
            await ledger.session.create(thread_id="thd_b", session_id=f"ses_{n}", owner="agt_b")
    await add_audit_stream(nats_server.url, deployment, "tnt_acme", engine_config.prefix, engine_config.stream)
    history = await _history(engine_config, member)

    async with ledger_for(engine_config, auditor) as audit:  # first run: two events, then it stops and closes
        first: list[AuditRecord] = []
        async for record in audit.audit("auditor-1"):
            first.append(record)
            if len(first) == 2:
                break
    assert [(r.position, r.event and r.event.type) for r in first] == history[:2]
    created = first[1]  # thread.created: the first event of its boundary
    assert created.event is not None and created.boundary == created.event.boundary == \
        engine_config.subjects.thread_filter("tnt_acme", "thd_b")
    assert (created.expected_position, created.error) == (0, None) and created.traceparent is not None

    async with ledger_for(engine_config, member) as ledger:  # the log moves on while nobody reads
        await ledger.session.start(session_id="ses_0")
    history = await _history(engine_config, member)

    async with ledger_for(engine_config, auditor) as audit:  # a new connection, the same durable
        rest: list[AuditRecord] = []
        feed = audit.audit("auditor-1")
        while len(rest) < len(history) - 1:
            rest.append(await asyncio.wait_for(anext(feed), HANG))
        await feed.aclose()
    # the one handed out but not yet done when the first run stopped comes again, then the rest, in order
    assert [(r.position, r.event and r.event.type) for r in rest] == history[1:]
    started = rest[-1]
    assert started.event is not None and started.event.type == "session.started"
    last_of_thread = max(p for p, kind in history[:-1] if kind != "project.created")
    assert started.expected_position == last_of_thread

    async with ledger_for(engine_config, auditor) as audit:  # another durable, from a position on, until caught up
        later = [r.position async for r in audit.audit("auditor-2", after=history[2][0], follow=False)]
    assert later == [p for p, _ in history[3:]]


async def test_replay_is_what_agentledger_replay_shows(engine: Engine, engine_config: EngineConfig,
                                                       deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    member = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, member) as ledger:
        await ledger.project.create(name="p", project_id="prj_r")
        await ledger.thread.create(project_id="prj_r", thread_id="thd_r")
        await ledger.session.create(thread_id="thd_r", session_id="ses_r", owner="agt_r")
        early = ledger.position
        await ledger.session.start(session_id="ses_r")
        await ledger.session.spawn(parent_session_id="ses_r", session_id="ses_k", agent="agt_k")
        then, now = await ledger.replay("thd_r", early), await ledger.replay("thd_r")
        last = ledger.position
        change = await ledger.replay("thd_r", early, diff=last)
    assert isinstance(then, Replay) and isinstance(change, ReplayDiff)
    assert [s.status for s in then.sessions] == ["idle"] and [s.session_id for s in now.sessions] == ["ses_r", "ses_k"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "NATS_"))} | {
        "NATS_URL": engine_config.nats_url, "AGENTLEDGER_PREFIX": engine_config.prefix,
        "AGENTLEDGER_TENANT": "tnt_acme", "NATS_CREDS": str(member)}
    for value, args in ((then, ("--at", str(early))), (now, ()), (change, ("--at", str(early), "--diff", str(last)))):
        proc = await asyncio.create_subprocess_exec(AGENTLEDGER, "replay", "--thread-id", "thd_r", "--json", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), HANG)
        assert proc.returncode == 0, err
        shown = msgspec.json.decode(out)
        if isinstance(value, Replay):  # the log may have grown between the two readings (other tests' events)
            shown["log_end"] = value.log_end
        assert shown == msgspec.to_builtins(value), args


def test_the_asyncapi_document_describes_the_audit_stream() -> None:
    from agentledger.cli.asyncapi import asyncapi
    from agentledger.schemas.contract import event_types

    doc = asyncapi()
    channel, operation = doc["channels"]["audit.events"], doc["operations"]["audit.read"]
    assert channel["address"] == "ledger.evt.{tenant}.>" and "AUDIT_LEDGER" in channel["description"]
    assert set(channel["messages"]) == {str(e.__struct_config__.tag) for e in event_types()}
    assert (operation["action"], operation["x-roles"]) == ("receive", ["auditor"])
    headers = doc["components"]["schemas"]["EventHeaders"]
    assert headers["required"] == ["Ledger-Expected-Position", "Ledger-Boundary"]
    assert {"traceparent", "Nats-Stream-Source"} <= set(headers["properties"])
    assert all(m["headers"] == {"$ref": "#/components/schemas/EventHeaders"}
               for name, m in doc["components"]["messages"].items() if name.startswith("event."))
