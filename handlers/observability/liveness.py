"""Is a NATS connection still reading? nats-py reads every message of a connection in one task;
were it to end or hang, the connection would still count as connected and answer nothing.
`flush()` does not notice (with its reader gone it only writes), so the check is a message
through the server and back: every `interval`, one to a subject only this connection
subscribes to. When none has come back for `stall` seconds while the connection counted as
connected, `on_dead` is told (the process then exits non-zero and its supervisor restarts it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg


class ReadCheck:
    def __init__(self, name: str, on_dead: Callable[[str], None], stall: float = 10.0) -> None:
        self.name, self.on_dead, self.stall = name, on_dead, stall
        self.interval = min(1.0, stall / 4)
        self.last_echo = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, nc: Client) -> None:
        self._stopping = False
        inbox = nc.new_inbox()

        async def echoed(_: Msg) -> None:
            self.last_echo = time.monotonic()

        await nc.subscribe(inbox, cb=echoed)
        self._task = asyncio.create_task(self._run(nc, inbox), name=f"agentledger-read-check-{self.name}")

    def stop(self) -> None:
        self._stopping = True  # a cancellation a publish turned into its own error would not end the loop
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, nc: Client, inbox: str) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval)
            if not nc.is_connected:  # down or reconnecting: the reconnect budget decides
                self.last_echo = time.monotonic()
                continue
            silent = time.monotonic() - self.last_echo
            if silent > self.stall:
                self.on_dead(f"nats {self.name} connection stopped reading: nothing came back through the "
                             f"server for {silent:.0f}s while connected")
                return
            with contextlib.suppress(nats.errors.Error):  # went down meanwhile: checked again next time
                await nc.publish(inbox, b"")
