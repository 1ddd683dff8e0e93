"""Entry point; each group of subcommands lives in its own module."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Agent Ledger: threads, sessions and delegation on an event log.")



@app.callback()
def root() -> None:
    """Agent Ledger: threads, sessions and delegation on an event log."""


NatsUrl = Annotated[str | None, typer.Option("--nats-url", envvar="NATS_URL",
                                             help="NATS server; without it, serve starts an embedded one")]
Prefix = Annotated[str, typer.Option("--prefix", envvar="AGENTLEDGER_PREFIX", help="subject prefix")]


@app.command()
def serve(
    nats_url: NatsUrl = None,
    data_dir: Annotated[Path, typer.Option(help="embedded server's data directory")] = Path(".agentledger/nats"),
    port: Annotated[int, typer.Option(help="embedded server's port (loopback only)")] = 4222,
    prefix: Prefix = "ledger",
    stream: Annotated[str, typer.Option(envvar="AGENTLEDGER_STREAM", help="event stream name")] = "LEDGER",
    replicas: Annotated[int, typer.Option(help="stream replicas (1, or 3 on a cluster)")] = 1,
) -> None:
    """Start an engine replica; Ctrl-C stops it cleanly."""
    from cli.serve import serve as run

    asyncio.run(run(nats_url, data_dir, port, prefix, stream, replicas))


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from cli import client_commands  # noqa: F401  (registers the command/query subcommands)

    app()
