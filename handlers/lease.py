"""One holder at a time among replicas: a key in a KV bucket whose entries expire `ttl` seconds
after they are written. A replica takes the lease by creating the key and keeps it by updating it
(conditional on the revision it wrote) every `ttl / 4`; it counts itself the holder only until
`0.8 * ttl` after its last write was sent, so it stops before anyone else can take the key over
(that needs the key to expire, `ttl` after the write). A clean stop deletes the key, so another
replica takes over at its next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from agentledger.handlers.tasks import ended

log = logging.getLogger("agentledger.lease")


class Lease:
    def __init__(self, js: JetStreamContext, bucket: str, key: str, ttl: float = 10.0, replicas: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.js, self.bucket, self.key, self.ttl, self.replicas = js, bucket, key, ttl, replicas
        self.clock = clock
        self.holder = uuid.uuid4().hex.encode()
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self._until = 0.0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.taken = 0  # times this replica took the lease

    def held(self) -> bool:
        return self._revision is not None and self.clock() < self._until

    async def start(self) -> None:
        try:
            self._kv = await self.js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            self._kv = await self.js.create_key_value(KeyValueConfig(
                bucket=self.bucket, history=1, ttl=self.ttl, storage=StorageType.FILE, replicas=self.replicas))
        self._stopping = False
        await self._attempt()
        self._task = asyncio.create_task(self._keep(), name=f"lease-{self.key}")

    async def wait_held(self) -> None:
        while not self.held():
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.ttl / 4)

    async def _attempt(self) -> None:
        assert self._kv is not None
        sent = self.clock()
        try:
            if self._revision is None:
                self._revision = await self._kv.create(self.key, self.holder)
                self.taken += 1
            else:
                self._revision = await self._kv.update(self.key, self.holder, last=self._revision)
            self._until = sent + 0.8 * self.ttl
            self._changed.set()
        except nats.js.errors.KeyWrongLastSequenceError:  # another replica holds it (or took it over)
            self._revision = None
        except (nats.errors.Error, nats.js.errors.Error) as e:  # unreachable: it lapses by itself
            log.warning("lease %s: %s: %s", self.key, type(e).__name__, e)

    async def _keep(self) -> None:
        """Renew until stopped. The flag, not only the cancellation, ends it: a request to the
        server can turn a cancellation into an error of its own, which `_attempt` handles."""
        while not self._stopping:
            await asyncio.sleep(self.ttl / 4)
            if not self._stopping:
                await self._attempt()

    async def stop(self, release: bool = True) -> None:
        """Stop renewing. `release` deletes the key, so another replica takes over at its next
        attempt; without it (the server is out of reach anyway) the lease lapses by itself, and this
        replica stops counting itself the holder before the key can expire."""
        self._stopping = True
        await ended(self._task)
        self._task = None
        if not release:
            return
        if self._revision is not None and self._kv is not None:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await self._kv.delete(self.key, last=self._revision)
        self._revision = None
