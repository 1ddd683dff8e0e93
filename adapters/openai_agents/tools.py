"""Agents used as tools, as spawned sessions: `ledger_tool(agent, ...)` is `agent.as_tool(...)` whose
every call is a child session of the calling agent's, spawned before the sub-agent runs (under the
ledger's depth, width and budget caps) and completed, failed or cancelled when it ends.

A refused spawn (`capacity_exceeded`, `thread_closed`, ...) is reported: the model gets
`words.refusal(...)` as the tool's output, so it can go on without that helper, and the run keeps the
refusal in `LedgerRun.refusals`; with `on_refusal="raise"` the ledger's error stops the run instead.
A failed sub-agent is failed in the ledger; when its failure mode is `fail_fast` the ledger fails the
caller in the same event, and the caller's run stops with `CascadedFailure`."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any, Literal

from agents import Agent, FunctionTool, RunHooks
from agents.tool import ToolErrorFunction, default_tool_error_function
from agents.tool_context import ToolContext

from agentledger.adapters.openai_agents import seats, words
from agentledger.adapters.openai_agents.actors import actor_id
from agentledger.adapters.openai_agents.errors import NotInLedgerRun, Unmapped
from agentledger.adapters.openai_agents.hooks import LedgerHooks
from agentledger.client import LedgerError, SandboxSpec

SandboxChoice = SandboxSpec | Literal["fork", "inherit"] | None
CAUSE = "oa-call:"  # causation_id of a spawn: the SDK's tool call id


@dataclass(frozen=True)
class Refusal:
    """A spawn the ledger refused, and the tool call it answered."""

    tool_call_id: str
    agent: str
    error: LedgerError


def _capturing(user: ToolErrorFunction | None) -> ToolErrorFunction | None:
    """The SDK's failure formatter, noting the sub-agent's error on its frame on the way."""
    if user is None:
        return None  # the SDK raises the error itself, and the tool's wrapper sees it

    async def capture(context: Any, error: Exception) -> str:
        frame = seats.current()
        if frame is not None:
            frame.error = error
        text = user(context, error)
        return await text if inspect.isawaitable(text) else text

    return capture


def ledger_tool(agent: Agent[Any], tool_name: str | None = None, tool_description: str | None = None, *,
                failure_mode: Literal["delegate", "fail_fast"] = "delegate", budget: int | None = None,
                sandbox: SandboxChoice = None, on_refusal: Literal["report", "raise"] = "report",
                hooks: RunHooks[Any] | None = None,
                failure_error_function: ToolErrorFunction | None = default_tool_error_function,
                **as_tool: Any) -> FunctionTool:
    """`agent.as_tool(tool_name, tool_description, **as_tool)` whose calls are spawned sessions.

    `budget` is reserved from the caller's budget for each call; `sandbox` binds the child to a
    sandbox (`"fork"`: a copy of the caller's, `"inherit"`: the caller's own, or any `SandboxSpec`).
    `hooks` are yours for the sub-agent's run (they run after the ledger's)."""
    actor = actor_id(agent.name)
    tool = agent.as_tool(tool_name, tool_description, hooks=LedgerHooks(hooks),
                         failure_error_function=_capturing(failure_error_function), **as_tool)
    inner = tool.on_invoke_tool

    async def invoke(context: ToolContext[Any], arguments: str) -> Any:
        frame = seats.current()
        if frame is None:
            raise NotInLedgerRun(f"{tool.name} is a ledger tool: run its agent with LedgerRun.run")
        run, call_id = frame.run, getattr(context, "tool_call_id", "")
        try:
            child = await run.steps.spawn(frame.seat, actor, fail_fast=failure_mode == "fail_fast", budget=budget,
                                          sandbox=await run.sandbox_for(frame.seat, sandbox), cause=CAUSE + call_id)
        except LedgerError as refused:
            run.refusals.append(Refusal(call_id, actor, refused))
            if on_refusal == "raise":
                raise
            return words.refusal(refused)
        nested = seats.Frame(run, child, parent=frame)
        token = seats.enter(nested)
        try:
            output = await inner(context, arguments)
        except BaseException as error:
            await asyncio.shield(run.close_child(nested, error))
            raise
        finally:
            seats.leave(token)
        if nested.seat.running:  # the sub-agent's run ended without a final output
            if nested.error is not None:  # it failed, and the SDK made the error the tool's output
                await run.close_child(nested, nested.error)
                return output
            stopped = Unmapped(f"{agent.name} stopped for approval inside an agent used as a tool, which has no place "
                               "in the ledger's model (one run pauses in one session): give the tool needs_approval instead")
            await run.close_child(nested, stopped)
            raise stopped
        return output

    tool.on_invoke_tool = invoke
    return tool
