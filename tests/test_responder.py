"""The request path under the engine (`handlers.responder` and `handlers.pipeline`), on a
real server: every request is answered exactly once, however its handler ends; requests do not
wait for each other; and a stop finishes what it took.

The handlers here are stand-ins so that a handler can be made to raise or to block; the
engine's own command and query handlers run through the same code in every other test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client

from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.handlers.pipeline import RequestPipeline
from agentledger.handlers.responder import Responder
from agentledger.schemas.events import Principal
from agentledger.schemas.replies import CommandReply, QueryReply
from tests.conftest import connect

decode_reply = msgspec.json.Decoder(CommandReply).decode


@pytest.fixture
async def admin(nats_server: EmbeddedNats, deployment: Deployment) -> AsyncIterator[Client]:
    conn = await connect(deployment, nats_server.url, role="admin")
    yield conn
    await conn.close()


async def no_query(tenant: str, name: str, body: bytes) -> QueryReply:
    return QueryReply(ok=True, position=0)


async def test_a_handler_that_raises_still_answers_internal_with_a_trace_id(
        nc: Client, admin: Client, engine_config: EngineConfig) -> None:
    async def broken(tenant: str, name: str, body: bytes, principal: Principal, arrived: float) -> CommandReply:
        raise RuntimeError("a bug in a handler")

    responder = Responder(nc)
    await RequestPipeline(engine_config.subjects, broken, no_query, None).serve(responder, engine_config.queue_group)
    await nc.flush()
    try:
        subject = engine_config.subjects.command("tnt_acme", "thread.archive")
        reply = decode_reply((await admin.request(subject, b"{}", timeout=5)).data)
        assert not reply.ok and reply.error is not None
        assert type(reply.error).__struct_config__.tag == "internal"
        assert "trace" in reply.error.message
        # the responder keeps serving after the failure
        again = decode_reply((await admin.request(subject, b"{}", timeout=5)).data)
        assert type(again.error).__struct_config__.tag == "internal"
    finally:
        await responder.stop()


async def test_a_slow_request_does_not_hold_up_the_next_one(
        nc: Client, admin: Client, engine_config: EngineConfig) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def handler(tenant: str, name: str, body: bytes, principal: Principal, arrived: float) -> CommandReply:
        started.append(name)
        if name == "thread.archive":
            await release.wait()
        return CommandReply(ok=True, position=len(started))

    responder = Responder(nc)
    await RequestPipeline(engine_config.subjects, handler, no_query, None).serve(responder, engine_config.queue_group)
    await nc.flush()
    try:
        slow = asyncio.create_task(admin.request(engine_config.subjects.command("tnt_acme", "thread.archive"), b"{}",
                                                 timeout=10))
        async with asyncio.timeout(30):  # the slow request reached its handler
            while not started:
                await asyncio.sleep(0.01)
        fast = await admin.request(engine_config.subjects.command("tnt_acme", "thread.restore"), b"{}", timeout=5)
        assert decode_reply(fast.data).ok
        assert not slow.done()
        release.set()
        assert decode_reply((await slow).data).ok
    finally:
        release.set()
        await responder.stop()


async def test_stop_answers_what_it_took_and_then_takes_nothing(
        nc: Client, admin: Client, engine_config: EngineConfig) -> None:
    release = asyncio.Event()
    taken = asyncio.Event()

    async def handler(tenant: str, name: str, body: bytes, principal: Principal, arrived: float) -> CommandReply:
        taken.set()
        await release.wait()
        return CommandReply(ok=True, position=7)

    responder = Responder(nc)
    await RequestPipeline(engine_config.subjects, handler, no_query, None).serve(responder, engine_config.queue_group)
    await nc.flush()
    subject = engine_config.subjects.command("tnt_acme", "thread.archive")
    pending = asyncio.create_task(admin.request(subject, b"{}", timeout=10))
    await asyncio.wait_for(taken.wait(), 30)
    stopping = asyncio.create_task(responder.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # waits for the request it took
    release.set()
    await stopping
    assert decode_reply((await pending).data).position == 7
    with pytest.raises(nats.errors.NoRespondersError):
        await admin.request(subject, b"{}", timeout=2)


async def test_a_command_waiting_for_a_worker_carries_its_arrival_so_its_deadline_counts_the_wait(
        nc: Client, admin: Client, engine_config: EngineConfig) -> None:
    release = asyncio.Event()
    seen: list[tuple[str, float, float]] = []  # (command, arrived, started)

    async def handler(tenant: str, name: str, body: bytes, principal: Principal, arrived: float) -> CommandReply:
        seen.append((name, arrived, time.monotonic()))
        if name == "thread.archive":
            await release.wait()
        return CommandReply(ok=True, position=len(seen))

    responder = Responder(nc, max_workers=1)  # one worker: the second command waits for it
    await RequestPipeline(engine_config.subjects, handler, no_query, None).serve(responder, engine_config.queue_group)
    await nc.flush()
    try:
        first = asyncio.create_task(admin.request(engine_config.subjects.command("tnt_acme", "thread.archive"), b"{}",
                                                  timeout=10))
        while not seen:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(admin.request(engine_config.subjects.command("tnt_acme", "thread.restore"), b"{}",
                                                   timeout=10))
        await asyncio.sleep(0.2)
        assert len(seen) == 1  # still waiting for the worker
        released_at = time.monotonic()
        release.set()
        assert decode_reply((await first).data).ok and decode_reply((await second).data).ok
        [(_, arrived, started)] = [s for s in seen if s[0] == "thread.restore"]
        assert arrived < released_at <= started  # it arrived before the worker was free, and says so
    finally:
        release.set()
        await responder.stop()
