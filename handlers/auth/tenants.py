"""Registering a tenant on a running NATS: its account JWT pushed through the system account
(`$SYS.REQ.CLAIMS.UPDATE`, stored by the `full` resolver, no reload) and its account key
recorded for the engines. Takes effect at once; no engine or server restarts."""

from __future__ import annotations

import msgspec
import nats

from handlers.auth.identity import TENANTS_BUCKET, TenantDirectory
from handlers.auth.keys import Deployment


class ClaimsUpdateFailed(RuntimeError):
    pass


class _Reply(msgspec.Struct):
    data: dict[str, object] | None = None
    error: dict[str, object] | None = None


async def push_account(url: str, deployment: Deployment, jwt: str, timeout: float = 5.0) -> None:
    """Hand an account JWT to the server (and, through the system account, to its cluster)."""
    nc = await nats.connect(servers=[url], user_credentials=deployment.system_creds().raw(),
                            connect_timeout=timeout, allow_reconnect=False)
    try:
        msg = await nc.request("$SYS.REQ.CLAIMS.UPDATE", jwt.encode(), timeout=timeout)
    finally:
        await nc.close()
    reply = msgspec.json.decode(msg.data, type=_Reply)
    if reply.error or not reply.data or reply.data.get("code") != 200:
        raise ClaimsUpdateFailed(f"nats-server refused the account: {reply.error or reply.data}")


async def add_tenant(url: str, deployment: Deployment, tenant: str, bucket: str = TENANTS_BUCKET) -> str:
    """Create (or refresh) `tenant`'s account and make it known; returns its public key. Idempotent."""
    account = deployment.tenant_account(tenant)
    assert account is not None
    nc = await nats.connect(servers=[url], user_credentials=deployment.engine_creds("admin").raw(),
                            allow_reconnect=False)
    try:  # known to the engines before any of its users can reach them
        await TenantDirectory(nc.jetstream(), bucket).register(account, tenant)
    finally:
        await nc.close()
    await push_account(url, deployment, deployment.tenant_jwt(tenant))
    return account
