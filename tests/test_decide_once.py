"""A command is decided once, soon after it arrives, or not at all, so one command id never gets
two outcomes (say a no-op from one replica, then an event from a slower attempt elsewhere).

* A request held up (here: behind another request on its boundary, whose append is slow) past
  the engine's limit gets a retryable `unavailable` and appends nothing; its retry is answered
  normally.
* An append the log does not answer (a lost ack) is never decided again: if it landed, the
  reply is that event (a repeat); if not, `unavailable`, and nothing is appended.

The slow append and the lost acks are made by wrapping the engine's store: the append reaches the
real server (late, or not), and in the second case the engine is told it got no answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentledger.engine.store import LogUnavailable
from agentledger.handlers.app import Engine
from tests.conftest import AGENT, Client_, stream_messages


async def test_a_request_held_past_the_limit_is_unavailable_and_appends_nothing(
        client: Client_, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    await client.setup_thread()
    for session in ("ses_a", "ses_b"):
        await client.ok("session.create", thread_id="thd_t1", session_id=session, owner=AGENT)
    assert engine.commands is not None and engine.store is not None and client.nc is not None
    engine.commands.decide_within = 0.3
    before = await stream_messages(client.nc, engine.config.stream)

    # another request holds the thread: its append waits until the held request has waited past the limit
    appending, arrived, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real_append, real_loaded = engine.store.append, engine.models.loaded

    async def slow_append(subject: str, boundary: str, data: bytes, expected: int) -> int:
        appending.set()
        await release.wait()
        return await real_append(subject, boundary, data, expected)

    async def loaded(store: Any, model: Any) -> Any:
        if appending.is_set():
            arrived.set()  # the held request has its boundary: next it waits for the holder
        return await real_loaded(store, model)

    monkeypatch.setattr(engine.store, "append", slow_append)
    monkeypatch.setattr(engine.models, "loaded", loaded)
    holder = asyncio.create_task(client.cmd("session.start", session_id="ses_b"))
    await asyncio.wait_for(appending.wait(), 10)
    held = asyncio.create_task(client.cmd("session.start", session_id="ses_a", command_id="cmd_held"))
    await asyncio.wait_for(arrived.wait(), 10)
    await asyncio.sleep(0.5)  # past the limit
    release.set()
    assert (await holder)["ok"]
    reply = await held
    monkeypatch.undo()
    assert not reply["ok"] and reply["error"]["code"] == "unavailable" and reply["error"]["retryable"]
    assert await stream_messages(client.nc, engine.config.stream) == before + 1  # the holder's event only

    retried = await client.ok("session.start", session_id="ses_a", command_id="cmd_held")
    assert retried["events"][0]["data"]["type"] == "session.started"
    again = await client.ok("session.start", session_id="ses_a", command_id="cmd_held")
    assert again["position"] == retried["position"]


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "lost"])
async def test_an_append_with_no_answer_is_never_decided_again(client: Client_, engine: Engine, landed: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    assert engine.store is not None and client.nc is not None
    store, real_append = engine.store, engine.store.append
    appends: list[int] = []

    async def no_answer(subject: str, boundary: str, data: bytes, expected: int) -> int:
        appends.append(expected)
        if landed:
            await real_append(subject, boundary, data, expected)
        raise LogUnavailable("no answer (test)")

    before = await stream_messages(client.nc, engine.config.stream)
    monkeypatch.setattr(store, "append", no_answer)
    reply = await client.cmd("session.start", session_id="ses_a", command_id="cmd_once")
    monkeypatch.undo()

    assert len(appends) == 1  # one decision, one append: never decided again
    after = await stream_messages(client.nc, engine.config.stream)
    if landed:
        assert reply["ok"] and reply["events"][0]["data"]["type"] == "session.started"
        assert after == before + 1
    else:
        assert not reply["ok"] and reply["error"]["code"] == "unavailable" and reply["error"]["retryable"]
        assert after == before
    retried = await client.ok("session.start", session_id="ses_a", command_id="cmd_once")
    assert retried["events"][0]["data"]["type"] == "session.started"
    assert await stream_messages(client.nc, engine.config.stream) == before + 1
    if landed:
        assert retried["position"] == reply["position"]
