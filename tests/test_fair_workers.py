"""The process manager and the effect handler interleave tenants (issue 15): behind one tenant's
backlog of sandbox work, another tenant's new sandbox is carried out among the first, not after
all of it; each tenant's events stay in log order, one replica's process manager works at a time
(a lease), and another takes over when it stops or dies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.durable import DurableWorker
from agentledger.handlers.lease import Lease
from agentledger.handlers.workers import effects_worker, process_manager_worker
from agentledger.providers.base import ProviderConfig, SandboxRef
from agentledger.providers.directory import DirectoryProvider
from agentledger.schemas.sandboxes import SandboxOptions
from tests.conftest import AGENT, Client_
from tests.sandbox_support import destroy_all, eventually, settled

BACKLOG = 200


class Calls(DirectoryProvider):
    """The directory provider, noting each call as (tenant, op, sandbox) in the order they happen."""

    def __init__(self, root: Path, calls: list[tuple[str, str, str]]) -> None:
        super().__init__(ProviderConfig(root=root))
        self.calls = calls

    async def create(self, ref: SandboxRef, options: SandboxOptions) -> str:
        location = await super().create(ref, options)
        self.calls.append((ref.tenant_id, "create", ref.sandbox_id))
        return location

    async def destroy(self, ref: SandboxRef) -> None:
        await super().destroy(ref)
        self.calls.append((ref.tenant_id, "destroy", ref.sandbox_id))


@pytest.fixture
async def bare(engine_config: EngineConfig) -> AsyncIterator[Engine]:
    """An engine whose workers the test starts and stops itself (a backlog builds while they are off)."""
    engine_config.process_manager = False
    eng = Engine(engine_config)
    await eng.start()
    yield eng
    await eng.stop()


class Workers:
    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine, self.root = engine, root
        self.calls: list[tuple[str, str, str]] = []
        self.running: list[DurableWorker] = []

    async def start(self) -> None:
        cfg, store, commands = self.engine.config, self.engine.store, self.engine.commands
        assert store is not None and commands is not None
        self.running = [process_manager_worker(cfg, store, commands.execute),
                        effects_worker(cfg, store, commands.execute, self.engine.queries.execute,
                                       providers={"local": Calls(self.root, self.calls)})]
        for worker in self.running:
            await worker.start()

    async def stop(self) -> None:
        for worker in self.running:
            await worker.stop()
        self.running = []


@pytest.fixture
async def workers(bare: Engine, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(bare, tmp_path / "sandboxes")
    yield w
    await w.stop()
    await destroy_all(w.root)


def _position(calls: list[tuple[str, str, str]], tenant: str, op: str) -> int:
    return next(i for i, call in enumerate(calls) if call[0] == tenant and call[1] == op)


async def _sessions_with_sandboxes(client: Client_, thread: str, count: int, prefix: str) -> None:
    slots = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with slots:
            await client.ok("session.create", thread_id=thread, session_id=f"ses_{prefix}{i}", owner=AGENT,
                            sandbox={"mode": "new", "sandbox_id": f"sbx_{prefix}{i}"})

    await asyncio.gather(*(one(i) for i in range(count)))


async def test_another_tenants_sandbox_is_made_among_the_first_behind_a_backlog(
        bare: Engine, workers: Workers, nc: Client, engine_config: EngineConfig) -> None:
    attacker, victim = Client_(nc, engine_config, tenant="tnt_burst"), Client_(nc, engine_config, tenant="tnt_calm")
    await attacker.setup_thread("prj_b", "thd_b")
    await victim.setup_thread("prj_c", "thd_c")
    await _sessions_with_sandboxes(attacker, "thd_b", BACKLOG, "b")  # while no worker runs: a backlog
    await victim.ok("session.create", thread_id="thd_c", session_id="ses_c", owner=AGENT,
                    sandbox={"mode": "new", "sandbox_id": "sbx_c"})
    await workers.start()
    await settled(victim, "sbx_c", "running")
    await eventually(lambda: asyncio.sleep(0, len(workers.calls) == BACKLOG + 1), "every sandbox made", 1200)
    at = _position(workers.calls, "tnt_calm", "create")
    assert at < BACKLOG // 2, f"the other tenant's sandbox was made {at + 1}th of {BACKLOG + 1}"
    made = [sid for tenant, _, sid in workers.calls if tenant == "tnt_burst"]
    assert sorted(made) == sorted(f"sbx_b{i}" for i in range(BACKLOG))  # each exactly once
    print(f"\nbehind {BACKLOG} sandboxes of another tenant, this one was made {at + 1}th")

    # the attacker archives its thread: every one of its sandboxes is destroyed, and the other
    # tenant's next sandbox, asked for after the archive, is still made among the first
    for i in range(0, BACKLOG, 40):
        await settled(attacker, f"sbx_b{i}", "running")
    await workers.stop()
    await attacker.ok("thread.archive", thread_id="thd_b")
    await victim.ok("session.create", thread_id="thd_c", session_id="ses_c2", owner=AGENT,
                    sandbox={"mode": "new", "sandbox_id": "sbx_c2"})
    workers.calls.clear()
    await workers.start()
    await settled(victim, "sbx_c2", "running")
    await eventually(lambda: asyncio.sleep(0, len(workers.calls) == BACKLOG + 1), "every sandbox destroyed", 1200)
    at = _position(workers.calls, "tnt_calm", "create")
    assert at < BACKLOG // 2, f"made {at + 1}th of {BACKLOG + 1}, behind the archive's destroys"
    assert sorted(sid for tenant, op, sid in workers.calls if op == "destroy") == sorted(
        f"sbx_b{i}" for i in range(BACKLOG))
    print(f"behind an archive of {BACKLOG} sandboxes of another tenant, this one was made {at + 1}th")


async def test_one_tenants_events_stay_in_order_across_two_replicas_and_a_hand_over(
        bare: Engine, tmp_path: Path, nc: Client, engine_config: EngineConfig) -> None:
    """Two process managers (two replicas) on one consumer: only the lease holder works; each
    sandbox gets create, then pause, then resume, then destroy, whoever handled which event,
    also when the holder stops in the middle and the other takes over."""
    assert bare.store is not None and bare.commands is not None
    engine_config.pm_lease_ttl = 1.0
    calls: list[tuple[str, str, str]] = []
    root = tmp_path / "sandboxes"
    fx = effects_worker(engine_config, bare.store, bare.commands.execute, bare.queries.execute,
                        providers={"local": Calls(root, calls)})
    pms = [process_manager_worker(engine_config, bare.store, bare.commands.execute) for _ in range(2)]
    await fx.start()
    for pm in pms:
        await pm.start()
    client = Client_(nc, engine_config, tenant="tnt_order")
    try:
        await client.setup_thread("prj_o", "thd_o")
        assert sum(pm.gate is not None and pm.gate.held() for pm in pms) == 1
        sessions = [f"ses_o{i}" for i in range(12)]
        for n, sid in enumerate(sessions):
            await client.ok("session.create", thread_id="thd_o", session_id=sid, owner=AGENT,
                            sandbox={"mode": "new", "sandbox_id": f"sbx_{sid[4:]}", "shutdown": "pause"})
            await client.ok("session.start", session_id=sid)
            await client.ok("session.complete", session_id=sid, summary={"outcome": "succeeded", "text": "t"})
            if n == 5:  # the holder stops mid-stream; the other takes over
                holder = next(pm for pm in pms if pm.gate is not None and pm.gate.held())
                await holder.stop()
                pms.remove(holder)
        await eventually(lambda: _all_paused(client, sessions), "every sandbox paused", 600)
        await client.ok("thread.archive", thread_id="thd_o")
        for sid in sessions:
            await settled(client, f"sbx_{sid[4:]}", "destroyed")
        assert pms[0].gate is not None and pms[0].gate.held() and pms[0].gate.taken == 1
    finally:
        for worker in (*pms, fx):
            await worker.stop()
        await destroy_all(root)


async def _all_paused(client: Client_, sessions: list[str]) -> bool:
    for sid in sessions:
        reply = await client.qry("sandbox.get", sandbox_id=f"sbx_{sid[4:]}")
        if not reply["ok"]:  # not_found until the process manager (the one taking over) asks for it
            assert reply["error"]["code"] == "not_found", reply
            return False
        view = reply["result"]["sandbox"]
        if view["status"] != "paused" or view["pending"]:
            return False
    return True


@pytest.mark.parametrize("trial", range(3))
async def test_a_lease_has_one_holder_at_a_time_and_passes_on_when_its_holder_stops_or_dies(
        nc: Client, engine_config: EngineConfig, trial: int) -> None:
    bucket, key, ttl = f"{engine_config.stream}_LEASES", f"k{trial}", 1.0
    a, b = Lease(nc.jetstream(), bucket, key, ttl), Lease(nc.jetstream(), bucket, key, ttl)
    await a.start()
    await b.start()
    both = asyncio.Event()

    async def watch() -> None:
        while True:
            if a.held() and b.held():
                both.set()
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        first, second = (a, b) if a.held() else (b, a)
        assert first.held() and not second.held()
        await first.stop()  # a clean stop hands it on at the other's next attempt
        await asyncio.wait_for(second.wait_held(), 5 * ttl)
        assert second.taken == 1
        await first.start()
        assert not first.held()
        # the holder dies: it stops renewing without deleting the key
        await second.stop(release=False)
        await asyncio.wait_for(first.wait_held(), 5 * ttl)
        assert not second.held()  # it gave itself up before the key could expire
        assert not both.is_set()
    finally:
        watcher.cancel()
        await a.stop()
        await b.stop()
