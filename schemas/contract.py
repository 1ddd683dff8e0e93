"""The machine-readable contract: JSON Schema for every command, query, reply and event,
generated from the same msgspec types the engine decodes with, so it cannot drift.

It is shaped for code generators: replies are unions discriminated on `ok`, events unions
discriminated on `type` (one envelope type per event type, built from `Envelope`'s own fields),
every query's reply has its result typed, objects are closed, and every integer lies within
±(2^53-1) so JavaScript's numbers hold it exactly. The root is an object whose properties map
each command and query name to its types, so a generator emits everything without flags.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import msgspec
import msgspec.inspect as mi

from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.common import MAX_SAFE_INT
from agentledger.schemas.events import AnyEvent, Envelope, StoredEvent
from agentledger.schemas.queries import QUERIES, QUERY_RESULTS
from agentledger.schemas.replies import CommandRefused, QueryRefused, command_accepted, query_answer, type_name

MAX_SAFE_INTEGER = MAX_SAFE_INT  # what a JavaScript number holds exactly
REF = "#/$defs/{name}"


def version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    return metadata.version("agentledger")


def event_types() -> list[type[msgspec.Struct]]:
    """Every event struct, in the order of the `AnyEvent` union."""
    return list(AnyEvent.__args__)  # type: ignore[attr-defined]


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


def typed_envelopes(base: type[Envelope]) -> list[type[msgspec.Struct]]:
    """One struct per event type with `base`'s fields, `type` its tag and `data` that event: the
    same bytes the engine writes, described so that `type` alone says what `data` holds."""
    fields = [f for f in msgspec.structs.fields(base) if f.name != "type"]
    suffix = "Envelope" if base is Envelope else "Record"
    out = []
    for event in event_types():
        spec = [(f.name, event if f.name == "data" else f.type,
                 *(() if f.required else (f.default if f.default is not msgspec.NODEFAULT
                                          else msgspec.field(default_factory=f.default_factory),)))
                for f in fields]
        out.append(msgspec.defstruct(event.__name__ + suffix, spec, tag_field="type", tag=_tag(event), kw_only=True,
                                     frozen=True, forbid_unknown_fields=True, module=__name__))
    return out


def _union(title: str, members: list[type[msgspec.Struct]], discriminator: str | None, doc: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"title": title, "description": doc,
                              "oneOf": [{"$ref": REF.format(name=m.__name__)} for m in members]}
    if discriminator == "type":
        schema["discriminator"] = {"propertyName": "type", "mapping": {
            _tag(m): REF.format(name=m.__name__) for m in members}}
    return schema


def _tighten(node: Any) -> None:
    """Close every object and bound every integer, throughout."""
    if isinstance(node, dict):
        if "$ref" in node and "default" in node:  # a generator reads a $ref with siblings as a new type
            node["allOf"] = [{"$ref": node.pop("$ref")}]
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        if node.get("type") == "integer":
            node["maximum"] = min(node.get("maximum", MAX_SAFE_INTEGER), MAX_SAFE_INTEGER)
            node["minimum"] = max(node.get("minimum", -MAX_SAFE_INTEGER), -MAX_SAFE_INTEGER)
        for value in node.values():
            _tighten(value)
    elif isinstance(node, list):
        for value in node:
            _tighten(value)


def _structs(types: list[Any]) -> dict[str, type[msgspec.Struct]]:
    """Every struct reachable from `types`, by name."""
    found: dict[str, type[msgspec.Struct]] = {}

    def walk(t: mi.Type) -> None:
        if isinstance(t, mi.StructType):
            if t.cls.__name__ in found:
                return
            found[t.cls.__name__] = t.cls
            for f in t.fields:
                walk(f.type)
        for attr in ("type", "item_type", "key_type", "value_type"):
            if isinstance(getattr(t, attr, None), mi.Type):
                walk(getattr(t, attr))
        for inner in getattr(t, "types", ()) or ():
            walk(inner)

    for info in mi.multi_type_info(types):
        walk(info)
    return found


def _map(title: str, entries: dict[str, str], doc: str) -> dict[str, Any]:
    return {"title": title, "description": doc, "type": "object", "additionalProperties": False,
            "required": sorted(entries), "properties": {k: {"$ref": REF.format(name=v)} for k, v in sorted(entries.items())}}


def json_schema() -> dict[str, Any]:
    commands, queries = sorted(COMMANDS), sorted(QUERIES)
    answers = {name: query_answer(name, QUERY_RESULTS[name]) for name in queries}
    accepted = {name: command_accepted(name, COMMANDS[name].RESULT) for name in commands}
    envelopes, records = typed_envelopes(Envelope), typed_envelopes(StoredEvent)
    types: list[Any] = [*(COMMANDS[n] for n in commands), *(QUERIES[n] for n in queries), *answers.values(),
                        *accepted.values(), CommandRefused, QueryRefused, *envelopes, *records]
    _, defs = msgspec.json.schema_components(types, ref_template=REF)
    # What the engine sends always carries every field (only omit_defaults structs leave any out),
    # so a field with a default is optional in a request and required in what comes back.
    inputs = _structs([*COMMANDS.values(), *QUERIES.values()])
    for name, cls in _structs(types).items():
        if name not in inputs and not cls.__struct_config__.omit_defaults and "properties" in defs.get(name, {}):
            defs[name]["required"] = list(defs[name]["properties"])
    # The engine's envelope structs are replaced by the unions of their typed variants, so every
    # reference to them (a command reply's events, an events.read page) is discriminated on `type`.
    defs["StoredEvent"] = _union("StoredEvent", records, "type", "An event as read back from the log, with its position.")
    defs["Envelope"] = _union("Envelope", envelopes, "type", "An event as stored in one JetStream message.")
    for name, answer in accepted.items():
        defs[type_name(name) + "Reply"] = _union(type_name(name) + "Reply", [answer, CommandRefused], "ok",
                                                 f"The one reply to `{name}`.")
    defs["CommandReply"] = {  # accepted replies of different commands may share a shape: one of them, or refused
        "title": "CommandReply", "description": "The one reply to any command (each command's own: CommandReplies).",
        "oneOf": [{"anyOf": [{"$ref": REF.format(name=a.__name__)} for a in accepted.values()]},
                  {"$ref": REF.format(name=CommandRefused.__name__)}]}
    for name, answer in answers.items():
        reply = type_name(name) + "Reply"
        defs[reply] = _union(reply, [answer, QueryRefused], "ok", f"The one reply to `{name}`.")
    defs["QueryReply"] = _union("QueryReply", [*answers.values(), QueryRefused], "ok", "The one reply to any query.")
    defs["Commands"] = _map("Commands", {n: COMMANDS[n].__name__ for n in commands},
                            "Each command's body, by name (the subject's last tokens).")
    defs["Queries"] = _map("Queries", {n: QUERIES[n].__name__ for n in queries}, "Each query's body, by name.")
    defs["CommandReplies"] = _map("CommandReplies", {n: type_name(n) + "Reply" for n in commands},
                                  "Each command's reply, by name.")
    defs["QueryReplies"] = _map("QueryReplies", {n: type_name(n) + "Reply" for n in queries},
                                "Each query's reply, by name.")
    _tighten(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "AgentLedgerContract",
        "description": f"Agent Ledger wire contract, version {version()}: every command, query, reply and event.",
        "type": "object",
        "additionalProperties": False,
        "required": ["commands", "command_replies", "queries", "query_replies", "command_reply", "event", "envelope"],
        "properties": {
            "commands": {"$ref": REF.format(name="Commands")},
            "command_replies": {"$ref": REF.format(name="CommandReplies")},
            "queries": {"$ref": REF.format(name="Queries")},
            "query_replies": {"$ref": REF.format(name="QueryReplies")},
            "command_reply": {"$ref": REF.format(name="CommandReply")},
            "event": {"$ref": REF.format(name="StoredEvent")},
            "envelope": {"$ref": REF.format(name="Envelope")},
        },
        "$defs": dict(sorted(defs.items())),
    }
