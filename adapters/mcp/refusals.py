"""A refusal as an MCP client sees it: the ledger's error body (`code`, `message`, `retryable`,
`details`), as a tool error result for a tool call and as a JSON-RPC error for a resource read
(resources have no error results). Never a traceback: only the client's `LedgerError`s get here."""

from __future__ import annotations

from typing import Any

import msgspec
from mcp import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent

from agentledger.client.errors import LedgerError

NAMED_WRONG = frozenset({"invalid_command", "not_found"})
"""Codes that say the URI named something that is not there or not well formed (JSON-RPC's
invalid params, as the SDK answers a missing resource); any other refusal is an internal error."""


def error_body(e: LedgerError) -> dict[str, Any]:
    """The protocol's error body: the engine's refusal as it sent it, or the client's own error in the same shape."""
    details = msgspec.to_builtins(e.details) if e.details is not None else None
    return {"code": e.code, "message": e.message, "retryable": e.retryable, "details": details}


def tool_error(e: LedgerError) -> CallToolResult:
    """An error result (`isError`) whose text and structured content are both the error body."""
    body = error_body(e)
    return CallToolResult(content=[TextContent(type="text", text=msgspec.json.encode(body).decode())],
                          structured_content=body, is_error=True)


def read_error(e: LedgerError, uri: str) -> MCPError:
    """A JSON-RPC error for a resource read, its `data` the error body and the URI."""
    code = INVALID_PARAMS if e.code in NAMED_WRONG else INTERNAL_ERROR
    return MCPError(code=code, message=f"{e.code}: {e.message}", data={**error_body(e), "uri": uri})
