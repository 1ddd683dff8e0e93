"""One fix to nats-py, applied once per process before the engine connects: a message that
cannot be turned into a `Msg` is dropped and reported, and the connection reads on.

nats-py 2.16 builds each `Msg` inside the connection's only read loop and decodes the header
status line, its description, the subject and the reply as strict UTF-8. The server passes
other clients' bytes through, so one published frame (a status line `NATS/1.0 \\xff\\xfe\\xfd`,
or a subject with a byte that is not UTF-8) raised there, the loop ended, and the connection
stayed "connected" while reading nothing until its ping check gave up minutes later. Here
whatever raises while a frame becomes a `Msg` (in `_process_headers` or `_build_message`) drops
that frame and goes to the connection's error callback as `MalformedMessage`; anything else
raises as before. The same change for nats-py itself is
`docs/upstream/nats-py-malformed-message.diff`; with it released, this module goes."""

from __future__ import annotations

import nats.errors
from nats.aio.client import Client

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
    process_msg = Client._process_msg
    # nats-py's own code that reads a frame; only what raises in there marks the frame malformed
    reading = frozenset({Client._process_headers.__code__, Client._build_message.__code__})

    async def _process_msg(self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        try:
            await process_msg(self, sid, subject, reply, data, headers)
        except Exception as e:  # costs nothing until something raises
            if not _while_reading(e, reading):
                raise
            await self._error_cb(MalformedMessage(subject, sid, e))  # the frame is consumed: read on

    Client._process_msg = _process_msg  # type: ignore[method-assign]
    setattr(Client, _APPLIED, process_msg)


def revert() -> None:
    """nats-py as it was (for the test that shows it still needs this patch)."""
    saved = getattr(Client, _APPLIED, False)
    if saved:
        Client._process_msg = saved  # type: ignore[method-assign]
        setattr(Client, _APPLIED, False)
