"""Registering a tenant on a running NATS: its account JWT pushed through the system account
(`$SYS.REQ.CLAIMS.UPDATE`, stored by the `full` resolver, no reload) and its account key
recorded for the engines. Takes effect at once; no engine or server restarts."""

from __future__ import annotations

import msgspec
import nats
import nats.js.errors
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from agentledger.handlers.auth.identity import TENANTS_BUCKET, TenantDirectory
from agentledger.handlers.auth.keys import AUDIT_API, AUDIT_DELIVERY, Deployment
from agentledger.handlers.auth.permissions import audit_stream
from agentledger.handlers.quotas import publish_quota
from agentledger.schemas.tenants import TenantQuota


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


async def revoke_user(url: str, deployment: Deployment, tenant: str, user_key: str) -> int:
    """Revoke one user's credentials: recorded with the deployment's keys and pushed to the running
    NATS in the tenant's account, which closes the user's connections and refuses its `.creds`
    from then on. Returns the revocation time (credentials issued up to then are refused)."""
    at = deployment.revoke(tenant, user_key)
    await push_account(url, deployment, deployment.tenant_jwt(tenant))
    return at


async def add_audit_stream(url: str, deployment: Deployment, tenant: str, prefix: str, stream: str) -> str:
    """The tenant's audit stream: in its own account, sourcing only its own events from the engine's
    `stream` (history first, then live); its auditors read it with any standard consumer. Idempotent."""
    name = audit_stream(stream)
    source = StreamSource(name=stream, filter_subject=f"{prefix}.evt.{tenant}.>",
                          external=ExternalStream(api=AUDIT_API, deliver=f"{AUDIT_DELIVERY}.{tenant}"))
    config = StreamConfig(name=name, subjects=[], sources=[source], storage=StorageType.FILE,
                          num_replicas=deployment.replicas, description=f"{tenant}'s events from {stream}")
    nc = await nats.connect(servers=[url], user_credentials=deployment.provisioner_creds(tenant).raw(),
                            allow_reconnect=False)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
    finally:
        await nc.close()
    return name


async def add_tenant(url: str, deployment: Deployment, tenant: str, bucket: str = TENANTS_BUCKET,
                     quota: TenantQuota | None = None) -> str:
    """Create (or refresh) `tenant`'s account and make it known; returns its public key. Idempotent.
    With a concrete prefix and stream (not the test suite's `*`), its audit stream is made too.
    `quota` replaces the tenant's quota (None: keep the one it has, if any)."""
    account = deployment.tenant_account(tenant)
    assert account is not None
    if quota is not None:
        deployment.set_quota(tenant, quota)
    nc = await nats.connect(servers=[url], user_credentials=deployment.engine_creds("admin").raw(),
                            allow_reconnect=False)
    try:  # known to the engines, with its quota, before any of its users can reach them
        await publish_quota(nc.jetstream(), tenant, deployment.quota(tenant), bucket)
        await TenantDirectory(nc.jetstream(), bucket).register(account, tenant)
    finally:
        await nc.close()
    await push_account(url, deployment, deployment.tenant_jwt(tenant))
    if "*" not in (deployment.prefix, deployment.stream):
        await add_audit_stream(url, deployment, tenant, deployment.prefix, deployment.stream)
    return account


async def set_quota(url: str, deployment: Deployment, tenant: str, quota: TenantQuota,
                    bucket: str = TENANTS_BUCKET) -> None:
    """Change a tenant's quota: recorded with the deployment's keys, written to the tenant directory
    bucket (engines apply it within their refresh interval) and, for storage, pushed to the running
    NATS in the tenant's account JWT."""
    deployment.set_quota(tenant, quota)
    nc = await nats.connect(servers=[url], user_credentials=deployment.engine_creds("admin").raw(),
                            allow_reconnect=False)
    try:
        await publish_quota(nc.jetstream(), tenant, quota, bucket)
    finally:
        await nc.close()
    await push_account(url, deployment, deployment.tenant_jwt(tenant))
