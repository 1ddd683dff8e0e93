"""`events tail` and `replay`: read the event stream directly rather than ask an engine, so they
work with no engine running and show exactly what the log holds."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Annotated, Any

import msgspec
import nats.errors
import typer
from nats.aio.client import Client
from nats.js.errors import NotFoundError, ServiceUnavailableError

from cli import output, transport
from cli.transport import Creds, Json, NatsUrl, Prefix, Stream, Target, Tenant, Timeout
from engine import codec
from engine.store import EventStore, LogUnavailable, RawEvent
from engine.thread_model import ThreadState
from projections.views import session_view, thread_view, tree
from schemas.errors import DomainError, EntityDetails, NotFound, Unavailable
from schemas.queries import SessionView, ThreadView, TreeNode

ThreadOpt = Annotated[str, typer.Option("--thread-id", callback=transport.check_thread, help="thread id (thd_…)")]


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    """`replay --json`: the thread, every session and the delegation trees, as of `at`."""

    at: int | None
    thread: ThreadView
    sessions: list[SessionView]
    trees: list[TreeNode]


async def _open_store(target: Target, stream: str, nc: Client) -> EventStore:
    try:
        await nc.jetstream(timeout=target.timeout).stream_info(stream)
    except NotFoundError:
        raise DomainError(NotFound(message=f"stream {stream} not found (check --stream)",
                                   details=EntityDetails(kind="stream", id=stream))) from None
    except (ServiceUnavailableError, nats.errors.NoRespondersError):
        raise DomainError(Unavailable(message=f"NATS at {target.nats_url} has no JetStream: this command reads the "
                                              "event stream directly, so it needs the server the engine logs to",
                                      retryable=False)) from None
    except nats.errors.TimeoutError:
        raise DomainError(Unavailable(message=f"JetStream at {target.nats_url} did not answer within "
                                              f"{target.timeout:g}s")) from None
    return EventStore(nc, stream, timeout=target.timeout)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run a log command; its errors print like error replies, in one line, with the same exit codes."""
    try:
        asyncio.run(coro)
    except DomainError as e:
        output.error(e.error)
        raise typer.Exit(output.exit_code(e.error)) from None
    except (LogUnavailable, nats.errors.Error) as e:
        error = Unavailable(message=f"the event log is unavailable: {str(e) or type(e).__name__}")
        output.error(error)
        raise typer.Exit(output.exit_code(error)) from None


async def _tail(target: Target, stream: str, thread: str | None, start: int, as_json: bool, limit: int | None) -> None:
    lost = asyncio.Event()
    nc = await transport.connect(target, on_closed=lost.set)
    try:
        store = await _open_store(target, stream, nc)
        subjects = target.subjects
        subject_filter = subjects.thread_filter(target.tenant, thread) if thread else subjects.tenant_filter(target.tenant)
        done = asyncio.Event()
        seen = 0

        def on_event(raw: RawEvent) -> None:
            nonlocal seen
            if done.is_set():
                return
            try:
                event = codec.stored(codec.decode(raw.data), raw.position)
            except (msgspec.DecodeError, ValueError) as e:
                output.err.print(f"{raw.position:>6}  cannot decode event on {raw.subject}: {e}", markup=False)
            else:
                output.raw(msgspec.json.encode(event)) if as_json else output.out.print(output.event_line(event))
            seen += 1
            if limit is not None and seen >= limit:
                done.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        sub = await store.follow(subject_filter, max(start - 1, 0), on_event)
        waits = [asyncio.ensure_future(done.wait()), asyncio.ensure_future(lost.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if lost.is_set():
            raise DomainError(Unavailable(message=f"lost the connection to {target.nats_url}"))
        await sub.unsubscribe()
    finally:
        await nc.close()


def tail(
    thread: Annotated[str | None, typer.Option("--thread-id", callback=transport.check_thread,
                                               help="only this thread's events (thd_…)")] = None,
    start: Annotated[int, typer.Option("--from", min=0, help="first position to show; 0 shows the whole log")] = 0,
    tenant: Tenant = transport.DEFAULT_TENANT,
    stream: Stream = transport.DEFAULT_STREAM,
    nats_url: NatsUrl = transport.DEFAULT_URL,
    prefix: Prefix = transport.DEFAULT_PREFIX,
    timeout: Timeout = transport.DEFAULT_TIMEOUT,
    creds: Creds = None,
    json_: Json = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, hidden=True, help="stop after this many events")] = None,
) -> None:
    """Follow the event log live, one line per event, until Ctrl-C.

    With --json, each line is the stored event as JSON.
    """
    _run(_tail(Target(nats_url, prefix, tenant, timeout, creds), stream, thread, start, json_, limit))


async def _replay(target: Target, stream: str, thread: str, at: int | None, as_json: bool) -> None:
    nc = await transport.connect(target)
    try:
        store = await _open_store(target, stream, nc)
        boundary = target.subjects.thread_filter(target.tenant, thread)
        raws = await store.read(boundary, up_to=at)
    finally:
        await nc.close()
    if not raws:
        where = f"at or before position {at}" if at is not None else "in the log"
        raise DomainError(NotFound(message=f"thread {thread} has no events {where} (tenant {target.tenant})",
                                   details=EntityDetails(kind="thread", id=thread)))
    state = ThreadState(target.tenant, boundary, thread)
    for raw in raws:
        state.apply(codec.decode(raw.data), raw.position)
    sessions = list(state.sessions.values())
    view = Replay(at=at, thread=thread_view(state), sessions=[session_view(state, s) for s in sessions],
                  trees=[tree(state, s) for s in sessions if s.parent_session_id is None])
    if as_json:
        output.raw(msgspec.json.encode(view))
    else:
        output.out.print(output.replay(view.thread, view.sessions, view.trees, at))


def replay(
    thread: ThreadOpt,
    at: Annotated[int | None, typer.Option("--at", min=1, help="log position to rebuild it as of (default: latest)")] = None,
    tenant: Tenant = transport.DEFAULT_TENANT,
    stream: Stream = transport.DEFAULT_STREAM,
    nats_url: NatsUrl = transport.DEFAULT_URL,
    prefix: Prefix = transport.DEFAULT_PREFIX,
    timeout: Timeout = transport.DEFAULT_TIMEOUT,
    creds: Creds = None,
    json_: Json = False,
) -> None:
    """Rebuild a thread from the log alone, as it was at a position, and show it."""
    _run(_replay(Target(nats_url, prefix, tenant, timeout, creds), stream, thread, at, json_))
