"""Entry point; each group of subcommands lives in its own module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

EXIT_CODES = ("Exit codes: 0 done; 1 refused (an error reply); 2 bad usage; 75 retryable (NATS or the engine "
              "unreachable, no reply in time, or an error marked retryable: repeat with the same --command-id).")
app = typer.Typer(no_args_is_help=True, help="Agent Ledger: threads, sessions and delegation on an event log.",
                  epilog=EXIT_CODES)


def _print_version(asked: bool) -> None:
    if asked:
        from agentledger.schemas.contract import version

        print(f"agentledger {version()}")
        raise typer.Exit()


@app.callback()
def root(
    log_format: Annotated[str, typer.Option(envvar="AGENTLEDGER_LOG_FORMAT",
                                            help="auto (human on a terminal, else JSON lines), json or human")] = "auto",
    log_level: Annotated[str, typer.Option(envvar="AGENTLEDGER_LOG_LEVEL", help="debug, info, warning, error")] = "info",
    _version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                           help="print the version and exit")] = False,
) -> None:
    """Agent Ledger: threads, sessions and delegation on an event log."""
    from agentledger.handlers.observability import logs

    logs.configure(log_format, log_level)


NatsUrl = Annotated[str | None, typer.Option("--nats-url", envvar="NATS_URL",
                                             help="NATS server; without it, serve starts an embedded one")]
Prefix = Annotated[str, typer.Option("--prefix", envvar="AGENTLEDGER_PREFIX", help="subject prefix")]
SandboxDir = Annotated[Path, typer.Option(envvar="AGENTLEDGER_SANDBOX_DIR", help="where local sandboxes live")]
HttpPort = Annotated[int | None, typer.Option(envvar="AGENTLEDGER_HTTP_PORT",
                                              help="serve /metrics, /healthz and /readyz on this port")]
HttpHost = Annotated[str, typer.Option(envvar="AGENTLEDGER_HTTP_HOST", help="address for --http-port")]
ReconnectBudget = Annotated[float, typer.Option(
    envvar="AGENTLEDGER_RECONNECT_BUDGET",
    help="seconds to keep reconnecting to a lost NATS before exiting with 1 (negative: forever)")]
ReconnectWait = Annotated[float, typer.Option(envvar="AGENTLEDGER_RECONNECT_WAIT",
                                              help="seconds between reconnect attempts")]
AllowCommand = Annotated[list[str] | None, typer.Option(
    "--allow-command", envvar="AGENTLEDGER_SANDBOX_COMMANDS",
    help="a program sandboxes may run (options.command[0], exactly); repeat it; none by default")]
AllowRepo = Annotated[list[Path] | None, typer.Option(
    "--allow-repo", envvar="AGENTLEDGER_SANDBOX_REPOS",
    help="a directory whose git repositories sandboxes may check out; repeat it; none by default")]
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
    http_port: HttpPort = None,
    http_host: HttpHost = "127.0.0.1",
    reconnect_budget: ReconnectBudget = 120.0,
    reconnect_wait: ReconnectWait = 2.0,
    cache_size: Annotated[int, typer.Option(envvar="AGENTLEDGER_CACHE_SIZE", min=1,
                                            help="boundary models kept in memory (others load from the log)")] = 4_000,
    cache_bytes: Annotated[int, typer.Option(envvar="AGENTLEDGER_CACHE_BYTES", min=0,
                                             help="and their estimated size together, in bytes (0: no bound)")]
        = 256 * 1024 * 1024,
    tenant_workers: Annotated[int | None, typer.Option(envvar="AGENTLEDGER_TENANT_WORKERS", min=1, max=64,
                                                       help="of the 64 commands in progress at once, at most this "
                                                            "many for one tenant [default: 48]")] = None,
    decide_within: Annotated[float, typer.Option(envvar="AGENTLEDGER_DECIDE_WITHIN", min=0.1,
                                                 help="seconds after arrival a command may still be decided (later: "
                                                      "unavailable); keep it below your clients' retry interval")] = 2.0,
    allow_command: AllowCommand = None,
    allow_repo: AllowRepo = None,
    creds: Creds = None,
    auth_dir: AuthDir = Path(".agentledger/auth"),
) -> None:
    """Start an engine replica; Ctrl-C stops it cleanly (exit 0). Exits 1 when it cannot serve."""
    from agentledger.cli.serve import HttpOptions, run_process
    from agentledger.cli.serve import serve as run
    from agentledger.handlers.config import EngineConfig
    from agentledger.handlers.observability.connection import Reconnect

    config = EngineConfig(prefix=prefix, stream=stream, replicas=replicas, sandbox_dir=sandbox_dir if effects else None,
                          sandbox_commands=tuple(allow_command or ()), sandbox_repos=tuple(map(str, allow_repo or ())),
                          creds=creds, cache_size=cache_size, cache_bytes=cache_bytes or None,
                          tenant_workers=tenant_workers, decide_within=decide_within,
                          reconnect=Reconnect(wait=reconnect_wait, budget=reconnect_budget))
    raise typer.Exit(run_process(run(config, nats_url, data_dir, port, auth_dir, HttpOptions(http_port, http_host))))


@app.command()
def effects(
    nats_url: Annotated[str, typer.Option("--nats-url", envvar="NATS_URL")] = "nats://127.0.0.1:4222",
    prefix: Prefix = "ledger",
    stream: Annotated[str, typer.Option(envvar="AGENTLEDGER_STREAM", help="event stream name")] = "LEDGER",
    sandbox_dir: SandboxDir = Path(".agentledger/sandboxes"),
    ack_wait: Annotated[float, typer.Option(help="seconds before an unfinished request is handed out again")] = 30.0,
    http_port: HttpPort = None,
    http_host: HttpHost = "127.0.0.1",
    reconnect_budget: ReconnectBudget = 120.0,
    reconnect_wait: ReconnectWait = 2.0,
    allow_command: AllowCommand = None,
    allow_repo: AllowRepo = None,
    creds: Creds = None,
) -> None:
    """Run only the sandbox effect handler (where the sandboxes live), next to engines elsewhere."""
    from agentledger.cli.serve import HttpOptions, run_process
    from agentledger.cli.serve import effects as run
    from agentledger.handlers.config import EngineConfig
    from agentledger.handlers.observability.connection import Reconnect

    config = EngineConfig(nats_url=nats_url, prefix=prefix, stream=stream, sandbox_dir=sandbox_dir,
                          worker_ack_wait=ack_wait, sandbox_commands=tuple(allow_command or ()),
                          sandbox_repos=tuple(map(str, allow_repo or ())), creds=creds,
                          reconnect=Reconnect(wait=reconnect_wait, budget=reconnect_budget))
    raise typer.Exit(run_process(run(config, HttpOptions(http_port, http_host))))


@app.command()
def schema() -> None:
    """Print the JSON Schema of every command, query, reply and event (docs/schema.json)."""
    import json

    from agentledger.schemas.contract import json_schema

    print(json.dumps(json_schema(), indent=1, sort_keys=True))


@app.command()
def asyncapi(prefix: Prefix = "ledger") -> None:
    """Print the AsyncAPI 3.0 document: every channel, operation and payload (docs/asyncapi.json)."""
    import json

    from agentledger.cli.asyncapi import asyncapi as document

    print(json.dumps(document(prefix), indent=1))


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from agentledger.cli import (
        client_commands,  # noqa: F401  (registers the command/query subcommands)
        tenant_commands,  # noqa: F401  (auth and tenant subcommands)
    )

    app()
