"""Hostile tenants against the broker's trust boundary (issue 7, items 1-3): each attack is refused,
appends nothing, and the engine keeps serving. Real server, authentication on; the broker's own
refusals (permissions violations) are awaited as events, never as a timeout.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.identity import REQUEST_INFO
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_audit_stream, add_tenant
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.schemas.accounts import audit_stream
from tests.conftest import AGENT, USER, Client_, Tenants, stream_messages
from tests.hostile_support import Hostile, never


def _body(**fields: Any) -> bytes:
    return msgspec.json.encode({"actor": USER, **fields})


async def _create_project_with(creds: Path, url: str, config: EngineConfig, tenant: str, project_id: str) -> dict[str, Any]:
    """Connect with a `.creds` file as any NATS client would, and send one command."""
    conn = await nats.connect(servers=[url], user_credentials=str(creds))
    try:
        msg = await conn.request(config.subjects.command(tenant, "project.create"),
                                 _body(project_id=project_id, name=project_id), timeout=60)
    finally:
        await conn.close()
    return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]


@pytest.fixture
async def mallory(nats_server: EmbeddedNats, deployment: Deployment, tenants: Tenants) -> Any:
    """A member of tnt_evil, the attacker; tnt_acme is the victim the `client` fixture acts for."""
    await tenants.add("tnt_evil")
    me = await Hostile.connect(nats_server.url, deployment.tenant_creds("tnt_evil", "usr_mallory"))
    yield me
    await me.close()


async def _still_serving(client: Client_) -> None:
    reply = await client.cmd("project.create", project_id=f"prj_{uuid.uuid4().hex[:8]}", name="after")
    assert reply["ok"], reply


async def test_subject_naming_another_tenant_reaches_nothing(
        client: Client_, mallory: Hostile, nc: Client, engine_config: EngineConfig, deployment: Deployment,
        nats_server: EmbeddedNats) -> None:
    await client.setup_thread()
    before = await stream_messages(nc, engine_config.stream)
    subjects = engine_config.subjects
    assert mallory.nc is not None
    # her credentials may not even publish there ...
    attempt = mallory.nc.request(subjects.command("tnt_acme", "thread.archive"), _body(thread_id="thd_t1"), timeout=60)
    assert await mallory.refused_before(attempt)
    # ... and with no such limit, her account has no route to another tenant's service at all
    unlimited = await nats.connect(servers=[nats_server.url], user_credentials=deployment.provisioner_creds("tnt_evil").raw())
    try:
        for subject in (subjects.command("tnt_acme", "thread.archive"), subjects.query("tnt_acme", "thread.get")):
            with pytest.raises(nats.errors.NoRespondersError):
                await unlimited.request(subject, _body(thread_id="thd_t1"), timeout=60)
    finally:
        await unlimited.close()
    assert await stream_messages(nc, engine_config.stream) == before
    assert (await client.qry("thread.get", thread_id="thd_t1"))["result"]["thread"]["status"] == "open"
    await _still_serving(client)


async def test_a_forged_request_info_header_is_replaced_by_the_brokers(
        client: Client_, tenants: Tenants, engine_config: EngineConfig, deployment: Deployment) -> None:
    victim = deployment.tenant_account("tnt_evil")
    forged = msgspec.json.encode({"acc": victim, "user": "UFAKE", "name_tag": "usr_root", "tags": ["role:admin"]})
    conn = await tenants.conn("tnt_acme")
    msg = await conn.request(engine_config.subjects.command("tnt_acme", "project.create"),
                             _body(project_id="prj_forged", name="f"), headers={REQUEST_INFO: forged.decode()},
                             timeout=60)
    reply = msgspec.json.decode(msg.data)
    assert reply["ok"], reply
    event = reply["events"][0]
    assert event["tenant_id"] == "tnt_acme"
    assert event["principal"]["id"] == "usr_tester" and event["principal"]["role"] == "member"
    assert event["principal"]["key"] != "UFAKE"


async def test_the_engine_refuses_a_tenant_account_acting_for_another_tenant(
        client: Client_, nc: Client, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants) -> None:
    """Were an import ever to route tnt_evil's account onto tnt_acme's subjects, the engine still
    takes the tenant from the account and refuses. Sent from inside the engine's account, where
    a header is not overwritten, to play that misrouting."""
    await tenants.add("tnt_evil")
    await client.setup_thread()
    before = await stream_messages(nc, engine_config.stream)
    evil = deployment.tenant_account("tnt_evil")
    headers = [
        {"acc": evil, "user": "UX", "name_tag": "usr_mallory", "tags": ["role:member"]},  # another tenant's account
        {"acc": "AUNKNOWN", "user": "UX", "name_tag": "usr_mallory", "tags": ["role:member"]},  # no tenant's account
        {"acc": deployment.tenant_account("tnt_acme"), "user": "UX", "name_tag": "x", "tags": ["role:root"]},  # no role
    ]
    for info in headers:
        msg = await nc.request(engine_config.subjects.command("tnt_acme", "thread.archive"), _body(thread_id="thd_t1"),
                               headers={REQUEST_INFO: msgspec.json.encode(info).decode()}, timeout=60)
        reply = msgspec.json.decode(msg.data)
        assert reply["error"]["code"] == "forbidden", (info, reply)
    msg = await nc.request(engine_config.subjects.command("tnt_acme", "thread.archive"), _body(thread_id="thd_t1"),
                           headers={REQUEST_INFO: "{not json"}, timeout=60)
    assert msgspec.json.decode(msg.data)["error"]["code"] == "forbidden"
    assert await stream_messages(nc, engine_config.stream) == before
    await _still_serving(client)


async def test_a_tenant_cannot_join_the_engines_queue_group(client: Client_, mallory: Hostile,
                                                           engine_config: EngineConfig, nc: Client) -> None:
    assert mallory.nc is not None
    subjects, group = engine_config.subjects, engine_config.queue_group
    for subject in (subjects.commands_all, subjects.queries_all, subjects.command("tnt_evil", ">"), "_R_.>", ">"):
        await mallory.nc.subscribe(subject, queue=group)
        assert await mallory.refused_before(never()), subject
    before = await stream_messages(nc, engine_config.stream)
    replies = [await client.cmd("project.create", project_id=f"prj_q{i}", name="q") for i in range(20)]
    assert all(r["ok"] for r in replies), replies  # every one answered by the engine, none by a fake
    assert await stream_messages(nc, engine_config.stream) == before + 20


async def test_a_tenant_sees_no_other_tenants_requests_events_or_replies(
        client: Client_, mallory: Hostile, engine_config: EngineConfig) -> None:
    assert mallory.nc is not None
    for subject in ("ledger.>", f"{engine_config.prefix}.>", f"{engine_config.prefix}.evt.>", "$JS.>"):
        await mallory.nc.subscribe(subject)
        assert await mallory.refused_before(never()), subject
    seen: list[str] = []

    async def spy(msg: Any) -> None:
        seen.append(msg.subject)

    await mallory.nc.subscribe("_INBOX.>", cb=spy)  # allowed: her own account's inboxes
    await mallory.nc.flush()
    await client.setup_thread()
    await client.qry("thread.get", thread_id="thd_t1")
    own = await mallory.nc.request(engine_config.subjects.query("tnt_evil", "thread.get"), b'{"thread_id": "thd_t1"}',
                                   timeout=60)
    assert msgspec.json.decode(own.data)["error"]["code"] == "not_found"  # tnt_acme's thread is not hers
    assert seen == [own.subject]  # only her own reply reached her inboxes


async def test_a_tenant_cannot_publish_onto_event_subjects(client: Client_, mallory: Hostile, nc: Client,
                                                          engine_config: EngineConfig, tenants: Tenants) -> None:
    await client.setup_thread()
    before = await stream_messages(nc, engine_config.stream)
    subjects = engine_config.subjects
    forged = msgspec.json.encode({"type": "thread.archived", "thread_id": "thd_t1"})
    own_member = await Hostile.connect(str(engine_config.nats_url), tenants.deployment.tenant_creds("tnt_acme", "usr_m"))
    try:
        for who, tenant in ((mallory, "tnt_acme"), (mallory, "tnt_evil"), (own_member, "tnt_acme")):
            assert who.nc is not None
            subject = subjects.event_subject(subjects.thread_filter(tenant, "thd_t1"), "thread.archived")
            await who.nc.publish(subject, forged)
            assert await who.refused_before(never()), subject
            assert await who.refused_before(who.nc.jetstream().publish(subject, forged, stream=engine_config.stream))
    finally:
        await own_member.close()
    assert await stream_messages(nc, engine_config.stream) == before
    assert (await client.qry("thread.get", thread_id="thd_t1"))["result"]["thread"]["status"] == "open"


@pytest.mark.parametrize("role", ["member", "auditor", "admin"])
async def test_no_tenant_or_admin_credential_deletes_purges_or_updates_the_stream(
        client: Client_, nc: Client, engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        role: str) -> None:
    await client.setup_thread()
    before = await stream_messages(nc, engine_config.stream)
    creds = deployment.engine_creds("admin") if role == "admin" else deployment.tenant_creds("tnt_acme", "usr_x", role)
    who = await Hostile.connect(nats_server.url, creds)
    assert who.nc is not None
    js, stream = who.nc.jetstream(timeout=60), engine_config.stream
    try:
        for attempt in (js.delete_stream(stream), js.purge_stream(stream), js.delete_msg(stream, 1),
                        js.update_stream(StreamConfig(name=stream, subjects=["x.>"]))):
            assert await who.refused_before(attempt), (role, attempt)
    finally:
        await who.close()
    assert await stream_messages(nc, engine_config.stream) == before
    await _still_serving(client)


async def test_an_auditor_is_forbidden_to_command_and_may_query(client: Client_, nc: Client,
                                                               engine_config: EngineConfig) -> None:
    await client.setup_thread()
    before = await stream_messages(nc, engine_config.stream)
    auditor = client.as_(role="auditor")
    for command, fields in [("thread.archive", {"thread_id": "thd_t1"}),
                            ("session.create", {"thread_id": "thd_t1", "owner": AGENT}),
                            ("project.create", {"project_id": "prj_a", "name": "a"})]:
        reply = await auditor.cmd(command, **fields)
        assert reply["error"]["code"] == "forbidden", reply
        assert reply["error"]["details"] == {"principal": "usr_tester", "role": "auditor", "tenant": "tnt_acme"}
    assert (await auditor.qry("thread.get", thread_id="thd_t1"))["ok"]
    assert await stream_messages(nc, engine_config.stream) == before


async def test_every_event_records_the_principal_beside_the_actor(client: Client_, nc: Client,
                                                                  engine_config: EngineConfig) -> None:
    member = await client.cmd("project.create", project_id="prj_p1", name="p")
    admin = await Client_(nc, engine_config).cmd("thread.create", project_id="prj_p1", thread_id="thd_t1")
    assert member["events"][0]["principal"]["id"] == "usr_tester"
    assert member["events"][0]["principal"]["role"] == "member"
    assert member["events"][0]["actor"] == USER  # what the command asserted, kept apart
    assert admin["events"][0]["principal"] == {"id": "deployment", "role": "admin", "key": None}
    page = await client.qry("events.read")
    assert [e["principal"]["role"] for e in page["result"]["events"]] == ["member", "admin"]


async def test_a_tenant_added_while_everything_runs_is_served_at_once(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        tmp_path: Path) -> None:
    tenant = f"tnt_new{uuid.uuid4().hex[:6]}"
    await add_tenant(nats_server.url, deployment, tenant)
    creds = tmp_path / "new.creds"
    deployment.write(deployment.tenant_creds(tenant, "usr_first"), creds)  # a standard .creds file
    reply = await _create_project_with(creds, nats_server.url, engine_config, tenant, "prj_1")
    assert reply["ok"] and reply["events"][0]["tenant_id"] == tenant, reply


async def test_an_auditor_reads_its_own_events_with_a_durable_consumer_from_any_position(
        client: Client_, engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        tenants: Tenants) -> None:
    await client.setup_thread()
    await client.as_(tenant="tnt_evil").setup_thread()  # another tenant's events, in the same engine stream
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    name = await add_audit_stream(nats_server.url, deployment, "tnt_acme", engine_config.prefix, engine_config.stream)
    assert name == audit_stream(engine_config.stream)
    auditor = await nats.connect(servers=[nats_server.url],
                                 user_credentials=deployment.tenant_creds("tnt_acme", "usr_audit", "auditor").raw())
    try:
        js = auditor.jetstream(timeout=60)
        whole = await js.pull_subscribe(engine_config.subjects.tenant_filter("tnt_acme"), durable="all", stream=name)
        msgs: list[Any] = []
        while len(msgs) < 3:  # the audit stream fills while we read: each fetch waits for at least one
            msgs += await whole.fetch(3 - len(msgs), timeout=60)
        types = [msgspec.json.decode(m.data)["type"] for m in msgs]
        assert types == ["project.created", "thread.created", "session.created"]
        assert all(msgspec.json.decode(m.data)["tenant_id"] == "tnt_acme" for m in msgs)
        for m in msgs:
            await m.ack()
        # from any position: a second durable starting at the audit stream's third message
        late = await js.pull_subscribe(engine_config.subjects.tenant_filter("tnt_acme"), durable="late", stream=name,
                                       config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                                             opt_start_seq=3))
        (third,) = await late.fetch(1, timeout=60)
        assert msgspec.json.decode(third.data)["type"] == "session.created"
        # live: an event appended now reaches the first durable after what it acknowledged
        await client.ok("session.start", session_id="ses_a")
        (live,) = await whole.fetch(1, timeout=60)
        assert msgspec.json.decode(live.data)["type"] == "session.started"
        assert (await js.stream_info(name)).state.messages == 4  # nothing of tnt_evil's
    finally:
        await auditor.close()


async def test_the_cli_adds_a_tenant_and_writes_creds_that_nats_clients_read(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        tmp_path: Path) -> None:
    import sys

    agentledger = str(Path(sys.executable).parent / "agentledger")
    tenant, out = f"tnt_cli{uuid.uuid4().hex[:6]}", tmp_path / "alice.creds"

    async def run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(agentledger, *args, "--auth-dir", str(deployment.root),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        stdout, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, stdout.decode()

    assert (await run("tenant", "creds", tenant, "--user", "usr_alice", "--out", str(out)))[0] == 1  # not added yet
    code, text = await run("tenant", "add", tenant, "--nats-url", nats_server.url)
    assert code == 0, text
    code, text = await run("tenant", "creds", tenant, "--user", "usr_alice", "--role", "member", "--out", str(out))
    assert code == 0, text
    assert out.read_text().startswith("-----BEGIN NATS USER JWT-----") and out.stat().st_mode & 0o077 == 0
    reply = await _create_project_with(out, nats_server.url, engine_config, tenant, "prj_cli")
    assert reply["ok"] and reply["events"][0]["principal"]["id"] == "usr_alice", reply
