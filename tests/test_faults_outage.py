"""A NATS outage longer than the engines' reconnect budget, under load: both engine processes
must exit non-zero by themselves (never alive and deaf); a supervisor (this test) starts them
again once NATS is back, and the clients' resends finish the load. Then the log agrees with
every answer and replays cleanly through the reference rules (tests/faults_support.py).

The outage is as long as it takes both engines to give up: progress, not a clock."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.nats_server import free_port
from tests.conftest import Client_, config_for, connect
from tests.faults_support import Load, check_log, serve_process

TENANT = "tnt_outage"
CLIENTS = 6
ROUNDS = 8
BUDGET = ("--reconnect-budget", "1", "--reconnect-wait", "0.2")  # an outage past it takes seconds, not minutes



async def test_outage_longer_than_the_reconnect_budget_under_load(deployment: Deployment, tmp_path: Path) -> None:
    server = deployment.embedded(tmp_path / "nats", port=free_port())
    await server.start()
    name = uuid.uuid4().hex[:8]
    config = config_for(deployment, server.url, prefix=f"o{name}", stream=f"O_{name}")
    engines = [await serve_process(config, tmp_path / f"engine{i}.err", *BUDGET) for i in range(2)]
    nc = await connect(deployment, server.url, role="engine", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        client = Client_(nc, config, tenant=TENANT)
        threads = ["thd_o0", "thd_o1", "thd_o2"]
        await client.ok("project.create", project_id="prj_o", name="outage")
        for thread in threads:
            await client.ok("thread.create", project_id="prj_o", thread_id=thread)
        load = Load(nc, config, TENANT, threads, tag="o")
        running = asyncio.create_task(load.run(CLIENTS, ROUNDS))
        await load.reached(CLIENTS * ROUNDS)
        server.kill()
        codes = [await asyncio.wait_for(e.wait(), 120) for e in engines]  # past the budget: they give up
        assert all(code != 0 for code in codes), codes
        answered_during_outage = load.progress
        await server.start()  # same data and port: the log is intact
        engines = [await serve_process(config, tmp_path / f"engine{i}.err", *BUDGET) for i in range(2)]  # the supervisor
        await running
        assert load.progress > answered_during_outage
        stats = await check_log(nc, config, [load])
    finally:
        await nc.close()
        for e in engines:
            if e.returncode is None:
                e.kill()
                await e.wait()
        await server.stop()
    print(f"outage past the reconnect budget: engines exited {codes}, {stats}, retries {dict(load.retries)}")
    assert load.retries["no answer"] + load.retries["no responders"] > 0
