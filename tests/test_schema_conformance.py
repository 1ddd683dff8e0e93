"""docs/schema.json describes what a real engine sends, exactly: every request, reply and event of
a scenario that touches each command, query, event type and the common errors is checked against
it with Ajv (an independent JSON Schema 2020-12 validator), and the raw log messages against
`Envelope`. Objects in the schema are closed and output fields required, so a field the engine
adds, drops or renames fails here."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from agentledger.cli.asyncapi import asyncapi
from agentledger.handlers.config import EngineConfig
from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.contract import event_types
from agentledger.schemas.queries import QUERIES
from agentledger.schemas.replies import type_name
from tests.conftest import AGENT, USER, Client_, Tenants
from tests.node_tools import node
from tests.sandbox_support import destroy_all, settled

ROOT = Path(__file__).resolve().parent.parent
KID = {"kind": "agent", "id": "agt_kid"}


@pytest.fixture
def engine_config(engine_config: EngineConfig, tmp_path: Path) -> EngineConfig:
    engine_config.sandbox_dir = tmp_path / "sandboxes"  # with the effect handler, for sandbox outcomes
    engine_config.sandbox_commands = ("sh",)  # for an exec that runs
    return engine_config


class Recorder(Client_):
    """The test client, keeping every request and reply with the schema definition it must match."""

    def __init__(self, nc: Client, config: EngineConfig, tenants: Tenants) -> None:
        super().__init__(nc, config, tenants=tenants)
        self.seen: list[tuple[str, Any]] = []
        self.names: set[str] = set()

    async def raw(self, subject: str, body: bytes, timeout: float = 5.0, tenant: str | None = None) -> dict[str, Any]:
        reply = await super().raw(subject, body, timeout, tenant)
        kind, name = subject.split(".", 3)[1], subject.split(".", 3)[3]
        if kind == "cmd":
            self.seen.append(("CommandReply", reply))
            if name in COMMANDS:
                self.seen.append((type_name(name) + "Reply", reply))
            if reply["ok"]:  # a request the engine accepted must be one the schema accepts
                self.names.add(name)
                self.seen.append((COMMANDS[name].__name__, msgspec.json.decode(body)))
        elif name in QUERIES:
            if reply["ok"]:
                self.names.add(name)
                self.seen.append((QUERIES[name].__name__, msgspec.json.decode(body)))
            self.seen.append((type_name(name) + "Reply", reply))
        return reply


@pytest.fixture
async def recorder(nc: Client, engine: object, engine_config: EngineConfig, tenants: Tenants) -> AsyncIterator[Recorder]:
    yield Recorder(nc, engine_config, tenants)
    assert engine_config.sandbox_dir is not None
    await destroy_all(engine_config.sandbox_dir)


async def scenario(c: Recorder) -> None:
    await c.setup_thread(config={"max_delegation_depth": 3, "max_delegation_width": 2})
    await c.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT, budget=10)
    await c.ok("session.start", session_id="ses_a", command_id="start-a")
    await c.ok("session.start", session_id="ses_a", command_id="start-a")  # a repeat
    await c.ok("session.spawn", parent_session_id="ses_a", session_id="ses_b", agent=KID, budget=3)
    await c.ok("session.request_input", session_id="ses_a", prompt="which branch?")
    await c.ok("session.provide_input", session_id="ses_a")
    await c.ok("session.complete", session_id="ses_b", summary={"outcome": "partial", "text": "half",
                                                                 "deliverables": ["a.txt"]}, usage=2)
    await c.ok("session.complete", session_id="ses_a", summary={"outcome": "succeeded", "text": "first pass"})
    spawned = await c.ok("handoff.broadcast", source_session_id="ses_a", expected_owner_version=0,
                         recipients=[KID, {"kind": "agent", "id": "agt_other"}])
    first, second = spawned["result"]["session_ids"]
    await c.ok("session.complete", session_id=first, summary={"outcome": "succeeded", "text": "done"})
    await c.ok("session.fail", session_id=second, reason="gave up")
    await c.ok("session.create", thread_id="thd_t1", session_id="ses_c", owner=USER)
    await c.ok("handoff.single", source_session_id="ses_c", recipient=AGENT, expected_owner_version=0)
    await c.ok("session.create", thread_id="thd_t1", session_id="ses_d", owner=USER)
    await c.ok("session.start", session_id="ses_d")
    await c.ok("session.cancel", session_id="ses_d", reason="stop")
    await c.ok("session.archive", session_id="ses_d")
    await c.ok("session.restore", session_id="ses_d")
    await c.ok("thread.create", project_id="prj_p1", thread_id="thd_f", mode="fork", source_thread_id="thd_t1",
               at_position=4)
    await c.ok("thread.create", project_id="prj_p1", thread_id="thd_t2", title="second")
    await c.ok("thread.archive", thread_id="thd_t2")
    await c.ok("thread.unarchive", thread_id="thd_t2")
    await c.ok("thread.delete", thread_id="thd_t2")
    await c.ok("sandbox.create", sandbox_id="sbx_a", thread_id="thd_t1")
    await settled(c, "sbx_a", "running")
    await c.ok("sandbox.pause", sandbox_id="sbx_a", reason="night")
    await settled(c, "sbx_a", "paused")
    await c.ok("sandbox.resume", sandbox_id="sbx_a")
    await settled(c, "sbx_a", "running")
    await c.ok("sandbox.fork", sandbox_id="sbx_a", new_sandbox_id="sbx_b")
    await settled(c, "sbx_b", "running")
    await c.ok("sandbox.destroy", sandbox_id="sbx_b")
    await settled(c, "sbx_b", "destroyed")
    await c.ok("sandbox.create", sandbox_id="sbx_f", thread_id="thd_t1", options={"command": ["/nonexistent/tool"]})
    await settled(c, "sbx_f", "failed")
    await c.ok("session.create", thread_id="thd_t1", session_id="ses_e", owner=AGENT,
               sandbox={"mode": "new", "sandbox_id": "sbx_e"})
    await c.ok("session.start", session_id="ses_e")
    await settled(c, "sbx_e", "running")
    for argv in (["sh", "-c", "echo ran; echo note >&2"], ["cat"]):  # finished; failed (not allowed)
        reply = await c.ok("sandbox.exec", sandbox_id="sbx_e", session_id="ses_e", argv=argv, stdin="in")
        if reply["result"]["status"] == "running":
            await settled(c, "sbx_e", "running")
    await c.qry("events.read", sandbox_id="sbx_e")
    # refusals
    for command, fields in [
        ("thread.archive", {"thread_id": "thd_t1"}),  # thread_not_empty
        ("session.spawn", {"parent_session_id": "ses_nobody", "agent": KID}),  # not_found
        ("sandbox.resume", {"sandbox_id": "sbx_b"}),  # illegal_transition
        ("sandbox.exec", {"sandbox_id": "sbx_e", "session_id": "ses_d", "argv": ["sh"]}),  # not_holder
        ("session.create", {"thread_id": "thd_t1", "owner": {"kind": "agent", "id": "usr_x"}}),  # invalid_command
        ("handoff.single", {"source_session_id": "ses_c", "recipient": KID, "expected_owner_version": 9}),
        ("session.nonsense", {}),  # unknown_command
    ]:
        await c.cmd(command, **fields)
    await c.raw(f"{c.config.prefix}.cmd.{c.tenant}.session.start", b"{not json")
    for query, fields in [
        ("thread.get", {"thread_id": "thd_t1"}), ("thread.get", {"thread_id": "thd_f"}),
        ("thread.list", {"project_id": "prj_p1"}), ("session.get", {"session_id": "ses_a"}),
        ("session.get", {"session_id": "ses_b"}), ("session.tree", {"session_id": "ses_a"}),
        ("sandbox.get", {"sandbox_id": "sbx_a"}), ("quarantine.list", {}),
        ("session.get", {"session_id": "ses_none"}), ("thread.get", {"thread_id": "bad id"}),
    ]:
        await c.qry(query, **fields)
    tenants, c.tenants = c.tenants, None  # the deployment's own query, asked through its connection
    try:
        await c.qry("sandbox.list_live", limit=2)
    finally:
        c.tenants = tenants
    after = 0
    while True:
        page = await c.qry("events.read", after=after, limit=7)
        for event in page["result"]["events"]:
            c.seen.append(("StoredEvent", event))
        if not page["result"]["events"]:
            break
        after = page["result"]["next_after"]


async def test_real_traffic_matches_the_published_schema(recorder: Recorder, nc: Client,
                                                        engine_config: EngineConfig, tmp_path: Path) -> None:
    await scenario(recorder)
    js = nc.jetstream()
    info = await js.stream_info(engine_config.stream)
    raw = [await js.get_msg(engine_config.stream, seq) for seq in range(1, info.state.last_seq + 1)]
    claims = [m for m in raw if m.subject.startswith(f"{engine_config.prefix}.ses.")]
    events = [m for m in raw if m not in claims]
    envelopes = [msgspec.json.decode(m.data or b"") for m in events]
    # each message is on the subject its AsyncAPI channel gives (docs/asyncapi.json)
    channels = asyncapi(engine_config.prefix)["channels"]

    def on_channel(subject: str, channel: dict[str, Any], **known: str) -> bool:
        pattern = re.escape(channel["address"])
        for name, value in known.items():
            pattern = pattern.replace(re.escape("{" + name + "}"), re.escape(value))
        return re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^.]+", pattern), subject) is not None

    for m, envelope in zip(events, envelopes, strict=True):  # the engine stream's channels (not a tenant's audit copy)
        channel = next(c for key, c in channels.items() if key.startswith("events.")
                       and f"event.{envelope['type']}" in {x.get("$ref", "").rsplit("/", 1)[-1] for x in c["messages"].values()})
        assert on_channel(m.subject, channel, tenant=envelope["tenant_id"], type=envelope["type"]), m.subject
    assert len(claims) >= 6 and all(not m.data for m in claims)
    assert all(on_channel(m.subject, channels["claims.session"], tenant="tnt_acme") for m in claims)
    seen = recorder.seen + [("Envelope", e) for e in envelopes]

    # the scenario covers what it claims to
    assert recorder.names >= set(COMMANDS) - {"sandbox.report_outcome"} | set(QUERIES), \
        set(COMMANDS) | set(QUERIES) - recorder.names
    assert {e["type"] for e in envelopes} == {str(t.__struct_config__.tag) for t in event_types()}
    codes = {v["error"]["code"] for k, v in seen if k.endswith("Reply") and not v["ok"]}
    assert codes >= {"thread_not_empty", "not_found", "invalid_command", "unknown_command", "version_conflict",
                     "not_holder"}, codes

    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(seen))
    r = node("validate.mjs", str(ROOT / "docs" / "schema.json"), str(instances))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert f"checked {len(seen)}, failed 0" in r.stdout


@pytest.mark.integration  # Ajv runs in node
async def test_the_validator_rejects_what_the_schema_forbids(tmp_path: Path) -> None:
    """So the check above can fail: values that break discrimination, closure, patterns and bounds."""
    accepted = {"ok": True, "command_id": "c1", "position": 1, "events": [], "result": {}}
    bad = [
        ("CommandReply", accepted | {"ok": False}),  # refused without an error
        ("CommandReply", accepted | {"extra": 1}),  # closed objects
        ("CommandReply", accepted | {"position": 2**53}),  # beyond JavaScript's exact integers
        ("ThreadGetReply", {"ok": True, "position": 1, "result": {"thread": {"thread_id": "thd_x"}}}),
        ("SessionRef", {"session_id": "thd_wrong_prefix", "status": "idle"}),
        ("StoredEvent", {"type": "session.started", "event_id": "e", "schema_version": 1, "tenant_id": "tnt_a",
                         "boundary": "b", "command": "session.start", "command_id": "c", "correlation_id": "c",
                         "causation_id": None, "actor": USER, "at": "now", "position": 1,
                         "data": {"type": "thread.deleted", "thread_id": "thd_x"}}),  # type and data disagree
    ]
    instances = tmp_path / "bad.json"
    instances.write_text(json.dumps(bad))
    r = node("validate.mjs", str(ROOT / "docs" / "schema.json"), str(instances))
    assert r.returncode == 1 and f"checked {len(bad)}, failed {len(bad)}" in r.stdout, r.stdout + r.stderr
