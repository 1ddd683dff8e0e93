"""docs/clients.md, "MCP": the complete example runs as written on a fresh engine started the way
`make run` starts it (the SDK's client starting `agentledger mcp` over stdio) and prints what the
page says; the host configuration it shows is one the command accepts."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from tests.cli_support import AGENTLEDGER
from tests.client_support import HANG, serving

DOC = (Path(__file__).resolve().parent.parent / "docs" / "clients.md").read_text()


def section(heading: str) -> str:
    start = DOC.index(f"\n## {heading}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


async def test_the_mcp_example_runs_as_written(tmp_path: Path) -> None:
    mcp = section("MCP")
    code = re.search(r"^```python\n(.*?)^```", mcp, re.M | re.S)
    run = re.search(r"`(\.venv/bin/python (\S+\.py))`", mcp)
    shown = re.search(r"on a fresh `make run`:\n\n```\n(.*?)```", mcp, re.S)
    assert code and run and shown, "the section has the example, how to run it and what it prints"
    (tmp_path / run.group(2)).write_text(code.group(1))
    async with serving(tmp_path) as env:
        proc = await asyncio.create_subprocess_exec("bash", "-c", run.group(1), cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 0, err.decode()
    expected = shown.group(1).splitlines()
    lines = out.decode().splitlines()
    assert len(lines) == len(expected), (lines, expected)
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(".*?".join(map(re.escape, pattern.split("…"))), line), (line, pattern)


async def test_the_host_configuration_is_one_the_command_takes() -> None:
    config = re.search(r"^### In an MCP host\n.*?^```json\n(.*?)^```", section("MCP"), re.M | re.S)
    assert config is not None
    server = json.loads(config.group(1))["mcpServers"]["agentledger"]
    assert Path(server["command"]).name == "agentledger" and set(server["env"]) == {"NATS_URL", "NATS_CREDS"}
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *server["args"], "--help", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 0 and "Usage: agentledger mcp" in out.decode(), err.decode()
