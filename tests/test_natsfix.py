"""The two fixes `handlers/natsfix.py` makes to nats-py, on bare connections to the real server:
a frame that cannot be read is dropped and nothing else is hidden (and nats-py alone still stops
reading at one), and `flush()` covers a subscription made just before it."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentledger.handlers import natsfix
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.nats_server import EmbeddedNats
from tests.conftest import connect
from tests.raw_nats import BAD_STATUS, RawClient, hpub
from tests.sandbox_support import eventually


@pytest.mark.parametrize("patched", [True, False])
async def test_nats_py_alone_stops_reading_at_one_frame(nats_server: EmbeddedNats, deployment: Deployment,
                                                        patched: bool) -> None:
    """What the patch is for, on a bare nats-py connection. Should the unpatched case fail, a nats-py
    release reads on by itself: `handlers/natsfix.py` can go (docs/upstream/)."""
    if patched:
        natsfix.apply()
    else:
        natsfix.revert()
    received: list[str] = []

    async def deliver(msg: Msg) -> None:
        received.append(msg.subject)

    reader: Client = await connect(deployment, nats_server.url)
    raw = await RawClient.connect(nats_server.url, deployment.engine_creds("admin"))
    try:
        await reader.subscribe("_INBOX.natsfix.>", cb=deliver)
        await reader.flush()
        await raw.send(hpub(b"_INBOX.natsfix.bad", BAD_STATUS))
        await raw.send(hpub(b"_INBOX.natsfix.good", b"NATS/1.0\r\nX-Note: fine\r\n\r\n"))
        await raw.round_trip()

        async def read_on() -> bool:
            return received == ["_INBOX.natsfix.good"]

        async def stopped_reading() -> bool:
            return reader._reading_task is not None and reader._reading_task.done()

        if patched:
            await eventually(read_on, "the next message is read")
        else:
            await eventually(stopped_reading, "nats-py's read loop ends")
            assert received == []
    finally:
        natsfix.apply()
        await raw.close()
        await reader.close()


async def test_the_patch_drops_what_could_not_be_read_and_nothing_else() -> None:
    """On a client with one subscription: a frame that cannot become a message is reported and
    dropped; an error while delivering one that could (here the subscription's queue) raises as
    before, so the patch hides no other failure."""
    from nats.aio.subscription import Subscription

    natsfix.apply()
    reported: list[Exception] = []

    async def report(e: Exception) -> None:
        reported.append(e)

    nc = Client()
    nc._error_cb = report
    sub = Subscription(nc, 1, "x.>")
    nc._subs[1] = sub
    await nc._process_msg(1, b"x.y", b"", b"{}", BAD_STATUS)
    await nc._process_msg(1, b"x.\xff", b"", b"{}", b"")
    assert [type(e) for e in reported] == [natsfix.MalformedMessage] * 2 and sub._pending_queue.empty()
    assert reported[1].subject == "x.\\xff" and isinstance(reported[1].cause, UnicodeDecodeError)  # type: ignore[attr-defined]

    def full(_: Msg) -> None:
        raise RuntimeError("queue broken")

    sub._pending_queue.put_nowait = full  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="queue broken"):
        await nc._process_msg(1, b"x.y", b"", b"{}", b"NATS/1.0\r\nX-Note: fine\r\n\r\n")
    assert len(reported) == 2


async def test_flush_covers_a_subscription_made_just_before(nats_server: EmbeddedNats, deployment: Deployment) -> None:
    """Subscribe, flush, and a request from another connection finds the subscription, every time
    (nats-py 2.16 alone: "no responders" about once in 20 on the development box)."""
    natsfix.apply()
    serving, asking = await connect(deployment, nats_server.url), await connect(deployment, nats_server.url)

    async def echo(msg: Msg) -> None:
        await msg.respond(b"ok")

    try:
        for i in range(500):
            sub = await serving.subscribe(f"_INBOX.natsfix.flush.{i}", cb=echo)
            await serving.flush()
            assert (await asking.request(f"_INBOX.natsfix.flush.{i}", b"", timeout=60)).data == b"ok", i
            await sub.unsubscribe()
    finally:
        await serving.close()
        await asking.close()
