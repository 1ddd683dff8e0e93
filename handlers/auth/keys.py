"""The deployment's NATS keys on disk (operator mode): an operator, the system account, the
engine's account and one account per tenant, each an nkey seed from which its JWT is signed
again whenever it is needed. Users are issued as standard `.creds` files.

Seeds are secrets: the directory is 0700 and every file 0600. Whoever holds this directory is
the deployment (it can mint any credential); tenants only ever get a user's `.creds` file, with
an expiry when the operator gives one. The users the deployment mints for one operation of its
own (the system account's, a tenant account's provisioner) expire minutes after they are made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nkeys
from nats.aio.client import RawCredentials
from nats_jwt.nkeys_ext import create_account_pair, create_operator_pair, create_user_pair
from nats_jwt.v2.account_claims import AccountClaims, Export, Import
from nats_jwt.v2.operator_claims import OperatorClaims
from nats_jwt.v2.types import Permission
from nats_jwt.v2.user_claims import UserClaims

from agentledger.handlers.auth.permissions import (
    ENGINE_ROLES,
    ROLE_TAG,
    TENANT_ROLES,
    EngineRole,
    Grant,
    TenantRole,
    engine_grant,
    tenant_grant,
)
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.schemas.ids import TENANT_RE
from agentledger.schemas.tenants import TenantQuota

ENGINE_ACCOUNT = "AGENTLEDGER"
AUDIT_API = "$JS.ledger.API"  # where a tenant account sees the engine account's (narrowed) JetStream API
AUDIT_DELIVERY = "agentledger.audit"  # + .<tenant>.>: where the engine account delivers a tenant's events
USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ONE_OPERATION_SECONDS = 300  # users minted for one operation: a few minutes, for clocks a little apart
_TENANT = re.compile(TENANT_RE)
_CREDS = """-----BEGIN NATS USER JWT-----
{jwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{seed}
------END USER NKEY SEED------

*************************************************************
"""


def _secret(path: Path, text: str) -> None:
    """Write `text` to a new 0600 file that then takes `path`'s place: an existing file's mode, or a
    descriptor opened on it before, never sees the secret."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _pub(kp: nkeys.KeyPair) -> str:
    return kp.public_key.decode()


def _seed_of(creds_text: str) -> str:
    match = re.search(r"-{3,}BEGIN USER NKEY SEED-{3,}\s*(\S+)\s*-{3,}END USER NKEY SEED", creds_text)
    if match is None:
        raise ValueError("not a .creds file: no user nkey seed in it")
    return match.group(1)


def user_key_of(creds_text: str) -> str:
    """The user public key of a `.creds` file, from its seed (as a NATS client derives it)."""
    return _pub(nkeys.from_seed(_seed_of(creds_text).encode()))


def snapshot_key(creds_text: str, stream: str) -> bytes:
    """The key engines sign snapshots with: HMAC-SHA256 keyed by the engine user's nkey seed (the
    secret of its `.creds` file, 32 random bytes) over a label and the stream. Every replica started
    with the deployment's `engine.creds` derives the same key; no other identity (effect handler,
    admin, tenants) holds that seed, so none can write a snapshot an engine accepts."""
    seed = _seed_of(creds_text).encode()
    return hmac.new(seed, b"agentledger snapshots v1\0" + stream.encode(), hashlib.sha256).digest()


def open_snapshot_key(stream: str) -> bytes:
    """The key of a deployment without authentication: every engine derives it from the stream's
    name alone. It guards against nothing (there, any client may write the log itself), but keeps
    snapshots usable across restarts and replicas; with authentication, `snapshot_key`."""
    return hmac.new(b"agentledger snapshots without authentication v1", stream.encode(), hashlib.sha256).digest()


def is_user_key(key: str) -> bool:
    """A user's public nkey (`U…`, 56 characters of base32 with its checksum)."""
    if len(key) != 56 or not key.startswith("U"):
        return False
    try:
        raw = base64.b32decode(key + "=" * (-len(key) % 8))
    except ValueError:
        return False
    return raw[0] == nkeys.PREFIX_BYTE_USER and nkeys.crc16_checksum(raw[:-2]) == raw[-2:]


def _permission(allow: tuple[str, ...], deny: tuple[str, ...]) -> Permission:
    return Permission(allow=list(allow), deny=list(deny))


@dataclass(frozen=True)
class Creds:
    """One user's credentials: what nats-py, nats.js and the nats CLI read as a `.creds` file."""

    text: str
    public_key: str
    expires: int | None = None  # unix time after which the server refuses them; None: never

    def raw(self) -> RawCredentials:
        return RawCredentials(self.text)


class Deployment:
    """Keys of one deployment. `prefix` is the subject prefix the exports and permissions are
    written for (a single `*` token serves any prefix: the test suite's private prefixes)."""

    def __init__(self, root: Path, prefix: str, stream: str, operator: nkeys.KeyPair,
                 system: nkeys.KeyPair, engine: nkeys.KeyPair, replicas: int = 1) -> None:
        self.root, self.prefix, self.stream, self.replicas = root, prefix, stream, replicas
        self._operator, self._system, self._engine = operator, system, engine

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, prefix: str = "ledger", stream: str = "LEDGER", replicas: int = 1) -> Deployment:
        """The deployment in `root`, created (with fresh keys) if there is none yet. Prefix, stream
        and replicas (of the tenants' audit streams) are fixed when it is created."""
        root = Path(root)
        index = root / "deployment.json"
        if not index.exists():
            seeds = {k: p().seed.decode() for k, p in
                     (("operator", create_operator_pair), ("system", create_account_pair),
                      ("engine", create_account_pair))}
            _secret(index, json.dumps({"prefix": prefix, "stream": stream, "replicas": replicas, **seeds}, indent=1))
        data = json.loads(index.read_text())
        return cls(root, data["prefix"], data["stream"], nkeys.from_seed(data["operator"].encode()),
                   nkeys.from_seed(data["system"].encode()), nkeys.from_seed(data["engine"].encode()),
                   data.get("replicas", 1))

    @staticmethod
    def exists(root: str | Path) -> bool:
        return (Path(root) / "deployment.json").exists()

    # -- accounts --------------------------------------------------------------------------
    @property
    def system_account(self) -> str:
        return _pub(self._system)

    @property
    def engine_account(self) -> str:
        return _pub(self._engine)

    def operator_jwt(self) -> str:
        claims = OperatorClaims(_pub(self._operator), "agentledger")
        claims.nats.system_account = self.system_account
        return claims.encode(self._operator)

    def system_jwt(self) -> str:
        return AccountClaims(self.system_account, "SYS").encode(self._operator)

    def engine_jwt(self) -> str:
        """The engine's account: JetStream on, and the command and query services exported
        (singleton replies), each tenant importing only its own slice."""
        claims = AccountClaims(self.engine_account, ENGINE_ACCOUNT)
        limits = claims.nats.limits
        # nats-jwt 0.2 names memory storage differently from the server; file storage is what we use.
        limits.disk_storage, limits.streams, limits.consumer = -1, -1, -1
        p = self.prefix
        claims.nats.exports += [
            Export(name="commands", subject=f"{p}.cmd.*.>", type="service", response_type="Singleton"),
            Export(name="queries", subject=f"{p}.qry.*.>", type="service", response_type="Singleton"),
            # a tenant's audit stream sources its own events: a consumer whose filter is in the subject
            Export(name="audit-consumers", subject=f"$JS.API.CONSUMER.CREATE.{self.stream}.*.{p}.evt.*.>",
                   type="service", response_type="Singleton"),
            Export(name="audit-delivery", subject=f"{AUDIT_DELIVERY}.*.>", type="stream"),
            Export(name="audit-flow", subject="$JS.FC.>", type="service", response_type="Singleton"),
        ]
        return claims.encode(self._operator)

    def _tenant_key(self, tenant: str, create: bool) -> nkeys.KeyPair | None:
        if not _TENANT.match(tenant):
            raise ValueError(f"tenant {tenant!r} must match {TENANT_RE}")
        path = self.root / "tenants" / f"{tenant}.seed"
        if not path.exists():
            if not create:
                return None
            _secret(path, create_account_pair().seed.decode())
        return nkeys.from_seed(path.read_text().strip().encode())

    def tenants(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "tenants").glob("*.seed"))

    def remove_tenant(self, tenant: str) -> None:
        """Forget a tenant's keys (a `tenant add` that failed half-way): no credential can be issued for it."""
        if self._tenant_key(tenant, False) is not None:
            (self.root / "tenants" / f"{tenant}.seed").unlink()
            self._quota_path(tenant).unlink(missing_ok=True)

    def tenant_account(self, tenant: str, create: bool = True) -> str | None:
        kp = self._tenant_key(tenant, create)
        return None if kp is None else _pub(kp)

    def tenant_jwt(self, tenant: str) -> str:
        """A tenant's account: it imports its own command and query slices (with `share`, so the
        engine is told which account and user sent each request) and nothing else."""
        kp = self._tenant_key(tenant, True)
        assert kp is not None
        claims = AccountClaims(_pub(kp), tenant)
        p, engine = self.prefix, self.engine_account
        claims.nats.imports += [
            Import(name="commands", subject=f"{p}.cmd.{tenant}.>", account=engine, type="service", share=True),
            Import(name="queries", subject=f"{p}.qry.{tenant}.>", account=engine, type="service", share=True),
            Import(name="audit-consumers", account=engine, type="service",
                   # for a service import, `subject` is the importer's and `to` the exporter's
                   subject=f"{AUDIT_API}.CONSUMER.CREATE.{self.stream}.*.{p}.evt.{tenant}.>",
                   to=f"$JS.API.CONSUMER.CREATE.{self.stream}.*.{p}.evt.{tenant}.>"),
            Import(name="audit-delivery", subject=f"{AUDIT_DELIVERY}.{tenant}.>", account=engine, type="stream"),
            Import(name="audit-flow", subject="$JS.FC.>", account=engine, type="service"),
        ]
        limits = claims.nats.limits
        storage = self.quota(tenant).storage_bytes
        limits.disk_storage, limits.streams, limits.consumer = -1 if storage is None else storage, -1, -1
        revoked = self.revoked(tenant)
        if revoked:
            # A plain dict: nats-jwt 0.2.2's own RevocationList type is left out when it encodes.
            claims.nats.revocations = revoked  # type: ignore[assignment]
        return claims.encode(self._operator)

    # -- quotas ------------------------------------------------------------------------------
    def _quota_path(self, tenant: str) -> Path:
        if not _TENANT.match(tenant):
            raise ValueError(f"tenant {tenant!r} must match {TENANT_RE}")
        return self.root / "tenants" / f"{tenant}.quota.json"

    def quota(self, tenant: str) -> TenantQuota:
        """What the operator allows the tenant (`tenant add` / `tenant set`); `tenant_jwt` carries
        its storage limit, the engines read the rest from the tenant directory bucket."""
        path = self._quota_path(tenant)
        return msgspec.json.decode(path.read_bytes(), type=TenantQuota) if path.exists() else TenantQuota()

    def set_quota(self, tenant: str, quota: TenantQuota) -> None:
        if self._tenant_key(tenant, False) is None:
            raise KeyError(f"no tenant {tenant}: add it first (agentledger tenant add {tenant})")
        _secret(self._quota_path(tenant), msgspec.json.encode(quota).decode())

    # -- revocation --------------------------------------------------------------------------
    def _revocations_path(self, tenant: str) -> Path:
        if not _TENANT.match(tenant):
            raise ValueError(f"tenant {tenant!r} must match {TENANT_RE}")
        return self.root / "tenants" / f"{tenant}.revoked.json"

    def revoked(self, tenant: str) -> dict[str, int]:
        """User public key -> unix time: the server refuses that user's credentials issued up to then."""
        path = self._revocations_path(tenant)
        return json.loads(path.read_text()) if path.exists() else {}

    def revoke(self, tenant: str, user_key: str, at: int | None = None) -> int:
        """Record that `user_key`'s credentials issued until now (or `at`) are no longer valid;
        `tenant_jwt` carries it from then on. Returns the time recorded."""
        if self._tenant_key(tenant, False) is None:
            raise KeyError(f"no tenant {tenant}: add it first (agentledger tenant add {tenant})")
        if not is_user_key(user_key):
            raise ValueError(f"{user_key!r} is not a user public key (U…, as `tenant creds` prints it)")
        revoked = self.revoked(tenant)
        revoked[user_key] = max(revoked.get(user_key, 0), int(time.time()) if at is None else at)
        _secret(self._revocations_path(tenant), json.dumps(revoked, indent=1, sort_keys=True))
        return revoked[user_key]

    # -- users -----------------------------------------------------------------------------
    def _user(self, account: nkeys.KeyPair, name: str, tags: list[str], grant: Grant,
              expires_in: int | None = None) -> Creds:
        if not USER_RE.match(name):
            raise ValueError(f"user {name!r} must match {USER_RE.pattern}")
        if expires_in is not None and expires_in <= 0:
            raise ValueError("an expiry must be in the future")
        user = create_user_pair()
        claims = UserClaims(_pub(user), name)
        claims.nats.tags = tags
        claims.nats.pub = _permission(grant.pub_allow, grant.pub_deny)
        claims.nats.sub = _permission(grant.sub_allow, grant.sub_deny)
        if expires_in is not None:
            claims.exp = int(time.time()) + expires_in
        return Creds(_CREDS.format(jwt=claims.encode(account), seed=user.seed.decode()), _pub(user),
                     claims.exp or None)

    def engine_creds(self, role: EngineRole = "engine", name: str | None = None, prefix: str | None = None,
                     stream: str | None = None, grant: Grant | None = None) -> Creds:
        """A user of the engine's account. Its permissions name the deployment's prefix and stream;
        `prefix`/`stream` write them for another (the test suite's deployment serves any prefix,
        and the effect handler's allow-list names its own consumer on one stream). `grant` gives
        narrower permissions than the role's own (an operator's restricted user)."""
        assert role in ENGINE_ROLES
        grant = grant or engine_grant(prefix or self.prefix, stream or self.stream, role)
        return self._user(self._engine, name or role, [ROLE_TAG + role], grant)

    def system_creds(self) -> Creds:
        """The system account's user, to push one account JWT: minted for each push, expiring soon after."""
        return self._user(self._system, "sys", [], Grant(), ONE_OPERATION_SECONDS)

    def provisioner_creds(self, tenant: str) -> Creds:
        """Everything inside one tenant's account (to create its audit stream); never handed out,
        minted for each use and expiring soon after."""
        kp = self._tenant_key(tenant, False)
        if kp is None:
            raise KeyError(f"no tenant {tenant}")
        return self._user(kp, "provisioner", [], Grant(), ONE_OPERATION_SECONDS)

    def tenant_creds(self, tenant: str, user: str, role: TenantRole = "member", expires_in: int | None = None) -> Creds:
        """A tenant user's credentials; with `expires_in` (seconds) the server refuses them after that
        and closes their connections when it passes."""
        if role not in TENANT_ROLES:
            raise ValueError(f"role must be one of {', '.join(TENANT_ROLES)}")
        kp = self._tenant_key(tenant, False)
        if kp is None:
            raise KeyError(f"no tenant {tenant}: add it first (agentledger tenant add {tenant})")
        return self._user(kp, user, [ROLE_TAG + role], tenant_grant(self.prefix, tenant, role), expires_in)

    # -- files -----------------------------------------------------------------------------
    def creds_path(self, role: EngineRole) -> Path:
        """Where this deployment keeps its own identities' creds (written on first use)."""
        path = self.root / f"{role}.creds"
        if not path.exists():
            _secret(path, self.engine_creds(role).text)
        return path

    @staticmethod
    def write(creds: Creds, path: str | Path) -> None:
        _secret(Path(path), creds.text)

    def server_config(self, resolver_dir: str | Path) -> str:
        """The operator-mode part of a nats-server config: trust this operator, keep account JWTs
        in a `full` resolver (updated at run time through the system account, no reload), and
        preload the accounts known here so a fresh server knows them from the start."""
        preload = {self.system_account: self.system_jwt(), self.engine_account: self.engine_jwt()}
        for tenant in self.tenants():
            preload[self.tenant_account(tenant) or ""] = self.tenant_jwt(tenant)
        lines = "\n".join(f"  {k}: {v}" for k, v in preload.items())
        return (f"operator: {self.operator_jwt()}\n"
                f"system_account: {self.system_account}\n"
                f'resolver: {{\n  type: full\n  dir: "{Path(resolver_dir).resolve()}"\n'
                f"  allow_delete: false\n  interval: \"2m\"\n}}\n"
                f"resolver_preload: {{\n{lines}\n}}\n")

    def embedded(self, data_dir: str | Path, **options: object) -> EmbeddedNats:
        """An embedded nats-server that trusts this deployment (account JWTs kept in `data_dir/jwt`)."""
        return EmbeddedNats(data_dir, auth=self.server_config(Path(data_dir) / "jwt"), **options)  # type: ignore[arg-type]
