"""The query path: answered from the in-memory read models, except `events.read`, which reads
the log itself (the audit trail must not depend on a projection)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from agentledger.engine import codec
from agentledger.engine.decoding import decode_request, decoders
from agentledger.engine.outcomes import log_unavailable, not_found, unexpected
from agentledger.engine.repository import Repository
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.store import EventStore, LogUnavailable, RawEvent
from agentledger.engine.thread_model import ThreadState
from agentledger.projections.history import read_history
from agentledger.projections.views import sandbox_view, session_view, thread_row, thread_view, tree
from agentledger.schemas.commands import MAX_REQUEST_BYTES
from agentledger.schemas.errors import (
    DomainError,
    Unavailable,
)
from agentledger.schemas.queries import (
    QUERIES,
    EventsPage,
    EventsRead,
    LiveSandbox,
    QuarantineList,
    QuarantineResult,
    Query,
    SandboxGet,
    SandboxListLive,
    SandboxListResult,
    SandboxResult,
    SessionGet,
    SessionResult,
    SessionTree,
    ThreadGet,
    ThreadList,
    ThreadListResult,
    ThreadResult,
    TreeResult,
)
from agentledger.schemas.replies import QueryReply

log = logging.getLogger("agentledger.queries")
LOADS_AT_ONCE = 16  # thread models a list query loads concurrently
Reader = Callable[[int, int | None, int | None], Awaitable[list[RawEvent]]]
_DECODERS = decoders(QUERIES)


class _MinPosition(msgspec.Struct):
    min_position: int | None = None


_min_position = msgspec.json.Decoder(_MinPosition).decode


class QueryService:
    def __init__(self, store: EventStore, models: Repository, wait_timeout: float = 5.0) -> None:
        self.store = store
        self.models = models
        self.wait_timeout = wait_timeout

    def wait_needed(self, body: bytes) -> Callable[[], Awaitable[bool]] | None:
        """The wait for the position a query body asks for (`min_position`), when the read models
        have not reached it yet: the caller runs it holding no worker, then `execute`s. None when
        there is nothing to wait for (or the body is bad: `execute` says why)."""
        if len(body) > MAX_REQUEST_BYTES:
            return None
        try:
            wanted = _min_position(body).min_position
        except (msgspec.DecodeError, ValueError):
            return None
        if not wanted or wanted <= self.models.position:
            return None
        return lambda: self.models.wait_for(wanted, self.wait_timeout)

    async def execute(self, tenant: str, name: str, body: bytes) -> QueryReply:
        """The answer, now: a `min_position` the read models have not reached is `unavailable`
        (`wait_needed` is the wait for it, which the request pipeline runs first)."""
        try:
            query: Query = decode_request(_DECODERS, "query", name, body)
            if query.min_position and self.models.position < query.min_position:
                raise DomainError(Unavailable(message=f"read model is at {self.models.position}, "
                                                      f"not yet at {query.min_position}; retry"))
            result = await self._answer(tenant, query)
            return QueryReply(ok=True, position=self.models.position, result=result)
        except DomainError as e:
            return QueryReply(ok=False, error=e.error)
        except LogUnavailable as e:
            return QueryReply(ok=False, error=log_unavailable(e))
        except Exception:
            return QueryReply(ok=False, error=unexpected(log, f"query {name}"))

    async def _thread(self, tenant: str, thread_id: str) -> ThreadState:
        state = await self.models.loaded(self.store, self.models.thread(tenant, thread_id))
        if not state.exists:
            raise not_found("thread", thread_id)
        return state

    async def _sandbox(self, tenant: str, sandbox_id: str) -> SandboxState:
        sandbox = await self.models.loaded(self.store, self.models.sandbox(tenant, sandbox_id))
        if not sandbox.exists:
            raise not_found("sandbox", sandbox_id)
        return sandbox

    async def _threads(self, tenant: str, thread_ids: list[str]) -> list[ThreadState]:
        """Models of these threads, in this order, loaded a few at a time (a page of a list may be
        mostly threads this replica has not loaded yet)."""
        slots = asyncio.Semaphore(LOADS_AT_ONCE)

        async def load(thread_id: str) -> ThreadState:
            async with slots:
                return await self.models.loaded(self.store, self.models.thread(tenant, thread_id))

        return list(await asyncio.gather(*(load(t) for t in thread_ids)))

    async def _live_sandboxes(self, query: SandboxListLive) -> SandboxListResult:
        """Every tenant's sandboxes whose creation was recorded after `query.after` (one batched read
        of the `sandbox.created` subjects), each from its model, leaving out those destroyed."""
        subjects = self.models.subjects
        (created,) = subjects.sandbox_events_of(("sandbox.created",))
        raws = await self.store.read(created, after=query.after, limit=query.limit + 1)
        page = raws[:query.limit]
        slots = asyncio.Semaphore(LOADS_AT_ONCE)

        async def load(subject: str) -> SandboxState:
            named = subjects.parse_boundary(subjects.boundary_of(subject))
            async with slots:
                return await self.models.loaded(self.store, self.models.sandbox(named.tenant, named.entity))

        states = await asyncio.gather(*(load(raw.subject) for raw in page))
        live = [LiveSandbox(tenant_id=s.tenant_id, sandbox=sandbox_view(s)) for s in states
                if s.exists and not (s.intent == "destroyed" and s.status == "destroyed" and not s.pending)]
        return SandboxListResult(sandboxes=live, next_after=page[-1].position if page else query.after,
                                 more=len(raws) > query.limit)

    async def _session_thread(self, tenant: str, session_id: str) -> ThreadState:
        thread_id = await self.models.resolve_session(self.store, tenant, session_id)
        if thread_id is None:
            raise not_found("session", session_id)
        return await self.models.loaded(self.store, self.models.thread(tenant, thread_id))

    async def _reader(self, tenant: str, query: EventsRead) -> Reader:
        """`(after, up_to, limit)` -> events of the tenant, of one sandbox, or of a thread's history
        (with its sandboxes' if asked), in that range."""
        if query.thread_id is None:
            boundary = self.models.subjects.tenant_filter(tenant)
            if query.sandbox_id is not None:
                boundary = (await self._sandbox(tenant, query.sandbox_id)).boundary
            return lambda after, up_to, limit: self.store.read(boundary, after=after, limit=limit, up_to=up_to)
        thread = await self._thread(tenant, query.thread_id)
        return lambda after, up_to, limit: read_history(self.store, self.models, thread, after=after, limit=limit,
                                                        up_to=up_to, sandboxes=query.sandboxes)

    async def _answer(self, tenant: str, query: Query) -> Any:
        match query:
            case ThreadGet():
                return ThreadResult(thread_view(await self._thread(tenant, query.thread_id)))
            case ThreadList():
                found, more = await self.models.project_threads(self.store, tenant, query.project_id, query.after,
                                                                query.limit)
                states = await self._threads(tenant, [thread_id for _, thread_id in found])
                rows = [thread_row(s) for s in states if s.exists and query.status in (None, s.status)]
                return ThreadListResult(rows, next_after=found[-1][0] if found else query.after, more=more)
            case SessionGet():
                state = await self._session_thread(tenant, query.session_id)
                return SessionResult(session_view(state, state.sessions[query.session_id]))
            case SessionTree():
                state = await self._session_thread(tenant, query.session_id)
                return TreeResult(tree(state, state.sessions[query.session_id]))
            case SandboxGet():
                return SandboxResult(sandbox_view(await self._sandbox(tenant, query.sandbox_id)))
            case SandboxListLive():
                return await self._live_sandboxes(query)
            case EventsRead():
                read = await self._reader(tenant, query)
                if query.before is None:
                    raws = await read(query.after, None, query.limit)
                else:
                    raws = await _last_before(read, query.after, query.before, query.limit)
                events, last = codec.stored_page(raws, self.models.subjects)
                more = last is not None and last != raws[-1].position  # stopped at the byte limit
                return EventsPage(events=events, next_after=query.after if last is None else last, more=more)
            case QuarantineList():
                quarantine = self.models.quarantine
                return QuarantineResult(count=quarantine.count, entries=quarantine.entries(query.after, query.limit))
        raise AssertionError(f"unhandled query {query!r}")


async def _last_before(read: Reader, after: int, before: int, limit: int) -> list[RawEvent]:
    """The last `limit` events in (after, before). The log only reads forwards, so this reads
    windows reaching back from `before`, each four times wider than the last, until it has enough:
    a dense history costs about one page, a sparse one a few more windows."""
    out: list[RawEvent] = []
    hi, width = before - 1, limit
    while hi > after and len(out) < limit:
        lo = max(after, hi - width)
        out = await read(lo, hi, None) + out
        hi, width = lo, width * 4
    return out[-limit:]
