"""docs/integrations.md, OpenAI Agents SDK: the complete example runs as written, offline, against a
real engine that allows `sh` in its sandboxes, as a member of a tenant, and prints what the page says."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from tests.client_support import creds_file
from tests.conftest import Tenants
from tests.sandbox_support import sandbox_engine

DOC = (Path(__file__).resolve().parent.parent / "docs" / "integrations.md").read_text()


def section(heading: str) -> str:
    start = DOC.index(f"\n{heading}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


@pytest.fixture
async def fx_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ("sh",)) as eng:
        yield eng


async def test_the_openai_agents_example_runs_as_written(fx_engine: Engine, deployment: Deployment, tenants: Tenants,
                                                         tmp_path: Path) -> None:
    doc = section("## OpenAI Agents SDK")
    code = re.search(r"^```python\n(.*?)^```", doc, re.M | re.S)
    run = re.search(r"`NATS_CREDS=alice\.creds AGENTLEDGER_TENANT=tnt_acme (\.venv/bin/python (\S+\.py))`", doc)
    shown = re.search(r"It prints:\n\n```\n(.*?)```", doc, re.S)
    assert code and run and shown, "the section has the example, how to run it and what it prints"
    assert "--allow-command sh" in doc
    creds = await creds_file(deployment, tenants, tmp_path, "tnt_acme")
    creds.rename(tmp_path / "alice.creds")
    (tmp_path / run.group(2)).write_text(code.group(1))
    config = fx_engine.config
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "NATS_"))}
    env |= {"NATS_URL": config.nats_url, "NATS_CREDS": "alice.creds", "AGENTLEDGER_TENANT": "tnt_acme",
            "AGENTLEDGER_PREFIX": config.prefix, "AGENTLEDGER_STREAM": config.stream}
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, run.group(2)], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = shown.group(1).splitlines()
    lines = proc.stdout.splitlines()
    assert len(lines) == len(expected), (lines, expected)
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(".*?".join(map(re.escape, pattern.split("…"))), line), (line, pattern)
