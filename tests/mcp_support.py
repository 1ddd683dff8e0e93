"""What the MCP server's tests share: a lead agent's world made through the Python client (the
platform's part: project, thread, root session), `agentledger mcp` started as a subprocess
against a test's engine, and a tool result read back as the command's own result type."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from mcp.types import CallToolResult

from agentledger.client import Ledger, ProjectConfig, SandboxSpec
from agentledger.handlers.config import EngineConfig
from tests.cli_support import AGENTLEDGER

HANG = 60
LEAD = "agt_lead"


async def lead_world(ledger: Ledger, width: int = 8, thread: str = "thd_m", lead: str = "ses_lead") -> None:
    """A project (`width` open children at most per parent), a thread and the lead agent's idle
    session with a sandbox of its own."""
    await ledger.project.create(project_id="prj_m", name="mcp", config=ProjectConfig(max_delegation_width=width))
    await ledger.thread.create(project_id="prj_m", thread_id=thread)
    await ledger.session.create(thread_id=thread, session_id=lead, owner=LEAD, sandbox=SandboxSpec(mode="new"))


def result(called: CallToolResult, cls: type[Any]) -> Any:
    """A successful tool result's structured content as `cls`, the command's result type; its text is the same JSON."""
    assert not called.is_error, called.content
    assert called.structured_content is not None
    text = called.content[0]
    assert text.type == "text" and msgspec.json.decode(text.text) == called.structured_content
    return msgspec.convert(called.structured_content, cls)


def refusal(called: CallToolResult) -> dict[str, Any]:
    """A refused call's error body; its text content is the same JSON."""
    assert called.is_error, called
    body = called.structured_content
    assert body is not None and set(body) == {"code", "message", "retryable", "details"}, body
    text = called.content[0]
    assert text.type == "text" and msgspec.json.decode(text.text) == body
    return body


def mcp_args(config: EngineConfig, creds: Path, *more: str, tenant: str = "tnt_acme") -> list[str]:
    return ["mcp", "--actor", LEAD, "--tenant", tenant, "--nats-url", config.nats_url, "--prefix", config.prefix,
            "--creds", str(creds), *more]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "NATS_"))} | {"NO_COLOR": "1"}


@contextlib.asynccontextmanager
async def http_server(config: EngineConfig, creds: Path) -> AsyncIterator[str]:
    """`agentledger mcp --transport streamable-http` on a free loopback port: yields its URL."""
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *mcp_args(config, creds, "--transport", "streamable-http",
                                                                       "--port", "0"),
                                                env=clean_env() | {"COLUMNS": "500"}, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), HANG)).decode()
        assert " on http://127.0.0.1:" in line, line + (await proc.stderr.read()).decode()
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), HANG)
