"""What operators see: Prometheus metrics, health and readiness on the HTTP port, JSON log
lines, and `serve` refusing to take another server's port for its own."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats, free_port
from agentledger.handlers.observability.health import EngineProbe
from agentledger.handlers.observability.http import OpsServer
from agentledger.handlers.observability.logs import JsonFormatter, bind
from tests.conftest import AGENT, Client_, effects_creds
from tests.ops_support import get, samples, value
from tests.sandbox_support import destroy_all, eventually, settled

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


@pytest.fixture
async def ops_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[tuple[Engine, str]]:
    engine_config.sandbox_dir = tmp_path / "sandboxes"
    engine_config.sandbox_commands = ("sleep", "/nonexistent/tool")
    engine = Engine(engine_config)
    ops = OpsServer(EngineProbe(engine), engine.metrics, "127.0.0.1", free_port())
    await ops.start()
    await engine.start()
    yield engine, f"http://127.0.0.1:{ops.port}"
    await engine.stop()
    await ops.stop()
    await destroy_all(engine_config.sandbox_dir)


async def test_metrics_count_commands_by_outcome_latency_lag_and_provider_calls(
        ops_engine: tuple[Engine, str], nc: Client) -> None:
    engine, base = ops_engine
    client = Client_(nc, engine.config)
    await client.setup_thread()
    assert (await client.cmd("session.start", session_id="ses_missing"))["error"]["code"] == "not_found"
    assert (await client.cmd("no.such.command"))["error"]["code"] == "unknown_command"
    await client.ok("sandbox.create", sandbox_id="sbx_good", options={"command": ["sleep", "300"]})
    await settled(client, "sbx_good", "running")
    await client.ok("sandbox.create", sandbox_id="sbx_bad", options={"command": ["/nonexistent/tool"]})
    await settled(client, "sbx_bad", "failed")

    m = await samples(base)
    assert value(m, "agentledger_commands_total", command="project.create", outcome="ok") == 1
    assert value(m, "agentledger_commands_total", command="session.start", outcome="not_found") == 1
    assert value(m, "agentledger_commands_total", command="unknown", outcome="unknown_command") == 1
    # the effect handler's outcome reports are commands too
    assert value(m, "agentledger_commands_total", command="sandbox.report_outcome", outcome="ok") == 2
    assert value(m, "agentledger_command_duration_seconds_count", command="thread.create") == 1
    assert value(m, "agentledger_sandbox_provider_calls_total", provider="local", op="create", outcome="ok") == 1
    assert value(m, "agentledger_sandbox_provider_calls_total", provider="local", op="create", outcome="error") == 1
    assert value(m, "agentledger_append_conflicts_total") == engine.commands.conflicts  # type: ignore[union-attr]
    assert value(m, "agentledger_queries_total", query="sandbox.get", outcome="ok")
    assert value(m, "agentledger_log_head") == value(m, "agentledger_log_position") == engine.models.position

    # a worker's lag is what its consumer has not handled: stop the process manager and write
    pm = engine.workers[0]
    await pm.stop()
    for session in ("ses_a", "ses_b"):  # events the process manager acts on
        await client.ok("session.create", thread_id="thd_t1", session_id=session, owner=AGENT)
    m = await samples(base)
    assert value(m, "agentledger_consumer_lag_events", consumer=pm.durable) == 2
    assert value(m, "agentledger_consumer_ack_pending", consumer=pm.durable) == 0

    async def follower_caught_up() -> bool:
        return value(await samples(base), "agentledger_consumer_lag_events", consumer="follower") == 0

    await eventually(follower_caught_up, "the follower's lag is 0 once it applied the head")
    # ready although the stream's last message is a session claim, which no follower reads
    await eventually(lambda: _ready(base), "ready once the follower has the last event")

    # a message that fails admission is counted per reader that skipped it
    await nc.jetstream().publish(f"{engine.config.prefix}.evt.tnt_acme.thr.thd_t1.junk", b"not an event",
                                 stream=engine.config.stream)

    async def quarantined() -> bool:
        m = await samples(base)
        return value(m, "agentledger_quarantined_events_total", reader="engine") == 1

    await eventually(quarantined, "the follower's quarantine is counted")
    fx = engine.workers[1]
    m = await samples(base)
    assert value(m, "agentledger_quarantined_events_total", reader=fx.durable) == 0
    assert value(m, "agentledger_parked_events_total", consumer=fx.durable) == 0


async def test_readyz_is_503_with_a_reason_until_the_follower_has_the_head(ops_engine: tuple[Engine, str],
                                                                            nc: Client, nats_server: EmbeddedNats,
                                                                            deployment: Deployment) -> None:
    engine, base = ops_engine
    assert await get(f"{base}/readyz") == (200, '{"status": "ready"}')
    assert (await get(f"{base}/healthz"))[0] == 200
    # the follower stops hearing the log: its consumer is gone on the server (the durable workers keep theirs)
    js = nc.jetstream()
    followers = [c.name for c in await js.consumers_info(engine.config.stream) if c.config.durable_name is None]
    assert len(followers) == 1, followers
    await js.delete_consumer(engine.config.stream, followers[0])
    await Client_(nc, engine.config).setup_thread()
    status, body = await get(f"{base}/readyz")
    assert status == 503 and json.loads(body)["reason"].startswith("catching up: applied position 0 of 2"), body
    # the server drops the engine's connection; the engine reconnects and follows the log again from
    # what it applied
    assert engine.nc is not None
    _, varz = await get(f"http://127.0.0.1:{nats_server.http_port}/varz")
    system = await nats.connect(servers=[nats_server.url], user_credentials=deployment.system_creds().raw())
    try:
        kicked = await system.request(f"$SYS.REQ.SERVER.{json.loads(varz)['server_id']}.KICK",
                                      json.dumps({"cid": engine.nc.client_id}).encode(), timeout=5)
        assert "error" not in json.loads(kicked.data), kicked.data
    finally:
        await system.close()
    await eventually(lambda: _ready(base), "ready again once the follower applied the head")
    m = await samples(base)
    assert value(m, "agentledger_ready") == 1
    assert value(m, "agentledger_nats_reconnects_total", connection="engine") == 1


async def _ready(base: str) -> bool:
    return (await get(f"{base}/readyz"))[0] == 200


async def test_serve_never_reports_ready_on_a_port_another_server_holds(nats_server: EmbeddedNats,
                                                                         tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        AGENTLEDGER, "--log-format", "json", "serve", "--port", str(nats_server.port), "--data-dir",
        str(tmp_path / "nats"), "--no-effects", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert b"ready" not in out, out
    line = json.loads(err.decode().strip().splitlines()[-1])
    assert line["level"] == "error" and "address already in use" in line["message"], err


def test_json_log_line_carries_level_logger_bound_ids_and_the_error_on_one_line() -> None:
    record = logging.LogRecord("agentledger.workers", logging.ERROR, __file__, 1, "handler failed at %s", (7,), None)
    try:
        raise ValueError("bad event")
    except ValueError:
        record.exc_info = sys.exc_info()
    with bind(command="session.spawn", command_id="cmd_1"):
        text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert {k: line[k] for k in ("level", "logger", "message", "command", "command_id", "error")} == {
        "level": "error", "logger": "agentledger.workers", "message": "handler failed at 7",
        "command": "session.spawn", "command_id": "cmd_1", "error": "ValueError: bad event"}
    assert "time" in line and "Traceback" in line["traceback"]


async def test_effect_handler_on_its_own_serves_health_and_metrics_and_stops_with_0(
        engine: Engine, tmp_path: Path) -> None:
    cfg, port = engine.config, free_port()
    proc = await asyncio.create_subprocess_exec(
        AGENTLEDGER, "--log-format", "json", "effects", "--nats-url", cfg.nats_url, "--prefix", cfg.prefix,
        "--stream", cfg.stream, "--creds", effects_creds(cfg), "--sandbox-dir",
        str(tmp_path / "fx"), "--http-port", str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 30)
        base = f"http://127.0.0.1:{port}"
        assert await get(f"{base}/readyz") == (200, '{"status": "ready"}')
        m = await samples(base)
        assert value(m, "agentledger_consumer_lag_events", consumer=f"{cfg.prefix}-fx") == 0
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
