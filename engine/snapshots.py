"""Snapshots of boundary models, so loading a long boundary reads a snapshot plus a bounded tail.

A snapshot is the model's fields at a position, encoded with msgspec against the field types the
model class declares (its annotations: no pickle, the bucket is data, never code). A model whose
attributes differ from its declared state refuses to snapshot (`tests/test_cache.py` checks it),
and a snapshot written by a different field list is ignored: the boundary is then read from the log.
Snapshots live in a JetStream KV bucket (one key per boundary, history 1); losing one only
makes a load read more of the log.
"""

from __future__ import annotations

import hashlib
import logging
import typing
from typing import Any

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from agentledger.engine.boundary_model import BoundaryModel
from agentledger.engine.project_model import ProjectState
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.subjects import Subjects
from agentledger.engine.thread_model import ThreadState

log = logging.getLogger("agentledger.snapshots")

MODELS: tuple[type[BoundaryModel], ...] = (ThreadState, ProjectState, SandboxState)


def declared_state(kind: type[BoundaryModel]) -> dict[str, Any]:
    """The fields a model class declares as its state (its annotations and `BoundaryModel`'s), typed."""
    fields: dict[str, Any] = {}
    for klass in reversed(kind.__mro__[:kind.__mro__.index(BoundaryModel) + 1]):
        hints = typing.get_type_hints(klass)
        fields.update({name: hints[name] for name in vars(klass).get("__annotations__", {})
                       if typing.get_origin(hints[name]) is not typing.ClassVar})
    return fields


FIELDS: dict[type[BoundaryModel], dict[str, Any]] = {kind: declared_state(kind) for kind in MODELS}
# Attributes that are not state: the eventsourcing Slice's own bookkeeping and the cache's.
NOT_STATE = frozenset({"_applying_position", "last_known_position", "new_decisions", "ready", "since_snapshot",
                       "loading", "live_buffer"})


def _struct(kind: type[BoundaryModel]) -> type[msgspec.Struct]:
    fields = FIELDS[kind]
    version = hashlib.blake2b(repr(sorted((k, repr(v)) for k, v in fields.items())).encode(), digest_size=6).hexdigest()
    return msgspec.defstruct(f"{kind.__name__}Snapshot", [("v", str, version), *fields.items()], kw_only=True)


_STRUCTS = {kind: _struct(kind) for kind in FIELDS}
_VERSION = {kind: struct.__struct_defaults__[0] for kind, struct in _STRUCTS.items()}  # type: ignore[attr-defined]
_DECODERS = {kind: msgspec.msgpack.Decoder(struct) for kind, struct in _STRUCTS.items()}
_encode = msgspec.msgpack.Encoder().encode


def state_fields(model: BoundaryModel) -> set[str]:
    return set(vars(model)) - NOT_STATE


def encode(model: BoundaryModel) -> bytes:
    kind = type(model)
    fields = FIELDS[kind]
    assert state_fields(model) == set(fields), f"{kind.__name__}: snapshot field list is out of date"
    return _encode(_STRUCTS[kind](**{name: getattr(model, name) for name in fields}))


def restore(model: BoundaryModel, data: bytes) -> bool:
    """Set `model`'s state from a snapshot; False (model untouched) if it was written by other code."""
    kind = type(model)
    try:
        snap = _DECODERS[kind].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    if snap.v != _VERSION[kind] or snap.boundary != model.boundary:  # type: ignore[attr-defined]
        return False
    for name in FIELDS[kind]:
        setattr(model, name, getattr(snap, name))
    return True


class SnapshotStore:
    """The snapshot bucket: get before a load, put (fire and forget) when a boundary grew."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, stream: str, replicas: int = 1) -> SnapshotStore:
        bucket = f"{stream}_SNAPSHOTS"
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE,
                                                          replicas=replicas, direct=True))
        return cls(kv)

    async def get(self, boundary: str) -> bytes | None:
        try:
            entry = await self.kv.get(Subjects.snapshot_key(boundary))
        except KeyNotFoundError:
            return None
        return entry.value

    async def put(self, model: BoundaryModel) -> None:
        try:
            await self.kv.put(Subjects.snapshot_key(model.boundary), encode(model))
        except (nats.errors.Error, nats.js.errors.Error) as e:  # a missing snapshot only costs a longer read
            log.warning("snapshot of %s at %d not written: %s", model.boundary, model.position, e)
