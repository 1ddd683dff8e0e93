"""Stopping an engine with SIGTERM while commands are in flight: the ones it acknowledged are in
the log, the ones it had not started were not applied, and nothing in between is left."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import msgspec
from nats.aio.client import Client

from agentledger.engine import codec
from agentledger.engine.store import EventStore
from agentledger.handlers.config import EngineConfig
from tests.conftest import AGENT, USER
from tests.faults_support import serve_process


async def test_sigterm_finishes_in_flight_commands_and_applies_no_others(engine_config: EngineConfig,
                                                                         nc: Client, tmp_path: Path) -> None:
    proc = await serve_process(engine_config, tmp_path / "stderr")

    async def send(command: str, timeout: float = 5.0, **fields: object) -> dict | None:
        subject = f"{engine_config.prefix}.cmd.tnt_stop.{command}"
        try:
            msg = await nc.request(subject, msgspec.json.encode({"actor": USER, **fields}), timeout=timeout)
        except Exception:
            return None  # not answered: the engine had stopped listening
        return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]

    await send("project.create", project_id="prj_s", name="s")
    for t in range(4):
        await send("thread.create", project_id="prj_s", thread_id=f"thd_s{t}")
    replies: list[dict | None] = []
    answered = asyncio.Event()  # enough acknowledged: time to stop the engine
    refused = asyncio.Event()  # a request went unanswered: the engine has stopped listening
    in_flight = asyncio.Semaphore(64)
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int) -> None:
        try:
            reply = await send("session.create", timeout=3.0, command_id=f"c{i}", thread_id=f"thd_s{i % 4}",
                               owner=AGENT)
        finally:
            in_flight.release()
        replies.append(reply)
        if reply is None:
            refused.set()
        elif sum(1 for r in replies if r) >= 20:
            answered.set()

    async def load() -> None:
        """64 commands in flight, new ones sent until the engine stops answering (however fast it is)."""
        for i in range(5000):
            if refused.is_set():
                return
            await in_flight.acquire()
            tasks.append(asyncio.create_task(one(i)))

    loader = asyncio.create_task(load())
    try:
        await asyncio.wait_for(answered.wait(), 30)
    except TimeoutError:
        raise AssertionError(f"replies so far: {replies[:5]} of {len(replies)}") from None
    proc.send_signal(signal.SIGTERM)
    await loader
    await asyncio.gather(*tasks)
    try:
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        print((tmp_path / "stderr").read_text()[-3000:])

    ok = {r["command_id"]: r["position"] for r in replies if r and r["ok"]}
    assert all(r["ok"] for r in replies if r), [r for r in replies if r and not r["ok"]][:3]
    store = EventStore(nc, engine_config.stream)
    logged = {codec.decode(raw.data).command_id: raw.position
              for raw in await store.read(engine_config.subjects.events_all)
              if codec.decode(raw.data).command.startswith("session.")}
    assert logged == ok  # acknowledged <=> in the log, at the position the reply named
    print(f"SIGTERM under load: {len(ok)} acknowledged, {replies.count(None)} unanswered")
    assert len(ok) >= 20 and None in replies  # the stop really cut into the load
