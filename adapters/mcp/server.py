"""The MCP server: the SDK's low-level `Server` over one connected `Ledger`, acting as one actor.

The low-level server, not `MCPServer`'s decorators: the tools' schemas are the contract's own
(`contract.py`), which a Python signature would only restate, and a refusal is an error result
with structured content of our making. The SDK carries everything else (sessions, transports).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from importlib import metadata
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
)

from agentledger.adapters.mcp import resources, tools
from agentledger.client import Actor, Ledger
from agentledger.client.validation import actor as as_actor

NAME = "agentledger"


def instructions(tenant: str, actor: Actor) -> str:
    return (f"Agent Ledger, tenant {tenant}. Every tool sends one ledger command, recorded as {actor.kind} {actor.id}; "
            "the session it acts on is an argument (session_id, parent_session_id or source_session_id). "
            "A refused call is an error result whose JSON has code, message, retryable and details; "
            "a retryable one may be sent again with the same command_id. Resources: ledger://threads, "
            "ledger://threads/{thread_id}, ledger://threads/{thread_id}/timeline, ledger://sessions/{session_id}, "
            "ledger://sandboxes/{sandbox_id}.")


def build_server(ledger: Ledger, *, actor: Actor | str) -> Server[Any]:
    """An MCP server whose tools send commands through `ledger` as `actor` (its id alone, such as
    `agt_lead`, or an `Actor`); ValueError for an actor id that is not one."""
    acting = as_actor(actor)

    async def list_tools(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=tools.listed())

    async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        return await tools.call(ledger, acting, params.name, dict(params.arguments or {}))

    async def list_resources(ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListResourcesResult:
        return await resources.listed(ledger, params.cursor if params else None)

    async def list_templates(ctx: ServerRequestContext[Any],
                             params: PaginatedRequestParams | None) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(resource_templates=[t.template for t in resources.TEMPLATES])

    async def read_resource(ctx: ServerRequestContext[Any], params: ReadResourceRequestParams) -> ReadResourceResult:
        return await resources.read(ledger, str(params.uri))

    return Server(NAME, version=metadata.version("agentledger"), instructions=instructions(ledger.tenant, acting),
                  on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
                  on_list_resource_templates=list_templates, on_read_resource=read_resource)


async def serve_stdio(server: Server[Any]) -> None:
    """Serve one MCP client on this process's stdin and stdout until it closes them."""
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(server: Server[Any], host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve MCP's streamable HTTP transport at http://host:port/mcp (`port` 0: any free one);
    `ready` gets the URL once it listens. On a loopback host the SDK refuses requests whose Host
    or Origin header is not a loopback name (DNS rebinding)."""
    import uvicorn

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(address)
    listening.listen(128)  # connections wait in the backlog from here on, not refused, until uvicorn accepts
    bound = listening.getsockname()[1]
    app = server.streamable_http_app(host=host)
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    shown = f"[{host}]" if ":" in host else host
    ready(f"http://{shown}:{bound}/mcp")
    await web.serve(sockets=[listening])
