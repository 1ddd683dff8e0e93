"""`workers parked`: what the process manager and effect handlers gave up on, read from the
parking lot beside the stream (so it works with no engine running)."""

from __future__ import annotations

import typer

from agentledger.cli import transport
from agentledger.cli.transport import Creds, Json, NatsUrl, Stream, Target, Timeout

workers = typer.Typer(no_args_is_help=True, help="What the engine's workers gave up on.")


@workers.command("parked")
def parked(
    stream: Stream = transport.DEFAULT_STREAM,
    nats_url: NatsUrl = transport.DEFAULT_URL,
    timeout: Timeout = transport.DEFAULT_TIMEOUT,
    creds: Creds = None,
    json_: Json = False,
) -> None:
    """List the log events workers parked after their retries (each was acknowledged and skipped)."""
    from agentledger.cli.log_commands import _run

    _run(_parked(Target(nats_url, transport.DEFAULT_PREFIX, transport.DEFAULT_TENANT, timeout, creds), stream, json_))


async def _parked(target: Target, stream: str, as_json: bool) -> None:
    import msgspec
    from rich.table import Table

    from agentledger.cli import output
    from agentledger.handlers.parking import parked as read_parked

    nc = await transport.connect(target)
    try:
        found = await read_parked(nc.jetstream(timeout=target.timeout), stream)
    finally:
        await nc.close()
    if as_json:
        print(msgspec.json.encode(found).decode())
        return
    table = Table("worker", "position", "subject", "attempts", "at", "error", box=None)
    for p in found:
        table.add_row(p.worker, str(p.position), p.subject, str(p.attempts), p.at, p.error)
    output.out.print(table if found else "nothing parked")
