"""One long-lived connection that asks the engine's queries, for readers that ask many
(replay, export, the web timeline). It sees what the credentials it connects with may see."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from agentledger.cli import transport
from agentledger.cli.transport import Target
from agentledger.client.connection import Connection
from agentledger.client.errors import LedgerError
from agentledger.projections.history import PageReader
from agentledger.schemas.errors import AnyError, DomainError
from agentledger.schemas.queries import EventsPage, EventsRead, Query

R = TypeVar("R")


class _Reply(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """A QueryReply whose result is decoded straight into its type (one pass, no dict in between)."""

    ok: bool
    position: int | None = None
    result: R | None = None
    error: AnyError | None = None


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


class QueryClient:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.connection: Connection | None = None
        self.log_end = 0  # the highest read-model position any reply reported

    async def __aenter__(self) -> QueryClient:
        # long-lived: rides out reconnects
        self.connection = await transport.connection(self.target, on_closed=lambda: None)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def ask(self, query: Query, result: type[R]) -> R:
        """The query's typed result; an error reply (or no reply) is raised as DomainError."""
        assert self.connection is not None, "use `async with QueryClient(...)`"
        subject = self.target.subjects.query(self.target.tenant, query.NAME)
        try:
            data = await self.connection.request(subject, msgspec.json.encode(query), self.target.timeout,
                                                 self.target.tenant)
        except LedgerError as e:
            if e.error is None:
                raise
            raise DomainError(e.error) from None
        decoder = _decoders.get(result) or _decoders.setdefault(result, msgspec.json.Decoder(_Reply[result]))  # type: ignore[valid-type]
        reply = decoder.decode(data)
        if not reply.ok:
            assert reply.error is not None
            raise DomainError(reply.error)
        assert reply.result is not None
        self.log_end = max(self.log_end, reply.position or 0)
        return reply.result  # type: ignore[no-any-return]

    def history(self, thread_id: str | None) -> PageReader:
        """Pages of a thread's history (or the tenant's events), for `projections.history.replay_at`."""

        async def read(after: int, limit: int) -> EventsPage:
            return await self.ask(EventsRead(thread_id=thread_id, after=after, limit=limit), EventsPage)

        return read

    def sandbox_history(self, sandbox_id: str) -> PageReader:
        """Pages of one sandbox's events."""

        async def read(after: int, limit: int) -> EventsPage:
            return await self.ask(EventsRead(sandbox_id=sandbox_id, after=after, limit=limit), EventsPage)

        return read
