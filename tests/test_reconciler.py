"""The sandbox reconciler against a real log and the machine's provider: an orphan is destroyed,
a lost sandbox is recorded so its session sees it, a request in flight is neither."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from prometheus_client import generate_latest

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.reconciler import LOST, EffectsWorker, Reconciler
from agentledger.providers.base import SandboxRef
from agentledger.schemas.sandboxes import SandboxOptions
from tests.conftest import AGENT, Client_
from tests.sandbox_support import eventually, local_provider, sandbox, sandbox_engine, settled

TENANT = "tnt_acme"


@pytest.fixture
async def rc_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    engine_config.reconcile_every = 0.2
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ("sleep",), ack_wait=2.0) as eng:
        yield eng


def reconciler_of(engine: Engine) -> Reconciler:
    worker = next(w for w in engine.workers if isinstance(w, EffectsWorker))
    assert worker.reconciler is not None
    return worker.reconciler


async def test_an_orphan_is_destroyed_and_counted(rc_engine: Engine, nc: Client) -> None:
    client = Client_(nc, rc_engine.config)
    await client.ok("sandbox.create", sandbox_id="sbx_kept", options={"command": ["sleep", "300"]})
    await settled(client, "sbx_kept", "running")
    assert rc_engine.config.sandbox_dir is not None
    provider = local_provider(rc_engine.config.sandbox_dir, commands=frozenset({"sleep"}))
    orphan = SandboxRef(TENANT, "sbx_orphan")  # alive at the provider, unknown to the ledger
    location = await provider.create(orphan, SandboxOptions(command=["sleep", "300"]))
    reconciler = reconciler_of(rc_engine)
    await eventually(lambda: asyncio.sleep(0, reconciler.orphans == 1), "the orphan destroyed")
    assert not Path(location).exists() and not (await provider.status(orphan)).exists
    assert (await provider.status(orphan)).processes == 0
    kept = await provider.status(SandboxRef(TENANT, "sbx_kept"))
    assert kept.exists and kept.processes > 0  # a live sandbox is never touched
    assert (await sandbox(client, "sbx_kept"))["status"] == "running"
    scrape = generate_latest(rc_engine.metrics.registry).decode()
    assert "agentledger_sandbox_orphans_destroyed_total 1.0" in scrape
    assert 'agentledger_sandbox_provider{freeze=' in scrape


async def test_a_lost_sandbox_is_recorded_so_its_session_sees_it(rc_engine: Engine, nc: Client) -> None:
    client = Client_(nc, rc_engine.config)
    await client.setup_thread()
    created = await client.ok("session.create", thread_id="thd_t1", owner=AGENT, sandbox={"mode": "new"})
    sandbox_id = created["result"]["sandbox_id"]
    await settled(client, sandbox_id, "running")
    assert rc_engine.config.sandbox_dir is not None
    await local_provider(rc_engine.config.sandbox_dir).destroy(SandboxRef(TENANT, sandbox_id))  # behind the ledger's back
    view = await settled(client, sandbox_id, "destroyed")
    events = (await client.qry("events.read", limit=1000))["result"]["events"]
    destroys = [e for e in events if e["type"] == "sandbox.destroy_requested" and e["data"]["sandbox_id"] == sandbox_id]
    assert len(destroys) == 1 and destroys[0]["data"]["reason"].startswith(LOST)
    assert destroys[0]["actor"] == {"kind": "system", "id": "sys_sandbox_reconciler"}
    reconciler = reconciler_of(rc_engine)
    runs = reconciler.runs
    await eventually(lambda: asyncio.sleep(0, reconciler.runs >= runs + 3), "more passes")
    assert reconciler.lost == 1 and view["intent"] == "destroyed"  # recorded once, not at every pass
    # the session holding it sees it gone: continuing it is refused, its end shuts nothing down twice
    refused = await client.cmd("session.create", thread_id="thd_t1", owner=AGENT,
                               sandbox={"mode": "continue", "sandbox_id": sandbox_id})
    assert refused["error"]["code"] == "illegal_transition"
    scrape = generate_latest(rc_engine.metrics.registry).decode()
    assert "agentledger_sandbox_lost_total 1.0" in scrape
