"""Who sent a request, in the broker's words: the `Nats-Request-Info` header that nats-server
adds on a shared service import (a tenant's request). The server overwrites any value the
client set, so the account (hence the tenant) and the user come from authentication alone.

A request without the header came from inside the engine's own account, which only the
deployment's identities can reach: it acts as `admin` for the tenant its subject names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from agentledger.handlers.auth.permissions import ROLE_TAG, TENANT_ROLES, may_command, may_query
from agentledger.schemas.errors import Forbidden, ForbiddenDetails
from agentledger.schemas.events import Principal

log = logging.getLogger("agentledger.auth")
REQUEST_INFO = "Nats-Request-Info"
TENANTS_BUCKET = "agentledger_tenants"  # account public key -> tenant id, written by `tenant add`
DEPLOYMENT = Principal(id="deployment", role="admin")


class RequestInfo(msgspec.Struct, frozen=True):
    acc: str
    user: str = ""
    name_tag: str = ""
    tags: list[str] = []


_info = msgspec.json.Decoder(RequestInfo)


@dataclass(frozen=True)
class Caller:
    """`tenant`: the tenant of the sender's account (None inside the engine's account, where the
    subject's tenant stands); `principal`: the authenticated user; `account` for refusals."""

    tenant: str | None
    principal: Principal
    account: str = ""


def role_of(tags: list[str]) -> str:
    roles = [t[len(ROLE_TAG):] for t in tags if t.startswith(ROLE_TAG)]
    return roles[0] if len(roles) == 1 else ""


class TenantDirectory:
    """Account public key -> tenant, read from a KV bucket in the engine's account, so a tenant
    added while engines run is known at its first request. A tenant's account never changes
    tenant, so a key once found is kept; a key not found is asked again next time."""

    def __init__(self, js: JetStreamContext, bucket: str = TENANTS_BUCKET) -> None:
        self.js, self.bucket = js, bucket
        self._known: dict[str, str] = {}
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self.js.create_key_value(bucket=self.bucket, history=1)
        return self._kv

    async def tenant_of(self, account: str) -> str | None:
        if account in self._known:
            return self._known[account]
        try:
            entry = await (await self._bucket()).get(account)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        tenant = entry.value.decode()
        self._known[account] = tenant
        return tenant

    async def register(self, account: str, tenant: str) -> None:
        await (await self._bucket()).put(account, tenant.encode())


async def identify(headers: dict[str, str] | None, directory: TenantDirectory | None) -> Caller | None:
    """The caller of a request, or None when the header is there but says nothing we can trust
    (with no directory, no tenant account is trusted)."""
    raw = (headers or {}).get(REQUEST_INFO)
    if raw is None:
        return Caller(tenant=None, principal=DEPLOYMENT)
    try:
        info = _info.decode(raw)
    except msgspec.DecodeError:
        return None
    role = role_of(info.tags)
    if role not in TENANT_ROLES:
        log.warning("request from user %s of account %s, which has no tenant role", info.user, info.acc)
        return None
    tenant = None if directory is None else await directory.tenant_of(info.acc)
    if tenant is None:
        log.warning("request from account %s, which is no tenant's", info.acc)
        return None
    return Caller(tenant=tenant, principal=Principal(id=info.name_tag, role=role, key=info.user),
                  account=info.acc)


def authorize(caller: Caller | None, tenant: str, kind: Literal["command", "query"]) -> Forbidden | None:
    """None when `caller` may send a `kind` request for `tenant`; else the refusal to reply with.
    Pure: the tenant is the account's, never the subject's, unless the caller is the deployment."""
    if caller is None:
        return _forbidden("unknown", "unknown", tenant, "the broker's account or role for this request is not recognised")
    p = caller.principal
    if caller.tenant is not None and caller.tenant != tenant:
        return _forbidden(p.id, p.role, tenant, f"credentials of tenant {caller.tenant} cannot act for {tenant}")
    allowed = may_command(p.role) if kind == "command" else may_query(p.role)
    if not allowed:
        return _forbidden(p.id, p.role, tenant, f"role {p.role} may not send {kind}s")
    return None


def _forbidden(principal: str, role: str, tenant: str, message: str) -> Forbidden:
    return Forbidden(message=message, details=ForbiddenDetails(principal=principal, role=role, tenant=tenant))
