"""`agentledger mcp`: the MCP server (`agentledger.adapters.mcp`, the `mcp` extra), over stdio for
a host that starts it, or over streamable HTTP. Its tools act with the credentials it finds and
as the actor it is given; nothing of it loads unless this command runs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer

from agentledger.cli import transport
from agentledger.cli.transport import Creds, NatsUrl, Prefix, Tenant, Timeout

DEFAULT_PORT = 8481


def _check_actor(value: str) -> str:
    from agentledger.client.validation import actor

    try:
        return actor(value).id
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def mcp(
    actor: Annotated[str, typer.Option(
        "--actor", envvar="AGENTLEDGER_ACTOR", callback=_check_actor,
        help="the agent this server acts for (agt_…; usr_… or sys_… also work): every command it sends is "
             "recorded as this actor, and no tool call can name another")],
    transport_: Annotated[Literal["stdio", "streamable-http"], typer.Option(
        "--transport", help="stdio: one MCP client on stdin/stdout (what a host that starts it uses); "
                            "streamable-http: MCP over HTTP at http://HOST:PORT/mcp")] = "stdio",
    host: Annotated[str, typer.Option("--host", help="with streamable-http: the address to listen on; whoever "
                                                      "reaches it acts with these credentials")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="with streamable-http: the port (0: any "
                                                                        "free one)")] = DEFAULT_PORT,
    tenant: Tenant = transport.DEFAULT_TENANT,
    nats_url: NatsUrl = transport.DEFAULT_URL,
    prefix: Prefix = transport.DEFAULT_PREFIX,
    creds: Creds = None,
    timeout: Timeout = transport.DEFAULT_TIMEOUT,
) -> None:
    """Serve the ledger to an agent over MCP: tools to start, spawn, hand off, request and provide
    input, complete, fail and cancel sessions and to run its sandboxes; resources for threads,
    sessions and timelines. A refusal is a tool error carrying the ledger's code and details."""
    from agentledger.cli import output
    from agentledger.client.errors import LedgerError

    try:
        from agentledger.adapters.mcp import build_server, serve_http, serve_stdio
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] != "mcp":
            raise
        output.err.print("error: agentledger mcp needs the mcp extra: pip install 'agentledger[mcp]'", markup=False)
        raise typer.Exit(2) from None
    from agentledger.client.ledger import Ledger

    def ready(where: str) -> None:
        stop = "" if where == "stdio" else " (Ctrl-C stops it)"  # over stdio, the host stops it by closing stdin
        output.err.print(f"MCP server of {tenant} as {actor} on {where}{stop}", markup=False)

    async def run() -> None:
        async with await Ledger.connect(tenant, nats_url=nats_url, creds=creds, prefix=prefix, actor=actor,
                                        timeout=timeout) as ledger:
            server = build_server(ledger, actor=actor)
            if transport_ == "stdio":
                ready("stdio")
                await serve_stdio(server)
            else:
                await serve_http(server, host, port, ready)

    try:
        asyncio.run(run())
    except LedgerError as e:
        transport.fail(e)
    except KeyboardInterrupt:
        pass
