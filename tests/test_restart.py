"""Restarts: state and idempotency live in the log, so a new engine process (or a killed and
restarted server) answers exactly as before."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats, free_port
from tests.conftest import AGENT, Client_, config_for, connect, stream_messages

SUMMARY = {"outcome": "partial", "text": "half"}


async def _drive(client: Client_) -> dict[str, dict]:
    await client.setup_thread()
    replies = {
        "create": await client.ok("session.create", command_id="c-create", thread_id="thd_t1", session_id="ses_r",
                                  owner=AGENT),
        "start": await client.ok("session.start", command_id="c-start", session_id="ses_r"),
        "spawn": await client.ok("session.spawn", command_id="c-spawn", parent_session_id="ses_r", agent=AGENT),
    }
    replies["complete"] = await client.ok("session.complete", command_id="c-complete",
                                          session_id=replies["spawn"]["result"]["session_id"], summary=SUMMARY)
    return replies


async def test_engine_restart_keeps_state_and_idempotency(engine_config: EngineConfig, nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(servers=[nats_server.url], user_credentials=str(engine_config.creds))
    first = Engine(engine_config)
    await first.start()
    client = Client_(nc, engine_config)
    replies = await _drive(client)
    before_thread = await client.qry("thread.get", thread_id="thd_t1")
    await first.stop()

    second = Engine(engine_config)
    await second.start()
    try:
        assert second.models.position == replies["complete"]["position"]
        assert await client.qry("thread.get", thread_id="thd_t1") == before_thread
        count = await stream_messages(nc, engine_config.stream)
        for key, command, fields in [
            ("create", "session.create", {"thread_id": "thd_t1", "session_id": "ses_r", "owner": AGENT}),
            ("start", "session.start", {"session_id": "ses_r"}),
            ("spawn", "session.spawn", {"parent_session_id": "ses_r", "agent": AGENT}),
        ]:
            assert await client.ok(command, command_id=f"c-{key}", **fields) == replies[key]
        assert await stream_messages(nc, engine_config.stream) == count
        child = replies["spawn"]["result"]["session_id"]
        tree = (await client.qry("session.tree", session_id="ses_r"))["result"]["tree"]
        assert tree["children"][0]["session_id"] == child and tree["children"][0]["edge_status"] == "completed"
    finally:
        await second.stop()
        await nc.close()


@pytest.mark.parametrize("kill", [True, False], ids=["server-killed", "server-stopped"])
async def test_acknowledged_events_survive_a_server_restart(tmp_path: Path, kill: bool, deployment: Deployment) -> None:
    server = deployment.embedded(tmp_path / "data", port=free_port())
    await server.start()
    config = config_for(deployment, server.url, prefix="rs", stream="RS")
    engine = Engine(config)
    await engine.start()
    nc = await connect(deployment, server.url, max_reconnect_attempts=0)
    client = Client_(nc, config)
    replies = await _drive(client)
    await nc.close()
    await engine.stop()
    if kill:
        server.kill()
    else:
        await server.stop()

    server = deployment.embedded(tmp_path / "data", port=server.port)
    await server.start()
    engine = Engine(config)
    await engine.start()
    nc = await connect(deployment, server.url)
    try:
        client = Client_(nc, config)
        assert engine.models.position == replies["complete"]["position"]
        session = (await client.qry("session.get", session_id="ses_r"))["result"]["session"]
        assert session["status"] == "active" and session["open_children"] == 0
        assert await client.ok("session.start", command_id="c-start", session_id="ses_r") == replies["start"]
    finally:
        await nc.close()
        await engine.stop()
        await server.stop()
