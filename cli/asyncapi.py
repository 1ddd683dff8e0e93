"""The AsyncAPI 3.0 document of the engine (docs/asyncapi.json), generated from the code: the
subjects from `engine.subjects`, every payload from the same JSON Schema as docs/schema.json.

FastStream's generator cannot do this here: the handlers take raw messages (so the engine decodes
each body once, with its own error replies), which leaves FastStream nothing to describe.
"""

from __future__ import annotations

from typing import Any

from engine.subjects import Subjects
from schemas.commands import COMMANDS
from schemas.contract import event_types, json_schema, version
from schemas.queries import QUERIES

PREFIX = "ledger"  # the default; `--prefix` changes the first token of every address
TENANT = "{tenant}"
_BOUNDARY = {"project": ("project_id", "project"), "sandbox": ("sandbox_id", "sandbox")}
_THREAD = ("thread_id", "thread")


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


def _reply_name(query: str) -> str:
    return "".join(p.capitalize() for p in query.replace("_", ".").split(".")) + "Reply"


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

    def message(name: str, schema: str, summary: str) -> dict[str, str]:
        messages[name] = {"name": name, "title": name, "summary": summary, "contentType": "application/json",
                          "payload": _ref("schemas", schema)}
        return _ref("messages", name)

    replies = {"command": message("reply.command", "CommandReply", "The one reply to every command.")}
    for name in sorted(QUERIES):
        replies[name] = message(f"reply.{name}", _reply_name(name), f"The one reply to `{name}`.")
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
            channels[channel] = {
                "address": subject(TENANT, name),
                "title": f"{kind} {name}",
                "parameters": {"tenant": tenant},
                "messages": {"request": message(f"{kind}.{name}", struct.__name__, doc or f"The `{name}` {kind}.")},
            }
            reply = "command" if kind == "command" else name
            operations[name] = {
                "action": "receive",
                "title": name,
                "summary": doc or f"The `{name}` {kind}.",
                "channel": _channel_ref(channel),
                "messages": [{"$ref": f"#/channels/{channel}/messages/request"}],
                "reply": {"channel": _channel_ref("replies"),
                          "messages": [{"$ref": f"#/channels/replies/messages/{reply}"}]},
            }

    by_boundary: dict[tuple[str, str], dict[str, Any]] = {}
    for event in event_types():
        tag = str(event.__struct_config__.tag)
        by_boundary.setdefault(boundary_of(tag), {})[tag] = message(
            f"event.{tag}", f"{event.__name__}Envelope", (event.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            or f"The `{tag}` event.")
    for (field, word), msgs in sorted(by_boundary.items()):
        channel = f"events.{word}"
        address = Subjects.event_subject(getattr(subjects, f"{word}_filter")(TENANT, "{" + field + "}"), "{type}")
        channels[channel] = {
            "address": address,
            "title": f"{word} events",
            "description": (f"Events of one {word}, in the JetStream stream (default `LEDGER`); the position is "
                            f"the stream sequence. Read them with a consumer filtered on "
                            f"`{getattr(subjects, f'{word}_filter')(TENANT, '{' + field + '}')}`, or through "
                            "the `events.read` query."),
            "parameters": {"tenant": tenant, field: {"description": f"the {word} the events belong to"},
                           "type": {"description": "the event type", "enum": sorted(msgs)}},
            "messages": msgs,
        }
        operations[f"append.{word}"] = {
            "action": "send",
            "title": f"append {word} events",
            "summary": f"The engine appends one event per accepted command to a {word}'s subjects, each "
                       "conditional on the boundary's last sequence.",
            "channel": _channel_ref(channel),
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in sorted(msgs)],
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
                      "description": "The embedded server `agentledger serve` (or `make run`) starts."},
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())), "schemas": schemas},
    }
