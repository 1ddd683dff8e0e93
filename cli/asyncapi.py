"""The AsyncAPI 3.0 document of the engine (docs/asyncapi.json), generated from the code: the
subjects from `engine.subjects`, every payload from the same JSON Schema as docs/schema.json.

The handlers take raw messages (the engine decodes each body once, with its own error replies),
so the document is built from the contract, not from a handler framework.
"""

from __future__ import annotations

from typing import Any

from agentledger.engine.store import H_EXPECTED_SEQ, H_EXPECTED_SUBJECT, H_LEDGER_BOUNDARY, H_LEDGER_EXPECTED
from agentledger.engine.subjects import Subjects
from agentledger.handlers.auth.permissions import TENANT_ROLES, may_ask, may_send
from agentledger.schemas.accounts import audit_stream
from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.contract import event_types, json_schema, version
from agentledger.schemas.queries import QUERIES
from agentledger.schemas.replies import type_name

PREFIX = "ledger"  # the default; `--prefix` changes the first token of every address
TENANT = "{tenant}"
_BOUNDARY = {"project": ("project_id", "project"), "sandbox": ("sandbox_id", "sandbox")}
_THREAD = ("thread_id", "thread")


SECURITY = {
    "type": "asymmetricEncryption",
    "description": (
        "NATS decentralized (operator-mode) JWT authentication: connect with a `.creds` file, which holds a "
        "user JWT and its nkey seed; the client signs the server's nonce with the seed. Each tenant is a NATS "
        "account that imports only its own `cmd`/`qry` subjects, so the tenant token of a subject is the "
        "caller's account, never a claim. A user's role is a tag in its JWT: `member` sends commands and "
        "queries; `auditor` sends queries and reads its tenant's own copy of the event stream (a command gets "
        "`forbidden`); `admin` (the deployment's, `.agentledger/auth/admin.creds` of an embedded server) may "
        "act on any tenant; `effects` (the deployment's sandbox effect handler) alone sends `sandbox.report_outcome`, "
        "on its own subject. Every event records the authenticated `principal` (id, role, public key)."),
}


_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}
EVENT_HEADERS = {
    "type": "object",
    "description": "The NATS headers an event is stored with. JetStream drops the `Nats-Expected-*` pair when it "
                   "sources a message into another stream, so the same two facts ride in `Ledger-*` headers too, "
                   "which a tenant's audit stream keeps (with `Nats-Stream-Source` added).",
    "required": [H_LEDGER_EXPECTED, H_LEDGER_BOUNDARY],
    "properties": {
        H_EXPECTED_SEQ: {**_DIGITS, "description": "JetStream's condition on the append: the boundary's last position "
                                                   "the decision was made on (engine stream only)"},
        H_EXPECTED_SUBJECT: {"type": "string", "description": "the boundary filter the condition was checked on "
                                                              "(engine stream only)"},
        H_LEDGER_EXPECTED: {**_DIGITS, "description": "the boundary's position the decision was based on (0: the "
                                                      "boundary's first event)"},
        H_LEDGER_BOUNDARY: {"type": "string", "description": "the boundary filter, e.g. `ledger.evt.tnt_demo.thr.thd_main.>`"},
        "traceparent": {"type": "string", "description": "W3C trace context of the command that appended the event"},
        "Nats-Stream-Source": {"type": "string", "description": "audit stream only, set by JetStream: `<stream>:<hash> "
                                                                 "<position> <filter> > <subject> <hash>`; the second "
                                                                 "word is the event's ledger position"},
    },
}


def _components_ref(node: Any) -> Any:
    """docs/schema.json's `$defs` as AsyncAPI components: refs moved, and `discriminator` written
    the AsyncAPI way (the property name; the `mapping` is implied by each member's `type`)."""
    if isinstance(node, dict):
        out = {k: _components_ref(v) for k, v in node.items()}
        if isinstance(out.get("$ref"), str):
            out["$ref"] = out["$ref"].replace("#/$defs/", "#/components/schemas/")
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(node, list):
        return [_components_ref(v) for v in node]
    return node


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _channel_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{name}"}


def boundary_of(event_type: str) -> tuple[str, str]:
    """(id field, word) of the boundary an event type is written to."""
    return _BOUNDARY.get(event_type.split(".", 1)[0], _THREAD)


def asyncapi(prefix: str = PREFIX) -> dict[str, Any]:
    contract = json_schema()
    subjects = Subjects(prefix)
    schemas = _components_ref(contract["$defs"])
    tenant = {"description": "tenant id: `tnt_` + 1-64 of [A-Za-z0-9_-]; the caller's credentials "
                             "must allow it", "examples": ["tnt_default"]}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def message(name: str, schema: str, summary: str, headers: str | None = None) -> dict[str, str]:
        messages[name] = {"name": name, "title": name, "summary": summary, "contentType": "application/json",
                          "payload": _ref("schemas", schema), **({"headers": _ref("schemas", headers)} if headers else {})}
        return _ref("messages", name)

    replies = {name: message(f"reply.{name}", type_name(name) + "Reply", f"The one reply to `{name}`.")
               for name in sorted({*COMMANDS, *QUERIES})}
    channels["replies"] = {
        "address": None,
        "description": "The requester's reply subject (its NATS inbox); exactly one reply per request.",
        "messages": replies,
    }

    for kind, table, subject in (("command", COMMANDS, subjects.command), ("query", QUERIES, subjects.query)):
        for name in sorted(table):
            struct = table[name]
            doc = (struct.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            channel = f"{kind}.{name}"
            if kind == "command":
                roles = [r for r in (*TENANT_ROLES, "admin", "effects") if may_send(r, name)]
            else:
                roles = [r for r in (*TENANT_ROLES, "admin") if may_ask(r, name)]
            # a command only the effect handler sends has a subject of its own, which only its identity may publish on
            address = subjects.effects_command(TENANT, name) if roles == ["effects"] else subject(TENANT, name)
            channels[channel] = {
                "address": address,
                "title": f"{kind} {name}",
                "parameters": {"tenant": tenant},
                "messages": {"request": message(f"{kind}.{name}", struct.__name__, doc or f"The `{name}` {kind}.")},
            }
            operations[name] = {
                "security": [_ref("securitySchemes", "natsCredentials")],
                "x-roles": roles,
                "action": "receive",
                "title": name,
                "summary": doc or f"The `{name}` {kind}.",
                "description": f"Allowed to: {', '.join(roles)}; any other role gets a `forbidden` reply.",
                "channel": _channel_ref(channel),
                "messages": [{"$ref": f"#/channels/{channel}/messages/request"}],
                "reply": {"channel": _channel_ref("replies"),
                          "messages": [{"$ref": f"#/channels/replies/messages/{name}"}]},
            }

    def event_channel(key: str, title: str, address: str, parameters: dict[str, Any], msgs: dict[str, Any],
                      description: str) -> None:
        channels[key] = {"address": address, "title": title, "description": description,
                         "parameters": {"tenant": tenant, **parameters}, "messages": msgs}
        operations[f"append.{key.removeprefix('events.')}"] = {
            "action": "send",
            "title": f"append {title}",
            "summary": "The engine appends one event per accepted command, conditional on its boundary's last "
                       "sequence (an event that introduces a session is preceded by that session id's claim).",
            "channel": _channel_ref(key),
            "messages": [{"$ref": f"#/channels/{key}/messages/{m}"} for m in sorted(msgs)],
        }

    by_boundary: dict[tuple[str, str], dict[str, Any]] = {}
    for event in event_types():
        tag = str(event.__struct_config__.tag)
        by_boundary.setdefault(boundary_of(tag), {})[tag] = message(
            f"event.{tag}", f"{event.__name__}Envelope", (event.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            or f"The `{tag}` event.", "EventHeaders")
    every_event = {tag: ref for msgs in by_boundary.values() for tag, ref in msgs.items()}
    for (field, word), msgs in sorted(by_boundary.items()):
        boundary = getattr(subjects, f"{word}_filter")(TENANT, "{" + field + "}")
        about = (f"Events of one {word} in the JetStream stream (default `LEDGER`); an event's position is its "
                 f"stream sequence. Read a {word}'s history with a consumer filtered on `{boundary}`, or through "
                 "the `events.read` query.")
        ids = {field: {"description": f"the {word} the events belong to"}}
        if "thread.created" in msgs:  # it carries its project as a last token, so a project's threads are one read
            event_channel("events.thread.created", "thread.created", subjects.thread_created_subject(
                boundary, "{project_id}"), {**ids, "project_id": {"description": "the thread's project"}},
                {"thread.created": msgs.pop("thread.created")}, about)
        event_channel(f"events.{word}", f"{word} events", Subjects.event_subject(boundary, "{type}"),
                      {**ids, "type": {"description": "the event type", "enum": sorted(msgs)}}, msgs, about)

    audit = audit_stream("LEDGER")
    channels["audit.events"] = {
        "address": subjects.tenant_filter(TENANT),
        "title": "a tenant's audit stream",
        "description": f"The tenant's own copy of its events, in its own NATS account: the JetStream stream `{audit}` "
                       f"(`AUDIT_<stream>`), which `agentledger tenant add` creates as a source of `"
                       f"{subjects.tenant_filter(TENANT)}` from the engine's stream. Same subjects and payloads as the "
                       "event channels; its sequence numbers are its own (the ledger position is in `Nats-Stream-Source`). "
                       "Direct get is allowed (`$JS.API.DIRECT.GET." + audit + "`); nothing can publish into it.",
        "parameters": {"tenant": tenant},
        "messages": dict(sorted(every_event.items())),
    }
    operations["audit.read"] = {
        "security": [_ref("securitySchemes", "natsCredentials")],
        "x-roles": ["auditor"],
        "action": "receive",
        "title": "read the audit stream",
        "summary": "An auditor reads its tenant's events with any standard JetStream consumer (durable, from any "
                   "position) or by direct get, with the headers each decision was based on (`EventHeaders`).",
        "channel": _channel_ref("audit.events"),
        "messages": [{"$ref": f"#/channels/audit.events/messages/{tag}"} for tag in sorted(every_event)],
    }

    claim = subjects.session_claim_subject(TENANT, "{session_id}", "{thread_id}")
    channels["claims.session"] = {
        "address": claim,
        "title": "session claims",
        "description": "In the same stream, not events: at most one message per session id, with an empty body, "
                       "appended with expected sequence 0 on the id's claim filter just before the event that "
                       "introduces the session (a conditional publish of its own), so one session id can never "
                       "land in two threads. Positions skip them.",
        "parameters": {"tenant": tenant, "session_id": {"description": "the claimed session id"},
                       "thread_id": {"description": "the thread that holds it"}},
        "messages": {"claim": {"name": "session.claim", "title": "session.claim", "summary": "A session id's claim "
                               "(empty body)."}},
    }
    operations["claim.session"] = {
        "action": "send", "title": "claim a session id", "channel": _channel_ref("claims.session"),
        "summary": "Appended just before the event that introduces the session.",
        "messages": [{"$ref": "#/channels/claims.session/messages/claim"}],
    }

    return {
        "asyncapi": "3.0.0",
        "id": "urn:agentledger",
        "info": {
            "title": "Agent Ledger",
            "version": version(),
            "description": "An event-sourced control plane for multi-agent systems: JSON commands and queries "
                           "over NATS request/reply, and JSON events in one JetStream stream. Subjects use the "
                           f"default prefix `{prefix}`. See docs/protocol.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:4222", "protocol": "nats",
                      "description": "The embedded server `agentledger serve` (or `make run`) starts; its admin "
                                     "credentials are written to `.agentledger/auth/admin.creds`.",
                      "security": [_ref("securitySchemes", "natsCredentials")]},
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())), "schemas": {**schemas, "EventHeaders": EVENT_HEADERS},
                       "securitySchemes": {"natsCredentials": SECURITY}},
    }
