"""A hostile user's connection: one that notices when the broker refuses what it tried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import nats
from nats.aio.client import Client


class Hostile:
    """A tenant's user connection that notices when the broker refuses what it tried."""

    def __init__(self) -> None:
        self.nc: Client | None = None
        self.refused = asyncio.Event()
        self.errors: list[str] = []

    @classmethod
    async def connect(cls, url: str, creds: Any, **options: Any) -> Hostile:
        """`creds`: a `Creds` or the path of a `.creds` file; `options` go to `nats.connect`."""
        me = cls()

        async def on_error(e: Exception) -> None:
            me.errors.append(str(e))
            if "permissions violation" in str(e).lower():
                me.refused.set()

        me.nc = await nats.connect(servers=[url], user_credentials=creds if isinstance(creds, str) else creds.raw(),
                                   error_cb=on_error, **options)
        return me

    async def refused_before(self, attempt: Awaitable[Any]) -> bool:
        """True when the broker refuses before `attempt` finishes (an attempt that is refused never finishes)."""
        task, refusal = asyncio.ensure_future(attempt), asyncio.ensure_future(self.refused.wait())
        done, _ = await asyncio.wait({task, refusal}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, refusal):
            if pending not in done:
                pending.cancel()
        self.refused.clear()
        return refusal in done

    async def close(self) -> None:
        assert self.nc is not None
        await self.nc.close()


async def never() -> None:
    """An attempt that never finishes by itself (what a refused request looks like to its sender)."""
    await asyncio.Event().wait()
