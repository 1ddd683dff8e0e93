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

from agentledger.engine.snapshots import bucket_name as snapshot_bucket
from agentledger.engine.subjects import Subjects
from agentledger.handlers.parking import bucket_name as parking_bucket
from agentledger.schemas.accounts import CHECKPOINT_BUCKET, kv_stream

TenantRole = Literal["member", "auditor"]
EngineRole = Literal["engine", "effects", "admin"]
TENANT_ROLES: tuple[TenantRole, ...] = ("member", "auditor")
ENGINE_ROLES: tuple[EngineRole, ...] = ("engine", "effects", "admin")
ROLE_TAG = "role:"

EFFECTS_INBOX = "_INBOX_fx"  # the effect handler's reply subjects: it may read no other inbox of the account

# Commands that only some identities may send, whatever their role may otherwise do (anyone else:
# `forbidden`, nothing appended). The effect handler sends exactly these, on its own subject
# (`Subjects.effects_command`); the engine's own workers call the command service in process.
COMMAND_ROLES: dict[str, frozenset[str]] = {"sandbox.report_outcome": frozenset({"engine", "effects"})}
EFFECTS_COMMANDS = ("sandbox.report_outcome",)  # commands only the effect handler sends (and only there)
EFFECTS_ALSO = ("sandbox.destroy",)  # what else it sends on its own subject: its reconciler's record of a lost sandbox
# Queries only the deployment may ask (they span tenants); and the two the effect handler needs:
# a sandbox's pending requests, and the live sandboxes a reconciler compares with its provider.
QUERY_ROLES: dict[str, frozenset[str]] = {"sandbox.list_live": frozenset({"admin", "engine", "effects"})}
EFFECTS_QUERIES = ("sandbox.get", "sandbox.list_live")

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


def effects_grant(prefix: str, stream: str) -> Grant:
    """What the effect handler acts on and nothing more (an allow-list): its own durable consumer
    over the sandbox events (created and updated only with the filter in the request subject, which
    the server holds the consumer to; fetch, acknowledge, info), its own records in the parking lot,
    the sandbox state it needs through `sandbox.get`, its outcomes on its own subject, and its own
    inboxes. No direct or message get (their JSON body names any subject), no other consumer, no
    consumer delete, no KV bucket of the engine's (snapshots, the tenant map), no stream write."""
    subjects = Subjects(prefix)
    durable, lot = subjects.durable("fx"), parking_bucket(stream)
    consumer = (f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.{subjects.sandbox_events_all}",
                f"$JS.API.CONSUMER.INFO.{stream}.{durable}", f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.>")
    parking = (f"$KV.{lot}.{durable}.>", f"$JS.API.STREAM.INFO.{kv_stream(lot)}")
    requests = (*(subjects.effects_command("*", name) for name in (*EFFECTS_COMMANDS, *EFFECTS_ALSO)),
                *(subjects.query("*", name) for name in EFFECTS_QUERIES))
    return Grant(pub_allow=(*requests, *consumer, *parking, f"{EFFECTS_INBOX}.>"), sub_allow=(f"{EFFECTS_INBOX}.>",))


def engine_grant(prefix: str, stream: str, role: EngineRole) -> Grant:
    """The engine appends; the admin reads the log and sends commands; the effect handler gets
    `effects_grant`. Nobody but the engine serves requests, appends, changes a stream, reports a
    sandbox outcome or writes a snapshot."""
    if role == "engine":
        return Grant()
    if role == "effects":
        return effects_grant(prefix, stream)
    subjects = Subjects(prefix)
    serving = (f"{prefix}.cmd.>", f"{prefix}.qry.>", f"{prefix}.ping", subjects.effects_all)
    stream_subjects = (f"{prefix}.evt.>", f"{prefix}.ses.>")  # events, and the session claims appended with them
    snapshots = f"$KV.{snapshot_bucket(stream)}.>"
    return Grant(pub_deny=(*stream_subjects, *STREAM_WRITES, subjects.effects_all, snapshots), sub_deny=serving)


def may_command(role: str) -> bool:
    """Ordinary commands, on `<prefix>.cmd.<tenant>.<name>` (the effect handler sends none)."""
    return role in ("member", "admin", "engine")


def may_send(role: str, command: str) -> bool:
    """May `role` send `command`? The effect handler its own list; anyone else the table of
    restricted commands first, then the role's rights."""
    if role == "effects":
        return command in (*EFFECTS_COMMANDS, *EFFECTS_ALSO)
    only = COMMAND_ROLES.get(command)
    return role in only if only is not None else may_command(role)


def may_query(role: str) -> bool:
    return role in ("member", "auditor", "admin", "engine", "effects")


def may_ask(role: str, query: str) -> bool:
    """May `role` ask `query`? The table of deployment-only queries first, then the role's rights."""
    only = QUERY_ROLES.get(query)
    return role in only if only is not None else may_query(role)
