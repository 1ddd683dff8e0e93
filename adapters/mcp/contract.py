"""Which commands are MCP tools, and their input and output schemas, cut from the contract's own
JSON Schema (`agentledger.schemas.contract`, what docs/schema.json holds): a tool's input schema
is its command's minus what the server fills in, its output schema the command's result type, so
a field added to a command reaches the tool with no code here."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

from agentledger.schemas.commands import COMMANDS, Command
from agentledger.schemas.contract import json_schema

TOOL_COMMANDS = (
    "session.start", "session.spawn", "handoff.single", "handoff.broadcast", "session.request_input",
    "session.provide_input", "session.complete", "session.fail", "session.cancel",
    "sandbox.create", "sandbox.pause", "sandbox.resume", "sandbox.destroy", "sandbox.fork", "sandbox.exec",
)
"""What an agent does to itself, its children and its sandboxes. Not tools: projects, threads and
creating a root session (the platform's job), archiving, and the effect handler's outcomes."""

SERVER_FILLS = frozenset({"actor"})
"""Fields the server sets on every command: the actor it was started as (`agentledger mcp --actor`)."""

DESTRUCTIVE = frozenset({"session.fail", "session.cancel", "sandbox.destroy"})
"""Tools whose effect cannot be taken back (MCP's `destructiveHint`, which a host may ask a human about)."""

_REF = "#/$defs/"


@dataclass(frozen=True)
class ToolSpec:
    """One command as an MCP tool."""

    name: str  # the tool's name: the command's, with `_` for `.` (some hosts allow no dots in a name)
    command: type[Command]
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    destructive: bool


def tool_name(command: str) -> str:
    return command.replace(".", "_")


@cache
def _definitions() -> dict[str, Any]:
    defs: dict[str, Any] = json_schema()["$defs"]
    return defs


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(_REF)} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(v) for v in node))
    return set()


def schema_of(name: str, without: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The contract's definition `name` as a standalone schema (an object at the root, what it
    refers to under `$defs`), without the properties `without`."""
    defs = _definitions()
    root: dict[str, Any] = copy.deepcopy(defs[name])
    for field in without:
        root["properties"].pop(field)
        root["required"] = [r for r in root.get("required", []) if r != field]
    needed: set[str] = set()
    todo = _references(root)
    while todo:
        ref = todo.pop()
        if ref not in needed:
            needed.add(ref)
            todo |= _references(defs[ref])
    if needed:
        root["$defs"] = {ref: copy.deepcopy(defs[ref]) for ref in sorted(needed)}
    return root


def _help(command: type[Command]) -> str:
    return (command.__doc__ or command.NAME).strip().splitlines()[0]


@cache
def tools() -> dict[str, ToolSpec]:
    """The tools by name, in the order of TOOL_COMMANDS."""
    specs = [ToolSpec(name=tool_name(name), command=COMMANDS[name], description=_help(COMMANDS[name]),
                      input_schema=schema_of(COMMANDS[name].__name__, SERVER_FILLS),
                      output_schema=schema_of(COMMANDS[name].RESULT.__name__), destructive=name in DESTRUCTIVE)
             for name in TOOL_COMMANDS]
    return {spec.name: spec for spec in specs}
