"""A fresh checkout with `agentledger serve` running in it, as `make run` starts it (`serving`;
the `fresh` fixture in tests/conftest.py), and shell commands run there as a user types them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

HANG = 60  # a step still running after this long is stuck


async def sh(cwd: Path, env: dict[str, str], script: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec("bash", "-c", script, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def serving(directory: Path) -> AsyncIterator[dict[str, str]]:
    """`agentledger serve` started in `directory` as `make run` starts it (the venv linked in; only
    the port differs): yields the environment of a second terminal there. Its sandboxes are
    destroyed after it stops (they outlive the engine, not the test)."""
    from agentledger.handlers.nats_server import free_port
    from tests.sandbox_support import destroy_all

    (directory / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "NATS_"))}
    env |= {"COLUMNS": "200", "NO_COLOR": "1"}
    server = await asyncio.create_subprocess_exec(".venv/bin/agentledger", "serve", "--port", str(port), cwd=directory,
                                                  env=env, stdout=asyncio.subprocess.PIPE,
                                                  stderr=(directory / "serve.log").open("wb"))
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), HANG)
        assert line.startswith(b"agentledger ready"), line
        yield env | {"NATS_URL": f"nats://127.0.0.1:{port}"}
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), HANG)
        await destroy_all(directory / ".agentledger" / "sandboxes")
