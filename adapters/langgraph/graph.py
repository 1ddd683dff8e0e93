"""`LedgerGraph`: a compiled LangGraph graph whose runs are ledger sessions. Each `ainvoke` or
`astream` is begun on the ledger before LangGraph sees it (so a refusal, such as an archived
thread's `ThreadClosed`, stops it before any node runs) and ended on the ledger after LangGraph
returns or raises; in between, the `LedgerSaver` the graph was compiled with follows its
subgraphs. Everything else is the compiled graph's own (`aget_state`, `aupdate_state`, ...)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import StateSnapshot

from agentledger.adapters.langgraph.run import RUN_KEY, LedgerRun, head, reason
from agentledger.adapters.langgraph.saver import LedgerSaver
from agentledger.client.validation import actor as as_actor
from agentledger.schemas.common import Actor, FailureMode


class LedgerGraph:
    """`LedgerGraph(builder.compile(checkpointer=saver), agent="agt_reviewer")`, with `saver` a
    `LedgerSaver`. `thread_id` in the config is a ledger thread (`thd_…`) of the saver's tenant;
    the graph's sessions are owned by `agent`, and a subgraph task's session by `agt_<node>`.
    `summary(values)` gives the text of the root session's summary when the graph ends."""

    def __init__(self, graph: Pregel[Any, Any, Any, Any], *, agent: Actor | str = "agt_langgraph",
                 failure_mode: FailureMode = "delegate", summary: Callable[[Any], str] | None = None) -> None:
        if not isinstance(graph.checkpointer, LedgerSaver):
            raise TypeError("compile the graph with a LedgerSaver: `builder.compile(checkpointer=await "
                            "LedgerSaver.open(ledger))`")
        self.graph, self.saver = graph, graph.checkpointer
        self.agent, self.failure_mode = as_actor(agent), failure_mode
        self.summary = summary or (lambda values: "the graph reached its end")

    def __getattr__(self, name: str) -> Any:
        if name == "graph":  # not set yet: no delegation to itself
            raise AttributeError(name)
        return getattr(self.graph, name)

    async def ainvoke(self, input: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        async with self.run(input, config) as run_config:
            return await self.graph.ainvoke(input, run_config, **kwargs)

    async def astream(self, input: Any, config: RunnableConfig, **kwargs: Any) -> AsyncIterator[Any]:
        async with self.run(input, config) as run_config:
            parts = cast(AsyncGenerator[Any, None], self.graph.astream(input, run_config, **kwargs))
            async with contextlib.aclosing(parts):
                async for part in parts:
                    yield part

    @contextlib.asynccontextmanager
    async def run(self, input: Any, config: RunnableConfig) -> AsyncIterator[RunnableConfig]:
        """Begin a run for `input` on the config's thread, yield the config to run the graph with,
        and end the run as the graph ended: finished or waiting for input, failed on an error,
        cancelled when its caller stopped it."""
        conf = config.get("configurable") or {}
        thread_id = str(conf["thread_id"])
        at: RunnableConfig = {"configurable": {k: conf[k] for k in ("thread_id", "checkpoint_id") if conf.get(k)}}
        before = await self._state(at)
        run = await LedgerRun.begin(self.saver.ledger, thread_id, input, before, self.agent, self.failure_mode)
        self.saver.runs[run.root] = run
        try:
            yield {**config, "configurable": {**conf, RUN_KEY: run.root}}
        except BaseException as error:
            self.saver.runs.pop(run.root, None)
            try:
                await asyncio.shield(self._stopped(run, thread_id, error))
            except Exception as unrecorded:  # the run's own error is what the caller needs; this rides along
                error.add_note(f"the ledger did not record the run's end: {unrecorded!r}")
            raise
        self.saver.runs.pop(run.root, None)
        await run.settle()
        after = await self._state({"configurable": {"thread_id": thread_id}})
        await run.finish(after, self.summary)

    async def _stopped(self, run: LedgerRun, thread_id: str, error: BaseException) -> None:
        await run.settle()
        failed = isinstance(error, Exception)
        at = await self._state({"configurable": {"thread_id": thread_id}})
        await run.stop(reason(error) if failed else "stopped by its caller", failed=failed, checkpoint_id=head(at))

    async def _state(self, config: RunnableConfig) -> StateSnapshot:
        return await self.graph.aget_state(config, subgraphs=True)
