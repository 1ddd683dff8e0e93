"""Where workers park what they cannot handle: a JetStream KV bucket beside the stream, one key
per worker and position, so an operator on any machine lists them (`agentledger workers parked`)
and a parked message is never retried again by itself."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from agentledger.schemas.common import ParkedMessage

_decode = msgspec.json.Decoder(ParkedMessage).decode


def bucket_name(stream: str) -> str:
    return f"{stream}_parked"


class ParkingLot:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, stream: str) -> ParkingLot:
        try:
            kv = await js.key_value(bucket_name(stream))
        except BucketNotFoundError:
            kv = await js.create_key_value(bucket=bucket_name(stream), history=1,
                                           description="messages workers gave up on")
        return cls(kv)

    async def park(self, message: ParkedMessage) -> None:
        await self.kv.put(f"{message.worker}.{message.position}", msgspec.json.encode(message))


async def parked(js: JetStreamContext, stream: str) -> list[ParkedMessage]:
    """Everything parked for `stream`, oldest position first (none when nothing was ever parked)."""
    try:
        kv = await js.key_value(bucket_name(stream))
        keys = await kv.keys()
    except (BucketNotFoundError, NoKeysError):
        return []
    out = []
    for key in keys:
        entry = await kv.get(key)
        if entry.value:
            out.append(_decode(entry.value))
    return sorted(out, key=lambda m: (m.position, m.worker))
