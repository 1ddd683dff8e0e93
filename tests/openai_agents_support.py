"""What the OpenAI Agents adapter's tests share: scripted model steps with token usage, a tenant of
the test's own (its checkpoint bucket too) with a member's `Ledger`, the thread's events in short
form, and the approval scenario's agents, which a second process builds again:

    python -m tests.openai_agents_support approve URL CREDS TENANT PREFIX STREAM SESSION yes|no
    python -m tests.openai_agents_support resume URL CREDS TENANT PREFIX STREAM THREAD ROOT

`approve` answers the paused run's approval as a human would; `resume` goes on with the run in that
process and prints the final output."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.usage import Usage

from agentledger.adapters.openai_agents import LedgerRun, decide
from agentledger.client import Ledger, ProjectConfig
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from tests.client_support import creds_file
from tests.conftest import Tenants

set_tracing_disabled(True)  # offline: nothing is exported


def usage(tokens: int) -> Usage:
    return Usage(requests=1, input_tokens=tokens // 2, output_tokens=tokens - tokens // 2, total_tokens=tokens)


def says(text: str, tokens: int = 10) -> dict[str, Any]:
    """A model step answering `text`, using `tokens`."""
    return {"output": [assistant_message(text)], "usage": usage(tokens)}


def calls(*tool_calls: tuple[str, dict[str, Any], str], tokens: int = 10) -> dict[str, Any]:
    """A model step calling tools, each (name, arguments, call id), at once."""
    return {"output": [function_call(name, args, call_id=call_id) for name, args, call_id in tool_calls],
            "usage": usage(tokens)}


@contextlib.asynccontextmanager
async def member_ledger(config: EngineConfig, deployment: Deployment, tenants: Tenants, directory: Path,
                        caps: ProjectConfig | None = None) -> AsyncIterator[tuple[Ledger, Path, str]]:
    """A tenant of its own (so a bucket of its own), a member's `.creds` and `Ledger`, and project `prj_oa`."""
    tenant = f"tnt_oa{uuid.uuid4().hex[:8]}"
    creds = await creds_file(deployment, tenants, directory, tenant)
    ledger = await Ledger.connect(tenant, nats_url=config.nats_url, creds=creds, prefix=config.prefix,
                                  stream=config.stream, env={})
    try:
        await ledger.project.create(project_id="prj_oa", name="oa", config=caps or ProjectConfig())
        yield ledger, creds, tenant
    finally:
        await ledger.close()


async def thread_events(ledger: Ledger, thread_id: str) -> list[tuple[str, str | None]]:
    """The thread's history as (type, session id) pairs, in log order."""
    out = []
    async for event in ledger.events(thread_id, follow=False):
        out.append((event.type, getattr(event.data, "session_id", None)))
    return out


# The approval scenario: a lead that wants to deploy, which a human must approve.

DEPLOYED: list[str] = []


@function_tool(needs_approval=True)
def deploy(branch: str) -> str:
    """Deploy a branch to production."""
    DEPLOYED.append(branch)
    return f"deployed {branch}"


def approval_lead(steps: Sequence[Any]) -> Agent[Any]:
    return Agent(name="lead", instructions="Deploy when asked.", model=ScriptedModel(list(steps)), tools=[deploy])


def _echo(call: Any) -> dict[str, Any]:
    """The model's answer after the approval: what the tool's output was (its result, or the rejection)."""
    outputs = [item["output"] for item in call.input if isinstance(item, dict) and item.get("type") == "function_call_output"]
    return says(f"tool said: {outputs[-1]}", tokens=12)


FIRST_TURN = [calls(("deploy", {"branch": "main"}, "call_deploy"), tokens=30)]
AFTER_APPROVAL = [{"responder": _echo}]


async def _main(argv: Sequence[str]) -> None:
    what, url, creds, tenant, prefix, stream, *rest = argv
    async with await Ledger.connect(tenant, nats_url=url, creds=creds, prefix=prefix, stream=stream, env={},
                                    actor="usr_approver") as ledger:
        if what == "approve":
            session_id, answer = rest
            await decide(ledger, session_id, approve=answer == "yes")
        else:
            thread_id, root = rest
            run = await LedgerRun.open(ledger, thread_id=thread_id, session_id=root)
            result = await run.resume(approval_lead(AFTER_APPROVAL), timeout=60)
            print(result.final_output, DEPLOYED)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
