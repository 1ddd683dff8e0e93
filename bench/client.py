"""A protocol client as a user would write one: a JSON request to `<prefix>.cmd.<tenant>.<command>`,
one JSON reply. Any reply that is not the expected one stops the benchmark loudly."""

from __future__ import annotations

from typing import Any

import msgspec
from nats.aio.client import Client

from agentledger.engine.subjects import Subjects

USER = {"kind": "user", "id": "usr_bench"}
AGENT = {"kind": "agent", "id": "agt_bench"}
TENANT = "tnt_bench"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class BenchError(RuntimeError):
    pass


class LedgerClient:
    def __init__(self, nc: Client, prefix: str, tenant: str = TENANT, timeout: float = 30.0) -> None:
        self.nc, self.subjects, self.tenant, self.timeout = nc, Subjects(prefix), tenant, timeout
        self._subject: dict[str, str] = {}

    def subject(self, command: str) -> str:
        s = self._subject.get(command)
        if s is None:
            s = self._subject[command] = self.subjects.command(self.tenant, command)
        return s

    async def cmd(self, command: str, /, **fields: Any) -> dict[str, Any]:
        msg = await self.nc.request(self.subject(command), _encode({"actor": USER, **fields}), timeout=self.timeout)
        return _decode(msg.data)  # type: ignore[no-any-return]

    async def ok(self, command: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.cmd(command, **fields)
        if not reply.get("ok"):
            raise BenchError(f"{command} {fields} was refused: {reply}")
        return reply

    async def refused(self, command: str, code: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.cmd(command, **fields)
        if reply.get("ok") or reply.get("error", {}).get("code") != code:
            raise BenchError(f"{command} {fields}: expected error {code}, got {reply}")
        return reply
