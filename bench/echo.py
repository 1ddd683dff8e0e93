"""Responders that do no more than the request/reply path and the append, to price them without the engine.

`python -m bench.echo NATS_URL PREFIX` serves, in one process of its own, on `<subjects>.cmd.*.>`:
* `raw_subjects`: a plain nats-py subscription that answers at once;
* `raw_pub_subjects`: the same, but it first does what the engine's append does and nothing else:
  one `js.publish` of the raw baseline's payload, with the expected-sequence headers, to the
  thread named in the body (`{"thread": ...}`), on stream `ECHO`; each message in its own task,
  so requests for different threads overlap as they do in the engine;
* `engine_subjects`: the engine's own request subscription (`handlers.responder.Responder`),
  doing the same single publish;
* `fs_subjects`: a FastStream subscriber configured as the engine's was before it moved to
  `Responder` (queue group, max_workers, no dependency injection, the raw message in, bytes
  out), answering a fixed reply at once;
* `fs_pub_subjects`: that FastStream subscriber doing the same single publish.

FastStream is no longer an engine dependency: it is installed with the `bench` extra, so this
comparison (the measurement that took it off the command path) can be repeated.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

import msgspec
import nats
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from nats.aio.msg import Msg

from agentledger.cli.serve import run_process
from agentledger.engine.store import H_EXPECTED_SEQ, H_EXPECTED_SUBJECT, EventStore
from agentledger.engine.subjects import Subjects
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.responder import Responder
from agentledger.schemas.replies import CommandReply
from bench.client import TENANT
from bench.scenarios import raw_payload

EMPTY_REPLY = CommandReply(ok=True, position=0)
REPLY = msgspec.json.encode(EMPTY_REPLY)
ECHO_STREAM = "ECHO"


def raw_subjects(prefix: str) -> Subjects:
    return Subjects(prefix + "raw")


def raw_pub_subjects(prefix: str) -> Subjects:
    return Subjects(prefix + "rawpub")


def engine_subjects(prefix: str) -> Subjects:
    return Subjects(prefix + "engine")


def fs_subjects(prefix: str) -> Subjects:
    return Subjects(prefix + "fs")


def fs_pub_subjects(prefix: str) -> Subjects:
    return Subjects(prefix + "fspub")


class _Thread(msgspec.Struct):
    thread: str


def faststream_broker(url: str, subjects: Subjects, answer: Callable[[bytes], Awaitable[None]]) -> NatsBroker:
    """A FastStream subscriber as the engine had one: queue group, max_workers, no dependency
    injection (`apply_types=False`, a decoder that hands over the message itself), bytes out."""
    defaults = EngineConfig()
    broker = NatsBroker([url], logger=None, apply_types=False)

    async def as_message(msg: NatsMessage, original: object = None) -> NatsMessage:
        return msg

    async def handle(msg: NatsMessage) -> bytes:
        await answer(msg.body)
        return REPLY

    broker.subscriber(subjects.commands_all, queue=defaults.queue_group, max_workers=defaults.max_workers,
                      decoder=as_message)(handle)
    return broker


async def main(url: str, prefix: str) -> None:
    defaults = EngineConfig()
    nc = await nats.connect(servers=[url])
    js = nc.jetstream()
    events = Subjects(prefix + "evt")
    await EventStore(nc, ECHO_STREAM).ensure_stream([events.events_all])
    payload, last, decode = raw_payload(), dict[str, int](), msgspec.json.Decoder(_Thread).decode

    async def append(body: bytes) -> None:
        thread = decode(body).thread
        boundary = events.thread_filter(TENANT, thread)
        ack = await js.publish(Subjects.event_subject(boundary, "session.input_requested"), payload,
                               headers={H_EXPECTED_SEQ: str(last.get(thread, 0)), H_EXPECTED_SUBJECT: boundary})
        last[thread] = ack.seq

    async def nothing(body: bytes) -> None:
        return None

    broker = faststream_broker(url, fs_subjects(prefix), nothing)
    pub_broker = faststream_broker(url, fs_pub_subjects(prefix), append)
    await broker.start()
    await pub_broker.start()

    async def append_and_reply(msg: Msg) -> bytes:
        await append(msg.data)
        return REPLY

    responder = Responder(nc, defaults.max_workers)  # the engine's own request path, with only the append behind it
    await responder.serve(engine_subjects(prefix).commands_all, defaults.queue_group, append_and_reply,
                          lambda subject: REPLY)

    async def on_raw(msg: Msg) -> None:
        await msg.respond(REPLY)

    tasks: set[asyncio.Task[None]] = set()

    async def publish_and_respond(msg: Msg) -> None:
        await append(msg.data)
        await msg.respond(REPLY)

    async def on_raw_pub(msg: Msg) -> None:
        task = asyncio.create_task(publish_and_respond(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await nc.subscribe(raw_subjects(prefix).commands_all, queue=defaults.queue_group, cb=on_raw)
    await nc.subscribe(raw_pub_subjects(prefix).commands_all, queue=defaults.queue_group, cb=on_raw_pub)
    await nc.flush()
    await broker.connection.flush()  # every subscription is registered before we say ready
    await pub_broker.connection.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("echo ready", flush=True)
    await stop.wait()
    await broker.stop()
    await pub_broker.stop()
    await responder.stop()
    await nc.drain()


if __name__ == "__main__":
    run_process(main(sys.argv[1], sys.argv[2]))  # on uvloop, as the engine runs
