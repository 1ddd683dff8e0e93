"""What the operator allows one tenant: its quotas, set with `agentledger tenant add` / `tenant set`."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from agentledger.schemas.common import MAX_SAFE_INT

Rate = Annotated[float, Meta(gt=0, le=1e6)]
Count = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]


class TenantQuota(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """None is no limit. Rates are per engine replica (a token bucket holding one second of the
    rate, at least one request); `max_events` counts the tenant's events in the engine's stream;
    `storage_bytes` is the JetStream storage of the tenant's own account (its audit stream and
    buckets), enforced by nats-server from the account's JWT."""

    commands_per_second: Rate | None = None
    queries_per_second: Rate | None = None
    max_events: Count | None = None
    storage_bytes: Count | None = None
