"""What the client tests share: a tenant user's `.creds` file, a `Ledger` connected with it to a
test's engine, a wiretap that sees every request on the engine's side of the broker, and the runner
of a docs page's Python example."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentledger.client import Ledger
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from tests.conftest import Tenants
from tests.fresh_support import HANG, serving


async def creds_file(deployment: Deployment, tenants: Tenants, directory: Path, tenant: str = "tnt_acme",
                     user: str = "usr_alice", role: Literal["member", "auditor"] = "member") -> Path:
    """A standard `.creds` file of one user of `tenant` (added first)."""
    await tenants.add(tenant)
    path = directory / f"{user}-{role}.creds"
    deployment.write(deployment.tenant_creds(tenant, user, role), path)
    return path


@contextlib.asynccontextmanager
async def ledger_for(config: EngineConfig, creds: Path, tenant: str = "tnt_acme", **options: Any) -> AsyncIterator[Ledger]:
    ledger = await Ledger.connect(tenant, nats_url=config.nats_url, creds=creds, prefix=config.prefix,
                                  stream=config.stream, env={}, **options)
    try:
        yield ledger
    finally:
        await ledger.close()


@dataclass
class Wiretap:
    """Every command body that reaches the engine's account (a plain subscription beside the
    engine's queue group, as its own identity may make)."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def on(self, msg: Msg) -> None:
        async with self.arrived:
            self.bodies.append(msgspec.json.decode(msg.data))
            self.arrived.notify_all()

    async def wait_for(self, count: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.bodies) >= count), HANG)


@contextlib.asynccontextmanager
async def wiretap(nc: Client, config: EngineConfig) -> AsyncIterator[Wiretap]:
    tap = Wiretap()
    sub = await nc.subscribe(f"{config.prefix}.cmd.>", cb=tap.on)
    await nc.flush()
    try:
        yield tap
    finally:
        await sub.unsubscribe()


def doc_section(doc: str, heading: str) -> str:
    """The text of `## heading` in a markdown page, up to the next `## `."""
    start = doc.index(f"\n## {heading}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start:end if end != -1 else None]


async def run_python_example(section: str, directory: Path) -> None:
    """A docs section's Python example, saved where it says and run the way it says against an engine
    started as `make run` starts it, prints what the section says it prints (`…` stands for anything)."""
    code = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    run = re.search(r"`(\.venv/bin/python (\S+\.py))`", section)
    shown = re.search(r"on a fresh `make run`:\n\n```\n(.*?)```", section, re.S)
    assert code and run and shown, "the section has the example, how to run it and what it prints"
    (directory / run.group(2)).write_text(code.group(1))
    async with serving(directory) as env:
        proc = await asyncio.create_subprocess_exec("bash", "-c", run.group(1), cwd=directory, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 0, err.decode()
    expected = shown.group(1).splitlines()
    lines = out.decode().splitlines()
    assert len(lines) == len(expected), (lines, expected)
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(".*?".join(map(re.escape, pattern.split("…"))), line), (line, pattern)

