"""Entry point; each group of subcommands lives in its own module."""

from __future__ import annotations

import asyncio
import os
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer

EXIT_CODES = ("Exit codes: 0 done; 1 refused (an error reply); 2 bad usage; 75 retryable (NATS or the engine "
              "unreachable, no reply in time, or an error marked retryable: repeat with the same --command-id).")
app = typer.Typer(no_args_is_help=True, help="Agent Ledger: threads, sessions and delegation on an event log.",
                  epilog=EXIT_CODES)


def version() -> str:
    """The installed distribution's version; pyproject.toml is the one place it is written."""
    return metadata.version("agentledger")


def _print_version(asked: bool) -> None:
    if asked:
        print(f"agentledger {version()}")
        raise typer.Exit()


@app.callback()
def root(
    _version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                           help="print the version and exit")] = False,
) -> None:
    """Agent Ledger: threads, sessions and delegation on an event log."""


NatsUrl = Annotated[str | None, typer.Option("--nats-url", envvar="NATS_URL",
                                             help="NATS server; without it, serve starts an embedded one")]
Prefix = Annotated[str, typer.Option("--prefix", envvar="AGENTLEDGER_PREFIX", help="subject prefix")]
SandboxDir = Annotated[Path, typer.Option(envvar="AGENTLEDGER_SANDBOX_DIR", help="where local sandboxes live")]
Creds = Annotated[Path | None, typer.Option("--creds", envvar="NATS_CREDS",
                                            help="this process's NATS credentials (.creds); the embedded server makes its own")]
AuthDir = Annotated[Path, typer.Option("--auth-dir", envvar="AGENTLEDGER_AUTH_DIR",
                                       help="the deployment's keys and admin.creds (embedded server)")]


@app.command()
def serve(
    nats_url: NatsUrl = None,
    data_dir: Annotated[Path, typer.Option(help="embedded server's data directory")] = Path(".agentledger/nats"),
    port: Annotated[int, typer.Option(help="embedded server's port (loopback only)")] = 4222,
    prefix: Prefix = "ledger",
    stream: Annotated[str, typer.Option(envvar="AGENTLEDGER_STREAM", help="event stream name")] = "LEDGER",
    replicas: Annotated[int, typer.Option(help="stream replicas (1, or 3 on a cluster)")] = 1,
    sandbox_dir: SandboxDir = Path(".agentledger/sandboxes"),
    effects: Annotated[bool, typer.Option(help="run the local sandbox effect handler in this process")] = True,
    creds: Creds = None,
    auth_dir: AuthDir = Path(".agentledger/auth"),
) -> None:
    """Start an engine replica; Ctrl-C stops it cleanly."""
    from cli.serve import serve as run
    from handlers.app import EngineConfig

    config = EngineConfig(prefix=prefix, stream=stream, replicas=replicas, sandbox_dir=sandbox_dir if effects else None,
                          creds=creds)
    asyncio.run(run(config, nats_url, data_dir, port, auth_dir))


@app.command()
def effects(
    nats_url: Annotated[str, typer.Option("--nats-url", envvar="NATS_URL")] = "nats://127.0.0.1:4222",
    prefix: Prefix = "ledger",
    stream: Annotated[str, typer.Option(envvar="AGENTLEDGER_STREAM", help="event stream name")] = "LEDGER",
    sandbox_dir: SandboxDir = Path(".agentledger/sandboxes"),
    ack_wait: Annotated[float, typer.Option(help="seconds before an unfinished request is handed out again")] = 30.0,
    creds: Creds = None,
) -> None:
    """Run only the sandbox effect handler (where the sandboxes live), next to engines elsewhere."""
    from cli.serve import effects as run
    from handlers.app import EngineConfig

    asyncio.run(run(EngineConfig(nats_url=nats_url, prefix=prefix, stream=stream, sandbox_dir=sandbox_dir,
                                 worker_ack_wait=ack_wait, creds=creds)))


@app.command()
def schema() -> None:
    """Print the JSON Schema of every command, query, reply and event (docs/schema.json)."""
    import json

    from schemas.contract import json_schema

    print(json.dumps(json_schema(), indent=1, sort_keys=True))


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from cli import (
        client_commands,  # noqa: F401  (registers the command/query subcommands)
        tenant_commands,  # noqa: F401  (auth and tenant subcommands)
    )

    app()
