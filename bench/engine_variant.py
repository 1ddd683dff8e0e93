"""`python -m bench.engine_variant NATS_URL PREFIX STREAM`: one engine replica as `agentledger serve
--nats-url ... --prefix ... --stream ...` runs it, but with the process manager and the effect
handler off, to show what those background consumers cost the command path.

Prints a line with "ready" once it takes requests; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys

from agentledger.cli.serve import run_process
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig


async def main(url: str, prefix: str, stream: str) -> None:
    names = {f.name for f in dataclasses.fields(EngineConfig)}
    if "process_manager" not in names:
        sys.exit("EngineConfig has no process_manager switch; nothing to compare")
    config = EngineConfig(nats_url=url, prefix=prefix, stream=stream, process_manager=False)
    if "sandbox_dir" in names:
        config.sandbox_dir = None
    engine = Engine(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    print("engine variant ready", flush=True)
    try:
        await stop.wait()
    finally:
        await engine.stop()


if __name__ == "__main__":
    run_process(main(*sys.argv[1:4]))  # as `agentledger serve` runs
