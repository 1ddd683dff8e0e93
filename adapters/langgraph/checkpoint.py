"""A LangGraph checkpointer on the deployment's JetStream: the KV bucket in the tenant's own
account (`agentledger tenant add` makes it), so a member's credentials are all it needs, and
nothing it stores ever reaches the engine's stream.

Keys are listed on the server (the bucket's stream info with a subject filter) and read by batched
direct gets; writes are KV puts, and a pending write is created once (`kv.create`). Deleting a
thread is one purge by subject filter. A key or value the saver did not write is skipped and
counted in `skipped`, never trusted: anyone holding a member's credentials can write the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from agentledger.adapters.langgraph import keys
from agentledger.adapters.langgraph.records import (
    BlobRecord,
    CheckpointRecord,
    Typed,
    WriteRecord,
    decode_blob,
    decode_checkpoint,
    decode_write,
    encode,
)
from agentledger.schemas.accounts import CHECKPOINT_BUCKET, kv_stream

log = logging.getLogger(__name__)
T = TypeVar("T")
GET_BATCH = 256  # subjects per batched direct get (the server answers at most 1,024 per request)
DELETED = ("KV-Operation", "Nats-Marker-Reason")  # a delete or purge marker: the key has no value


class CheckpointStoreError(RuntimeError):
    """The bucket could not be reached or refused a request (the message says what to do)."""


class _ApiError(msgspec.Struct):
    code: int = 0
    description: str = ""


class _State(msgspec.Struct):
    subjects: dict[str, int] | None = None


class _StreamInfo(msgspec.Struct):
    state: _State | None = None
    total: int = 0
    error: _ApiError | None = None


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _where(config: RunnableConfig) -> tuple[str, str]:
    conf = config["configurable"]
    return str(conf["thread_id"]), str(conf.get("checkpoint_ns") or "")


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


class JetStreamSaver(BaseCheckpointSaver[str]):
    """`await JetStreamSaver.open(nc)` with a connection as a member of the tenant (an auditor's
    can read). The default serde only revives types LangGraph allows for the graph's state
    (`allowed_msgpack_modules=None`), since other members of the tenant can write the bucket."""

    def __init__(self, nc: Client, kv: KeyValue, *, bucket: str = CHECKPOINT_BUCKET,
                 serde: SerializerProtocol | None = None, timeout: float = 5.0) -> None:
        super().__init__(serde=serde or JsonPlusSerializer(allowed_msgpack_modules=None))
        self.nc, self.kv, self.bucket, self.timeout = nc, kv, bucket, timeout
        self.stream = kv_stream(bucket)
        self.loop = asyncio.get_running_loop()
        self.skipped: Counter[str] = Counter()  # what was skipped as garbage, by kind: key, checkpoint, write, blob
        self._pre = f"$KV.{bucket}."

    @classmethod
    async def open(cls, nc: Client, *, bucket: str = CHECKPOINT_BUCKET, serde: SerializerProtocol | None = None,
                   timeout: float = 5.0) -> JetStreamSaver:
        try:
            kv = await nc.jetstream(timeout=timeout).key_value(bucket)
        except nats.js.errors.NotFoundError:
            raise CheckpointStoreError(f"no checkpoint bucket {bucket!r} in this account: `agentledger tenant add "
                                       "<tenant>` makes it in the tenant's account") from None
        except nats.errors.TimeoutError:
            raise CheckpointStoreError(_NO_ANSWER) from None
        return cls(nc, kv, bucket=bucket, serde=serde, timeout=timeout)

    # -- reading the bucket ---------------------------------------------------------------------
    async def _keys(self, key_filter: str) -> list[str]:
        """The keys matching `key_filter` that hold a message, listed by the server."""
        out: list[str] = []
        while True:
            body = msgspec.json.encode({"subjects_filter": self._pre + key_filter, "offset": len(out)})
            info = msgspec.json.decode((await self._request(f"$JS.API.STREAM.INFO.{self.stream}", body)).data,
                                       type=_StreamInfo)
            if info.error is not None:
                raise CheckpointStoreError(f"listing checkpoints: {info.error.description} ({info.error.code})")
            page = list((info.state.subjects if info.state else None) or ())
            out.extend(s[len(self._pre):] for s in page)
            if not page or len(out) >= info.total:
                return out

    async def _values(self, wanted: Iterable[str]) -> dict[str, bytes]:
        """The current value of each key that has one (absent, deleted and purged keys are left out)."""
        out: dict[str, bytes] = {}
        for chunk in _chunks(list(dict.fromkeys(wanted)), GET_BATCH):
            for msg in await self._batch([self._pre + k for k in chunk]):
                headers = msg.headers or {}
                subject = headers.get("Nats-Subject", "")
                if subject.startswith(self._pre) and not any(h in headers for h in DELETED):
                    out[subject[len(self._pre):]] = msg.data
        return out

    async def _batch(self, subjects: list[str]) -> list[Msg]:
        """One batched direct get of the last message of each subject; ends with a status message."""
        inbox = self.nc.new_inbox()
        msgs: list[Msg] = []
        done: asyncio.Future[dict[str, str]] = self.loop.create_future()

        async def collect(msg: Msg) -> None:
            if msg.headers and "Status" in msg.headers:
                if not done.done():
                    done.set_result(msg.headers)
            else:
                msgs.append(msg)

        sub = await self.nc.subscribe(inbox, cb=collect)
        try:
            body = msgspec.json.encode({"multi_last": subjects, "batch": len(subjects)})
            await self.nc.publish(f"$JS.API.DIRECT.GET.{self.stream}", body, reply=inbox)
            try:
                end = await asyncio.wait_for(done, self.timeout)
            except TimeoutError:
                raise CheckpointStoreError(_NO_ANSWER) from None
        finally:
            await sub.unsubscribe()
        if end.get("Status") not in ("204", "404"):
            raise CheckpointStoreError(f"reading checkpoints: {end.get('Status')} {end.get('Description', '')}")
        return msgs

    async def _request(self, subject: str, body: bytes) -> Msg:
        try:
            return await self.nc.request(subject, body, timeout=self.timeout)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            raise CheckpointStoreError(_NO_ANSWER) from None

    async def _purge(self, key_filter: str) -> None:
        try:
            await self.nc.jetstream(timeout=self.timeout).purge_stream(self.stream, subject=self._pre + key_filter)
        except nats.errors.TimeoutError:
            raise CheckpointStoreError(_NO_ANSWER) from None

    def _parsed(self, found: Iterable[str], kind: keys.Kind) -> list[keys.Key]:
        out = []
        for raw in found:
            key = keys.parse(raw)
            if key is None or key.kind != kind:
                self._skip("key", raw, "not a key this saver writes")
            else:
                out.append(key)
        return out

    def _skip(self, kind: str, key: str, why: object) -> None:
        self.skipped[kind] += 1
        log.warning("checkpoint bucket %s: skipped %s %r: %s", self.bucket, kind, key, why)

    def _loads(self, value: Typed) -> Any:
        return self.serde.loads_typed(value.pair())

    def _dumps(self, value: Any) -> Typed:
        return Typed(*self.serde.dumps_typed(value))

    def _record(self, key: keys.Key, data: bytes) -> tuple[CheckpointRecord, Checkpoint, CheckpointMetadata] | None:
        """The checkpoint stored under `key` and its metadata, or None (counted) when it is not one:
        also a checkpoint stored under another one's key, or one whose channels make no key."""
        try:
            record = decode_checkpoint(data)
            checkpoint, metadata = self._loads(record.checkpoint), self._loads(record.metadata)
        except Exception as e:  # serde decoders raise many types on hostile bytes; none may escape
            self._skip("checkpoint", key.raw, e)
            return None
        versions = checkpoint.get("channel_versions") if isinstance(checkpoint, dict) else None
        if not (isinstance(versions, dict) and isinstance(metadata, dict) and checkpoint.get("id") == key.rest[0]
                and all(isinstance(ch, str) and isinstance(v, str | int | float) for ch, v in versions.items())):
            self._skip("checkpoint", key.raw, "not the checkpoint its key names")
            return None
        try:
            for ch, v in versions.items():
                keys.blob_key(key.thread_id, key.ns, ch, v)
        except ValueError as e:
            self._skip("checkpoint", key.raw, e)
            return None
        return record, checkpoint, metadata  # type: ignore[return-value]

    async def _tuple(self, key: keys.Key, record: CheckpointRecord, checkpoint: Checkpoint,
                     metadata: CheckpointMetadata) -> CheckpointTuple | None:
        """The full tuple: channel values from their blobs, pending writes in `writes_sort_key` order."""
        checkpoint_id = key.rest[0]
        blob_keys = {keys.blob_key(key.thread_id, key.ns, ch, v): ch for ch, v in checkpoint["channel_versions"].items()}
        write_keys = self._parsed(await self._keys(keys.writes_filter(key.thread_id, key.ns, checkpoint_id)), "w")
        found = await self._values([*blob_keys, *(k.raw for k in write_keys)])
        values: dict[str, Any] = {}
        for blob_key, channel in blob_keys.items():
            if blob_key not in found:
                continue
            try:
                blob = decode_blob(found[blob_key])
                if blob.value is not None:
                    values[channel] = self._loads(blob.value)
            except Exception as e:  # a channel value that cannot be read makes the whole checkpoint unusable
                self._skip("blob", blob_key, e)
                return None
        writes: list[tuple[tuple[str, str, int], PendingWrite]] = []
        for wk in write_keys:
            raw = wk.raw
            if raw not in found:
                continue
            try:
                write = decode_write(found[raw])
                writes.append((writes_sort_key(write.task_path, write.task_id, int(wk.rest[2])),
                               (write.task_id, write.channel, self._loads(write.value))))
            except Exception as e:
                self._skip("write", raw, e)
        writes.sort(key=lambda w: w[0])
        parent = record.parent_id
        return CheckpointTuple(
            config=_config(key.thread_id, key.ns, checkpoint_id),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=metadata,
            parent_config=_config(key.thread_id, key.ns, parent) if parent else None,
            pending_writes=[w for _, w in writes],
        )

    async def _tuples(self, found: list[keys.Key], predicate: Callable[[CheckpointMetadata], bool] | None = None,
                      ) -> AsyncIterator[CheckpointTuple]:
        """The usable checkpoints among `found`, in that order: a small first read (get_tuple,
        limit=1), larger ones after."""
        start, size = 0, 8
        while start < len(found):
            chunk = found[start:start + size]
            start, size = start + size, min(size * 4, GET_BATCH)
            data = await self._values(k.raw for k in chunk)
            for key in chunk:
                parsed = self._record(key, data[key.raw]) if key.raw in data else None
                if parsed is None or (predicate is not None and not predicate(parsed[2])):
                    continue
                tup = await self._tuple(key, *parsed)
                if tup is not None:
                    yield tup

    # -- BaseCheckpointSaver, async -------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns = _where(config)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            found = [keys.Key("c", thread_id, ns, (checkpoint_id,))]
        else:
            found = self._parsed(await self._keys(keys.checkpoints_filter(thread_id, ns)), "c")
            found.sort(key=lambda k: k.rest[0], reverse=True)
        return await self._first(found)

    async def _first(self, found: list[keys.Key]) -> CheckpointTuple | None:
        """The first usable checkpoint of `found`: a garbage head is passed over, not returned."""
        async for tup in self._tuples(found):
            return tup
        return None

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        """Newest first (descending checkpoint id). `config` narrows to a thread, and to a namespace
        when it names one; `filter` matches metadata keys by equality."""
        if config is None:
            key_filter = keys.checkpoints_filter()
        else:
            conf = config["configurable"]
            ns = conf.get("checkpoint_ns")
            key_filter = keys.checkpoints_filter(str(conf["thread_id"]), None if ns is None else str(ns),
                                                 get_checkpoint_id(config))
        found = self._parsed(await self._keys(key_filter), "c")
        before_id = get_checkpoint_id(before) if before else None
        if before_id:
            found = [k for k in found if k.rest[0] < before_id]
        found.sort(key=lambda k: (k.rest[0], k.thread_id, k.ns), reverse=True)
        if limit is not None and limit <= 0:
            return
        wanted = filter or {}
        count = 0
        async for tup in self._tuples(found, lambda md: all(md.get(k) == v for k, v in wanted.items())):
            yield tup
            count += 1
            if limit is not None and count >= limit:
                return

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        """Channel values go to blobs first (only those in `new_versions`), then the checkpoint, so a
        reader never sees a checkpoint whose values are not there yet."""
        thread_id, ns = _where(config)
        stored = checkpoint.copy()
        values: dict[str, Any] = stored.pop("channel_values")  # type: ignore[misc]
        blobs = {keys.blob_key(thread_id, ns, ch, v): BlobRecord(self._dumps(values[ch]) if ch in values else None)
                 for ch, v in new_versions.items()}
        await asyncio.gather(*(self.kv.put(k, encode(b)) for k, b in blobs.items()))
        record = CheckpointRecord(self._dumps(stored), self._dumps(get_serializable_checkpoint_metadata(config, metadata)),
                                  config["configurable"].get("checkpoint_id"))
        await self.kv.put(keys.checkpoint_key(thread_id, ns, checkpoint["id"]), encode(record))
        return _config(thread_id, ns, checkpoint["id"])

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        """A regular write is stored once per (task, index): a repeat is ignored. Special writes
        (error, interrupt, resume, ...) have fixed negative indexes and are replaced."""
        thread_id, ns = _where(config)
        checkpoint_id = str(config["configurable"]["checkpoint_id"])

        async def one(idx: int, channel: str, value: Any) -> None:
            key = keys.write_key(thread_id, ns, checkpoint_id, task_id, idx)
            data = encode(WriteRecord(task_id, channel, self._dumps(value), task_path))
            if idx < 0:
                await self.kv.put(key, data)
                return
            with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):  # written before: keep the first
                await self.kv.create(key, data)

        await asyncio.gather(*(one(WRITES_IDX_MAP.get(ch, i), ch, v) for i, (ch, v) in enumerate(writes)))

    async def adelete_thread(self, thread_id: str) -> None:
        """Checkpoints, writes and channel values of every namespace: one purge, no tombstones."""
        await self._purge(keys.thread_filter(thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Everything of the source thread, under the same checkpoint ids and namespaces: channel
        values and writes first, then checkpoints oldest first. Checkpoints already on the target
        stay (one with the same id is replaced)."""
        found = [k for k in (keys.parse(raw) for raw in await self._keys(keys.thread_filter(source_thread_id)))
                 if k is not None]
        data = await self._values(k.raw for k in found)
        for kind in ("b", "w", "c"):
            group = sorted((k for k in found if k.kind == kind), key=lambda k: k.rest)
            await self._bounded(self.kv.put(k.in_thread(target_thread_id), data[raw]) for k in group
                                if (raw := k.raw) in data)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest` keeps the newest checkpoint of each namespace, its writes and the channel
        values it refers to; when its metadata counts delta-channel updates, its whole parent chain
        is kept too (a delta channel is rebuilt from its ancestors). `delete` removes the threads."""
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}: keep_latest or delete")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
            else:
                await self._keep_latest(thread_id)

    async def _keep_latest(self, thread_id: str) -> None:
        found = [k for k in (keys.parse(raw) for raw in await self._keys(keys.thread_filter(thread_id))) if k is not None]
        kept: set[tuple[str, str]] = set()  # (ns, checkpoint id)
        referenced: set[str] = set()  # blob keys the kept checkpoints read
        for ns in {k.ns for k in found if k.kind == "c"}:
            newest_first = sorted((k for k in found if k.kind == "c" and k.ns == ns), key=lambda k: k.rest[0], reverse=True)
            tup = await self._first(newest_first)
            while tup is not None and (ns, tup.checkpoint["id"]) not in kept:
                kept.add((ns, tup.checkpoint["id"]))
                referenced.update(keys.blob_key(thread_id, ns, ch, v) for ch, v in tup.checkpoint["channel_versions"].items())
                delta = tup.metadata.get("counters_since_delta_snapshot") and tup.parent_config
                tup = await self.aget_tuple(tup.parent_config) if delta else None  # type: ignore[arg-type]
        doomed = [k.raw for k in found if (k.kind == "b" and k.raw not in referenced)
                  or (k.kind in ("c", "w") and (k.ns, k.rest[0]) not in kept)]
        await self._bounded(self._purge(key) for key in doomed)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Checkpoints whose metadata names one of `run_ids`, with their writes. Reads every
        checkpoint of the tenant (there is no index by run); channel values stay until their
        thread is pruned or deleted."""
        runs = set(run_ids)
        if not runs:
            return
        found = self._parsed(await self._keys(keys.checkpoints_filter()), "c")
        doomed: list[keys.Key] = []
        for chunk in _chunks(found, GET_BATCH):
            data = await self._values(k.raw for k in chunk)
            for key in chunk:
                parsed = self._record(key, data[key.raw]) if key.raw in data else None
                if parsed is not None and parsed[2].get("run_id") in runs:
                    doomed.append(key)
        await self._bounded(p for k in doomed for p in (
            self._purge(keys.writes_filter(k.thread_id, k.ns, k.rest[0])), self._purge(k.raw)))

    async def _bounded(self, work: Iterable[Awaitable[Any]], width: int = 32) -> None:
        """Run `work` with at most `width` requests in flight."""
        gate = asyncio.Semaphore(width)

        async def one(job: Awaitable[Any]) -> None:
            async with gate:
                await job

        await asyncio.gather(*(one(job) for job in work))

    async def locate(self, thread_id: str, checkpoint_id: str) -> RunnableConfig | None:
        """The config of checkpoint `checkpoint_id` of `thread_id`, in whichever namespace it is:
        what a ledger event's link (`agentledger.adapters.langgraph.links`) resolves to."""
        for key in self._parsed(await self._keys(keys.checkpoints_filter(thread_id, None, checkpoint_id)), "c"):
            return _config(key.thread_id, key.ns, key.rest[0])
        return None

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Increasing, with a random tail: two forks from one checkpoint never write the same blob key."""
        n = 0 if current is None else (current if isinstance(current, int) else int(str(current).split(".")[0]))
        return f"{n + 1:032}.{random.random():016}"

    # -- BaseCheckpointSaver, sync: from another thread, on the saver's event loop ---------------
    def _call(self, coro: Awaitable[T]) -> T:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise asyncio.InvalidStateError("JetStreamSaver's sync methods block: call them from another thread, "
                                            "or use the async ones (`await graph.ainvoke(...)`, `aget_tuple`, ...)")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._call(self.aget_tuple(config))

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        items = self.alist(config, filter=filter, before=before, limit=limit).__aiter__()
        while True:
            try:
                yield self._call(items.__anext__())
            except StopAsyncIteration:
                return

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        return self._call(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        self._call(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._call(self.adelete_thread(thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._call(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._call(self.aprune(thread_ids, strategy=strategy))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._call(self.adelete_for_runs(run_ids))


_NO_ANSWER = ("no answer from the checkpoint bucket: is NATS up, and were these credentials issued after the "
              "bucket was added? (`agentledger tenant creds` issues member credentials that include it)")
