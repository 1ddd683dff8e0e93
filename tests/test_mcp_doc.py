"""docs/clients.md, "MCP": the complete example runs as written on a fresh engine started the way
`make run` starts it (the SDK's client starting `agentledger mcp` over stdio) and prints what the
page says; the host configuration it shows is one the command accepts."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.cli_support import AGENTLEDGER
from tests.client_support import HANG, doc_section, run_python_example

pytestmark = pytest.mark.integration  # runs an engine and the example through helpers of its own
DOC = (Path(__file__).resolve().parent.parent / "docs" / "clients.md").read_text()


def section(heading: str) -> str:
    return doc_section(DOC, heading)


async def test_the_mcp_example_runs_as_written(tmp_path: Path) -> None:
    await run_python_example(section("MCP"), tmp_path)


async def test_the_host_configuration_is_one_the_command_takes() -> None:
    config = re.search(r"^### In an MCP host\n.*?^```json\n(.*?)^```", section("MCP"), re.M | re.S)
    assert config is not None
    server = json.loads(config.group(1))["mcpServers"]["agentledger"]
    assert Path(server["command"]).name == "agentledger" and set(server["env"]) == {"NATS_URL", "NATS_CREDS"}
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *server["args"], "--help", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 0 and "Usage: agentledger mcp" in out.decode(), err.decode()
