"""Shell commands run in a fresh checkout as a user types them (the `fresh` fixture, in
tests/conftest.py, gives one with `agentledger serve` running in it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

HANG = 60  # a step still running after this long is stuck


async def sh(cwd: Path, env: dict[str, str], script: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec("bash", "-c", script, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
