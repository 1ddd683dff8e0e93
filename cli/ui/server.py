"""The timeline's HTTP side: a JSON API over the engine's queries, the page, and a live feed.

Every answer comes from a query sent with the credentials `agentledger ui` was started with, so
the page shows exactly what those credentials may read (one tenant). Nothing here computes
state: replays come from `projections.history` (see `replays.py`).

A request is answered only when its `Host` names this server as the operator reaches it (a
loopback address, `localhost`, the address it listens on, or a name given with `--allow-host`)
and its `Origin`, when a browser sends one, is this server's own: otherwise any web page could
read the tenant's data, by a name of its own resolved to 127.0.0.1 (DNS rebinding) or across
origins.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from agentledger.cli.query_client import QueryClient
from agentledger.cli.ui.pages import History
from agentledger.cli.ui.replays import Replays
from agentledger.handlers import natsfix
from agentledger.schemas.errors import DomainError
from agentledger.schemas.queries import (
    SandboxGet,
    SandboxResult,
    ThreadGet,
    ThreadList,
    ThreadListResult,
    ThreadResult,
)

PAGE = 100
THREAD_PAGE = 200  # threads per page of the list (each one a model the engine may have to load)
_STATUS = {"not_found": 404, "forbidden": 403, "unavailable": 503, "invalid_command": 400}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = resources.files("agentledger.cli.ui") / "static"


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


def _int(request: web.Request, name: str, default: int | None = None, low: int = 0) -> int | None:
    text = request.query.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if value < low:
        raise web.HTTPBadRequest(text=f"{name} must be at least {low}")
    return value


class Hosts:
    """The names under which this server may be reached (compared without port, lower case)."""

    def __init__(self, listen: str, allowed: Iterable[str] = ()) -> None:
        self.names = {"localhost", *(name.strip("[]").lower() for name in allowed)}
        if listen.strip("[]") not in ("0.0.0.0", "::", ""):  # listening everywhere names no host
            self.names.add(listen.strip("[]").lower())

    def allows(self, host: str | None) -> bool:
        if not host:
            return False
        if host in self.names:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
            host = _hostname(request.host)
            if not self.allows(host):
                hint = f"; to reach it by that name, start it with --allow-host {host}" if host else ""
                return web.Response(status=403, text=f"Host {request.host!r} is not one this server answers to{hint}")
            origin = request.headers.get("Origin")
            if origin is not None and origin.lower() != f"http://{request.host}".lower():
                return web.Response(status=403, text=f"Origin {origin!r} may not read this server")
            return await handler(request)

        return same_origin


_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.-]+))(?::[0-9]{1,5})?$")


def _hostname(host: str) -> str | None:
    """The name in a `Host` header (`name`, `name:port`, `[v6]:port`), or None when it is not one."""
    match = _HOST.match(host)
    return None if match is None else (match["v6"] or match["name"]).lower()


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An engine error reply becomes the same JSON error body with a fitting HTTP status."""
    try:
        return await handler(request)
    except DomainError as e:
        code = type(e.error).__struct_config__.tag
        return _json({"error": e.error}, _STATUS.get(str(code), 502))


class Timeline:
    def __init__(self, client: QueryClient, hosts: Hosts, poll_seconds: float = 0.5) -> None:
        self.client, self.hosts = client, hosts
        self.replays = Replays(client)
        self.poll_seconds = poll_seconds
        self._feeds: set[asyncio.Task[Any]] = set()  # open live feeds, ended when the server stops

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.hosts.middleware(), _errors])
        app.on_shutdown.append(self._end_feeds)
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/api/threads", self.threads)
        app.router.add_get("/api/threads/{thread_id}", self.thread)
        app.router.add_get("/api/threads/{thread_id}/events", self.events)
        app.router.add_get("/api/threads/{thread_id}/state", self.state)
        app.router.add_get("/api/threads/{thread_id}/diff", self.diff)
        app.router.add_get("/api/threads/{thread_id}/live", self.live)
        app.router.add_get("/api/sandboxes/{sandbox_id}", self.sandbox)
        app.router.add_get("/api/threads/{thread_id}/sandboxes", self.sandboxes)
        return app

    # -- the page ---------------------------------------------------------------------------------
    async def index(self, _: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kinds = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
        kind = next((k for ext, k in kinds.items() if name.endswith(ext)), None)
        item = STATIC / name
        if kind is None or "/" in name or not item.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=item.read_bytes(), content_type=kind)

    # -- the API ----------------------------------------------------------------------------------
    async def threads(self, request: web.Request) -> web.Response:
        """One page of the tenant's threads, oldest first, after creation position `after`."""
        result = await self.client.ask(ThreadList(after=_int(request, "after", 0) or 0, limit=THREAD_PAGE),
                                       ThreadListResult)
        return _json({"threads": result.threads, "next_after": result.next_after, "more": result.more,
                      "log_end": self.client.log_end, "tenant": self.client.target.tenant})

    async def thread(self, request: web.Request) -> web.Response:
        result = await self.client.ask(ThreadGet(thread_id=request.match_info["thread_id"]), ThreadResult)
        return _json({"thread": result.thread, "log_end": self.client.log_end})

    async def events(self, request: web.Request) -> web.Response:
        """One page of the thread's history with its sandboxes' events, narrowed by the filters:
        the first matches after `after`, or the last ones before `before`."""
        history = History(self.client, request.match_info["thread_id"])
        after, before = _int(request, "after", 0) or 0, _int(request, "before", low=1)
        limit = min(_int(request, "limit", PAGE, low=1) or PAGE, 1000)
        match = await history.narrowed(request.query)
        page = await (history.forwards(after, limit, match) if before is None
                      else history.backwards(after, before, limit, match))
        return _json(msgspec.structs.asdict(page) | {"next_after": page.scanned_to, "log_end": self.client.log_end})

    async def state(self, request: web.Request) -> web.Response:
        at = _int(request, "at", low=1)
        if at is None:
            await self.client.ask(ThreadGet(thread_id=request.match_info["thread_id"]), ThreadResult)
            at = self.client.log_end
        return _json(await self.replays.at(request.match_info["thread_id"], at))

    async def diff(self, request: web.Request) -> web.Response:
        a, b = _int(request, "from", low=1), _int(request, "to", low=1)
        if a is None or b is None:
            raise web.HTTPBadRequest(text="from and to are required")
        return _json(await self.replays.diff(request.match_info["thread_id"], a, b))

    async def sandbox(self, request: web.Request) -> web.Response:
        result = await self.client.ask(SandboxGet(sandbox_id=request.match_info["sandbox_id"]), SandboxResult)
        return _json({"sandbox": result.sandbox})

    async def sandboxes(self, request: web.Request) -> web.Response:
        """The thread's sandboxes as of `at`, each replayed from its own events (not as they are now)."""
        at = _int(request, "at", low=1)
        if at is None:
            raise web.HTTPBadRequest(text="at is required")
        return _json(await self.replays.sandboxes(request.match_info["thread_id"], at))

    async def _end_feeds(self, _: web.Application) -> None:
        for task in list(self._feeds):
            task.cancel()

    async def live(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each batch of the thread's new events as it lands (polled with
        events.read, so it needs nothing beyond the query rights)."""
        thread_id = request.match_info["thread_id"]
        after = _int(request, "after", 0) or 0
        read = History(self.client, thread_id).pages()
        await read(after, 1)  # an unknown thread or a refused read is an error reply, not an empty stream
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._feeds.add(task)
        try:
            while True:
                page = await read(after, PAGE)
                moved, after = page.next_after > after, max(after, page.next_after)
                if page.events:
                    body = msgspec.json.encode({"events": page.events, "log_end": self.client.log_end})
                    await response.write(b"event: events\ndata: " + body + b"\n\n")
                if moved:
                    continue
                await response.write(b": idle\n\n")
                await asyncio.sleep(self.poll_seconds)
        except ConnectionResetError:
            pass  # the page went away
        except DomainError as e:
            await response.write(b"event: failure\ndata: " + msgspec.json.encode({"error": e.error}) + b"\n\n")
        finally:
            self._feeds.discard(task)
        return response


async def serve(client: QueryClient, host: str, port: int, ready: Callable[[int], None] | None = None,
                allow_hosts: Iterable[str] = ()) -> None:
    """Serve until cancelled; `ready` gets the bound port (useful with port 0)."""
    natsfix.apply()  # a message its connection cannot read is dropped, not the end of reading
    runner = web.AppRunner(Timeline(client, Hosts(host, allow_hosts)).app(), handle_signals=False,
                           shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port  # type: ignore[union-attr]
    if ready is not None:
        ready(bound)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
