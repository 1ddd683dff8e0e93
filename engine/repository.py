"""The write-side repository (as eventsourcing names it): the boundary models an engine keeps, a
bounded cache of the ones in use, loaded from the log on demand.

A boundary model here is both what queries read and what decisions are checked against. The
cache holds at most `cache_size` models (least recently used out first); any other boundary is
loaded when asked for, from its snapshot (if any, and only if its seal verifies) plus the log's
tail after it, by batched direct get. Three feeds then keep a loaded model current: the live follower (which starts at
the stream's head, so a start never replays the log), the engine's own successful appends, and
refresh reads after a conflict. `BoundaryModel.apply` ignores what it has already applied, so
the feeds never double-count; what the follower delivers while a model loads is buffered on
the model and applied after the load.

The cache is bounded by bytes too (`cache_bytes`): each model's size is estimated by the length
of its msgspec-encoded snapshot, measured when it is loaded and again whenever the events applied
since the last measure reach half the count applied before it (so measuring costs a constant
share of applying, however big a model grows); least recently used models go while either bound
is exceeded (the one just used stays, however big).

What decisions need beyond one boundary is found in the log by subject, not held whole here:
a session's thread is the last token of its claim (`Subjects.session_claim_filter`), a
project's threads the `thread.created` subjects carrying its id. Both facts never change, so a
bounded cache of session -> thread answers repeats; an absent answer is always read fresh.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from agentledger.engine import admission, snapshots
from agentledger.engine.boundary_model import BoundaryModel
from agentledger.engine.project_model import ProjectState
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.snapshots import SnapshotStore
from agentledger.engine.store import EventStore, RawEvent
from agentledger.engine.subjects import Subjects
from agentledger.engine.thread_model import ThreadState
from agentledger.schemas.events import (
    Envelope,
    HandoffBroadcasted,
    HandoffTransferred,
    SessionCreated,
    SessionSpawned,
)

M = TypeVar("M", ThreadState, ProjectState, SandboxState)
T = TypeVar("T")
log = logging.getLogger("agentledger.models")


def _follows(model: BoundaryModel, raw: RawEvent) -> bool:
    """Whether `raw` is the next message of the model's boundary after the last one the model holds:
    the log accepted it only because the boundary's last message was then at the model's position.
    An event the follower delivers is applied only then; one that does not follow (an event the
    model's load missed lies between, or a message appended without the boundary's condition) waits
    for a read of the boundary in order. Otherwise a replica would decide on a model with a hole in
    it, and its next append, expecting the model's position, would be accepted on that hole."""
    return raw.condition == (model.boundary, model.position)


def introduced_sessions(data: object) -> list[str]:
    """The session ids an event brings into being (each must be unique in its tenant)."""
    if isinstance(data, (SessionCreated, SessionSpawned)):
        return [data.session_id]
    if isinstance(data, HandoffTransferred):
        return [data.recipient.session_id]
    if isinstance(data, HandoffBroadcasted):
        return [r.session_id for r in data.recipients]
    return []


class _Size:
    """A cached model's measured size and the events applied to it since (for when to measure again)."""

    __slots__ = ("applied", "bytes", "measured_at")

    def __init__(self) -> None:
        self.bytes = 0
        self.applied = 0  # events applied to the model while cached
        self.measured_at = -1  # `applied` when last measured; -1: not yet


class Repository:
    def __init__(self, subjects: Subjects, cache_size: int | None = None, snapshots: SnapshotStore | None = None,
                 snapshot_every: int = 100, quarantine: admission.Quarantine | None = None,
                 cache_bytes: int | None = None) -> None:
        """`cache_size=None` keeps every model (a replay of the whole log); an engine passes a bound,
        and `cache_bytes`, a bound on the models' estimated size together."""
        self.subjects = subjects
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self._models: OrderedDict[str, BoundaryModel] = OrderedDict()
        self._sizes: dict[str, _Size] = {}
        self.bytes = 0  # estimated size of the cached models, when `cache_bytes` is set
        self._session_thread: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.position = 0  # last stream position the live follower applied (or quarantined)
        self.quarantine = quarantine or admission.Quarantine()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # (position, tie, future): a heap
        self._waiting = 0  # futures in the heap still waited on
        self._tie = itertools.count()
        self._moved = asyncio.Event()  # set and renewed on every followed event (wait_until)
        self._writes: set[asyncio.Task[None]] = set()
        self.loads = 0  # boundaries read from the log (cache misses)
        self.evictions = 0

    # -- the cache ----------------------------------------------------------------------------
    def _get(self, kind: type[M], tenant: str, boundary: str, entity_id: str) -> M:
        model = self._models.get(boundary)
        if model is None:
            model = self._models[boundary] = kind(tenant, boundary, entity_id)
            if self.cache_bytes is not None:
                self._sizes[boundary] = _Size()
            self._evict()
        else:
            self._models.move_to_end(boundary)
        assert isinstance(model, kind)
        return model

    def _over(self) -> bool:
        return ((self.cache_size is not None and len(self._models) > self.cache_size)
                or (self.cache_bytes is not None and self.bytes > self.cache_bytes and len(self._models) > 1))

    def _evict(self) -> None:
        for _ in range(len(self._models) - 1):  # never the most recently used
            if not self._over():
                return
            boundary, model = next(iter(self._models.items()))
            if model.loading is not None:  # a load in flight keeps its buffer reachable
                self._models.move_to_end(boundary)
                continue
            del self._models[boundary]
            size = self._sizes.pop(boundary, None)
            if size is not None:
                self.bytes -= size.bytes
            self.evictions += 1

    def _grew(self, model: BoundaryModel) -> None:
        """One more event applied: measure the model again when enough were applied since the last
        measure (half as many as before it, at least one), or when it has not been measured yet."""
        size = self._sizes.get(model.boundary)
        if size is None or self._models.get(model.boundary) is not model:  # not bounded, or evicted meanwhile
            return
        size.applied += 1
        if size.measured_at >= 0 and size.applied - size.measured_at < max(1, size.measured_at // 2):
            return
        if model.loading is not None or not model.ready:
            return  # measured when the load ends
        self._measure(model, size)

    def _measure(self, model: BoundaryModel, size: _Size) -> None:
        measured = len(snapshots.encode(model))
        self.bytes += measured - size.bytes
        size.bytes, size.measured_at = measured, size.applied
        if self.cache_bytes is not None and self.bytes > self.cache_bytes:
            self._evict()

    def size_of(self, model: BoundaryModel) -> int | None:
        """The model's estimated size in bytes, when the cache is bounded by bytes and holds it."""
        size = self._sizes.get(model.boundary)
        return None if size is None or self._models.get(model.boundary) is not model else size.bytes

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, boundary: str) -> bool:
        """Whether this replica holds the boundary's model now (evicted ones are read again on use)."""
        return boundary in self._models

    def cached(self) -> list[BoundaryModel]:
        """The models this replica holds now, least recently used first."""
        return list(self._models.values())

    @property
    def waiters(self) -> tuple[int, int]:
        """(`wait_for` callers still waiting, entries kept for them): what waits cost this replica."""
        return self._waiting, len(self._waiters)

    def thread(self, tenant: str, thread_id: str) -> ThreadState:
        """The cached model, or a new one not yet loaded: `await loaded(...)` before deciding on it."""
        return self._get(ThreadState, tenant, self.subjects.thread_filter(tenant, thread_id), thread_id)

    def project(self, tenant: str, project_id: str) -> ProjectState:
        return self._get(ProjectState, tenant, self.subjects.project_filter(tenant, project_id), project_id)

    def sandbox(self, tenant: str, sandbox_id: str) -> SandboxState:
        return self._get(SandboxState, tenant, self.subjects.sandbox_filter(tenant, sandbox_id), sandbox_id)

    def _model_for(self, envelope: Envelope) -> BoundaryModel | None:
        model = self._models.get(envelope.boundary)
        if model is not None:
            return model
        named = self.subjects.parse_boundary(envelope.boundary)
        match named.kind:
            case "thr":
                return self.thread(envelope.tenant_id, named.entity)
            case "prj":
                return self.project(envelope.tenant_id, named.entity)
            case "sbx":
                return self.sandbox(envelope.tenant_id, named.entity)
        return None

    # -- what lies beyond one boundary -----------------------------------------------------
    def locate_session(self, tenant: str, session_id: str) -> str | None:
        """The thread a session belongs to if this replica has seen it; immutable, so never stale."""
        found = self._session_thread.get((tenant, session_id))
        if found is not None:
            self._session_thread.move_to_end((tenant, session_id))
        return found

    def _note_session(self, tenant: str, session_id: str, thread_id: str) -> None:
        self._session_thread[(tenant, session_id)] = thread_id
        if self.cache_size is not None and len(self._session_thread) > 16 * self.cache_size:
            self._session_thread.popitem(last=False)

    async def resolve_session(self, store: EventStore, tenant: str, session_id: str) -> str | None:
        """Find a session's thread: from the cache, else from its claim in the log (read from the
        stream leader on a replicated stream, so an acknowledged session is never reported absent)."""
        found = self.locate_session(tenant, session_id)
        if found is None:
            subject = await store.first_subject(self.subjects.session_claim_filter(tenant, session_id))
            if subject is not None:
                found = self.subjects.entity_of(subject)
                self._note_session(tenant, session_id, found)
        return found

    async def project_threads(self, store: EventStore, tenant: str, project_id: str | None, after: int,
                              limit: int) -> tuple[list[tuple[int, str]], bool]:
        """A project's threads (every thread of the tenant for None) created after position
        `after`, oldest first: at most `limit` of (position of `thread.created`, thread id), and
        whether more follow. One batched read of the `thread.created` subjects, however many
        threads there are: each thread has exactly one such message."""
        raws = await store.read(self.subjects.project_threads_filter(tenant, project_id), after=after, limit=limit + 1)
        return [(raw.position, self.subjects.entity_of(raw.subject)) for raw in raws[:limit]], len(raws) > limit

    def _index(self, envelope: Envelope, model: BoundaryModel) -> None:
        if isinstance(model, ThreadState):
            for sid in introduced_sessions(envelope.data):
                self._note_session(envelope.tenant_id, sid, model.thread_id)

    # -- feeds --------------------------------------------------------------------------------
    def apply(self, envelope: Envelope, position: int, model: BoundaryModel | None = None) -> bool:
        """Fold one event in, whatever the model's load state (a replay of the log from the start)."""
        model = model or self._model_for(envelope)
        if model is None or not admission.enter(model, envelope, position, self.quarantine, envelope.boundary):
            return False
        self._index(envelope, model)
        if self.cache_bytes is not None:
            self._grew(model)
        return True

    def applied(self, model: BoundaryModel, envelope: Envelope, position: int) -> None:
        """The engine's own append landed: apply it, and snapshot the model if it has grown enough."""
        self.apply(envelope, position, model)
        self._maybe_snapshot(model)

    def _admit(self, raw: RawEvent, model: BoundaryModel | None = None, live: bool = False) -> bool:
        """Apply what the log holds at `raw.position` if `admission` lets it in; skip it otherwise.

        A `live` event (from the follower, not from a read of the boundary) is applied or skipped
        only when it comes right after the model's last event (`_follows`) and fits. Otherwise the
        model may have missed events before it (a load served by a replica behind the follower),
        so it is neither applied nor skipped, and False tells the caller to re-read the boundary
        in order instead. (A quarantined one is still counted at once.)"""
        admitted = admission.admit(raw, self.subjects)
        if isinstance(admitted, admission.Quarantined):
            self.quarantine.add(admitted)
        if live and model is not None and raw.position > model.position and (
                not _follows(model, raw)
                or (not isinstance(admitted, admission.Quarantined) and admission.fits(model, admitted))):
            return False
        if isinstance(admitted, admission.Quarantined):
            if model is not None:
                admission.skip(model, raw.position)
            return True
        self.apply(admitted, raw.position, model)
        return True

    def follow(self, raw: RawEvent) -> None:
        """The live follower's feed: every event from the stream's head at start, in order. Only
        models in the cache take it (a quarantined message counts as followed, so catching up never
        waits for it); events this engine appended itself are not decoded again."""
        model = self._models.get(self.subjects.boundary_of(raw.subject))
        if model is not None and model.position < raw.position:
            if model.ready:
                if not self._admit(raw, model, live=True):
                    model.ready = False  # re-read in order (from its position) when next used
            elif model.live_buffer is not None:
                model.live_buffer.append(raw)
        self.position = raw.position
        waiters = self._waiters
        while waiters and waiters[0][0] <= raw.position:
            future = heapq.heappop(waiters)[2]
            if not future.done():
                self._waiting -= 1
                future.set_result(None)
        self._moved.set()
        self._moved = asyncio.Event()

    async def _read_tail(self, store: EventStore, model: BoundaryModel, latest: bool) -> None:
        read = store.read_latest if latest else store.read
        for raw in await read(model.boundary, after=model.position):
            self._admit(raw, model)

    async def refresh(self, store: EventStore, model: BoundaryModel) -> None:
        """Bring one model up to the log's head for its boundary (read from the leader when replicated)."""
        if not model.ready:
            await self.loaded(store, model)
            if not await store.replicated():
                return  # the load just read the leader's own log
        await self._read_tail(store, model, latest=True)

    async def loaded(self, store: EventStore, model: M) -> M:
        """The model, read from the log first if this replica has not loaded it: its snapshot, then
        the tail after it, then whatever the live follower delivered meanwhile."""
        while not model.ready:
            if model.loading is not None:
                await asyncio.shield(model.loading)
                continue
            model.loading = asyncio.get_running_loop().create_future()
            model.live_buffer = []
            try:
                if self.snapshots is not None and model.position == 0:
                    stored = await self.snapshots.read(model.boundary)  # verified, or quarantined and ignored
                    if stored.body is not None and snapshots.restore(model, stored.body):
                        model.since_snapshot = 0
                    elif stored.present:  # unusable (refused, or written by other code): replace it once loaded
                        model.since_snapshot = self.snapshot_every
                await self._read_tail(store, model, latest=False)
                reread = False  # the load may come from a replica behind the follower: then read the rest from the leader
                for raw in model.live_buffer:  # what the follower delivered meanwhile (more may arrive while we read)
                    if raw.position > model.position and not self._admit(raw, model, live=True) and not reread:
                        await self._read_tail(store, model, latest=True)
                        reread = True
                model.ready = True
                self.loads += 1
                model.loading.set_result(None)
                size = self._sizes.get(model.boundary)
                if size is not None and self._models.get(model.boundary) is model:
                    self._measure(model, size)
            except BaseException as e:
                model.loading.set_exception(e)
                model.loading.exception()  # retrieved: waiters re-raise it through the shield
                raise
            finally:
                model.loading = None
                model.live_buffer = None
            self._maybe_snapshot(model)
        return model

    def _maybe_snapshot(self, model: BoundaryModel) -> None:
        if self.snapshots is None or model.since_snapshot < self.snapshot_every or not model.ready or not model.position:
            return
        model.since_snapshot = 0
        task = asyncio.get_running_loop().create_task(self.snapshots.put(model))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait for snapshot writes in flight (before the connection closes)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until the follower has applied `position` (read-your-writes across replicas). Each
        waiter is woken once, by the event that reaches its position, however many wait."""
        if self.position >= position:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (position, next(self._tie), future))
        self._waiting += 1
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return self.position >= position
        finally:
            if not future.done():
                future.cancel()
            if future.cancelled():
                self._waiting -= 1
                if len(self._waiters) > 64 and len(self._waiters) > 2 * self._waiting:
                    # drop the ones given up on (a far position is never popped by the follower)
                    self._waiters = [w for w in self._waiters if not w[2].done()]
                    heapq.heapify(self._waiters)

    async def wait_until(self, found: Callable[[], T | None], timeout: float) -> T | None:
        """Wait until `found()` (asked again after each event the follower applies) has an answer,
        for at most `timeout` seconds; None if it has none by then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (value := found()) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._moved.wait(), remaining)
            except TimeoutError:
                return found()
        return value
