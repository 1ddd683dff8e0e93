"""A thread as it was at a position, rebuilt on the client from its history (read through
`events.read`) with the engine's own thread model: the one code `agentledger replay` and the web
timeline use (`agentledger.projections.history`), imported only when a replay is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from agentledger.client import api
from agentledger.client.api import exception
from agentledger.schemas.errors import EntityDetails, NotFound
from agentledger.schemas.queries import EventsPage, EventsRead
from agentledger.schemas.replay import ExecView, Replay, ReplayDiff

if TYPE_CHECKING:
    from agentledger.client.ledger import Ledger


async def replays(ledger: Ledger, thread_id: str, stops: Sequence[int | None]) -> list[Replay]:
    """The thread at each of `stops` (ascending; None: now), from one pass over its history. Each
    carries `log_end`, the last position the engine had read when it answered."""
    from agentledger.projections.history import replay_at

    log_end = 0

    async def read(after: int, limit: int) -> EventsPage:
        nonlocal log_end
        reply = await ledger._sender.answer(EventsRead, EventsPage, {"thread_id": thread_id, "after": after, "limit": limit})
        log_end = max(log_end, reply.position or 0)
        assert reply.result is not None
        return reply.result

    views = await replay_at(read, thread_id, stops)
    out = []
    for stop, view in zip(stops, views, strict=True):
        if view is None:
            raise exception(NotFound(message=f"thread {thread_id} has no events at or before position {stop} "
                                             f"(tenant {ledger.tenant})",
                                     details=EntityDetails(kind="thread", id=thread_id)))
        out.append(msgspec.structs.replace(view, log_end=log_end, execs=await _execs(ledger, view, stop)))
    return out


async def _execs(ledger: Ledger, view: Replay, at: int | None) -> list[ExecView]:
    """The execs in the sandboxes the thread's sessions were bound to, as of `at`."""
    from agentledger.projections.history import bound_sandboxes, read_execs

    found: list[ExecView] = []
    for sandbox_id in bound_sandboxes(view):

        async def read(after: int, limit: int, sandbox_id: str = sandbox_id) -> EventsPage:
            reply = await ledger._sender.answer(EventsRead, EventsPage,
                                                {"sandbox_id": sandbox_id, "after": after, "limit": limit})
            assert reply.result is not None
            return reply.result

        try:
            found += await read_execs(read, at)
        except api.NotFound:  # bound, but not created (yet): it has no events
            continue
    return sorted(found, key=lambda x: x.request_position)


async def replay(ledger: Ledger, thread_id: str, at: int | None, diff: int | None) -> Replay | ReplayDiff:
    if diff is None:
        return (await replays(ledger, thread_id, [at]))[0]
    from agentledger.projections.history import diff as difference

    early, late = await replays(ledger, thread_id, sorted([at, diff], key=lambda p: p or 1 << 62))
    return difference(early, late)
