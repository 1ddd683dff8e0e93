"""MCP on the ledger (`pip install agentledger[mcp]`): `agentledger mcp` serves an agent the
commands it sends about itself, its children and its sandboxes as MCP tools, and threads,
sessions and timelines as resources, through the Python client with the credentials it was
started with (docs/clients.md, "MCP")."""

from agentledger.adapters.mcp.server import build_server, serve_http, serve_stdio

__all__ = ["build_server", "serve_http", "serve_stdio"]
