"""`events tail`, `events export` and `replay`. `events tail` reads the event stream directly, so it
works with no engine running; `replay` and `export` read a thread's history (or the tenant's
events) through the engine's `events.read`, so they see exactly what the caller's credentials
may see, and a fork's history includes its source's."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from agentledger.cli import transport
from agentledger.cli.transport import Creds, Json, NatsUrl, Prefix, Stream, Target, Tenant, Timeout

if TYPE_CHECKING:
    from nats.aio.client import Client

    from agentledger.engine.store import EventStore

ThreadOpt = Annotated[str, typer.Option("--thread-id", callback=transport.check_thread, help="thread id (thd_…)")]
EXPORT_PAGE = 1000


async def _open_store(target: Target, stream: str, nc: Client) -> EventStore:
    import nats.errors
    from nats.js.errors import NotFoundError, ServiceUnavailableError

    from agentledger.engine.store import EventStore
    from agentledger.schemas.errors import DomainError, EntityDetails, NotFound, Unavailable

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
    import nats.errors

    from agentledger.cli import output
    from agentledger.client.errors import LedgerError
    from agentledger.engine.store import LogUnavailable
    from agentledger.schemas.errors import DomainError, Unavailable

    try:
        asyncio.run(coro)
    except (DomainError, LedgerError) as e:
        transport.fail(e)
    except (LogUnavailable, nats.errors.Error) as e:
        error = Unavailable(message=f"the event log is unavailable: {str(e) or type(e).__name__}")
        output.error(error)
        raise typer.Exit(output.exit_code(error)) from None


async def _tail(target: Target, stream: str, thread: str | None, start: int, as_json: bool, limit: int | None) -> None:
    import signal

    import msgspec

    from agentledger.cli import output
    from agentledger.engine import codec
    from agentledger.engine.store import RawEvent
    from agentledger.schemas.errors import DomainError, Unavailable

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


def _beyond(at: int | None, log_end: int | None) -> None:
    from rich.text import Text

    from agentledger.cli import output

    if at is not None and log_end and at > log_end:
        output.err.print(Text(f"note: the log ends at position {log_end}, before {at}: "
                              f"showing the thread as of position {log_end}", style="yellow"))


async def _replay(target: Target, thread: str, at: int | None, against: int | None, as_json: bool) -> None:
    """The client's replay (`agentledger.client.replay`), printed."""
    import msgspec

    from agentledger.cli import output
    from agentledger.client.replay import replays
    from agentledger.projections.history import diff

    stops: list[int | None] = [at] if against is None else sorted([at, against], key=lambda p: p or 1 << 62)
    async with transport.ledger(target) as ledger:
        shown = await replays(ledger, thread, stops)
    for stop, view in zip(stops, shown, strict=True):
        _beyond(stop, view.log_end)
    if against is None:
        view = shown[0]
        shown_at = at if at is None or not view.log_end else min(at, view.log_end)
        output.raw(msgspec.json.encode(view)) if as_json else output.out.print(
            output.replay(view.thread, view.sessions, view.trees, shown_at, view.execs))
        return
    change = diff(shown[0], shown[1])
    output.raw(msgspec.json.encode(change)) if as_json else output.out.print(output.replay_diff(change))


def replay(
    thread: ThreadOpt,
    at: Annotated[int | None, typer.Option("--at", min=1, help="log position to rebuild it as of (default: latest)")] = None,
    against: Annotated[int | None, typer.Option("--diff", min=1, help="also rebuild it at this position and show "
                                                                        "what changed between the two")] = None,
    tenant: Tenant = transport.DEFAULT_TENANT,
    nats_url: NatsUrl = transport.DEFAULT_URL,
    prefix: Prefix = transport.DEFAULT_PREFIX,
    timeout: Timeout = transport.DEFAULT_TIMEOUT,
    creds: Creds = None,
    json_: Json = False,
) -> None:
    """Rebuild a thread from its history in the log, as it was at a position, and show it.

    The history is read through the engine's `events.read` (a fork's includes its source's events
    up to the fork point) and applied to the same thread model the engine decides on; the execs
    in the sandboxes its sessions were bound to are listed with their outcomes. With --diff,
    shows what changed between the two positions instead.
    """
    _run(_replay(Target(nats_url, prefix, tenant, timeout, creds), thread, at, against, json_))


async def _export(target: Target, thread: str | None, since: int, out: Path | None,
                  progress: bool) -> int:
    import sys

    import msgspec
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from agentledger.cli import output
    from agentledger.cli.query_client import QueryClient

    written = 0
    async with QueryClient(target) as client:
        read = client.history(thread)
        page = await read(since, EXPORT_PAGE)
        end = client.log_end  # export up to the log's end when it started, so a live log cannot keep it going
        sink = sys.stdout.buffer if out is None else out.open("wb")
        bar = Progress(TextColumn("exporting"), BarColumn(), TextColumn("position {task.completed:.0f}/{task.total:.0f}"),
                       TextColumn("{task.fields[events]} events"), TimeRemainingColumn(), console=output.err,
                       transient=True, disable=not progress)
        try:
            with bar:
                task = bar.add_task("export", total=max(end, since, 1), completed=since, events=0)
                after = since
                while page.next_after > after:  # a page can be short (byte limit) or empty (quarantined events)
                    lines = [msgspec.json.encode(e) + b"\n" for e in page.events if e.position <= end]
                    sink.writelines(lines)
                    written += len(lines)
                    bar.update(task, completed=min(page.next_after, end), events=written)
                    if page.next_after >= end:
                        break
                    after = page.next_after
                    page = await read(after, EXPORT_PAGE)
        finally:
            sink.flush()
            if out is not None:
                sink.close()
    return written


def export(
    thread: Annotated[str | None, typer.Option("--thread-id", callback=transport.check_thread,
                                               help="only this thread's history (thd_…); default: the whole tenant")] = None,
    since: Annotated[int, typer.Option("--since", min=0, help="only events after this position (the last one "
                                                               "you exported, to resume)")] = 0,
    format_: Annotated[Literal["jsonl"], typer.Option("--format", help="one stored event as JSON per line")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: standard output)")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on standard error "
                                                                             "(shown only on a terminal)")] = True,
    tenant: Tenant = transport.DEFAULT_TENANT,
    nats_url: NatsUrl = transport.DEFAULT_URL,
    prefix: Prefix = transport.DEFAULT_PREFIX,
    creds: Creds = None,
    timeout: Timeout = transport.DEFAULT_TIMEOUT,
) -> None:
    """Export events up to the log's current end, oldest first, through the engine's `events.read`.

    A thread's export is its history (a fork's starts with its source's events up to the fork
    point); without --thread-id, every event of the tenant.
    """
    count: list[int] = []

    async def run() -> None:
        count.append(await _export(Target(nats_url, prefix, tenant, timeout, creds), thread, since, out, progress))

    _run(run())
    if out is not None:
        from rich.text import Text

        from agentledger.cli import output

        output.err.print(Text(f"{count[0]} events written to {out}", style="dim"))
