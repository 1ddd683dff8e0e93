"""Two fixes to nats-py 2.16, applied once per process before the engine connects; each is
offered upstream under `docs/upstream/`, and goes from here once a release has it.

A message that cannot be turned into a `Msg` is dropped and reported, and the connection reads
on. nats-py builds each `Msg` inside the connection's only read loop and decodes the header
status line, its description, the subject and the reply as strict UTF-8. The server passes
other clients' bytes through, so one published frame (a status line `NATS/1.0 \\xff\\xfe\\xfd`,
or a subject with a byte that is not UTF-8) raised there, the loop ended, and the connection
stayed "connected" while reading nothing until its ping check gave up minutes later. Here
whatever raises while a frame becomes a `Msg` (in `_process_headers` or `_build_message`) drops
that frame and goes to the connection's error callback as `MalformedMessage`; anything else
raises as before (`nats-py-malformed-message.diff`).

`flush()` returns once the server has everything sent before it. nats-py wrote the PING of a
flush straight to the socket, ahead of a SUB or PUB still waiting for its flusher task, so a
subscription flushed this way could still be unknown to the server when another client sent to
it ("no responders"). Here the PING waits its turn (`nats-py-flush-after-pending.diff`).
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.aio.client import PING_PROTO, Client

_APPLIED = "_agentledger_drops_malformed"


class MalformedMessage(nats.errors.Error):
    """A message from the server that could not be read; it was dropped."""

    def __init__(self, subject: bytes, sid: int, cause: Exception) -> None:
        super().__init__()
        self.subject = subject.decode("utf-8", "backslashreplace")
        self.sid, self.cause = sid, cause

    def __str__(self) -> str:
        return f"nats: malformed message on {self.subject!r} dropped: {type(self.cause).__name__}: {self.cause}"


def _while_reading(error: Exception, reading: frozenset[object]) -> bool:
    """Did `error` come out of turning the frame into a Msg (and not out of delivering it)?"""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in reading:
            return True
        tb = tb.tb_next
    return False


def apply() -> None:
    """Patch `nats.aio.client.Client` (every connection of the process). Idempotent."""
    if getattr(Client, _APPLIED, False):
        return
    process_msg, send_ping = Client._process_msg, Client._send_ping
    # nats-py's own code that reads a frame; only what raises in there marks the frame malformed
    reading = frozenset({Client._process_headers.__code__, Client._build_message.__code__})

    async def _process_msg(self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        try:
            await process_msg(self, sid, subject, reply, data, headers)
        except Exception as e:  # costs nothing until something raises
            if not _while_reading(e, reading):
                raise
            await self._error_cb(MalformedMessage(subject, sid, e))  # the frame is consumed: read on

    async def _send_ping(self: Client, future: asyncio.Future[bool] | None = None) -> None:
        self._pongs.append(future if future is not None else asyncio.Future())
        await self._send_command(PING_PROTO)  # behind what is pending, so its PONG covers all of it
        await self._flush_pending()

    Client._process_msg = _process_msg  # type: ignore[method-assign]
    Client._send_ping = _send_ping  # type: ignore[method-assign]
    setattr(Client, _APPLIED, (process_msg, send_ping))


def revert() -> None:
    """nats-py as it was (for the tests that show it still needs these fixes)."""
    saved = getattr(Client, _APPLIED, False)
    if saved:
        Client._process_msg, Client._send_ping = saved  # type: ignore[method-assign]
        setattr(Client, _APPLIED, False)
