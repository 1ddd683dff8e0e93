"""Reading a tenant's audit stream `AUDIT_<stream>`: its own copy of its events, in its own
account, which its auditors read with a durable consumer (resumable by name).

JetStream drops the `Nats-Expected-Last-Subject-Sequence(-Subject)` headers when it sources a
message into another stream, so every append also carries what the decision was based on in
headers of the ledger's own, which survive: `Ledger-Expected-Position` (the boundary's position
the engine decided on) and `Ledger-Boundary` (the boundary filter), beside `traceparent`. The
ledger position itself is the engine stream's sequence, in `Nats-Stream-Source`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentledger.schemas.events import Envelope, StoredEvent

EXPECTED_POSITION = "Ledger-Expected-Position"
BOUNDARY = "Ledger-Boundary"
TRACEPARENT = "traceparent"
SOURCE = "Nats-Stream-Source"  # "<stream>:<hash> <sequence> <filter> > <subject> <hash>"
IDLE_POLL = 5.0
_envelope = msgspec.json.Decoder(Envelope)


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One message of the audit stream. `event` is None (and `error` says why) for a message whose
    body is not an event: an auditor is shown what the log holds, not only what decodes."""

    position: int | None  # the ledger position (the engine stream's sequence)
    event: StoredEvent | None
    expected_position: int | None  # the boundary's position the decision was based on
    boundary: str | None  # the boundary filter the append was checked against
    traceparent: str | None  # the W3C trace of the command that appended it
    subject: str
    audit_sequence: int  # this message's sequence in the audit stream
    error: str | None = None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def record(msg: Msg) -> AuditRecord:
    headers = msg.headers or {}
    source = headers.get(SOURCE, "").split()
    position = _int(source[1]) if len(source) > 1 else None
    event, error = None, None
    try:
        envelope = _envelope.decode(msg.data)
    except (msgspec.DecodeError, ValueError) as e:
        error = f"not an event: {e}"
    else:
        if position is None:
            error = "no source position (not sourced from the engine's stream)"
        else:
            event = StoredEvent(**msgspec.structs.asdict(envelope), position=position)
    return AuditRecord(position=position, event=event, expected_position=_int(headers.get(EXPECTED_POSITION)),
                       boundary=headers.get(BOUNDARY), traceparent=headers.get(TRACEPARENT), subject=msg.subject,
                       audit_sequence=msg.metadata.sequence.stream, error=error)


async def read(js: JetStreamContext, stream: str, subject: str, durable: str, after: int = 0, follow: bool = True,
               batch: int = 100) -> AsyncGenerator[AuditRecord, None]:
    """Each message of `stream` on `subject` through the durable pull consumer `durable`, skipping
    ledger positions up to `after`. A message is acknowledged when the next one is asked for, and
    those handed out but not yet acknowledged when the iteration stops are given back (nak), so
    the same durable resumes with the first one not done: at least once, in order."""
    sub = await js.pull_subscribe(subject, durable=durable, stream=stream)
    held: list[Msg] = []
    try:
        while True:
            try:
                held = await sub.fetch(batch, timeout=IDLE_POLL)
            except TimeoutError:  # nats-py raises its own subclass, or asyncio's
                if not follow:
                    return
                continue
            while held:
                msg = held[0]
                found = record(msg)
                if found.position is None or found.position > after:
                    yield found
                await msg.ack()
                held.pop(0)
                if not follow and msg.metadata.num_pending == 0 and not held:
                    return
    finally:
        for msg in held:  # handed out, not done: back to the consumer at once, not after its ack wait
            with contextlib.suppress(Exception):
                await msg.nak()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
