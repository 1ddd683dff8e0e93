"""A thread's history as its readers see it: for a fork, the source's history up to the fork
point (recursively), then the fork's own events. Nothing is copied; positions stay the log's."""

from __future__ import annotations

from engine.store import EventStore, RawEvent
from engine.thread_model import ThreadState
from projections.models import LedgerModels


async def read_history(store: EventStore, models: LedgerModels, thread: ThreadState, after: int = 0,
                       limit: int | None = None, up_to: int | None = None) -> list[RawEvent]:
    """Events of `thread`'s lineage with position in (after, up_to], oldest first, at most `limit`.

    Positions are increasing along a lineage (a source's events before the fork point precede the
    fork's creation), so `after` pages through the whole history like through one boundary.
    """
    out: list[RawEvent] = []
    fork = thread.forked_from
    if fork is not None and after < fork.position:
        source = await models.loaded(store, models.thread(thread.tenant_id, fork.thread_id))
        cap = fork.position if up_to is None else min(up_to, fork.position)
        out = await read_history(store, models, source, after=after, limit=limit, up_to=cap)
        if limit is not None and len(out) >= limit:
            return out[:limit]
    remaining = None if limit is None else limit - len(out)
    own = await store.read(thread.boundary, after=max(after, out[-1].position if out else after), limit=remaining,
                           up_to=up_to)
    return out + own
