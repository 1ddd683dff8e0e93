"""One tenant against another (issue 15, "one tenant takes everyone's share"), on the real server
with each tenant's own credentials: a burst of queries, a pile of `min_position` waits that can
never be met, a tenant over the rates and quotas its operator set. Each time the attacker is
refused or contained (every request answered, none left to time out, nothing appended that
should not be), and the other tenant is served meanwhile, ahead of the attacker's backlog.

Numbers go to the test's output (`-s`) for the record; only order and outcome are asserted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_tenant, set_quota
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.handlers.quotas import quota_key
from agentledger.schemas.tenants import TenantQuota
from tests.conftest import USER, Client_, Tenants, stream_messages

FAR = 2**53 - 1
_decode = msgspec.json.Decoder().decode


def _code(reply: dict[str, Any]) -> str:
    return "ok" if reply["ok"] else reply["error"]["code"]


class Burst:
    """Requests sent at once on one connection, each reply noted in the order it came."""

    def __init__(self, conn: Client) -> None:
        self.conn = conn
        self.replies: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def send(self, subject: str, body: dict[str, Any], count: int, timeout: float = 60.0) -> None:
        data = msgspec.json.encode(body)

        async def one() -> None:
            msg = await self.conn.request(subject, data, timeout=timeout)  # a timeout fails the test
            self.replies.append(_decode(msg.data))

        self.tasks += [asyncio.create_task(one()) for _ in range(count)]

    async def done(self) -> Counter[str]:
        await asyncio.gather(*self.tasks)
        return Counter(_code(r) for r in self.replies)


@pytest.fixture
async def attacker(client: Client_, tenants: Tenants) -> Client_:
    """A member of tnt_flood; `client` (tnt_acme) is the other tenant."""
    me = client.as_(tenant="tnt_flood")
    await me.setup_thread("prj_f", "thd_f")
    await client.setup_thread()
    return me


async def test_min_position_waits_hold_no_worker_and_are_bounded_per_tenant(
        attacker: Client_, client: Client_, engine: Engine, nc: Client, engine_config: EngineConfig) -> None:
    assert engine.queries is not None and engine.responder is not None
    engine.queries.wait_timeout = 2.0
    before = await stream_messages(nc, engine_config.stream)
    burst = Burst(await attacker.conn())
    burst.send(engine_config.subjects.query("tnt_flood", "thread.get"), {"thread_id": "thd_f", "min_position": FAR}, 320)
    parked = engine.config.shares.parked
    while engine.responder.parked < parked or len(burst.replies) < 320 - parked:
        await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    reply = await client.qry("thread.get", thread_id="thd_t1")
    took = time.perf_counter() - t0
    assert reply["ok"], reply
    # answered while every one of the attacker's waits is still parked: none of them held a worker
    assert len(burst.replies) == 320 - parked
    codes = await burst.done()
    assert codes == {"unavailable": parked, "rate_limited": 320 - parked}, codes
    refused = [r["error"] for r in burst.replies if r["error"]["code"] == "rate_limited"]
    assert all(e["details"]["limit"] == "waits_parked" and e["details"]["tenant"] == "tnt_flood"
               and e["retryable"] and e["details"]["retry_after"] > 0 for e in refused)
    assert await stream_messages(nc, engine_config.stream) == before
    assert _metric(engine, "agentledger_refused_requests_total", reason="share") == 320 - parked
    print(f"\nother tenant's thread.get behind 320 far min_position waits: {took * 1000:.1f} ms")


def _metric(engine: Engine, name: str, **labels: str) -> float | None:
    text = generate_latest(engine.metrics.registry).decode()
    found = [s.value for family in text_string_to_metric_families(text) for s in family.samples
             if s.name == name and s.labels == labels]
    return found[0] if found else None


async def test_a_query_flood_is_contained_and_another_tenant_is_served_ahead_of_it(
        attacker: Client_, client: Client_, engine: Engine, nc: Client, engine_config: EngineConfig) -> None:
    before = await stream_messages(nc, engine_config.stream)
    burst = Burst(await attacker.conn())
    burst.send(engine_config.subjects.query("tnt_flood", "thread.get"), {"thread_id": "thd_f"}, 5_000)
    await (await attacker.conn()).flush()
    t0 = time.perf_counter()
    reply = await client.qry("thread.get", thread_id="thd_t1")
    took, answered_before = time.perf_counter() - t0, len(burst.replies)
    assert reply["ok"], reply
    codes = await burst.done()
    assert sum(codes.values()) == 5_000 and set(codes) <= {"ok", "rate_limited"}, codes  # the rest queued
    assert answered_before < 5_000  # served ahead of the attacker's backlog, not after all of it
    limits = {r["error"]["details"]["limit"] for r in burst.replies if not r["ok"]}
    assert limits <= {"requests_waiting", "bytes_waiting"}, limits
    assert await stream_messages(nc, engine_config.stream) == before
    # and the attacker is served again right after
    assert (await attacker.qry("thread.get", thread_id="thd_f"))["ok"]
    print(f"\nother tenant's thread.get behind 5,000 queries: {took * 1000:.1f} ms, "
          f"{answered_before:,} of them answered before it; {dict(codes)}")


def _quota_tenant() -> str:
    return f"tnt_q{uuid.uuid4().hex[:10]}"  # quotas stay in the session's tenant bucket: one tenant each


async def test_a_tenant_over_its_command_rate_is_refused_and_nothing_is_appended(
        client: Client_, tenants: Tenants, engine: Engine, nc: Client, engine_config: EngineConfig,
        nats_server: EmbeddedNats, deployment: Deployment) -> None:
    tenant = _quota_tenant()
    await add_tenant(nats_server.url, deployment, tenant, quota=TenantQuota(commands_per_second=5))
    limited = client.as_(tenant=tenant)
    before = await stream_messages(nc, engine_config.stream)
    replies = await asyncio.gather(*(limited.cmd("project.create", project_id=f"prj_{i}", name="p") for i in range(20)))
    codes = Counter(_code(r) for r in replies)
    assert set(codes) == {"ok", "rate_limited"} and 5 <= codes["ok"] < 20, codes
    for r in replies:
        if not r["ok"]:
            assert r["error"]["retryable"] and r["error"]["details"] == {
                "tenant": tenant, "limit": "commands_per_second", "allowed": 5.0,
                "retry_after": r["error"]["details"]["retry_after"]}
            assert r["error"]["details"]["retry_after"] > 0
    assert await stream_messages(nc, engine_config.stream) == before + codes["ok"]  # one event per accepted
    # other tenants, and the deployment acting for this one, are not limited
    assert all(r["ok"] for r in await asyncio.gather(
        *(client.cmd("project.create", project_id=f"prj_o{i}", name="o") for i in range(20))))
    deployment_client = Client_(nc, engine_config, tenant=tenant)
    assert all(r["ok"] for r in await asyncio.gather(
        *(deployment_client.cmd("project.create", project_id=f"prj_d{i}", name="d") for i in range(20))))
    # a retry after retry_after is taken
    retry_after = max(r["error"]["details"]["retry_after"] for r in replies if not r["ok"])
    await asyncio.sleep(retry_after)
    assert (await limited.cmd("project.create", project_id="prj_late", name="p"))["ok"]
    # the operator lifts the limit; the engine applies it at its next read of the quota
    assert engine.quotas is not None
    engine.quotas.refresh = 0.0
    await set_quota(nats_server.url, deployment, tenant, TenantQuota())
    for attempt in range(100):
        replies = await asyncio.gather(*(limited.cmd("project.create", project_id=f"prj_n{attempt}x{i}", name="p")
                                         for i in range(10)))
        if all(r["ok"] for r in replies):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the lifted limit never reached the engine: {replies}")


async def test_a_tenant_at_its_events_quota_gets_quota_exceeded_and_nothing_more_is_appended(
        client: Client_, engine: Engine, nc: Client, engine_config: EngineConfig, nats_server: EmbeddedNats,
        deployment: Deployment) -> None:
    tenant = _quota_tenant()
    await add_tenant(nats_server.url, deployment, tenant, quota=TenantQuota(max_events=3))
    limited = client.as_(tenant=tenant)
    await limited.setup_thread("prj_e", "thd_e")  # two events
    await limited.ok("session.create", thread_id="thd_e", session_id="ses_e1", owner=USER)  # three
    before = await stream_messages(nc, engine_config.stream)
    refused = await limited.cmd("session.create", thread_id="thd_e", session_id="ses_e2", owner=USER)
    assert refused["error"]["code"] == "quota_exceeded" and not refused["error"]["retryable"], refused
    assert refused["error"]["details"] == {"tenant": tenant, "quota": "events", "limit": 3, "used": 3}
    assert await stream_messages(nc, engine_config.stream) == before
    assert (_metric(engine, "agentledger_refused_requests_total", reason="quota") or 0) >= 1
    assert (await limited.qry("thread.get", thread_id="thd_e"))["ok"]  # reading goes on
    # the deployment's own commands for the tenant are not refused, and count towards its quota
    deployment_client = Client_(nc, engine_config, tenant=tenant)
    await deployment_client.ok("session.start", session_id="ses_e1")
    again = await limited.cmd("session.request_input", session_id="ses_e1")
    assert again["error"]["details"]["used"] == 4
    assert (await client.cmd("project.create", project_id="prj_other", name="o"))["ok"]  # another tenant is not


async def test_a_tenants_storage_limit_is_enforced_by_the_server_and_set_by_the_cli(
        nats_server: EmbeddedNats, deployment: Deployment, tenants: Tenants) -> None:
    tenant = _quota_tenant()
    auth = ["--auth-dir", str(deployment.root), "--nats-url", nats_server.url]
    cli = [str(Path(sys.executable).parent / "agentledger"), "tenant"]
    added = subprocess.run([*cli, "add", tenant, *auth, "--storage", "64K", "--max-events", "1000"],
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert "max_events 1000, storage_bytes 65536" in added.stdout
    conn = await nats.connect(servers=[nats_server.url], user_credentials=deployment.provisioner_creds(tenant).raw())
    try:
        js = conn.jetstream()
        assert (await js.account_info()).limits.max_storage == 65536
        await js.add_stream(name="FILL", subjects=["fill.>"])
        with pytest.raises(nats.js.errors.BadRequestError, match="resource limits exceeded"):
            for _ in range(100):
                await js.publish("fill.x", b"x" * 1000)
        changed = subprocess.run([*cli, "set", tenant, *auth, "--storage", "none", "--commands-per-second", "2.5"],
                                 capture_output=True, text=True, timeout=60)
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout.strip() == f"tenant {tenant}: commands_per_second 2.5, max_events 1000"
        assert (await js.account_info()).limits.max_storage == -1
        await js.publish("fill.x", b"x" * 1000)  # room again
    finally:
        await conn.close()
    admin = await nats.connect(servers=[nats_server.url], user_credentials=str(deployment.creds_path("admin")))
    try:
        entry = await (await admin.jetstream().key_value("agentledger_tenants")).get(quota_key(tenant))
        assert msgspec.json.decode(entry.value or b"", type=TenantQuota) == TenantQuota(
            commands_per_second=2.5, max_events=1000)
    finally:
        await admin.close()
    bad = subprocess.run([*cli, "set", tenant, *auth, "--max-events", "lots"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "lots" in bad.stderr
    unknown = subprocess.run([*cli, "set", "tnt_nobody_here", *auth, "--max-events", "5"], capture_output=True,
                             text=True, timeout=60)
    assert unknown.returncode != 0 and "no tenant tnt_nobody_here" in unknown.stderr


async def test_an_unreadable_quota_entry_keeps_the_last_good_one(
        client: Client_, engine: Engine, nc: Client, nats_server: EmbeddedNats, deployment: Deployment) -> None:
    tenant = _quota_tenant()
    await add_tenant(nats_server.url, deployment, tenant, quota=TenantQuota(max_events=1))
    limited = client.as_(tenant=tenant)
    await limited.ok("project.create", project_id="prj_u", name="u")
    assert (await limited.cmd("project.create", project_id="prj_v", name="v"))["error"]["code"] == "quota_exceeded"
    assert engine.quotas is not None
    engine.quotas.refresh = 0.0
    await (await nc.jetstream().key_value("agentledger_tenants")).put(quota_key(tenant), b'{"max_events": "x"')
    for _ in range(50):
        await limited.cmd("project.create", project_id="prj_w", name="w")
        if engine.quotas.unreadable:
            break
        await asyncio.sleep(0.02)
    assert engine.quotas.unreadable > 0
    reply = await limited.cmd("project.create", project_id="prj_w", name="w")
    assert reply["error"]["code"] == "quota_exceeded", reply
