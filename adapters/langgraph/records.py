"""What the saver stores under each key, as msgspec structs encoded with MessagePack. The
LangGraph values inside (checkpoint, metadata, channel values, writes) are the saver's serde's
typed bytes, stored as they came. Anything else in the bucket fails to decode here and is skipped
by the saver, never trusted."""

from __future__ import annotations

import msgspec


class Typed(msgspec.Struct, frozen=True, array_like=True):
    """A value as `SerializerProtocol.dumps_typed` returns it."""

    type: str
    data: bytes

    def pair(self) -> tuple[str, bytes]:
        return (self.type, self.data)


class CheckpointRecord(msgspec.Struct, frozen=True, tag="checkpoint"):
    checkpoint: Typed  # the checkpoint without its channel values (those are blobs)
    metadata: Typed
    parent_id: str | None = None


class WriteRecord(msgspec.Struct, frozen=True, tag="write"):
    task_id: str
    channel: str
    value: Typed
    task_path: str = ""


class BlobRecord(msgspec.Struct, frozen=True, tag="blob"):
    value: Typed | None  # None: the channel was empty at this version


_encoder = msgspec.msgpack.Encoder()
_checkpoint = msgspec.msgpack.Decoder(CheckpointRecord)
_write = msgspec.msgpack.Decoder(WriteRecord)
_blob = msgspec.msgpack.Decoder(BlobRecord)


def encode(record: CheckpointRecord | WriteRecord | BlobRecord) -> bytes:
    return _encoder.encode(record)


def decode_checkpoint(data: bytes) -> CheckpointRecord:
    return _checkpoint.decode(data)


def decode_write(data: bytes) -> WriteRecord:
    return _write.decode(data)


def decode_blob(data: bytes) -> BlobRecord:
    return _blob.decode(data)
