"""A thread as it was at a position, rebuilt on the client from its history (read through
`events.read`) with the engine's own thread model: the one code `agentledger replay` and the web
timeline use (`agentledger.projections.history`), imported only when a replay is asked for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from agentledger.client.api import exception
from agentledger.schemas.errors import EntityDetails, NotFound
from agentledger.schemas.queries import EventsPage, EventsRead
from agentledger.schemas.replay import Replay, ReplayDiff

Ask = Callable[..., Awaitable[Any]]  # the sender's `answer(query, result, fields)`: a typed reply with `position`


async def replays(ask: Ask, thread_id: str, stops: Sequence[int | None], tenant: str = "") -> list[Replay]:
    """The thread at each of `stops` (ascending; None: now), from one pass over its history. Each
    carries `log_end`, the last position the engine had read when it answered."""
    from agentledger.projections.history import replay_at

    log_end = 0

    async def read(after: int, limit: int) -> EventsPage:
        nonlocal log_end
        reply = await ask(EventsRead, EventsPage, {"thread_id": thread_id, "after": after, "limit": limit})
        log_end = max(log_end, reply.position or 0)
        return reply.result  # type: ignore[no-any-return]

    views = await replay_at(read, thread_id, stops)
    out = []
    for stop, view in zip(stops, views, strict=True):
        if view is None:
            raise exception(NotFound(message=f"thread {thread_id} has no events at or before position {stop}"
                                             + (f" (tenant {tenant})" if tenant else ""),
                                     details=EntityDetails(kind="thread", id=thread_id)))
        out.append(msgspec.structs.replace(view, log_end=log_end))
    return out


async def replay(ask: Ask, thread_id: str, at: int | None, diff: int | None, tenant: str = "") -> Replay | ReplayDiff:
    if diff is None:
        return (await replays(ask, thread_id, [at], tenant))[0]
    from agentledger.projections.history import diff as difference

    early, late = await replays(ask, thread_id, sorted([at, diff], key=lambda p: p or 1 << 62), tenant)
    return difference(early, late)
