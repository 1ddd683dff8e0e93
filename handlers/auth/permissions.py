"""What each identity may do, as NATS subject permissions and as engine rules: the permission
matrix in one place, pure (no keys, no I/O).

Tenants are separated by accounts (a tenant account imports only its own slice of the command
and query services); the subject permissions here narrow what a user can do inside its own
account. Roles that the broker cannot tell apart by subject (a member and an auditor both reach
the command service, so that the auditor gets a `forbidden` reply rather than a timeout) are
told apart by the engine, from the role tag in the user JWT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agentledger.schemas.accounts import CHECKPOINT_BUCKET, kv_stream

TenantRole = Literal["member", "auditor"]
EngineRole = Literal["engine", "effects", "admin"]
TENANT_ROLES: tuple[TenantRole, ...] = ("member", "auditor")
ENGINE_ROLES: tuple[EngineRole, ...] = ("engine", "effects", "admin")
ROLE_TAG = "role:"

# JetStream API calls that change or remove a stream or its messages: no one but the engine makes them.
STREAM_WRITES = ("$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>",
                 "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.RESTORE.>")


@dataclass(frozen=True)
class Grant:
    """Subject permissions of one user (empty allow = everything not denied)."""

    pub_allow: tuple[str, ...] = ()
    pub_deny: tuple[str, ...] = ()
    sub_allow: tuple[str, ...] = ()
    sub_deny: tuple[str, ...] = ()


def checkpoint_grant(bucket: str = CHECKPOINT_BUCKET) -> tuple[str, ...]:
    """What a checkpointer needs on its tenant's bucket and nothing more: its keys (put, create,
    delete), the bucket's stream info (binding, and listing keys by subject filter), direct gets,
    and purging by subject (deleting a thread leaves no tombstones behind). No stream create,
    update or delete, no consumers, no other stream."""
    stream = kv_stream(bucket)
    return (f"$KV.{bucket}.>", f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>", f"$JS.API.STREAM.PURGE.{stream}")


def tenant_grant(prefix: str, tenant: str, role: TenantRole) -> Grant:
    """A tenant account holds its audit streams and its checkpoint bucket, and no tenant user may
    create, update or delete a stream there. A member writes the checkpoint bucket; an auditor may
    read any stream of its own account (the audit copy and the checkpoints), and cannot reach the
    engine's at all."""
    requests = (f"{prefix}.cmd.{tenant}.>", f"{prefix}.qry.{tenant}.>")
    if role == "member":
        return Grant(pub_allow=(*requests, *checkpoint_grant()), sub_allow=("_INBOX.>",))
    reads = ("$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
             "$JS.API.CONSUMER.CREATE.*.>", "$JS.API.CONSUMER.DURABLE.CREATE.*.>", "$JS.API.CONSUMER.INFO.*.*",
             "$JS.API.CONSUMER.MSG.NEXT.*.*", "$JS.API.CONSUMER.DELETE.*.*", "$JS.API.CONSUMER.NAMES.*",
             "$JS.API.CONSUMER.LIST.*", "$JS.ACK.>", "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>")
    return Grant(pub_allow=(*requests, *reads), sub_allow=("_INBOX.>",))


def engine_grant(prefix: str, role: EngineRole) -> Grant:
    """The engine appends; the effect handler and the admin read the log and send commands."""
    if role == "engine":
        return Grant()
    serving = (f"{prefix}.cmd.>", f"{prefix}.qry.>", f"{prefix}.ping")
    stream_subjects = (f"{prefix}.evt.>", f"{prefix}.ses.>")  # events, and the session claims appended with them
    return Grant(pub_deny=(*stream_subjects, *STREAM_WRITES), sub_deny=serving)


def may_command(role: str) -> bool:
    return role in ("member", "admin", "engine", "effects")


def may_query(role: str) -> bool:
    return role in ("member", "auditor", "admin", "engine", "effects")
