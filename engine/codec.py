"""Encoding of envelopes to and from the bytes stored in the stream."""

from __future__ import annotations

import msgspec

from schemas.events import Envelope, StoredEvent

_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)
_stored_decoder = msgspec.json.Decoder(StoredEvent)


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    return _envelope_decoder.decode(data)


def stored(envelope: Envelope, position: int) -> StoredEvent:
    return StoredEvent(**msgspec.structs.asdict(envelope), position=position)
