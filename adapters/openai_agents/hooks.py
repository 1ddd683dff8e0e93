"""The SDK's run hooks, as ledger steps: an agent's start and end are its session's start and
completion, a handoff is `handoff.single` before the recipient runs, and each model call's tokens are
counted for the session of the agent that made it (charged when the session ends).

One `LedgerHooks` serves the top-level run and every nested run of an agent used as a tool: which
session a hook speaks for is the current frame's (`seats`). Hooks of your own passed as `user` run
after the ledger recorded the step; for a handoff, once the source's session is completed and before
the transfer is recorded, so raising there stops the handoff too. An exception raised here stops the
run (the SDK awaits its hooks), which is how a refusal of the ledger stops it."""

from __future__ import annotations

from typing import Any

from agents import Agent, RunContextWrapper, RunHooks, Tool
from agents.items import ModelResponse, TResponseInputItem
from agents.run_context import AgentHookContext

from agentledger.adapters.openai_agents import seats, words
from agentledger.adapters.openai_agents.actors import actor_id
from agentledger.adapters.openai_agents.errors import NotInLedgerRun


def _frame() -> seats.Frame:
    frame = seats.current()
    if frame is None:
        raise NotInLedgerRun("ledger hooks ran outside LedgerRun.run / resume: there is no session to record for")
    return frame


class LedgerHooks(RunHooks[Any]):
    def __init__(self, user: RunHooks[Any] | None = None) -> None:
        self.user = user

    async def on_agent_start(self, context: AgentHookContext[Any], agent: Agent[Any]) -> None:
        frame = _frame()
        await frame.run.steps.start(frame.seat)
        if self.user is not None:
            await self.user.on_agent_start(context=context, agent=agent)

    async def on_agent_end(self, context: AgentHookContext[Any], agent: Agent[Any], output: Any) -> None:
        frame = _frame()
        await frame.run.steps.complete(frame.seat, words.completed(output))
        if self.user is not None:
            await self.user.on_agent_end(context=context, agent=agent, output=output)

    async def on_handoff(self, context: RunContextWrapper[Any], from_agent: Agent[Any], to_agent: Agent[Any]) -> None:
        frame = _frame()
        recipient = actor_id(to_agent.name)
        await frame.run.steps.complete(frame.seat, words.handed_off(recipient))
        if self.user is not None:
            await self.user.on_handoff(context=context, from_agent=from_agent, to_agent=to_agent)
        frame.seat = await frame.run.steps.handoff(frame.seat, recipient)

    async def on_llm_start(self, context: RunContextWrapper[Any], agent: Agent[Any], system_prompt: str | None,
                           input_items: list[TResponseInputItem]) -> None:
        if self.user is not None:
            await self.user.on_llm_start(context=context, agent=agent, system_prompt=system_prompt, input_items=input_items)

    async def on_llm_end(self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse) -> None:
        _frame().seat.usage += response.usage.total_tokens
        if self.user is not None:
            await self.user.on_llm_end(context=context, agent=agent, response=response)

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool) -> None:
        if self.user is not None:
            await self.user.on_tool_start(context=context, agent=agent, tool=tool)

    async def on_tool_end(self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object) -> None:
        if self.user is not None:
            await self.user.on_tool_end(context=context, agent=agent, tool=tool, result=result)
