"""A NATS client written on a raw TCP socket, to send what no client library would: frames with
headers, status lines and subjects that are not valid. It authenticates with a `.creds` file's
JWT and seed as any client does, and reads only what its tests need (MSG/HMSG, PING, PONG)."""

from __future__ import annotations

import asyncio
import base64
import json
import re

import nkeys

from agentledger.handlers.auth.keys import Creds

BAD_STATUS = b"NATS/1.0 \xff\xfe\xfd\r\n\r\n"  # a status line that is not UTF-8 (the reported attack)

def _section(text: str, name: str) -> str:
    match = re.search(rf"-{{3,}}BEGIN {name}-{{3,}}\s*(\S+)\s*-{{3,}}END {name}", text)
    assert match is not None, name
    return match.group(1)


def hpub(subject: bytes, header: bytes, body: bytes = b"{}", reply: bytes | None = None) -> bytes:
    """One HPUB frame, exactly these bytes (the sizes are the only thing computed)."""
    middle = subject + b" " + (reply + b" " if reply else b"")
    return b"HPUB " + middle + f"{len(header)} {len(header) + len(body)}\r\n".encode() + header + body + b"\r\n"


def pub(subject: bytes, body: bytes = b"{}", reply: bytes | None = None) -> bytes:
    middle = subject + b" " + (reply + b" " if reply else b"")
    return b"PUB " + middle + f"{len(body)}\r\n".encode() + body + b"\r\n"


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._sids = 0

    @classmethod
    async def connect(cls, url: str, creds: Creds) -> RawClient:
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        info = json.loads((await reader.readline()).removeprefix(b"INFO "))
        seed = nkeys.from_seed(_section(creds.text, "USER NKEY SEED").encode())
        signature = base64.urlsafe_b64encode(seed.sign(info["nonce"].encode())).rstrip(b"=").decode()
        options = {"jwt": _section(creds.text, "NATS USER JWT"), "sig": signature, "verbose": False,
                   "pedantic": False, "headers": True, "no_responders": True, "protocol": 1}
        me = cls(reader, writer)
        await me.send(b"CONNECT " + json.dumps(options).encode() + b"\r\n")
        await me.round_trip()
        return me

    async def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def subscribe(self, subject: bytes) -> None:
        self._sids += 1
        await self.send(b"SUB " + subject + f" {self._sids}\r\n".encode())

    async def round_trip(self) -> None:
        """PING, and read to its PONG: the server has handled everything sent before it."""
        await self.send(b"PING\r\n")
        while (await self._next())[0] != "PONG":
            pass

    async def next_message(self) -> tuple[bytes, bytes]:
        """The next MSG or HMSG delivered: (subject, payload)."""
        while True:
            kind, subject, payload = await self._next()
            if kind == "MSG":
                return subject, payload

    async def _next(self) -> tuple[str, bytes, bytes]:
        line = await self.reader.readline()
        assert line, "the server closed the connection"
        op = line.split(b" ", 1)[0].strip()
        if op == b"-ERR":
            raise AssertionError(line.decode())
        if op == b"PING":
            await self.send(b"PONG\r\n")
            return "PING", b"", b""
        if op in (b"MSG", b"HMSG"):
            args = line.split()
            size = int(args[-1])
            header = int(args[-2]) if op == b"HMSG" else 0
            frame = await self.reader.readexactly(size + 2)
            return "MSG", args[1], frame[header:size]
        return op.decode(), b"", b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
