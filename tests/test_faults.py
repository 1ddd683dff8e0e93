"""Fault injection under load: kill -9 an engine process while several clients have commands in
flight; kill -9 the stream leader's node of a 3-node R3 cluster and bring it back. After each,
the log agrees with what the clients were told (acknowledged <=> in the log exactly once, at the
position named; a resend of an acknowledged command answers the same and appends nothing) and
an independent replay (tests/reference_rules.py) finds no rule broken.

Faults are triggered by progress (after so many answers), never by a clock."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from tests.conftest import Client_, Tenants, config_for, connect, start_cluster
from tests.faults_support import Load, check_log, serve_process

TENANT = "tnt_faults"
KILLS = 3
CLIENTS = 8
ROUNDS = 10



async def setup(client: Client_, threads: list[str]) -> None:
    await client.ok("project.create", project_id="prj_f", name="faults")
    for thread in threads:
        await client.ok("thread.create", project_id="prj_f", thread_id=thread)


async def test_kill_9_an_engine_under_load(engine_config: EngineConfig, nc: Client, tenants: Tenants,
                                           tmp_path: Path) -> None:
    """Two replicas share the load; one is killed mid-load, again and again (a new process each
    time). Its unanswered commands are retried by the clients and answered by the other."""
    survivor = Engine(engine_config)
    await survivor.start()
    client = Client_(nc, engine_config, tenant=TENANT, tenants=tenants)
    member = await tenants.conn(TENANT)  # the clients send as a member of the tenant, as real ones do
    threads = ["thd_f0", "thd_f1", "thd_f2"]
    await setup(client, threads)
    loads: list[Load] = []
    retries: Counter[str] = Counter()
    try:
        for kill in range(KILLS):
            victim = await serve_process(engine_config, tmp_path / "stderr")
            load = Load(member, engine_config, TENANT, threads, tag=f"k{kill}")
            running = asyncio.create_task(load.run(CLIENTS, ROUNDS))
            await load.reached(CLIENTS * ROUNDS)  # well under way: about a fifth of the commands answered
            victim.send_signal(signal.SIGKILL)
            assert await victim.wait() == -signal.SIGKILL
            await running
            loads.append(load)
            retries += load.retries
        stats = await check_log(nc, engine_config, loads)
    finally:
        await survivor.stop()
    print(f"engine kill -9: {KILLS} kills under {CLIENTS} clients, {stats}, retries {dict(retries)}")
    assert retries["no answer"] > 0, retries  # the kills cut into commands in flight


@pytest.fixture
async def cluster(tmp_path: Path, deployment: Deployment) -> AsyncIterator[list[EmbeddedNats]]:
    nodes = await start_cluster(deployment, [tmp_path / f"n{i}" for i in range(3)], "faults")
    yield nodes
    for n in nodes:
        n.kill()


async def test_kill_9_a_cluster_node_under_load_and_bring_it_back(cluster: list[EmbeddedNats],
                                                                  deployment: Deployment) -> None:
    """Two engines on different nodes of an R3 cluster; the node leading the stream is killed
    mid-load (the stream elects a new leader), brought back, and the next leader is killed."""
    name = uuid.uuid4().hex[:8]
    configs = [config_for(deployment, node.url, prefix=f"f{name}", stream=f"F_{name}", replicas=3,
                          process_manager=False) for node in cluster[:2]]
    engines = [Engine(c) for c in configs]
    for engine in engines:
        await engine.start()
    nc = await connect(deployment, [n.url for n in cluster], role="engine", max_reconnect_attempts=-1,
                       reconnect_time_wait=0.2)
    by_name = {f"n{i}": node for i, node in enumerate(cluster)}
    killed: list[str] = []
    try:
        client = Client_(nc, configs[0], tenant=TENANT)
        threads = ["thd_c0", "thd_c1", "thd_c2"]
        await setup(client, threads)
        load = Load(nc, configs[0], TENANT, threads, tag="n")
        running = asyncio.create_task(load.run(CLIENTS, ROUNDS))
        total = CLIENTS * ROUNDS * 5
        for step in (1, 2):
            await load.reached(total * step // 4)
            info = await nc.jetstream().stream_info(configs[0].stream)
            assert info.cluster is not None and info.cluster.leader in by_name, info.cluster
            leader = by_name[info.cluster.leader]
            killed.append(info.cluster.leader)
            leader.kill()
            await load.reached(total * step // 4 + CLIENTS * 4)  # the cluster serves on two nodes
            await leader.start()  # same data, same routes: it rejoins and catches up
        await running
        stats = await check_log(nc, configs[0], [load])
        # the restarted nodes rejoin the stream's replicas and catch up with the whole log
        for _ in range(400):
            info = await nc.jetstream().stream_info(configs[0].stream)
            peers = info.cluster.replicas or [] if info.cluster else []
            if len(peers) == 2 and all(p.current and not p.lag for p in peers):
                break
            await asyncio.sleep(0.05)
        assert len(peers) == 2 and all(p.current and not p.lag for p in peers), info.cluster
    finally:
        await nc.close()
        for engine in engines:
            await engine.stop()
    print(f"cluster kill -9: leaders killed {killed} under {CLIENTS} clients, {stats}, retries {dict(load.retries)}")
