"""The tools: listed with the contract's schemas, and a call sent as its command through the
Python client, as the server's actor. The result is the command's own result type, as structured
content and as its JSON text; a refusal is an error result carrying the ledger's error body."""

from __future__ import annotations

from typing import Any

import msgspec
from mcp.types import CallToolResult, TextContent, Tool, ToolAnnotations

from agentledger.adapters.mcp.contract import SERVER_FILLS, tools
from agentledger.adapters.mcp.refusals import tool_error
from agentledger.client import Ledger, LedgerError
from agentledger.client.api import exception
from agentledger.client.validation import check, invalid
from agentledger.schemas.common import Actor
from agentledger.schemas.errors import UnknownCommand, UnknownCommandDetails


def listed() -> list[Tool]:
    return [Tool(name=spec.name, description=spec.description, input_schema=spec.input_schema,
                 output_schema=spec.output_schema,
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=spec.destructive,
                                             idempotent_hint=False, open_world_hint=False))
            for spec in tools().values()]


async def call(ledger: Ledger, actor: Actor, name: str, arguments: dict[str, Any]) -> CallToolResult:
    """Send the tool's command with `arguments` (checked against the contract first, as the
    client checks every request) as `actor`."""
    spec = tools().get(name)
    try:
        if spec is None:
            raise exception(UnknownCommand(message=f"no tool named {name!r}", details=UnknownCommandDetails(command=name)))
        given = SERVER_FILLS & arguments.keys()
        if given:
            field = min(given)
            raise exception(invalid(f"{field} is set by the server (agentledger mcp --actor), not by a tool call",
                                    f"$.{field}"))
        body = check(spec.command, {**arguments, "actor": msgspec.to_builtins(actor)})
        group, method = spec.command.NAME.split(".")
        fields = {f: getattr(body, f) for f in body.__struct_fields__ if f not in SERVER_FILLS}
        result = await getattr(getattr(ledger, group), method)(actor=actor, **fields)
    except LedgerError as e:
        return tool_error(e)
    data = msgspec.to_builtins(result)
    return CallToolResult(content=[TextContent(type="text", text=msgspec.json.encode(data).decode())],
                          structured_content=data)
