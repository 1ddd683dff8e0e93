"""Identities other than the engine try to shape what it decides (issue 15, items 3 and 4): a
tenant's member reports sandbox outcomes; the effect handler's credentials, which live wherever
sandboxes run, try to write a snapshot or the tenant map, delete a worker's consumer and read
other tenants' events; a snapshot is forged; a worker's consumer is deleted. Each is refused or
contained, nothing is appended that should not be, and the tenants are served afterwards. Real
server, authentication on; the broker's refusals are awaited as events, never as a timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from agentledger.engine import snapshots
from agentledger.engine.snapshots import Seal
from agentledger.engine.snapshots import bucket_name as snapshot_bucket
from agentledger.engine.thread_model import ThreadState
from agentledger.handlers.app import EffectsProcess, Engine
from agentledger.handlers.auth.identity import REQUEST_INFO, TENANTS_BUCKET
from agentledger.handlers.auth.keys import Deployment, snapshot_key
from agentledger.handlers.auth.permissions import EFFECTS_INBOX, effects_grant
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.durable import DurableWorker
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.handlers.observability.health import WorkerProbe
from tests.conftest import AGENT, USER, Client_, Tenants, connect, effects_creds, stream_messages
from tests.hostile_support import Hostile, never
from tests.sandbox_support import destroy_all, eventually, sandbox_engine, settled

OTHER = "tnt_bystander"  # a tenant that only wants to be served


def _body(**fields: Any) -> bytes:
    return msgspec.json.encode({"actor": USER, **fields})


async def _history(client: Client_, sandbox_id: str) -> list[tuple[str, str]]:
    """(event type, principal role) of one sandbox's events, in log order."""
    page = (await client.qry("events.read", limit=1000))["result"]["events"]
    return [(e["type"], e["principal"]["role"]) for e in page if e["data"].get("sandbox_id") == sandbox_id]


async def _served(client: Client_, tenant: str = OTHER) -> None:
    """Another tenant's request is answered (the requester waits for its reply, not a timeout)."""
    reply = await client.as_(tenant=tenant).cmd("project.create", project_id=f"prj_{os.urandom(4).hex()}", name="after")
    assert reply["ok"], reply


def _worker(engine: Engine | EffectsProcess, name: str) -> DurableWorker:
    durable = engine.config.subjects.durable(name)
    return next(w for w in engine.workers if w.durable == durable)


@pytest.fixture
async def fx_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine with the process manager and the local effect handler (allowed to run `sleep`)."""
    engine_config.worker_check_every = 0.2
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", commands=("sleep",)) as eng:
        yield eng


# -- item 3: a member reports sandbox outcomes -------------------------------------------------------

async def test_a_member_cannot_report_sandbox_outcomes(fx_engine: Engine, nc: Client, engine_config: EngineConfig,
                                                       tenants: Tenants, deployment: Deployment,
                                                       nats_server: EmbeddedNats, tmp_path: Path) -> None:
    member = Client_(nc, engine_config, tenants=tenants)
    subjects = engine_config.subjects
    await member.ok("sandbox.create", sandbox_id="sbx_live", options={"command": ["sleep", "300"]})
    where = Path((await settled(member, "sbx_live", "running"))["location"])
    assert where.is_dir()
    # destroy, and at once a forged outcome saying it is done: refused, for every caller but the effect handler
    destroy = await member.ok("sandbox.destroy", sandbox_id="sbx_live")
    forged = {"sandbox_id": "sbx_live", "request_position": destroy["position"], "op": "destroy", "ok": True}
    for who in (member, member.as_(role="auditor"), Client_(nc, engine_config)):  # member, auditor, the deployment
        reply = await who.cmd("sandbox.report_outcome", **forged)
        assert reply["error"]["code"] == "forbidden", reply
    await settled(member, "sbx_live", "destroyed")
    assert not where.exists()  # the provider really destroyed it, and only then was it recorded
    assert await _history(member, "sbx_live") == [("sandbox.create_requested", "member"), ("sandbox.created", "engine"),
                                                  ("sandbox.destroy_requested", "member"),
                                                  ("sandbox.destroyed", "engine")]
    # a forged create outcome naming /etc as the sandbox's location
    created = await member.ok("sandbox.create", sandbox_id="sbx_new")
    reply = await member.cmd("sandbox.report_outcome", sandbox_id="sbx_new", request_position=created["position"],
                             op="create", ok=True, location="/etc")
    assert reply["error"]["code"] == "forbidden"
    assert reply["error"]["details"] == {"principal": "usr_tester", "role": "member", "tenant": "tnt_acme"}
    location = (await settled(member, "sbx_new", "running"))["location"]
    assert Path(location).is_relative_to(tmp_path / "sandboxes")
    # the effect handler's own subject: her credentials may not publish there, and her account has no route
    mallory = await Hostile.connect(nats_server.url, deployment.tenant_creds("tnt_acme", "usr_mallory"))
    unlimited = await nats.connect(servers=[nats_server.url], user_credentials=deployment.provisioner_creds("tnt_acme").raw())
    before = await stream_messages(nc, engine_config.stream)
    try:
        assert mallory.nc is not None
        on_fx = subjects.effects_command("tnt_acme", "sandbox.report_outcome")
        body = _body(sandbox_id="sbx_new", request_position=created["position"], op="create", ok=True, location="/etc")
        assert await mallory.refused_before(mallory.nc.request(on_fx, body, timeout=60))
        with pytest.raises(nats.errors.NoRespondersError):
            await unlimited.request(on_fx, body, timeout=60)
    finally:
        await mallory.close()
        await unlimited.close()
    assert await stream_messages(nc, engine_config.stream) == before
    assert await _history(member, "sbx_new") == [("sandbox.create_requested", "member"), ("sandbox.created", "engine")]
    await _served(member)


async def test_the_effect_handlers_subject_takes_only_its_commands_and_no_imported_request(
        engine: Engine, nc: Client, engine_config: EngineConfig, tenants: Tenants, deployment: Deployment) -> None:
    """Played from inside the engine's account, where a header is not overwritten: a request that
    carries the broker's `Nats-Request-Info` is no effect handler's, and the effect handler sends
    only what the permission table gives it."""
    member = Client_(nc, engine_config, tenants=tenants)
    created = await member.ok("sandbox.create", sandbox_id="sbx_fx")
    before = await stream_messages(nc, engine_config.stream)
    subjects = engine_config.subjects
    info = {"acc": deployment.tenant_account("tnt_acme"), "user": "UX", "name_tag": "usr_x", "tags": ["role:member"]}
    outcome = _body(sandbox_id="sbx_fx", request_position=created["position"], op="create", ok=True, location="/etc")
    attempts = [
        (subjects.effects_command("tnt_acme", "sandbox.report_outcome"), outcome,
         {REQUEST_INFO: msgspec.json.encode(info).decode()}),
        (subjects.effects_command("tnt_acme", "thread.archive"), _body(thread_id="thd_x"), None),
        (subjects.effects_command("tnt_acme", "sandbox.pause"), _body(sandbox_id="sbx_fx"), None),
    ]
    for subject, body, headers in attempts:
        reply = msgspec.json.decode((await nc.request(subject, body, headers=headers, timeout=60)).data)
        assert reply["error"]["code"] == "forbidden", (subject, reply)
    assert await stream_messages(nc, engine_config.stream) == before


# -- item 4: the effect handler's credentials ----------------------------------------------------

@pytest.fixture
async def effects_alone(engine: Engine, engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[EffectsProcess]:
    """The effect handler on its own, with its own credentials (engines run without one)."""
    config = EngineConfig(nats_url=engine_config.nats_url, prefix=engine_config.prefix, stream=engine_config.stream,
                          sandbox_dir=tmp_path / "fx", creds=effects_creds(engine_config), sandbox_commands=("sleep",),
                          worker_check_every=0.2)
    process = EffectsProcess(config)
    await process.start()
    yield process
    await process.stop()
    await destroy_all(tmp_path / "fx")


async def test_the_effect_handlers_credentials_reach_only_what_it_acts_on(
        effects_alone: EffectsProcess, nc: Client, engine_config: EngineConfig, tenants: Tenants,
        deployment: Deployment, nats_server: EmbeddedNats) -> None:
    member = Client_(nc, engine_config, tenants=tenants)
    await tenants.add("tnt_evil")
    await member.ok("sandbox.create", sandbox_id="sbx_work", options={"command": ["sleep", "300"]})
    await settled(member, "sbx_work", "running")
    # what it acts on works, and its outcomes are recorded as the effect handler's
    assert await _history(member, "sbx_work") == [("sandbox.create_requested", "member"), ("sandbox.created", "effects")]
    await member.ok("sandbox.create", sandbox_id="sbx_gone")
    await settled(member, "sbx_gone", "running")
    await member.ok("sandbox.destroy", sandbox_id="sbx_gone")
    await settled(member, "sbx_gone", "destroyed")
    # what a reconciler compares with its provider: every tenant's live sandboxes, from the engines
    assert (await member.qry("sandbox.list_live"))["error"]["code"] == "forbidden"  # the deployment's only
    fx_conn = await nats.connect(servers=[nats_server.url], user_credentials=effects_creds(engine_config),
                                 inbox_prefix=EFFECTS_INBOX)
    try:
        msg = await fx_conn.request(engine_config.subjects.query("tnt_acme", "sandbox.list_live"), b"{}", timeout=60)
    finally:
        await fx_conn.close()
    live = msgspec.json.decode(msg.data)["result"]["sandboxes"]
    assert [(s["tenant_id"], s["sandbox"]["sandbox_id"], s["sandbox"]["status"]) for s in live] == [
        ("tnt_acme", "sbx_work", "running")]
    subjects, stream = engine_config.subjects, engine_config.stream
    fx, pm = subjects.durable("fx"), subjects.durable("pm")
    account = deployment.tenant_account("tnt_acme")
    tenant_map = await nc.jetstream().key_value(TENANTS_BUCKET)
    before = await stream_messages(nc, stream)
    who = await Hostile.connect(nats_server.url, effects_creds(engine_config), inbox_prefix=EFFECTS_INBOX)
    assert who.nc is not None
    js = who.nc.jetstream(timeout=60)
    snapshot = subjects.snapshot_key(subjects.thread_filter("tnt_acme", "thd_t1"))
    try:
        requests = {  # each an API call or a request the broker must refuse
            "write a snapshot": lambda: js.publish(f"$KV.{snapshot_bucket(stream)}.{snapshot}", b"forged"),
            "rewrite the tenant map": lambda: js.publish(f"$KV.{TENANTS_BUCKET}.{account}", b"tnt_evil"),
            "delete the process manager's consumer": lambda: js.delete_consumer(stream, pm),
            "delete its own consumer": lambda: js.delete_consumer(stream, fx),
            "direct get of another tenant's events": lambda: who.nc.request(
                f"$JS.API.DIRECT.GET.{stream}", msgspec.json.encode({"last_by_subj": subjects.tenant_filter("tnt_evil")}),
                timeout=60),
            "message get": lambda: js.get_msg(stream, seq=1),
            "a consumer of its own on a tenant's events": lambda: js.pull_subscribe(
                subjects.tenant_filter("tnt_acme"), durable="spy", stream=stream),
            "widen its own consumer to every event": lambda: js.add_consumer(stream, ConsumerConfig(
                durable_name=fx, name=fx, filter_subject=subjects.events_all)),
            "its own consumer with filters out of the subject": lambda: js.add_consumer(stream, ConsumerConfig(
                durable_name=fx, name=fx, filter_subjects=[subjects.events_all, subjects.sandbox_events_all])),
            "its own consumer the legacy way": lambda: who.nc.request(
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{fx}", b"{}", timeout=60),
            "another consumer's messages": lambda: who.nc.request(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{pm}", b"{}",
                                                                  timeout=60),
            "a command on the command subject": lambda: who.nc.request(
                subjects.command("tnt_acme", "sandbox.destroy"), _body(sandbox_id="sbx_work"), timeout=60),
            "a query it does not need": lambda: who.nc.request(subjects.query("tnt_evil", "events.read"), b"{}",
                                                               timeout=60),
        }
        for what, attempt in requests.items():
            assert await who.refused_before(attempt()), what
        for what, act in {  # done at once; the broker's refusal follows
            "every inbox of the account": lambda: who.nc.subscribe("_INBOX.>"),
            "an event": lambda: who.nc.publish(subjects.event_subject(subjects.sandbox_filter("tnt_acme", "sbx_work"),
                                                                      "sandbox.destroyed"), b"{}"),
        }.items():
            await act()
            assert await who.refused_before(never()), what
        # the filter travels in the subject its permissions name, and the server holds the consumer to it
        body = {"stream_name": stream, "config": {"durable_name": fx, "name": fx, "ack_policy": "explicit",
                                                  "filter_subject": subjects.events_all}}
        msg = await who.nc.request(f"$JS.API.CONSUMER.CREATE.{stream}.{fx}.{subjects.sandbox_events_all}",
                                   msgspec.json.encode(body), timeout=60)
        assert msgspec.json.decode(msg.data)["error"]["err_code"] == 10131  # filter does not match the subject's
    finally:
        await who.close()
    info = await nc.jetstream().consumer_info(stream, fx)
    assert info.config.filter_subject == subjects.sandbox_events_all
    await nc.jetstream().consumer_info(stream, pm)  # still there
    assert (await tenant_map.get(account)).value == b"tnt_acme"
    assert await stream_messages(nc, stream) == before
    # the tenants are served, and a new sandbox of another tenant comes up through the same effect handler
    await _served(member)
    other = member.as_(tenant=OTHER)
    await other.ok("sandbox.create", sandbox_id="sbx_other")
    await settled(other, "sbx_other", "running")


async def test_an_effect_handler_on_its_own_waits_out_an_engine_restart(
        engine_config: EngineConfig, nc: Client, tenants: Tenants, tmp_path: Path) -> None:
    """It reads what it acts on from the engines now, so an engine that does not answer is "not
    now" (waited out with backoff, however long), never a failure that parks the request."""
    engine = Engine(engine_config)
    await engine.start()
    config = EngineConfig(nats_url=engine_config.nats_url, prefix=engine_config.prefix, stream=engine_config.stream,
                          sandbox_dir=tmp_path / "fx", creds=effects_creds(engine_config), worker_max_attempts=3,
                          worker_retry_delay=0.01)
    member = Client_(nc, engine_config, tenants=tenants)
    await member.ok("sandbox.create", sandbox_id="sbx_wait")
    await engine.stop()  # the request is in the log; no engine answers
    process = EffectsProcess(config)
    await process.start()
    try:
        worker = _worker(process, "fx")
        await eventually(lambda: asyncio.sleep(0, worker.retries > 2 * config.worker_max_attempts),
                         "the effect handler keeps waiting")
        assert worker.parked == 0
        engine = Engine(engine_config)
        await engine.start()
        try:
            await settled(member, "sbx_wait", "running")
            assert worker.parked == 0
            assert await _history(member, "sbx_wait") == [("sandbox.create_requested", "member"),
                                                          ("sandbox.created", "effects")]
        finally:
            await engine.stop()
    finally:
        await process.stop()
        await destroy_all(tmp_path / "fx")


# -- item 4: a snapshot written by anyone but an engine -----------------------------------------------

def _forged_thread(engine: Engine, tenant: str, thread_id: str) -> tuple[str, bytes]:
    """The thread's snapshot as the engine would write it, but with its busy sessions gone: were it
    believed, `thread.archive` would be accepted while a session runs."""
    model = engine.models.thread(tenant, thread_id)
    copy = ThreadState(tenant, model.boundary, thread_id)
    assert snapshots.restore(copy, snapshots.encode(model))
    copy.blocking, copy.sessions = {}, {}
    return model.boundary, snapshots.encode(copy)


@pytest.mark.parametrize("forgery", ["unsealed", "sealed with another key", "sealed for another boundary"])
async def test_a_forged_snapshot_is_quarantined_and_the_engine_decides_from_the_log(
        engine_config: EngineConfig, nc: Client, tenants: Tenants, deployment: Deployment, nats_server: EmbeddedNats,
        forgery: str) -> None:
    first = Engine(engine_config)
    await first.start()
    member = Client_(nc, engine_config, tenants=tenants)
    await member.setup_thread()
    await member.ok("session.create", thread_id="thd_t1", session_id="ses_busy", owner=AGENT)
    await member.ok("session.start", session_id="ses_busy")
    boundary, body = _forged_thread(first, "tnt_acme", "thd_t1")
    assert first.models.snapshots is not None
    seal = first.models.snapshots.seal
    data = {"unsealed": body, "sealed with another key": Seal(os.urandom(32)).seal(boundary, body),
            "sealed for another boundary": seal.seal(engine_config.subjects.thread_filter("tnt_acme", "thd_x"), body)}[forgery]
    key = f"$KV.{snapshot_bucket(engine_config.stream)}.{engine_config.subjects.snapshot_key(boundary)}"
    # neither the effect handler nor the admin may even write the bucket ...
    for role in ("effects", "admin"):
        creds = deployment.engine_creds(role, prefix=engine_config.prefix, stream=engine_config.stream)  # type: ignore[arg-type]
        who = await Hostile.connect(nats_server.url, creds, inbox_prefix=EFFECTS_INBOX if role == "effects" else "_INBOX")
        try:
            assert who.nc is not None
            assert await who.refused_before(who.nc.jetstream(timeout=60).publish(key, data)), role
        finally:
            await who.close()
    # ... so it is written by a writer that can (the engine's own identity, compromised)
    await nc.jetstream().publish(key, data)
    await first.stop()
    second = Engine(engine_config)
    await second.start()
    try:
        before = await stream_messages(nc, engine_config.stream)
        refused = await member.cmd("thread.archive", thread_id="thd_t1")
        assert refused["error"]["code"] == "thread_not_empty", refused
        session = await member.qry("session.get", session_id="ses_busy")
        assert session["ok"] and session["result"]["session"]["status"] == "active", session
        thread = (await member.qry("thread.get", thread_id="thd_t1"))["result"]["thread"]
        assert thread["status"] == "open" and thread["blocking_sessions"] == 1
        assert await stream_messages(nc, engine_config.stream) == before
        assert second.models.snapshots is not None and second.models.snapshots.quarantined == 1
        assert second.metrics.registry.get_sample_value("agentledger_quarantined_snapshots_total") == 1
        # the forged snapshot is replaced by one the engine sealed
        store = second.models.snapshots
        assert await eventually(lambda: store.get(boundary), "a sealed snapshot replaces the forged one")
        await _served(member)
    finally:
        await second.stop()


def test_the_seal_verifies_only_its_own_key_boundary_and_bytes() -> None:
    key, boundary, body = os.urandom(32), "ledger.evt.tnt_a.thr.thd_1.>", b"\x81\xa1v\xa1x"
    seal = Seal(key)
    sealed = seal.seal(boundary, body)
    assert seal.open(boundary, sealed) == body and Seal(key).open(boundary, sealed) == body
    assert isinstance(seal.open(boundary, body), str)  # not sealed
    assert isinstance(seal.open("ledger.evt.tnt_a.thr.thd_2.>", sealed), str)  # another boundary
    assert isinstance(Seal(os.urandom(32)).open(boundary, sealed), str)  # another key
    assert isinstance(seal.open(boundary, sealed[:-1] + bytes([sealed[-1] ^ 1])), str)  # a bit flipped
    assert isinstance(seal.open(boundary, sealed[:20]), str)  # cut short


def test_every_replica_with_the_engines_creds_derives_the_same_snapshot_key(deployment: Deployment) -> None:
    creds = deployment.creds_path("engine").read_text()
    assert snapshot_key(creds, "LEDGER") == snapshot_key(creds, "LEDGER")
    assert snapshot_key(creds, "LEDGER") != snapshot_key(creds, "OTHER")
    for other in ("effects", "admin"):  # another identity's seed gives another key
        assert snapshot_key(deployment.engine_creds(other).text, "LEDGER") != snapshot_key(creds, "LEDGER")  # type: ignore[arg-type]


# -- item 4: a worker's consumer deleted --------------------------------------------------------------

async def test_a_deleted_worker_consumer_is_made_again_without_sending_history_again(
        fx_engine: Engine, nc: Client, engine_config: EngineConfig, tenants: Tenants, deployment: Deployment,
        nats_server: EmbeddedNats) -> None:
    member = Client_(nc, engine_config, tenants=tenants)
    await member.setup_thread()
    for n in range(3):  # history: sandboxes the process manager asked for
        created = await member.ok("session.create", thread_id="thd_t1", session_id=f"ses_{n}", owner=AGENT,
                                  sandbox={"mode": "new"})
        await settled(member, created["result"]["sandbox_id"], "running")
    pm = _worker(fx_engine, "pm")
    last = created["position"]
    await eventually(lambda: asyncio.sleep(0, pm.floor >= last), "the worker saw its floor pass the history")
    handled: list[int] = []
    inner = pm.handler

    async def recording(envelope: Any, position: int) -> bool:
        handled.append(position)
        return await inner(envelope, position)

    pm.handler = recording
    floor = pm.floor
    admin = await connect(deployment, nats_server.url, role="admin")
    try:
        await admin.jetstream().delete_consumer(engine_config.stream, pm.durable)  # the admin may; it is put back
    finally:
        await admin.close()
    await eventually(lambda: asyncio.sleep(0, pm.recreated == 1), "the worker made its consumer again")
    info = await nc.jetstream().consumer_info(engine_config.stream, pm.durable)
    assert info.config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE and info.config.opt_start_seq == floor + 1
    # a new sandbox for another tenant comes up: the process manager works again
    other = member.as_(tenant=OTHER)
    await other.setup_thread()
    created = await other.ok("session.create", thread_id="thd_t1", owner=AGENT, sandbox={"mode": "new"})
    await settled(other, created["result"]["sandbox_id"], "running")
    assert handled and all(p > floor for p in handled), (floor, handled)  # no history sent again
    assert fx_engine.metrics.registry.get_sample_value("agentledger_consumers_recreated_total",
                                                       {"consumer": pm.durable}) == 1
    assert pm.missing is None


async def test_readiness_reports_a_missing_consumer_until_it_is_back(
        engine: Engine, nc: Client, engine_config: EngineConfig, tenants: Tenants, deployment: Deployment,
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """An effect handler whose credentials cannot make its consumer (so the gap stays open until
    the operator closes it): /readyz names the missing consumer until it exists again."""
    config = EngineConfig(nats_url=engine_config.nats_url, prefix=engine_config.prefix, stream=engine_config.stream,
                          sandbox_dir=tmp_path / "fx", creds=effects_creds(engine_config), worker_check_every=0.2)
    first = EffectsProcess(config)  # makes the consumer, as a deployment's first start does
    await first.start()
    await first.stop()
    grant = effects_grant(engine_config.prefix, engine_config.stream)
    grant = dataclasses.replace(grant, pub_allow=tuple(s for s in grant.pub_allow if ".CONSUMER.CREATE." not in s))
    weak = tmp_path / "effects-cannot-create.creds"
    Deployment.write(deployment.engine_creds("effects", grant=grant), weak)
    process = EffectsProcess(dataclasses.replace(config, creds=weak))
    await process.start()
    probe = WorkerProbe(process.metrics, config.stream, lambda: process.failure, lambda: [process.nc],
                        lambda: process.workers, lambda: process.store.js if process.store else None)
    try:
        assert await probe.not_ready() is None
        worker = _worker(process, "fx")
        admin = await connect(deployment, nats_server.url, role="admin")
        try:
            await admin.jetstream().delete_consumer(config.stream, worker.durable)
        finally:
            await admin.close()
        missing = f"consumer {worker.durable} missing"
        assert await eventually(lambda: _equals(probe.not_ready(), missing), "readiness names the consumer", 600)
        assert worker.recreated == 0
        await nc.jetstream().add_consumer(config.stream, worker.config(worker.floor))  # the operator puts it back
        assert await eventually(lambda: _equals(probe.not_ready(), None), "ready again", 600)
        member = Client_(nc, engine_config, tenants=tenants)  # and it carries out requests again
        await member.ok("sandbox.create", sandbox_id="sbx_after")
        await settled(member, "sbx_after", "running")
    finally:
        await process.stop()
        await destroy_all(tmp_path / "fx")


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_without_authentication_a_restarted_engine_keeps_the_snapshots(tmp_path: Path) -> None:
    """A server without authentication (any client may write the log there, so a seal guards
    nothing): engines derive one key from the stream, and a restart restores what the last one
    sealed instead of refusing it and reading every boundary from the log again."""
    from agentledger.handlers.nats_server import free_port

    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    await server.start()
    config = EngineConfig(prefix="open", stream="OPEN", nats_url=server.url, snapshot_every=5)
    try:
        first = Engine(config)
        await first.start()
        assert first.nc is not None
        client = Client_(first.nc, config)
        await client.setup_thread()
        for n in range(6):
            await client.ok("session.create", thread_id="thd_t1", session_id=f"ses_s{n}", owner=AGENT)
        await client.ok("session.start", session_id="ses_s0")
        boundary = config.subjects.thread_filter("tnt_acme", "thd_t1")
        assert first.models.snapshots is not None
        written = first.models.snapshots
        assert await eventually(lambda: written.get(boundary), "a snapshot of the thread")
        await first.stop()
        second = Engine(config)
        await second.start()
        try:
            assert second.nc is not None
            again = Client_(second.nc, config)
            refused = await again.cmd("thread.archive", thread_id="thd_t1")
            assert refused["error"]["code"] == "thread_not_empty", refused
            assert second.models.snapshots is not None and second.models.snapshots.quarantined == 0
        finally:
            await second.stop()
    finally:
        await server.stop()
