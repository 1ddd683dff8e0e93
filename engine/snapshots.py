"""Snapshots of boundary models, so loading a long boundary reads a snapshot plus a bounded tail.

A snapshot is the model's fields at a position, encoded with msgspec against the field types the
model class declares (its annotations: no pickle, the bucket is data, never code). A model whose
attributes differ from its declared state refuses to snapshot (`tests/test_cache.py` checks it),
and a snapshot written by a different field list is ignored: the boundary is then read from the log.
Snapshots live in a JetStream KV bucket (one key per boundary, history 1); losing one only
makes a load read more of the log.

The bucket is not the log: whoever can write it could otherwise decide what an engine believes
after a restart. So each snapshot is sealed with an HMAC over its boundary and bytes, with a key
only engines hold (`handlers.auth.keys.snapshot_key`), and checked before it is used; one that
fails is quarantined (counted, logged once per boundary) and ignored: the boundary is read from
the log, and a fresh snapshot replaces it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import typing
from collections import OrderedDict
from typing import Any, NamedTuple

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


def bucket_name(stream: str) -> str:
    return f"{stream}_SNAPSHOTS"


MAGIC = b"ALS1"  # a sealed snapshot: MAGIC, key id (8 bytes), HMAC-SHA256 (32 bytes), the msgpack body
_KEY_ID, _MAC = 8, 32
_HEADER = len(MAGIC) + _KEY_ID + _MAC


class Seal:
    """Seals and checks snapshot bytes with one key (pure). The MAC covers the boundary too, so a
    sealed snapshot cannot be moved to another boundary's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a snapshot key has at least 32 bytes")
        self._key = key
        self.key_id = hmac.new(key, b"key id", hashlib.sha256).digest()[:_KEY_ID]

    def _mac(self, boundary: str, body: bytes) -> bytes:
        return hmac.new(self._key, boundary.encode() + b"\0" + body, hashlib.sha256).digest()

    def seal(self, boundary: str, body: bytes) -> bytes:
        return MAGIC + self.key_id + self._mac(boundary, body) + body

    def open(self, boundary: str, data: bytes) -> bytes | str:
        """The body of a snapshot sealed with this key for `boundary`, or why it is refused."""
        if len(data) < _HEADER or not data.startswith(MAGIC):
            return "not sealed by an engine"
        key_id, mac, body = data[4:4 + _KEY_ID], data[4 + _KEY_ID:_HEADER], data[_HEADER:]
        if key_id != self.key_id:
            return "sealed with another key (written with other engine credentials, or forged)"
        if not hmac.compare_digest(mac, self._mac(boundary, body)):
            return "its seal does not match its bytes (changed after it was written, or forged)"
        return body


class Stored(NamedTuple):
    body: bytes | None  # a verified snapshot's bytes, to `restore`
    present: bool  # something was stored, usable or not (an unusable one is replaced after the load)


class SnapshotStore:
    """The snapshot bucket: read (and verify) before a load, put (fire and forget) when a boundary grew."""

    def __init__(self, kv: KeyValue, key: bytes, log_once: int = 10_000) -> None:
        self.kv = kv
        self.seal = Seal(key)
        self.quarantined = 0  # snapshots refused since this engine started
        self._logged: OrderedDict[str, None] = OrderedDict()  # boundaries whose refusal was logged
        self._log_once = log_once

    @classmethod
    async def open(cls, js: JetStreamContext, stream: str, key: bytes, replicas: int = 1) -> SnapshotStore:
        bucket = bucket_name(stream)
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE,
                                                          replicas=replicas, direct=True))
        return cls(kv, key)

    async def read(self, boundary: str) -> Stored:
        try:
            entry = await self.kv.get(Subjects.snapshot_key(boundary))
        except KeyNotFoundError:
            return Stored(None, False)
        if not entry.value:
            return Stored(None, False)
        body = self.seal.open(boundary, entry.value)
        if isinstance(body, str):
            self._quarantine(boundary, body)
            return Stored(None, True)
        return Stored(body, True)

    async def get(self, boundary: str) -> bytes | None:
        """A boundary's verified snapshot bytes, if there is one."""
        return (await self.read(boundary)).body

    def _quarantine(self, boundary: str, reason: str) -> None:
        self.quarantined += 1
        if boundary in self._logged:
            return
        self._logged[boundary] = None
        if len(self._logged) > self._log_once:
            self._logged.popitem(last=False)
        log.warning("quarantined the snapshot of %s: %s; reading the boundary from the log", boundary[:200], reason)

    async def put(self, model: BoundaryModel) -> None:
        try:
            await self.kv.put(Subjects.snapshot_key(model.boundary), self.seal.seal(model.boundary, encode(model)))
        except (nats.errors.Error, nats.js.errors.Error) as e:  # a missing snapshot only costs a longer read
            log.warning("snapshot of %s at %d not written: %s", model.boundary, model.position, e)
