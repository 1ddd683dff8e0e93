"""Frames no client library would send, from a tenant's auditor on a raw socket: header status
lines, descriptions and subjects that are not UTF-8, header lines without a colon, names and
values that are not text, status codes that are not codes. What the engine's client cannot read
is dropped and counted, and the connection reads on (`handlers.natsfix`); what it can read is
answered; either way another tenant's query is answered at once afterwards. Should a connection
stop reading anyway, the engine notices, `/healthz` fails, and the engine gives up (its process
exits 1 for its supervisor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats, free_port
from agentledger.handlers.observability.connection import Reconnect
from agentledger.handlers.observability.health import EngineProbe
from agentledger.handlers.observability.http import OpsServer
from tests.conftest import Client_, Tenants
from tests.ops_support import get
from tests.raw_nats import BAD_STATUS, RawClient, hpub, pub

# nats-py cannot make a message of these: dropped and counted (header, with a reply subject?)
UNREADABLE = [
    (BAD_STATUS, True),
    (BAD_STATUS, False),
    (b"NATS/1.0 503 \xff\xfe\r\n\r\n", True),  # a status description that is not UTF-8
    (b"NATS/1.0 100 Idle\xff\r\nX-Note: y\r\n\r\n", True),  # the same, followed by headers
]
# nats-py skips or replaces what it cannot read in these, and the engine answers them
READABLE = [
    b"NATS/1.0\r\nno colon here\r\n\r\n",
    b"NATS/1.0\r\n\xff\xfe: v\r\n\r\n",  # a header name that is not ASCII
    b"NATS/1.0\r\nX-Note: \xff\xfe\r\n\r\n",  # a header value that is not UTF-8
    b"NATS/1.0\r\n: v\r\n  \r\nX Y: z\r\n\r\n",  # no name; only blanks; a blank inside the name
    b"NATS/1.0 abc\r\n\r\n",  # a status that is not a number
    b"NATS/1.0 99999999999\r\n\r\n",  # nor three digits
    b"NATS/1.0 \r\n\r\n",  # nor anything
    b"HTTP/1.1 200 OK\r\n\r\n",  # not a NATS header at all
    b"NATS/1.0\r\ntraceparent: 00-zz-zz-zz\r\ntracestate: \xff\r\n\r\n",  # a trace context that is not one
]


@pytest.fixture
async def auditor(nats_server: EmbeddedNats, deployment: Deployment, tenants: Tenants) -> AsyncIterator[RawClient]:
    """tnt_evil's auditor, on a raw socket (read-only credentials: queries and its own inboxes)."""
    await tenants.add("tnt_evil")
    raw = await RawClient.connect(nats_server.url, deployment.tenant_creds("tnt_evil", "usr_mallory", "auditor"))
    await raw.subscribe(b"_INBOX.raw.>")
    yield raw
    await raw.close()


def dropped(engine: Engine) -> float:
    value = engine.metrics.registry.get_sample_value("agentledger_nats_malformed_messages_total",
                                                     {"connection": "engine"})
    return value or 0.0


async def victim_served(client: Client_) -> None:
    """tnt_acme's query, sent after the frame reached the engine's connection, is answered."""
    reply = await client.qry("thread.get", thread_id="thd_t1")
    assert reply["ok"] and reply["result"]["thread"]["status"] == "open", reply


async def test_frames_nats_py_cannot_read_are_dropped_and_counted_and_every_tenant_is_served(
        client: Client_, engine: Engine, auditor: RawClient) -> None:
    await client.setup_thread()
    own = engine.config.subjects.query("tnt_evil", "thread.get").encode()
    frames = [hpub(own, header, reply=b"_INBOX.raw.%d" % i if with_reply else None)
              for i, (header, with_reply) in enumerate(UNREADABLE)]
    frames.append(pub(own[: own.rindex(b".")] + b".\xff\xfe"))  # a subject that is not UTF-8
    for count, frame in enumerate(frames, 1):
        await auditor.send(frame)
        await auditor.round_trip()  # the server has handed it to the engine before the victim asks
        await victim_served(client)
        assert dropped(engine) == count, frame
    assert engine.failure is None
    # and the engine's other work goes on: a command, its process manager's consumer included
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_after",
                    owner={"kind": "agent", "id": "agt_a"})


async def test_odd_headers_nats_py_can_read_are_answered(client: Client_, engine: Engine,
                                                         auditor: RawClient) -> None:
    await client.setup_thread()
    own = engine.config.subjects.query("tnt_evil", "thread.get").encode()
    for i, header in enumerate(READABLE):
        await auditor.send(hpub(own, header, b'{"thread_id": "thd_none"}', reply=b"_INBOX.raw.%d" % i))
        inbox, body = await asyncio.wait_for(auditor.next_message(), 60)
        assert inbox == b"_INBOX.raw.%d" % i
        assert msgspec.json.decode(body)["error"]["code"] == "not_found", (header, body)
        await victim_served(client)
    assert dropped(engine) == 0 and engine.failure is None


@pytest.mark.parametrize("how", ["raises", "hangs"])
async def test_a_connection_that_stops_reading_fails_healthz_and_the_engine_gives_up(
        engine_config: EngineConfig, how: str) -> None:
    """A reader ended by an exception nobody caught, or stuck: either way nothing more arrives."""
    engine_config.reconnect = Reconnect(stall=2.0)
    engine = Engine(engine_config)
    ops = OpsServer(EngineProbe(engine), engine.metrics, "127.0.0.1", free_port())
    await ops.start()
    await engine.start()
    base = f"http://127.0.0.1:{ops.port}"
    release = asyncio.Event()
    try:
        assert await get(f"{base}/healthz") == (200, '{"status": "alive"}')
        assert engine.nc is not None

        async def broken(data: bytes = b"") -> None:
            if how == "raises":
                raise RuntimeError("a bug in the client")
            await release.wait()

        engine.nc._ps.parse = broken  # type: ignore[method-assign]  # the next bytes the server sends end it
        await asyncio.wait_for(engine.failed.wait(), 60)
        assert engine.failure is not None and "stopped reading" in engine.failure
        status, body = await get(f"{base}/healthz")
        assert status == 503 and "stopped reading" in body, body
    finally:
        await engine.stop()  # the deaf connection was closed when it was given up, so nothing waits on it
        release.set()
        await ops.stop()
