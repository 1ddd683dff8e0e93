"""`agentledger serve` and `agentledger effects`: the long-running processes (cli/serve.py runs them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentledger.cli import sandbox_options as sbx

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
    help="a program sandboxes may run (options.command[0] or an exec's argv[0], exactly); repeat it; none by default")]
AllowRepo = Annotated[list[Path] | None, typer.Option(
    "--allow-repo", envvar="AGENTLEDGER_SANDBOX_REPOS",
    help="a directory whose git repositories sandboxes may check out; repeat it; none by default")]
Creds = Annotated[Path | None, typer.Option("--creds", envvar="NATS_CREDS",
                                            help="this process's NATS credentials (.creds); the embedded server makes its own")]
AuthDir = Annotated[Path, typer.Option("--auth-dir", envvar="AGENTLEDGER_AUTH_DIR",
                                       help="the deployment's keys and admin.creds (embedded server)")]


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
    exec_reply_within: Annotated[float, typer.Option(envvar="AGENTLEDGER_EXEC_REPLY_WITHIN", min=0.0,
                                                     help="seconds after arrival a sandbox.exec reply waits for the "
                                                          "outcome (later: status running); keep it below your clients' "
                                                          "request timeout")] = 3.0,
    allow_command: AllowCommand = None,
    allow_repo: AllowRepo = None,
    creds: Creds = None,
    auth_dir: AuthDir = Path(".agentledger/auth"),
    sandbox_provider: sbx.Provider = "auto",
    sandbox_env: sbx.Env = None,
    sandbox_network: sbx.Network = False,
    sandbox_private: sbx.Private = None,
    sandbox_uid: sbx.Uid = 65534,
    sandbox_memory: sbx.Memory = 1024,
    sandbox_memory_max: sbx.MemoryMax = 8192,
    sandbox_pids: sbx.Pids = 512,
    sandbox_pids_max: sbx.PidsMax = 4096,
    sandbox_cpus: sbx.Cpus = 1.0,
    sandbox_cpus_max: sbx.CpusMax = None,
    reconcile_every: sbx.ReconcileEvery = 60.0,
) -> None:
    """Start an engine replica; Ctrl-C stops it cleanly (exit 0). Exits 1 when it cannot serve."""
    from agentledger.cli.serve import HttpOptions, run_process
    from agentledger.cli.serve import serve as run
    from agentledger.handlers.config import EngineConfig
    from agentledger.handlers.observability.connection import Reconnect

    private = [data_dir, auth_dir, *([creds] if creds else []), *(sandbox_private or [])]
    config = EngineConfig(prefix=prefix, stream=stream, replicas=replicas, sandbox_dir=sandbox_dir if effects else None,
                          sandbox_commands=tuple(allow_command or ()), sandbox_repos=tuple(map(str, allow_repo or ())),
                          creds=creds, cache_size=cache_size, cache_bytes=cache_bytes or None,
                          tenant_workers=tenant_workers, decide_within=decide_within,
                          exec_reply_within=exec_reply_within,
                          reconnect=Reconnect(wait=reconnect_wait, budget=reconnect_budget),
                          sandbox_provider=sandbox_provider, reconcile_every=reconcile_every,
                          sandbox_settings=sbx.settings(sandbox_dir, private, sandbox_env, sandbox_network, sandbox_uid,
                                                        sandbox_memory, sandbox_memory_max, sandbox_pids,
                                                        sandbox_pids_max, sandbox_cpus, sandbox_cpus_max))
    raise typer.Exit(run_process(run(config, nats_url, data_dir, port, auth_dir, HttpOptions(http_port, http_host))))


def effects(
    nats_url: Annotated[str, typer.Option("--nats-url", envvar="NATS_URL")] = "nats://127.0.0.1:4222",
    prefix: Prefix = "ledger",
    stream: Annotated[str, typer.Option(envvar="AGENTLEDGER_STREAM", help="event stream name")] = "LEDGER",
    sandbox_dir: SandboxDir = Path(".agentledger/sandboxes"),
    ack_wait: Annotated[float, typer.Option(help="seconds before a request held by an effect handler that stopped is "
                                                 "handed out again")] = 30.0,
    http_port: HttpPort = None,
    http_host: HttpHost = "127.0.0.1",
    reconnect_budget: ReconnectBudget = 120.0,
    reconnect_wait: ReconnectWait = 2.0,
    allow_command: AllowCommand = None,
    allow_repo: AllowRepo = None,
    creds: Creds = None,
    sandbox_provider: sbx.Provider = "auto",
    sandbox_env: sbx.Env = None,
    sandbox_network: sbx.Network = False,
    sandbox_private: sbx.Private = None,
    sandbox_uid: sbx.Uid = 65534,
    sandbox_memory: sbx.Memory = 1024,
    sandbox_memory_max: sbx.MemoryMax = 8192,
    sandbox_pids: sbx.Pids = 512,
    sandbox_pids_max: sbx.PidsMax = 4096,
    sandbox_cpus: sbx.Cpus = 1.0,
    sandbox_cpus_max: sbx.CpusMax = None,
    reconcile_every: sbx.ReconcileEvery = 60.0,
) -> None:
    """Run only the sandbox effect handler (where the sandboxes live), next to engines elsewhere."""
    from agentledger.cli.serve import HttpOptions, run_process
    from agentledger.cli.serve import effects as run
    from agentledger.handlers.config import EngineConfig
    from agentledger.handlers.observability.connection import Reconnect

    config = EngineConfig(nats_url=nats_url, prefix=prefix, stream=stream, sandbox_dir=sandbox_dir,
                          worker_ack_wait=ack_wait, sandbox_commands=tuple(allow_command or ()),
                          sandbox_repos=tuple(map(str, allow_repo or ())), creds=creds,
                          reconnect=Reconnect(wait=reconnect_wait, budget=reconnect_budget),
                          sandbox_provider=sandbox_provider, reconcile_every=reconcile_every,
                          sandbox_settings=sbx.settings(sandbox_dir, [*([creds] if creds else []), *(sandbox_private or [])],
                                                        sandbox_env, sandbox_network, sandbox_uid, sandbox_memory,
                                                        sandbox_memory_max, sandbox_pids, sandbox_pids_max, sandbox_cpus,
                                                        sandbox_cpus_max))
    raise typer.Exit(run_process(run(config, HttpOptions(http_port, http_host))))
