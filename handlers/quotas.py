"""The operator's per-tenant quotas, enforced on a tenant's own requests (never the deployment's).

Quotas live in the tenant directory bucket (`agentledger_tenants`, key `quota.<tenant>`, a JSON
`TenantQuota`), written by `agentledger tenant add` / `tenant set`; every engine replica reads a
tenant's entry at its first request and again in the background when the copy is older than
`refresh` seconds, so all replicas enforce the same quotas and a change reaches them within that
time, without a restart. Rates are token buckets kept by each replica; the events quota counts the
tenant's events in the stream once (one direct get) and then follows the log. An entry that does
not decode is logged and counted, and the last good one (or none) stays in force.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from agentledger.engine.store import EventStore, RawEvent
from agentledger.engine.subjects import Subjects
from agentledger.handlers.auth.identity import TENANTS_BUCKET
from agentledger.schemas.errors import Error, QuotaExceeded, QuotaExceededDetails, RateLimited, RateLimitedDetails
from agentledger.schemas.tenants import TenantQuota

log = logging.getLogger("agentledger.quotas")
Kind = Literal["command", "query"]
NO_QUOTA = TenantQuota()
_decode = msgspec.json.Decoder(TenantQuota).decode


def quota_key(tenant: str) -> str:
    """A tenant's quota in the tenant directory bucket (account keys, the other entries, have no dot)."""
    return f"quota.{tenant}"


async def directory_bucket(js: JetStreamContext, bucket: str = TENANTS_BUCKET) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=bucket, history=1)


async def publish_quota(js: JetStreamContext, tenant: str, quota: TenantQuota, bucket: str = TENANTS_BUCKET) -> None:
    """Write a tenant's quota where the engines read it (`tenant add` / `tenant set`)."""
    await (await directory_bucket(js, bucket)).put(quota_key(tenant), msgspec.json.encode(quota))


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at: float


def take(bucket: Bucket | None, rate: float, now: float) -> tuple[Bucket, float]:
    """Take one request from a token bucket that refills at `rate` per second and holds one
    second of it (at least one request); a new bucket is full. Returns the bucket after, and 0
    when the request was taken, else the seconds until it would be (pure)."""
    burst = max(1.0, rate)
    tokens = burst if bucket is None else min(burst, bucket.tokens + max(0.0, now - bucket.at) * rate)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate


class _Entry:
    __slots__ = ("quota", "read_at", "reading")

    def __init__(self, quota: TenantQuota, read_at: float) -> None:
        self.quota, self.read_at = quota, read_at
        self.reading: asyncio.Task[None] | None = None


class TenantQuotas:
    def __init__(self, js: JetStreamContext, store: EventStore, subjects: Subjects, bucket: str = TENANTS_BUCKET,
                 refresh: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.js, self.store, self.subjects, self.bucket = js, store, subjects, bucket
        self.refresh, self.clock = refresh, clock
        self._kv: KeyValue | None = None
        self._entries: dict[str, _Entry] = {}
        self._buckets: dict[tuple[str, Kind], Bucket] = {}
        self._events: dict[str, int] = {}  # events in the stream, for tenants with an events quota
        self._tenant_token = subjects.prefix.count(".") + 2  # <prefix>.evt.<tenant>.…
        self.unreadable = 0  # quota entries that did not decode
        self.refused = 0

    # -- reading the operator's quotas ---------------------------------------------------------
    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await directory_bucket(self.js, self.bucket)
        return self._kv

    async def _read(self, tenant: str, last: TenantQuota) -> TenantQuota:
        try:
            entry = await (await self._bucket()).get(quota_key(tenant))
        except nats.js.errors.KeyNotFoundError:
            return NO_QUOTA
        if entry.value is None:
            return NO_QUOTA
        try:
            return _decode(entry.value)
        except msgspec.DecodeError as e:
            self.unreadable += 1
            log.warning("quota of %s in %s does not decode (%s); keeping the last good one", tenant, self.bucket, e)
            return last

    async def _reread(self, tenant: str, entry: _Entry) -> None:
        try:
            entry.quota = await self._read(tenant, entry.quota)
            entry.read_at = self.clock()
        except (nats.errors.Error, nats.js.errors.Error, OSError) as e:  # keep the copy; asked again later
            log.warning("quota of %s not re-read: %s: %s", tenant, type(e).__name__, e)
        finally:
            entry.reading = None

    async def quota(self, tenant: str) -> TenantQuota:
        """The tenant's quota: read at first use, then re-read in the background when stale."""
        entry = self._entries.get(tenant)
        if entry is None:
            entry = self._entries[tenant] = _Entry(await self._read(tenant, NO_QUOTA), self.clock())
        elif entry.reading is None and self.clock() - entry.read_at > self.refresh:
            entry.reading = asyncio.create_task(self._reread(tenant, entry))
        return entry.quota

    # -- the events quota ------------------------------------------------------------------
    def observe(self, raw: RawEvent) -> None:
        """The live follower's feed: one more event for its tenant, if that tenant is counted."""
        if self._events:
            parts = raw.subject.split(".", self._tenant_token + 1)
            tenant = parts[self._tenant_token] if len(parts) > self._tenant_token else ""
            if tenant in self._events:
                self._events[tenant] += 1

    async def events(self, tenant: str) -> int:
        count = self._events.get(tenant)
        if count is None:
            counted = await self.store.count(self.subjects.tenant_filter(tenant))
            count = self._events.setdefault(tenant, counted)
        return count

    # -- deciding -----------------------------------------------------------------------------
    async def refusal(self, tenant: str, kind: Kind) -> Error | None:
        """Why this tenant's request is refused now, or None (a request that passes is counted)."""
        quota = await self.quota(tenant)
        rate = quota.commands_per_second if kind == "command" else quota.queries_per_second
        if rate is not None:
            bucket, wait = take(self._buckets.get((tenant, kind)), rate, self.clock())
            self._buckets[(tenant, kind)] = bucket
            if wait:
                self.refused += 1
                limit: Literal["commands_per_second", "queries_per_second"] = (
                    "commands_per_second" if kind == "command" else "queries_per_second")
                return RateLimited(message=f"tenant {tenant} is over its {rate:g} {kind}s per second; retry in "
                                           f"{wait:.3g} s",
                                   details=RateLimitedDetails(tenant=tenant, limit=limit, allowed=rate,
                                                              retry_after=math.ceil(wait * 1000) / 1000))
        if kind == "command" and quota.max_events is not None:
            used = await self.events(tenant)
            if used >= quota.max_events:
                self.refused += 1
                return QuotaExceeded(message=f"tenant {tenant} has {used} events in the log, its quota is "
                                             f"{quota.max_events}; nothing more is appended for it",
                                     details=QuotaExceededDetails(tenant=tenant, quota="events",
                                                                  limit=quota.max_events, used=used))
        elif quota.max_events is None:
            self._events.pop(tenant, None)
        return None
