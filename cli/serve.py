"""`agentledger serve`: one engine replica, on a given NATS or an embedded one."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from rich.console import Console

from engine.nats_server import EmbeddedNats
from handlers.app import Engine, EngineConfig, run_effects
from handlers.auth.keys import Deployment

console = Console(stderr=True)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(config: EngineConfig, nats_url: str | None, data_dir: Path, port: int, auth_dir: Path) -> None:
    embedded: EmbeddedNats | None = None
    if nats_url is None:
        # Authentication on: the deployment's keys live in auth_dir (made on first run), the engine
        # connects as itself, and admin.creds there is what the CLI picks up by default.
        deployment = Deployment.open(auth_dir, config.prefix, config.stream)
        if (deployment.prefix, deployment.stream) != (config.prefix, config.stream):
            raise SystemExit(f"{auth_dir} was set up for prefix {deployment.prefix!r} and stream "
                             f"{deployment.stream!r}; use those or another --auth-dir")
        config.creds = config.creds or deployment.creds_path("engine")
        deployment.creds_path("admin")
        embedded = deployment.embedded(data_dir, port=port)
        await embedded.start()
        nats_url = embedded.url
    config.nats_url = nats_url
    prefix = config.prefix
    engine = Engine(config)
    stop = _stop_on_signals()
    try:
        await engine.start()
        where = f"embedded NATS, data in {data_dir}" if embedded else "external NATS"
        print(f"agentledger ready: send commands to {prefix}.cmd.<tenant>.<command> and queries to "
              f"{prefix}.qry.<tenant>.<query> at {nats_url} ({where}; log position {engine.models.position})",
              flush=True)
        await stop.wait()
        console.print("agentledger: stopping (in-flight commands finish first)")
    finally:
        await engine.stop()
        if embedded is not None:
            await embedded.stop()


async def effects(config: EngineConfig) -> None:
    stop = _stop_on_signals()
    print(f"agentledger effects ready: sandboxes in {config.sandbox_dir}, log {config.stream} at {config.nats_url}",
          flush=True)
    await run_effects(config, stop)
