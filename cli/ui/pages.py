"""The timeline's pages: a thread's history with its sandboxes' events (`events.read` with
`sandboxes`), narrowed by an `EventFilter`, paged forwards or backwards.

Without a filter a page is one or two reads. With one, the history is scanned a read at a time
until the page is full, the history ends, or `SCAN_LIMIT` events have been examined; the page
says which positions it examined, so the next one continues from there."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from agentledger.cli.query_client import QueryClient
from agentledger.cli.ui.filters import EventFilter
from agentledger.projections.history import PageReader
from agentledger.schemas.errors import DomainError, InvalidCommand, NotFound
from agentledger.schemas.events import StoredEvent
from agentledger.schemas.queries import EventsPage, EventsRead, SessionGet, SessionResult

SCAN_READ = 500  # events per read while scanning (a page of the query stops at its byte limit anyway)
SCAN_LIMIT = 10_000  # events examined for one page at most (a few seconds on a small machine)


class TimelinePage(msgspec.Struct, frozen=True, kw_only=True):
    """Matching events, oldest first, and the positions examined for them, [scanned_from,
    scanned_to]: `start` when nothing of the history lies before, `end` when nothing lies after
    (yet)."""

    events: list[StoredEvent]
    scanned_from: int
    scanned_to: int
    start: bool
    end: bool
    examined: int


class History:
    """One thread's history with its sandboxes' events, as the credentials may read it."""

    def __init__(self, client: QueryClient, thread_id: str) -> None:
        self.client = client
        self.thread_id = thread_id

    async def read(self, after: int, limit: int, before: int | None = None) -> EventsPage:
        query = EventsRead(thread_id=self.thread_id, sandboxes=True, after=after, before=before, limit=limit)
        return await self.client.ask(query, EventsPage)

    async def narrowed(self, params: Mapping[str, str]) -> EventFilter:
        """The filter a page asks for (`session`, `type`, `actor`, `correlation`, `q`); a session's
        own sandbox comes from `session.get`."""
        session = params.get("session", "").strip()
        sandboxes: frozenset[str] = frozenset()
        if session:
            try:
                bound = (await self.client.ask(SessionGet(session_id=session), SessionResult)).session.sandbox
                sandboxes = frozenset([bound.sandbox_id] if bound else [])
            except DomainError as e:
                if not isinstance(e.error, NotFound | InvalidCommand):
                    raise  # not a session of this tenant (or not an id at all) names no sandbox; anything else is an error
        return EventFilter(session=session, type=params.get("type", "").strip(), actor=params.get("actor", "").strip(),
                           correlation=params.get("correlation", "").strip(), text=params.get("q", "").strip(),
                           sandboxes=sandboxes)

    def pages(self) -> PageReader:
        """Forward pages, for the live feed."""
        return lambda after, limit: self.read(after, limit)

    async def _last_before(self, after: int, before: int, limit: int) -> list[StoredEvent]:
        """The last `limit` events in (after, before), all of them: a page that met the byte limit
        keeps its oldest part, so the rest is read after it."""
        page = await self.read(after, limit, before)
        events = list(page.events)
        while page.more and events:
            page = await self.read(events[-1].position, limit, before)
            events += page.events
        return events

    async def forwards(self, after: int, limit: int, match: EventFilter) -> TimelinePage:
        """The first `limit` matches after `after`."""
        out: list[StoredEvent] = []
        examined, position, end = 0, after, False
        while len(out) < limit and examined < SCAN_LIMIT:
            page = await self.read(position, SCAN_READ if match.active else limit - len(out))
            for event in page.events:
                examined += 1
                if match.matches(event):
                    out.append(event)
                    if len(out) == limit:
                        return TimelinePage(events=out, scanned_from=after + 1, scanned_to=event.position, start=after == 0,
                                            end=False, examined=examined)
            if page.next_after <= position:
                end = True
                break
            position = page.next_after
        return TimelinePage(events=out, scanned_from=after + 1, scanned_to=position, start=after == 0, end=end,
                            examined=examined)

    async def backwards(self, after: int, before: int, limit: int, match: EventFilter) -> TimelinePage:
        """The last `limit` matches in (after, before)."""
        out: list[StoredEvent] = []
        examined, position, start = 0, before, False
        while len(out) < limit and examined < SCAN_LIMIT:
            want = SCAN_READ if match.active else limit - len(out)
            events = await self._last_before(after, position, want)
            for event in reversed(events):
                examined += 1
                if match.matches(event):
                    out.append(event)
                    if len(out) == limit:
                        return TimelinePage(events=out[::-1], scanned_from=event.position, scanned_to=before - 1,
                                            start=False, end=before > self.client.log_end, examined=examined)
            if len(events) < want:
                start = True
                position = after + 1
                break
            position = events[0].position
        return TimelinePage(events=out[::-1], scanned_from=position, scanned_to=before - 1, start=start,
                            end=before > self.client.log_end, examined=examined)
