"""Encoding of envelopes to and from the bytes stored in the stream."""

from __future__ import annotations

import msgspec

from agentledger.engine import admission
from agentledger.engine.decoding import too_large
from agentledger.engine.store import RawEvent
from agentledger.engine.subjects import Subjects
from agentledger.schemas.events import Envelope, StoredEvent

MAX_EVENT_BYTES = 256 * 1024
"""No event is appended above this (an `invalid_command` reply instead), so every event, and the
reply that carries it, fits in NATS's default 1 MiB `max_payload` with room for headers."""
MAX_REPLY_BYTES = 512 * 1024
"""No reply is sent above this; `events.read` pages by bytes to stay under it."""

_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)
_stored_decoder = msgspec.json.Decoder(StoredEvent)


def encode(envelope: Envelope) -> bytes:
    data = _encoder.encode(envelope)
    if len(data) > MAX_EVENT_BYTES:
        raise too_large(f"the {envelope.type} event", len(data), MAX_EVENT_BYTES)
    return data


def decode(data: bytes) -> Envelope:
    return _envelope_decoder.decode(data)


def stored(envelope: Envelope, position: int) -> StoredEvent:
    return StoredEvent(**msgspec.structs.asdict(envelope), position=position)


def stored_page(raws: list[RawEvent], subjects: Subjects, budget: int = MAX_REPLY_BYTES - 16 * 1024,
                ) -> tuple[list[StoredEvent], int | None]:
    """The longest prefix of `raws` whose envelopes fit in `budget` bytes (at least one), as stored
    events, and the position it ends at (None when `raws` is empty). A message that fails
    admission is left out of the page but still passed over, so paging never stops on it."""
    page: list[StoredEvent] = []
    used, last = 0, None
    for raw in raws:
        size = len(raw.data) + 32  # the position field and a separator
        if page and used + size > budget:
            break
        admitted = admission.admit(raw, subjects)
        if not isinstance(admitted, admission.Quarantined):
            page.append(stored(admitted, raw.position))
            used += size
        last = raw.position
    return page, last
