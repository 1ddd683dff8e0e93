"""NATS outages: an engine either serves again by itself or exits non-zero for its supervisor,
never alive and deaf; a stop exits 0 whatever went first. The reconnect budget is made small
so an outage longer than it takes seconds, not minutes.

An outage past the budget is run twice: on a quiet engine, whose log then tells the story in a
line per failure; and under load, where two engine processes must both exit 1 by themselves, a
supervisor (the test) starts them again once NATS is back, and the clients' resends finish the
load; then the log agrees with every answer (a resend of each answers from the log) and replays
cleanly through the reference rules (tests/faults_support.py). Outages last as long as it takes
the engines to give up: progress, not a clock."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats, free_port
from tests.conftest import Client_, config_for, connect
from tests.faults_support import Load, check_log, serve_process

pytestmark = pytest.mark.integration  # runs `agentledger serve` on nats-servers of its own
AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")
TENANT = "tnt_outage"
CLIENTS = 6
ROUNDS = 8
BUDGET = ("--reconnect-budget", "1", "--reconnect-wait", "0.2")  # an outage past it takes seconds, not minutes


class Serving:
    """`agentledger serve` in a child process, with JSON logs and its health port."""

    def __init__(self, config: EngineConfig, stderr: Path, *args: str) -> None:
        self.config, self.stderr, self.args = config, stderr, args
        self.http = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await serve_process(self.config, self.stderr, "--http-port", str(self.http), *self.args,
                                        env={"AGENTLEDGER_LOG_FORMAT": "json"})

    def log(self) -> str:
        return self.stderr.read_text()

    async def status(self, path: str) -> int:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.http}{path}") as r:
            return r.status

    async def exit_code(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def server(tmp_path: Path, deployment: Deployment) -> AsyncIterator[EmbeddedNats]:
    srv = deployment.embedded(tmp_path / "nats", port=free_port())
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def config(server: EmbeddedNats, deployment: Deployment) -> EngineConfig:
    name = uuid.uuid4().hex[:8]
    return config_for(deployment, server.url, prefix=f"o{name}", stream=f"O_{name}")


async def until_status(serving: Serving, path: str, want: int, attempts: int = 120) -> None:
    for _ in range(attempts):
        if await serving.status(path) == want:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{path} never answered {want}: {serving.log()[-2000:]}")


async def test_an_outage_past_the_budget_exits_1_with_a_line_per_failure(server: EmbeddedNats, config: EngineConfig,
                                                                         tmp_path: Path) -> None:
    serving = Serving(config, tmp_path / "stderr", *BUDGET)
    await serving.start()
    try:
        server.kill()
        # alive while it keeps trying, never ready without NATS, then gone for its supervisor
        assert await serving.status("/readyz") == 503
        assert await serving.exit_code() == 1
        log = serving.log()
        assert "reconnect budget" in log, log
        assert log.count("Traceback") == 0 and len(log.splitlines()) < 20, log  # a line per failure
    finally:
        await serving.stop()


async def test_an_outage_past_the_budget_under_load_ends_both_engines_and_a_restart_finishes_it(
        server: EmbeddedNats, config: EngineConfig, deployment: Deployment, tmp_path: Path) -> None:
    engines = [Serving(config, tmp_path / f"engine{i}.err", *BUDGET) for i in range(2)]
    for engine in engines:
        await engine.start()
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
        codes = [await e.exit_code(120) for e in engines]  # past the budget: they give up
        assert codes == [1, 1], codes
        answered_during_outage = load.progress
        await server.start()  # same data and port: the log is intact
        engines = [Serving(config, tmp_path / f"restarted{i}.err", *BUDGET) for i in range(2)]  # the supervisor
        for engine in engines:
            await engine.start()
        await running
        assert load.progress > answered_during_outage
        stats = await check_log(nc, config, [load])  # a resend of every acknowledged command answers from the log
        for engine in engines:
            await until_status(engine, "/readyz", 200)  # the restarted engines serve, and are ready
    finally:
        await nc.close()
        for engine in engines:
            await engine.stop()
    print(f"outage past the reconnect budget: engines exited {codes}, {stats}, retries {dict(load.retries)}")
    assert load.retries["no answer"] + load.retries["no responders"] > 0


async def test_outage_within_the_budget_heals_and_the_follower_catches_up(server: EmbeddedNats, config: EngineConfig,
                                                                          deployment: Deployment,
                                                                          tmp_path: Path) -> None:
    serving = Serving(config, tmp_path / "stderr", "--reconnect-budget", "60", "--reconnect-wait", "0.2")
    await serving.start()
    try:
        server.kill()
        assert await serving.status("/readyz") == 503
        assert await serving.status("/healthz") == 200
        await server.start()
        nc = await connect(deployment, server.url, role="engine", max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            load = Load(nc, config, TENANT, [], tag="h")
            reply = await load.send("c-healed", "project.create", project_id="prj_healed", name="x")  # resent until answered
        finally:
            await nc.close()
        assert reply["ok"], reply
        await until_status(serving, "/readyz", 200)  # its follower applied what it wrote after the outage
        assert serving.proc is not None and serving.proc.returncode is None
    finally:
        await serving.stop()


async def test_stop_exits_0_when_nats_went_first(server: EmbeddedNats, config: EngineConfig, tmp_path: Path) -> None:
    serving = Serving(config, tmp_path / "stderr")
    await serving.start()
    try:
        server.kill()
        assert serving.proc is not None
        serving.proc.send_signal(signal.SIGTERM)
        assert await serving.exit_code() == 0, serving.log()
        assert "Traceback" not in serving.log()
    finally:
        await serving.stop()


async def test_serve_exits_1_when_its_embedded_server_dies(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        AGENTLEDGER, "--log-format", "json", "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "nats"),
        "--auth-dir", str(tmp_path / "auth"), "--no-effects", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 60)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1  # its nats-server
        os.kill(int(children[0]), signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 60) == 1
        assert b"embedded nats-server exited" in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
