"""Registering a tenant on a running NATS: its account JWT pushed through the system account
(`$SYS.REQ.CLAIMS.UPDATE`, stored by the `full` resolver, no reload) and its account key
recorded for the engines. Takes effect at once; no engine or server restarts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import nats
import nats.js.errors
from nats.aio.client import Client, RawCredentials
from nats.js.api import ExternalStream, KeyValueConfig, StorageType, StreamConfig, StreamSource

from agentledger.handlers.auth.identity import TENANTS_BUCKET, TenantDirectory
from agentledger.handlers.auth.keys import AUDIT_API, AUDIT_DELIVERY, Deployment
from agentledger.handlers.quotas import publish_quota
from agentledger.schemas.accounts import CHECKPOINT_BUCKET, audit_stream, kv_stream
from agentledger.schemas.tenants import TenantQuota


class ClaimsUpdateFailed(RuntimeError):
    pass


class _Reply(msgspec.Struct):
    data: dict[str, object] | None = None
    error: dict[str, object] | None = None


Connect = Callable[[str, RawCredentials], Awaitable[Client]]
"""How a deployment tool connects (the CLI passes the client's, which says why it could not)."""


async def connect_once(url: str, creds: RawCredentials, timeout: float = 5.0) -> Client:
    """One attempt, no reconnects: nats-py would otherwise retry a refused server for minutes."""
    return await nats.connect(servers=[url], user_credentials=creds, connect_timeout=timeout, allow_reconnect=False,
                              max_reconnect_attempts=1, reconnect_time_wait=0)


async def push_account(url: str, deployment: Deployment, jwt: str, timeout: float = 5.0,
                       connect: Connect = connect_once) -> None:
    """Hand an account JWT to the server (and, through the system account, to its cluster)."""
    nc = await connect(url, deployment.system_creds().raw())
    try:
        msg = await nc.request("$SYS.REQ.CLAIMS.UPDATE", jwt.encode(), timeout=timeout)
    finally:
        await nc.close()
    reply = msgspec.json.decode(msg.data, type=_Reply)
    if reply.error or not reply.data or reply.data.get("code") != 200:
        raise ClaimsUpdateFailed(f"nats-server refused the account: {reply.error or reply.data}")


async def revoke_user(url: str, deployment: Deployment, tenant: str, user_key: str,
                      connect: Connect = connect_once) -> int:
    """Revoke one user's credentials: recorded with the deployment's keys and pushed to the running
    NATS in the tenant's account, which closes the user's connections and refuses its `.creds`
    from then on. Returns the revocation time (credentials issued up to then are refused)."""
    at = deployment.revoke(tenant, user_key)
    await push_account(url, deployment, deployment.tenant_jwt(tenant), connect=connect)
    return at


async def add_audit_stream(url: str, deployment: Deployment, tenant: str, prefix: str, stream: str,
                           connect: Connect = connect_once) -> str:
    """The tenant's audit stream: in its own account, sourcing only its own events from the engine's
    `stream` (history first, then live); its auditors read it with any standard consumer, or by
    direct get. Idempotent; an audit stream made before direct gets were allowed is updated."""
    name = audit_stream(stream)
    source = StreamSource(name=stream, filter_subject=f"{prefix}.evt.{tenant}.>",
                          external=ExternalStream(api=AUDIT_API, deliver=f"{AUDIT_DELIVERY}.{tenant}"))
    config = StreamConfig(name=name, subjects=[], sources=[source], storage=StorageType.FILE, allow_direct=True,
                          num_replicas=deployment.replicas, description=f"{tenant}'s events from {stream}")
    nc = await connect(url, deployment.provisioner_creds(tenant).raw())
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
        else:
            if not info.config.allow_direct:
                await js.update_stream(config)
    finally:
        await nc.close()
    return name


async def add_checkpoint_bucket(url: str, deployment: Deployment, tenant: str, max_bytes: int = -1,
                                connect: Connect = connect_once) -> str:
    """The tenant's checkpoint bucket, in its own account: members write it, auditors read it, and
    nothing in it ever reaches the engine's stream. `max_bytes` caps it inside the account's
    storage, so checkpoints can never take the room the audit stream needs. Idempotent: an existing
    bucket is kept as it is."""
    nc = await connect(url, deployment.provisioner_creds(tenant).raw())
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(kv_stream(CHECKPOINT_BUCKET))
        except nats.js.errors.NotFoundError:
            await js.create_key_value(KeyValueConfig(
                bucket=CHECKPOINT_BUCKET, history=1, storage=StorageType.FILE, direct=True,
                replicas=deployment.replicas, max_bytes=max_bytes, description=f"{tenant}'s agent checkpoints"))
    finally:
        await nc.close()
    return CHECKPOINT_BUCKET


async def add_tenant(url: str, deployment: Deployment, tenant: str, bucket: str = TENANTS_BUCKET,
                     connect: Connect = connect_once, quota: TenantQuota | None = None) -> str:
    """Create (or refresh) `tenant`'s account and make it known; returns its public key. Idempotent.
    Its checkpoint bucket is made in its account; with a concrete prefix and stream (not the test
    suite's `*`), its audit stream too.

    Nothing is written before NATS answers; the engines learn the tenant last (the directory
    entry), once its account and audit stream exist; and a new tenant's keys are removed again
    when a step fails, so a failed add leaves no tenant whose credentials could be issued: run it
    again. (An account pushed before the failure stays on the server, unusable: no one has its keys.)
    `quota` replaces the tenant's quota (None: keep the one it has, if any)."""
    new = deployment.tenant_account(tenant, create=False) is None
    nc = await connect(url, deployment.engine_creds("admin").raw())
    try:
        account = deployment.tenant_account(tenant)
        assert account is not None
        try:
            if quota is not None:
                deployment.set_quota(tenant, quota)
            await push_account(url, deployment, deployment.tenant_jwt(tenant), connect=connect)
            await add_checkpoint_bucket(url, deployment, tenant, connect=connect)
            if "*" not in (deployment.prefix, deployment.stream):
                await add_audit_stream(url, deployment, tenant, deployment.prefix, deployment.stream, connect)
            # known to the engines, with its quota, before any of its users can reach them
            await publish_quota(nc.jetstream(), tenant, deployment.quota(tenant), bucket)
            await TenantDirectory(nc.jetstream(), bucket).register(account, tenant)
        except BaseException:
            if new:
                deployment.remove_tenant(tenant)
            raise
    finally:
        await nc.close()
    return account


async def set_quota(url: str, deployment: Deployment, tenant: str, quota: TenantQuota,
                    bucket: str = TENANTS_BUCKET, connect: Connect = connect_once) -> None:
    """Change a tenant's quota: recorded with the deployment's keys, written to the tenant directory
    bucket (engines apply it within their refresh interval) and, for storage, pushed to the running
    NATS in the tenant's account JWT."""
    deployment.set_quota(tenant, quota)
    nc = await connect(url, deployment.engine_creds("admin").raw())
    try:
        await publish_quota(nc.jetstream(), tenant, quota, bucket)
    finally:
        await nc.close()
    await push_account(url, deployment, deployment.tenant_jwt(tenant), connect=connect)
