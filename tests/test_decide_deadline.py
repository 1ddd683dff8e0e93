"""A command is decided soon after it arrives or not at all. A request held up (here: behind
another holder of its boundary) past the engine's limit gets a retryable `unavailable` and appends
nothing, so it can never be decided on later state after its requester has retried the command id
and been answered elsewhere. The retry with the same command id is then answered normally."""

from __future__ import annotations

import asyncio

from agentledger.handlers.app import Engine
from tests.conftest import AGENT, Client_, stream_messages


async def test_a_request_held_past_the_limit_is_unavailable_and_appends_nothing(client: Client_,
                                                                                 engine: Engine) -> None:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    assert engine.commands is not None and client.nc is not None
    engine.commands.decide_within = 0.3
    boundary = engine.config.subjects.thread_filter(client.tenant, "thd_t1")
    before = await stream_messages(client.nc, engine.config.stream)

    async with engine.commands._lock(boundary):  # another request holds the thread for a while
        held = asyncio.create_task(client.cmd("session.start", session_id="ses_a", command_id="cmd_held"))
        await asyncio.sleep(0.6)
    reply = await held
    assert not reply["ok"] and reply["error"]["code"] == "unavailable" and reply["error"]["retryable"]
    assert await stream_messages(client.nc, engine.config.stream) == before

    retried = await client.ok("session.start", session_id="ses_a", command_id="cmd_held")
    assert retried["events"][0]["data"]["type"] == "session.started"
    again = await client.ok("session.start", session_id="ses_a", command_id="cmd_held")
    assert again["position"] == retried["position"]
