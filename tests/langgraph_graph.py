"""A two-node LangGraph graph that stops for a human (`interrupt()`), checkpointed by the
JetStream saver; `python -m tests.langgraph_graph URL CREDS THREAD ANSWER` resumes it in a process
of its own, on a connection of its own, and prints the final state as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TypedDict

import nats
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from agentledger.adapters.langgraph import JetStreamSaver


class State(TypedDict, total=False):
    request: str
    answer: str
    done: str


def ask(state: State) -> State:
    return {"answer": interrupt({"question": f"may I {state['request']}?"})}


def finish(state: State) -> State:
    return {"done": f"{state['request']}: {state['answer']}"}


def build(saver: JetStreamSaver) -> CompiledStateGraph[Any, Any, Any, Any]:
    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_node("finish", finish)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=saver)


async def resume(url: str, creds: str, thread_id: str, answer: str) -> dict[str, Any]:
    nc = await nats.connect(servers=[url], user_credentials=creds)
    try:
        graph = build(await JetStreamSaver.open(nc))
        return dict(await graph.ainvoke(Command(resume=answer), {"configurable": {"thread_id": thread_id}}))
    finally:
        await nc.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(resume(*sys.argv[1:5]))))
