"""NATS outages: an engine either serves again by itself or exits non-zero for its supervisor,
never alive and deaf; a stop exits 0 whatever went first. The reconnect budget is made small
so an outage longer than it takes seconds, not minutes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import nats
import pytest

from agentledger.handlers.nats_server import EmbeddedNats, free_port
from tests.conftest import USER

pytestmark = pytest.mark.integration  # runs `agentledger serve` on nats-servers of its own
AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


class Serving:
    """`agentledger serve` in a child process, on a NATS server this test owns."""

    def __init__(self, server: EmbeddedNats, tmp: Path, *args: str) -> None:
        self.server, self.tmp, self.args = server, tmp, args
        self.http = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.stderr = open(self.tmp / "stderr", "ab")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(
            AGENTLEDGER, "--log-format", "json", "serve", "--nats-url", self.server.url, "--prefix", "o",
            "--stream", "OUTAGE", "--no-effects", "--http-port", str(self.http), *self.args,
            env={**os.environ}, stdout=asyncio.subprocess.PIPE, stderr=self.stderr)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert b"ready" in line, self.log()

    def log(self) -> str:
        return (self.tmp / "stderr").read_text()

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
        self.stderr.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    srv = EmbeddedNats(tmp_path / "nats", port=free_port())
    await srv.start()
    yield srv
    await srv.stop()


async def command_ok(url: str, project: str, attempts: int = 60) -> dict:
    """Send one command until it is answered (the engine may still be reconnecting)."""
    nc = await nats.connect(servers=[url])
    try:
        for _ in range(attempts):
            try:
                msg = await nc.request("o.cmd.tnt_a.project.create",
                                       msgspec.json.encode({"actor": USER, "project_id": project, "name": "x",
                                                            "command_id": f"c-{project}"}), timeout=1.0)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(0.5)
                continue
            reply: dict = msgspec.json.decode(msg.data)
            return reply
        raise AssertionError("never answered")
    finally:
        await nc.close()


async def until_status(serving: Serving, path: str, want: int, attempts: int = 120) -> None:
    for _ in range(attempts):
        if await serving.status(path) == want:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{path} never answered {want}: {serving.log()[-2000:]}")


async def test_outage_longer_than_the_reconnect_budget_exits_1_and_a_restart_serves(
        server: EmbeddedNats, tmp_path: Path) -> None:
    serving = Serving(server, tmp_path, "--reconnect-budget", "1", "--reconnect-wait", "0.2")
    await serving.start()
    try:
        assert (await command_ok(server.url, "prj_before"))["ok"]
        server.kill()
        # alive while it keeps trying, never ready without NATS, then gone for its supervisor
        assert await serving.status("/readyz") == 503
        assert await serving.exit_code() == 1
        log = serving.log()
        assert "reconnect budget" in log, log
        assert log.count("Traceback") == 0 and len(log.splitlines()) < 20, log  # a line per failure
    finally:
        await serving.stop()
    await server.start()  # NATS is back: what the supervisor starts serves again, with the log intact
    again = Serving(server, tmp_path)
    await again.start()
    try:
        assert (await command_ok(server.url, "prj_before"))["position"] == 1  # a repeat: answered from the log
        assert (await command_ok(server.url, "prj_after"))["ok"]
        await until_status(again, "/readyz", 200)
    finally:
        await again.stop()


async def test_outage_within_the_budget_heals_and_the_follower_catches_up(server: EmbeddedNats,
                                                                          tmp_path: Path) -> None:
    serving = Serving(server, tmp_path, "--reconnect-budget", "60", "--reconnect-wait", "0.2")
    await serving.start()
    try:
        server.kill()
        assert await serving.status("/readyz") == 503
        assert await serving.status("/healthz") == 200
        await server.start()
        reply = await command_ok(server.url, "prj_healed")
        assert reply["ok"], reply
        await until_status(serving, "/readyz", 200)  # its follower applied what it wrote after the outage
        assert serving.proc is not None and serving.proc.returncode is None
    finally:
        await serving.stop()


async def test_stop_exits_0_when_nats_went_first(server: EmbeddedNats, tmp_path: Path) -> None:
    serving = Serving(server, tmp_path)
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
