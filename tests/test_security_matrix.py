"""The permission matrix, cell by cell, against the real server with authentication on: each role
(a tenant's member and auditor, the deployment's admin and effect handler) tries each subject or
JetStream API, and gets exactly what docs/security.md says: `ok`, the engine's `forbidden`
reply, or the broker's permissions violation (`denied`). Nothing a refused cell tried is in the log.

The deployment's own identities are minted for the rig's prefix and stream, as a deployment's are
for its own: the effect handler's permissions are an allow-list that names its consumer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client

from agentledger.engine.snapshots import bucket_name as snapshot_bucket
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.identity import TENANTS_BUCKET
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.permissions import EFFECTS_INBOX
from agentledger.handlers.auth.tenants import add_audit_stream, add_tenant
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.schemas.accounts import CHECKPOINT_BUCKET, audit_stream, kv_stream
from tests.conftest import USER, config_for, stream_messages

TENANT, OTHER = "tnt_matrix", "tnt_matrix_other"
ROLES = ("member", "auditor", "admin", "effects")


@dataclass
class Rig:
    deployment: Deployment
    server: EmbeddedNats
    config: EngineConfig
    engine: Engine
    log: Client  # the engine's identity, to count what is in the log
    requested: int  # the position of sbx_seed's create request, still without an outcome


@pytest.fixture(scope="module")
async def rig(nats_server: EmbeddedNats, deployment: Deployment) -> AsyncIterator[Rig]:
    """One engine for the whole matrix, with its own prefix and stream, and both tenants added."""
    name = uuid.uuid4().hex[:6]
    config = config_for(deployment, nats_server.url, prefix=f"mx{name}", stream=f"MATRIX_{name}", process_manager=False)
    engine = Engine(config)
    await engine.start()
    for tenant in (TENANT, OTHER):
        await add_tenant(nats_server.url, deployment, tenant)
    log = await nats.connect(servers=[nats_server.url], user_credentials=str(deployment.creds_path("engine")))
    body = msgspec.json.encode({"actor": USER, "project_id": "prj_seed", "name": "seed"})
    await log.request(config.subjects.command(TENANT, "project.create"), body, timeout=5)
    body = msgspec.json.encode({"actor": USER, "sandbox_id": "sbx_seed"})  # no effect handler runs: it stays pending
    created = msgspec.json.decode((await log.request(config.subjects.command(TENANT, "sandbox.create"), body,
                                                     timeout=5)).data)
    await add_audit_stream(nats_server.url, deployment, TENANT, config.prefix, config.stream)
    for tenant, key in ((TENANT, "seed"), (OTHER, "other_secret")):  # one checkpoint key in each tenant's bucket
        provisioner = await nats.connect(servers=[nats_server.url],
                                         user_credentials=deployment.provisioner_creds(tenant).raw())
        await (await provisioner.jetstream().key_value(CHECKPOINT_BUCKET)).put(key, tenant.encode())
        await provisioner.close()
    yield Rig(deployment, nats_server, config, engine, log, created["position"])
    await log.close()
    await engine.stop()


@dataclass
class As:
    """A connection as one role. The broker reports a refused publish or subscribe asynchronously
    (a permissions violation on the connection): `race` runs an attempt until it either finishes or
    the broker refuses it, whichever comes first."""

    nc: Client
    role: str
    errors: list[str] = field(default_factory=list)
    refused: asyncio.Event = field(default_factory=asyncio.Event)

    async def race(self, attempt: Awaitable[str], patience: float = 30.0) -> str:
        task, refusal = asyncio.ensure_future(attempt), asyncio.ensure_future(self.refused.wait())
        done, _ = await asyncio.wait({task, refusal}, timeout=patience, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, refusal):
            if pending not in done:
                pending.cancel()
        if refusal in done:
            return "denied"
        return task.result() if task in done else "neither answered nor refused"


async def connect_as(rig: Rig, role: str) -> As:
    who = As(nc=None, role=role)  # type: ignore[arg-type]

    async def on_error(e: Exception) -> None:
        who.errors.append(str(e))
        if "permissions violation" in str(e).lower():
            who.refused.set()

    if role in ("member", "auditor"):
        creds = rig.deployment.tenant_creds(TENANT, f"usr_{role}", role)  # type: ignore[arg-type]
    else:
        creds = rig.deployment.engine_creds(role, prefix=rig.config.prefix, stream=rig.config.stream)  # type: ignore[arg-type]
    inbox = EFFECTS_INBOX if role == "effects" else "_INBOX"  # the effect handler reads only its own inboxes
    who.nc = await nats.connect(servers=[rig.server.url], user_credentials=creds.raw(), error_cb=on_error,
                                inbox_prefix=inbox)
    return who


def _body(**fields: object) -> bytes:
    return msgspec.json.encode({"actor": USER, **fields})


async def _request(who: As, subject: str, body: bytes) -> str:
    async def attempt() -> str:
        try:
            reply = msgspec.json.decode((await who.nc.request(subject, body, timeout=60)).data)
        except nats.errors.NoRespondersError:
            return "no responders"
        return "ok" if reply["ok"] else str(reply["error"]["code"])

    return await who.race(attempt())


async def _never(who: As) -> str:
    """Allowed publishes and subscribes have no answer: only a refusal ends the race."""
    await asyncio.Event().wait()
    return "ok"


async def _publish(who: As, subject: str, body: bytes = b"{}") -> str:
    await who.nc.publish(subject, body)
    return await who.race(_never(who), patience=10.0)


async def _subscribe(who: As, subject: str, queue: str = "") -> str:
    await who.nc.subscribe(subject, queue=queue)
    return await who.race(_never(who), patience=10.0)


async def cmd_own(rig: Rig, who: As) -> str:
    return await _request(who, rig.config.subjects.command(TENANT, "project.create"),
                          _body(project_id=f"prj_{uuid.uuid4().hex[:8]}", name="m"))


async def qry_own(rig: Rig, who: As) -> str:
    return await _request(who, rig.config.subjects.query(TENANT, "thread.list"), b'{"project_id": "prj_seed"}')


async def cmd_other(rig: Rig, who: As) -> str:
    return await _request(who, rig.config.subjects.command(OTHER, "project.create"),
                          _body(project_id=f"prj_{uuid.uuid4().hex[:8]}", name="m"))


async def qry_other(rig: Rig, who: As) -> str:
    return await _request(who, rig.config.subjects.query(OTHER, "thread.list"), b'{"project_id": "prj_seed"}')


async def evt_publish(rig: Rig, who: As) -> str:
    boundary = rig.config.subjects.project_filter(TENANT, "prj_seed")
    return await _publish(who, rig.config.subjects.event_subject(boundary, "project.created"))


async def serve_commands(rig: Rig, who: As) -> str:
    return await _subscribe(who, rig.config.subjects.commands_all, queue=rig.config.queue_group)


async def serve_queries(rig: Rig, who: As) -> str:
    return await _subscribe(who, rig.config.subjects.queries_all, queue=rig.config.queue_group)


async def stream_delete(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.DELETE.{rig.config.stream}")


async def stream_purge(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.PURGE.{rig.config.stream}")


async def stream_update(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.UPDATE.{rig.config.stream}")


async def msg_delete(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.MSG.DELETE.{rig.config.stream}", b'{"seq": 1}')


async def audit_delete(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.DELETE.{audit_stream(rig.config.stream)}")


async def audit_update(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.UPDATE.{audit_stream(rig.config.stream)}")


CKPT = kv_stream(CHECKPOINT_BUCKET)


async def ckpt_write(rig: Rig, who: As) -> str:
    """Put a key in the tenant's checkpoint bucket (a stream of the caller's own account)."""
    async def attempt() -> str:
        try:
            await who.nc.jetstream(timeout=60).publish(f"$KV.{CHECKPOINT_BUCKET}.matrix_{uuid.uuid4().hex[:8]}", b"x")
        except nats.js.errors.NoStreamResponseError:  # no stream takes the subject in this account
            return "no bucket"
        return "ok"

    return await who.race(attempt())


async def _ckpt_get(who: As, key: str) -> str:
    async def attempt() -> str:
        body = msgspec.json.encode({"last_by_subj": f"$KV.{CHECKPOINT_BUCKET}.{key}"})
        try:
            msg = await who.nc.request(f"$JS.API.DIRECT.GET.{CKPT}", body, timeout=60)
        except nats.errors.NoRespondersError:
            return "no bucket"
        if (msg.headers or {}).get("Status") == "404":
            return "absent"
        return "ok" if msg.data == TENANT.encode() else f"read {msg.data!r}"

    return await who.race(attempt())


async def ckpt_read(rig: Rig, who: As) -> str:
    return await _ckpt_get(who, "seed")


async def ckpt_read_other(rig: Rig, who: As) -> str:
    """The other tenant's checkpoint, by its key: no subject of this account reaches that bucket."""
    return await _ckpt_get(who, "other_secret")


async def ckpt_purge(rig: Rig, who: As) -> str:
    """Purge by subject filter, as deleting a LangGraph thread does (here a filter that matches nothing)."""
    async def attempt() -> str:
        body = msgspec.json.encode({"filter": f"$KV.{CHECKPOINT_BUCKET}.nothing_here"})
        try:
            reply = msgspec.json.decode((await who.nc.request(f"$JS.API.STREAM.PURGE.{CKPT}", body, timeout=60)).data)
        except nats.errors.NoRespondersError:
            return "no bucket"
        return "ok" if reply.get("success") else f"error {reply.get('error', {}).get('code')}"

    return await who.race(attempt())


async def ckpt_stream_delete(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.DELETE.{CKPT}")


async def ckpt_stream_update(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.UPDATE.{CKPT}")


async def audit_purge(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.PURGE.{audit_stream(rig.config.stream)}")


async def audit_msg_delete(rig: Rig, who: As) -> str:
    return await _publish(who, f"$JS.API.STREAM.MSG.DELETE.{audit_stream(rig.config.stream)}", b'{"seq": 1}')


async def stream_create(rig: Rig, who: As) -> str:
    """A stream of one's own on the tenant's event subjects: refused by the broker in a tenant's
    account, by JetStream (subjects overlap the engine's stream) in the engine's."""
    async def attempt() -> str:
        config = {"name": f"CAPTURE_{uuid.uuid4().hex[:8]}", "subjects": [rig.config.subjects.tenant_filter(TENANT)],
                  "storage": "file"}
        msg = await who.nc.request(f"$JS.API.STREAM.CREATE.{config['name']}", msgspec.json.encode(config), timeout=60)
        reply = msgspec.json.decode(msg.data)
        return f"error {reply['error']['err_code']}" if "error" in reply else "ok"

    return await who.race(attempt())


async def read_events(rig: Rig, who: As) -> str:
    """A durable consumer over the tenant's events from the first position: the audit stream in a
    tenant's account, the engine's stream in the engine's."""
    stream = audit_stream(rig.config.stream) if who.role in ("member", "auditor") else rig.config.stream

    async def attempt() -> str:
        js = who.nc.jetstream(timeout=60)
        sub = await js.pull_subscribe(rig.config.subjects.tenant_filter(TENANT), durable=f"d{uuid.uuid4().hex[:8]}",
                                      stream=stream)
        msgs = await sub.fetch(1, timeout=60)
        return "ok" if msgs[0].subject.startswith(f"{rig.config.prefix}.evt.{TENANT}.") else "failed"

    return await who.race(attempt())


def _outcome(rig: Rig, request_position: int) -> bytes:
    """A sandbox outcome as a forger would send it: sbx_seed's create done, at /etc."""
    return _body(sandbox_id="sbx_seed", request_position=request_position, op="create", ok=True, location="/etc")


async def report_on_commands(rig: Rig, who: As) -> str:
    """A sandbox outcome on the ordinary command subject, for the request that is really pending."""
    return await _request(who, rig.config.subjects.command(TENANT, "sandbox.report_outcome"),
                          _outcome(rig, rig.requested))


async def report_on_effects(rig: Rig, who: As) -> str:
    """On the effect handler's own subject, for a position with no request (so even the effect
    handler's attempt, which reaches the engine, changes nothing: `ok`, no event)."""
    return await _request(who, rig.config.subjects.effects_command(TENANT, "sandbox.report_outcome"),
                          _outcome(rig, 10**9))


async def sandbox_get(rig: Rig, who: As) -> str:
    return await _request(who, rig.config.subjects.query(TENANT, "sandbox.get"), b'{"sandbox_id": "sbx_seed"}')


async def list_live(rig: Rig, who: As) -> str:
    """Every tenant's live sandboxes: the deployment's query (a reconciler's), asked on the own tenant's subject."""
    return await _request(who, rig.config.subjects.query(TENANT, "sandbox.list_live"), b"{}")


async def direct_get(rig: Rig, who: As) -> str:
    """A direct get on the engine's stream: its JSON body may name any subject, any tenant's."""
    async def attempt() -> str:
        try:
            msg = await who.nc.request(f"$JS.API.DIRECT.GET.{rig.config.stream}", b'{"seq": 1}', timeout=60)
        except nats.errors.NoRespondersError:
            return "no stream"
        return "ok" if (msg.headers or {}).get("Nats-Stream") == rig.config.stream else f"read {msg.data[:60]!r}"

    return await who.race(attempt())


async def msg_get(rig: Rig, who: As) -> str:
    async def attempt() -> str:
        msg = await who.nc.request(f"$JS.API.STREAM.MSG.GET.{rig.config.stream}", b'{"seq": 1}', timeout=60)
        reply = msgspec.json.decode(msg.data)
        return f"error {reply['error']['err_code']}" if "error" in reply else "ok"

    return await who.race(attempt())


async def _kv_put(who: As, bucket: str, key: str) -> str:
    async def attempt() -> str:
        try:
            await who.nc.jetstream(timeout=60).publish(f"$KV.{bucket}.{key}", b"forged")
        except nats.js.errors.NoStreamResponseError:
            return "no bucket"
        return "ok"

    return await who.race(attempt())


async def snapshot_write(rig: Rig, who: As) -> str:
    boundary = rig.config.subjects.thread_filter(TENANT, "thd_matrix")
    return await _kv_put(who, snapshot_bucket(rig.config.stream), rig.config.subjects.snapshot_key(boundary))


async def tenant_map_write(rig: Rig, who: As) -> str:
    """A key no account has: the map is shared by every engine of the run."""
    return await _kv_put(who, TENANTS_BUCKET, "matrix_probe")


async def consumer_delete(rig: Rig, who: As) -> str:
    """Delete a durable consumer of the engine's stream (made afresh for each attempt)."""
    js = rig.log.jetstream(timeout=60)
    victim = f"victim_{uuid.uuid4().hex[:8]}"
    await js.add_consumer(rig.config.stream, durable_name=victim, name=victim,
                          filter_subject=rig.config.subjects.tenant_filter(TENANT))

    async def attempt() -> str:
        msg = await who.nc.request(f"$JS.API.CONSUMER.DELETE.{rig.config.stream}.{victim}", b"", timeout=60)
        reply = msgspec.json.decode(msg.data)
        return f"error {reply['error']['err_code']}" if "error" in reply else "ok"

    return await who.race(attempt())


async def every_inbox(rig: Rig, who: As) -> str:
    """Subscribe to every inbox of one's account (in the engine's: the replies to the engine's own
    reads). Allowed when the reply to one's own request (a query every role may send) comes through it too."""
    got = asyncio.Event()

    async def seen(msg: object) -> None:
        got.set()

    await who.nc.subscribe("_INBOX.>", cb=seen)

    async def attempt() -> str:
        await who.nc.request(rig.config.subjects.query(TENANT, "sandbox.get"), b'{"sandbox_id": "sbx_seed"}', timeout=60)
        await got.wait()
        return "ok"

    return await who.race(attempt())


Op = Callable[[Rig, As], Awaitable[str]]
# role -> expected outcome, per operation; docs/security.md prints the same table.
MATRIX: dict[str, tuple[Op, dict[str, str]]] = {
    "command, own tenant": (cmd_own, {"member": "ok", "auditor": "forbidden", "admin": "ok", "effects": "denied"}),
    "query, own tenant": (qry_own, {"member": "ok", "auditor": "ok", "admin": "ok", "effects": "denied"}),
    "command, other tenant": (cmd_other, {"member": "denied", "auditor": "denied", "admin": "ok", "effects": "denied"}),
    "query, other tenant": (qry_other, {"member": "denied", "auditor": "denied", "admin": "ok", "effects": "denied"}),
    "query sandbox.get": (sandbox_get, {"member": "ok", "auditor": "ok", "admin": "ok", "effects": "ok"}),
    "query sandbox.list_live (every tenant's)": (list_live, {"member": "forbidden", "auditor": "forbidden", "admin": "ok",
                                                             "effects": "ok"}),
    "report a sandbox outcome on the command subject": (report_on_commands, {
        "member": "forbidden", "auditor": "forbidden", "admin": "forbidden", "effects": "denied"}),
    "report a sandbox outcome on the effect handler's subject": (report_on_effects, {
        "member": "denied", "auditor": "denied", "admin": "denied", "effects": "ok"}),
    "publish an event": (evt_publish, dict.fromkeys(ROLES, "denied")),
    "serve commands (queue group)": (serve_commands, dict.fromkeys(ROLES, "denied")),
    "serve queries (queue group)": (serve_queries, dict.fromkeys(ROLES, "denied")),
    "subscribe to every inbox of the account": (every_inbox, {"member": "ok", "auditor": "ok", "admin": "ok",
                                                              "effects": "denied"}),
    "JS stream delete": (stream_delete, dict.fromkeys(ROLES, "denied")),
    "JS stream purge": (stream_purge, dict.fromkeys(ROLES, "denied")),
    "JS stream update": (stream_update, dict.fromkeys(ROLES, "denied")),
    "JS message delete": (msg_delete, dict.fromkeys(ROLES, "denied")),
    "JS direct get on the engine's stream": (direct_get, {"member": "denied", "auditor": "no stream", "admin": "ok",
                                                          "effects": "denied"}),
    "JS message get on the engine's stream": (msg_get, {"member": "denied", "auditor": "error 10059", "admin": "ok",
                                                        "effects": "denied"}),
    "JS write a snapshot": (snapshot_write, {"member": "denied", "auditor": "denied", "admin": "denied",
                                             "effects": "denied"}),
    "JS write the tenant map": (tenant_map_write, {"member": "denied", "auditor": "denied", "admin": "ok",
                                                   "effects": "denied"}),
    "JS delete a durable consumer of the engine's stream": (consumer_delete, {
        "member": "denied", "auditor": "error 10059", "admin": "ok", "effects": "denied"}),
    "JS delete the tenant's audit stream": (audit_delete, dict.fromkeys(ROLES, "denied")),
    "JS update the tenant's audit stream": (audit_update, dict.fromkeys(ROLES, "denied")),
    "durable consumer on the tenant's events": (read_events, {"member": "denied", "auditor": "ok", "admin": "ok",
                                                              "effects": "denied"}),
    "JS purge the tenant's audit stream": (audit_purge, dict.fromkeys(ROLES, "denied")),
    "JS delete a message of the tenant's audit stream": (audit_msg_delete, dict.fromkeys(ROLES, "denied")),
    "JS create a stream on the tenant's events": (stream_create, {"member": "denied", "auditor": "denied",
                                                                  "admin": "error 10065", "effects": "denied"}),
    "checkpoints: put a key": (ckpt_write, {"member": "ok", "auditor": "denied", "admin": "no bucket",
                                            "effects": "denied"}),
    "checkpoints: read a key": (ckpt_read, {"member": "ok", "auditor": "ok", "admin": "no bucket",
                                            "effects": "denied"}),
    "checkpoints: read the other tenant's key": (ckpt_read_other, {"member": "absent", "auditor": "absent",
                                                                   "admin": "no bucket", "effects": "denied"}),
    "checkpoints: purge by subject": (ckpt_purge, {"member": "ok", "auditor": "denied", "admin": "denied",
                                                   "effects": "denied"}),
    "checkpoints: delete the bucket's stream": (ckpt_stream_delete, dict.fromkeys(ROLES, "denied")),
    "checkpoints: update the bucket's stream": (ckpt_stream_update, dict.fromkeys(ROLES, "denied")),
}
CELLS = [(op, role) for op in MATRIX for role in ROLES]


@pytest.mark.parametrize(("op", "role"), CELLS, ids=[f"{role}: {op}" for op, role in CELLS])
async def test_permission_matrix_cell(rig: Rig, op: str, role: str) -> None:
    run, expected = MATRIX[op]
    before = await stream_messages(rig.log, rig.config.stream)
    who = await connect_as(rig, role)
    try:
        outcome = await run(rig, who)
    finally:
        await who.nc.close()
    assert outcome == expected[role], (op, role, outcome, who.errors)
    after = await stream_messages(rig.log, rig.config.stream)
    appended = op.startswith("command") and outcome == "ok"
    assert after == before + (1 if appended else 0), (op, role, before, after)
    assert await stream_messages(rig.log, rig.config.stream) >= 1  # the stream is still there, nothing purged
