"""Running one program to completion with bounded output: what `exec` returns, whichever
provider started the program."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from agentledger.providers.base import ExecResult


class Capture:
    """Keeps the first `limit` bytes of a stream, and the size and digest of all of it."""

    def __init__(self, limit: int) -> None:
        self.limit, self.head, self.size = limit, bytearray(), 0
        self.digest = hashlib.sha256()

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            self.size += len(chunk)
            self.digest.update(chunk)
            room = self.limit - len(self.head)
            if room > 0:
                self.head += chunk[:room]


class Running:
    """The execs running in one sandbox: `end()` (its sandbox is destroyed) kills them, and any
    that starts after it, at once."""

    def __init__(self, kill: Callable[[int], None]) -> None:
        self.kill = kill
        self.pids: set[int] = set()
        self.ended = False

    def add(self, pid: int) -> None:
        self.pids.add(pid)
        if self.ended:
            self.kill(pid)

    def discard(self, pid: int) -> None:
        self.pids.discard(pid)

    def end(self) -> None:
        self.ended = True
        for pid in list(self.pids):
            self.kill(pid)


async def run_bounded(argv: Sequence[str], *, stdin: bytes, timeout: float, limit: int,
                      kill: Callable[[int], None], running: Running | None = None, **popen: Any) -> ExecResult:
    """Run `argv` (popen options as for asyncio subprocesses), feed it `stdin`, wait at most
    `timeout` seconds, then `kill(pid)` it and whatever it started. It is in `running` while it
    runs, so that a destroy of its sandbox meanwhile ends it at once."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, **popen)
    if running is not None:
        running.add(proc.pid)
    try:
        return await _bounded(proc, stdin, timeout, limit, kill, started)
    finally:
        if running is not None:
            running.discard(proc.pid)


async def _bounded(proc: asyncio.subprocess.Process, stdin: bytes, timeout: float, limit: int,
                   kill: Callable[[int], None], started: float) -> ExecResult:
    out, err = Capture(limit), Capture(limit)

    async def feed() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if stdin:
                proc.stdin.write(stdin)
                await proc.stdin.drain()
            proc.stdin.close()

    work = asyncio.gather(feed(), out.drain(proc.stdout), err.drain(proc.stderr), proc.wait())
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(work), timeout)
    except TimeoutError:
        timed_out = True
        kill(proc.pid)
        await work  # the pipes close once everything that held them is dead
    code = proc.returncode
    return ExecResult(exit_code=None if timed_out else code, duration_ms=int((time.monotonic() - started) * 1000),
                      stdout=bytes(out.head), stderr=bytes(err.head), stdout_size=out.size, stderr_size=err.size,
                      stdout_sha256=out.digest.hexdigest(), stderr_sha256=err.digest.hexdigest(), timed_out=timed_out)
