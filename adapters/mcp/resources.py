"""The resources: the tenant's threads, one thread, its timeline, one session with its delegation
tree, one sandbox; each read through the engine's queries and given as the contract's JSON.

A paged one (the thread listing, a timeline) carries the URI of its next page in `_meta`
(`agentledger/next`) while there may be more: `?after=` the page's `next_after`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec
from mcp.shared.uri_template import UriTemplate
from mcp.types import ListResourcesResult, ReadResourceResult, Resource, ResourceTemplate, TextResourceContents

from agentledger.adapters.mcp.refusals import read_error
from agentledger.client import Ledger, LedgerError
from agentledger.client.api import exception
from agentledger.client.validation import check, invalid
from agentledger.schemas.queries import EventsRead, Query, ThreadList

JSON = "application/json"
THREADS = "ledger://threads"
NEXT = "agentledger/next"
NUMBERS = frozenset({"after", "limit"})  # URI variables that are integers in their query


@dataclass(frozen=True)
class Page:
    """What a read gives: the JSON and, for a paged resource with more to read, the next page's URI."""

    body: Any
    next: str | None = None


Reader = Callable[[Ledger, dict[str, Any]], Awaitable[Page]]


Q = TypeVar("Q", bound=Query)


def _query(query: type[Q], variables: dict[str, Any]) -> tuple[Q, dict[str, Any]]:
    """The URI's variables as the query, checked as the client checks a request, and as its fields."""
    values = {k: int(v) if k in NUMBERS and isinstance(v, str) and v.isdigit() else v for k, v in variables.items()}
    body = check(query, values)
    return body, {f: getattr(body, f) for f in values}


def _next(base: str, fields: dict[str, Any], rows: int, limit: int, more: bool, next_after: int) -> str | None:
    """The next page's URI while there may be one (this page came back full, or cut short by size)."""
    if rows == 0 or not (more or rows >= limit):
        return None
    query = {k: v for k, v in {**fields, "after": next_after}.items() if v is not None}
    return f"{base}?{urlencode(query)}"


async def _threads(ledger: Ledger, variables: dict[str, Any]) -> Page:
    query, fields = _query(ThreadList, variables)
    page = await ledger.thread.list(**fields)
    return Page(page, _next(THREADS, fields, len(page.threads), query.limit, page.more, page.next_after))


async def _thread(ledger: Ledger, variables: dict[str, Any]) -> Page:
    return Page(await ledger.thread.get(thread_id=variables["thread_id"]))


async def _timeline(ledger: Ledger, variables: dict[str, Any]) -> Page:
    query, fields = _query(EventsRead, variables)
    page = await ledger.events.read(**fields)
    paging = {k: v for k, v in fields.items() if k != "thread_id"}
    return Page(page, _next(f"{THREADS}/{query.thread_id}/timeline", paging, len(page.events), query.limit, page.more,
                            page.next_after))


async def _session(ledger: Ledger, variables: dict[str, Any]) -> Page:
    session = await ledger.session.get(session_id=variables["session_id"])
    tree = await ledger.session.tree(session_id=variables["session_id"])
    return Page({"session": session.session, "tree": tree.tree})


async def _sandbox(ledger: Ledger, variables: dict[str, Any]) -> Page:
    return Page(await ledger.sandbox.get(sandbox_id=variables["sandbox_id"]))


@dataclass(frozen=True)
class Template:
    template: ResourceTemplate
    read: Reader

    @property
    def uri(self) -> UriTemplate:
        return UriTemplate.parse(self.template.uri_template)


def _template(uri: str, name: str, description: str, read: Reader) -> Template:
    return Template(ResourceTemplate(uri_template=uri, name=name, description=description, mime_type=JSON), read)


TEMPLATES = (
    _template(THREADS + "{?project_id,status,after,limit}", "threads",
              "The tenant's threads, a page of thread.list: {threads, next_after, more}.", _threads),
    _template(THREADS + "/{thread_id}", "thread",
              "One thread (thread.get): status, sessions, caps, held sandboxes.", _thread),
    _template(THREADS + "/{thread_id}/timeline{?after,limit}", "timeline",
              "A page of the thread's events, oldest first (events.read): {events, next_after, more}; "
              "the next page is ?after=next_after.", _timeline),
    _template("ledger://sessions/{session_id}", "session",
              "One session (session.get) and its delegation tree below it (session.tree): {session, tree}.", _session),
    _template("ledger://sandboxes/{sandbox_id}", "sandbox", "One sandbox (sandbox.get).", _sandbox),
)


async def read(ledger: Ledger, uri: str) -> ReadResourceResult:
    """The resource at `uri`; a refusal (or a URI naming none) is raised as a JSON-RPC error."""
    try:
        for template in TEMPLATES:
            variables = template.uri.match(uri)
            if variables is not None:
                page = await template.read(ledger, variables)
                break
        else:
            raise exception(invalid(f"no resource at {uri!r}: the resources are "
                                    + ", ".join(t.template.uri_template for t in TEMPLATES), "$.uri"))
    except LedgerError as e:
        raise read_error(e, uri) from None
    text = msgspec.json.encode(page.body).decode()
    meta = {NEXT: page.next} if page.next else None
    return ReadResourceResult(contents=[TextResourceContents(uri=uri, mime_type=JSON, text=text, _meta=meta)])


async def listed(ledger: Ledger, cursor: str | None) -> ListResourcesResult:
    """The listing, then one resource per thread, a page of thread.list per cursor (its `next_after`)."""
    try:
        query, fields = _query(ThreadList, {"after": cursor or "0"})
        page = await ledger.thread.list(**fields)
    except LedgerError as e:
        raise read_error(e, THREADS) from None
    listing = [Resource(uri=THREADS, name="threads", description="The tenant's threads (a page; ?after= pages on)",
                        mime_type=JSON)] if cursor is None else []
    threads = [Resource(uri=f"{THREADS}/{row.thread_id}", name=row.thread_id, title=row.title or None,
                        description=f"thread {row.thread_id} ({row.status}, {row.session_count} sessions)",
                        mime_type=JSON) for row in page.threads]
    following = _next(THREADS, {}, len(page.threads), query.limit, page.more, page.next_after)
    return ListResourcesResult(resources=listing + threads, next_cursor=str(page.next_after) if following else None)
