"""The installed console script as a subprocess, against the test's engine: `cli` runs one
invocation to its end, `following` starts one that keeps running (`events tail`) and reads its
lines as they come. conftest.py registers this module as a plugin, so its fixtures are everyone's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentledger.handlers.config import EngineConfig

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")
HANG = 30  # an invocation, or a line it should print, still missing after this long is stuck


@dataclass
class Run:
    code: int
    out: str
    err: str


Cli = Callable[..., Awaitable[Run]]


@pytest.fixture
def cli_env(engine_config: EngineConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")}
    return env | {"NATS_URL": engine_config.nats_url, "AGENTLEDGER_PREFIX": engine_config.prefix,
                  "AGENTLEDGER_STREAM": engine_config.stream, "AGENTLEDGER_TENANT": "tnt_acme",
                  "NATS_CREDS": str(engine_config.creds),
                  "COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def cli(engine: object, cli_env: dict[str, str]) -> Cli:
    """Run `agentledger ARGS` without blocking the loop the engine serves on."""

    async def run(*args: str) -> Run:
        proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *args, env=cli_env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), HANG)
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(), err.decode())

    return run


class Following:
    """An `agentledger` invocation that keeps running; its output is read a line at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> str:
        """The next line it prints (waiting for it, up to HANG seconds)."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), HANG)
        assert line, f"it ended (exit {await self.proc.wait()}): {await self.stderr()}"
        return line.decode().rstrip("\n")

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, then its exit code and what it wrote to stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(self.proc.wait(), HANG)
        return code, await self.stderr()

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), HANG)).decode()


@contextlib.asynccontextmanager
async def following(env: dict[str, str], *args: str) -> AsyncIterator[Following]:
    """Start `agentledger ARGS`; it is killed on the way out if it is still running."""
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        yield Following(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
