"""Plain LangGraph graphs for the checkpointer's and the ledger adapter's tests, and a second
process that resumes one.

* `build`: two nodes, the first stops for a human (`interrupt()`).
* `build_reviewed`: the root plans, a subgraph task reviews (and stops for a human inside the
  subgraph), the root reports: a subgraph task as a spawned session.
* `build_nested`: a subgraph inside a subgraph (depth 2).
* `build_sequence`: two subgraph tasks, one after the other.
* `build_helpers`: the root sends one subgraph task per item (`Send`), concurrently; each helper
  records in the list given that it ran, and in which namespace.
* `build_recording`: one root node that records that it ran.
* `build_asking`: as `build_helpers`, each helper asking for input.
* `build_failing`: a subgraph task whose node raises.

`python -m tests.langgraph_graph URL CREDS THREAD ANSWER` resumes `build` with the plain
JetStream saver; `python -m tests.langgraph_graph ledger '<json>'` resumes one of the graphs as a
ledger run (`{"url", "creds", "tenant", "prefix", "stream", "graph", "thread", "answer"}`).
Both print the final state as JSON."""

from __future__ import annotations

import asyncio
import json
import operator
import sys
from typing import Annotated, Any, TypedDict

import nats
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Send, interrupt

from agentledger.adapters.langgraph import JetStreamSaver, LedgerGraph, LedgerSaver
from agentledger.client import Ledger

Graph = CompiledStateGraph[Any, Any, Any, Any]


class State(TypedDict, total=False):
    request: str
    answer: str
    done: str


def ask(state: State) -> State:
    return {"answer": interrupt({"question": f"may I {state['request']}?"})}


def finish(state: State) -> State:
    return {"done": f"{state['request']}: {state['answer']}"}


def build(saver: BaseCheckpointSaver[Any]) -> Graph:
    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_node("finish", finish)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=saver)


class Work(TypedDict, total=False):
    request: str
    verdict: str
    notes: Annotated[list[str], operator.add]


class Review(TypedDict, total=False):
    request: str
    answer: str
    verdict: str


def _review() -> Graph:
    """Asks inside the subgraph, then gives its verdict."""
    graph = StateGraph(Review)
    graph.add_node("ask", lambda s: {"answer": interrupt(f"review: may I {s['request']}?")})
    graph.add_node("decide", lambda s: {"verdict": f"reviewed: {s['answer']}"})
    graph.add_edge(START, "ask")
    graph.add_edge("ask", "decide")
    graph.add_edge("decide", END)
    return graph.compile()


def build_reviewed(saver: BaseCheckpointSaver[Any]) -> Graph:
    graph = StateGraph(Work)
    graph.add_node("plan", lambda s: {"notes": [f"planned {s['request']}"]})
    graph.add_node("review", _review())
    graph.add_node("report", lambda s: {"notes": [s["verdict"], "reported"]})
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "review")
    graph.add_edge("review", "report")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=saver)


def build_nested(saver: BaseCheckpointSaver[Any]) -> Graph:
    inner = StateGraph(Work)
    inner.add_node("check", lambda s: {"verdict": "checked"})
    inner.add_edge(START, "check")
    inner.add_edge("check", END)
    middle = StateGraph(Work)
    middle.add_node("inner", inner.compile())
    middle.add_edge(START, "inner")
    middle.add_edge("inner", END)
    graph = StateGraph(Work)
    graph.add_node("middle", middle.compile())
    graph.add_edge(START, "middle")
    graph.add_edge("middle", END)
    return graph.compile(checkpointer=saver)


def build_sequence(saver: BaseCheckpointSaver[Any]) -> Graph:
    """Two subgraph tasks one after the other: the second starts right after the first ends."""
    def step(name: str) -> Graph:
        sub = StateGraph(Work)
        sub.add_node("do", lambda s: {"verdict": name})
        sub.add_edge(START, "do")
        sub.add_edge("do", END)
        return sub.compile()

    graph = StateGraph(Work)
    graph.add_node("first", step("first"))
    graph.add_node("second", step("second"))
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph.compile(checkpointer=saver)


class Items(TypedDict, total=False):
    items: list[str]
    done: Annotated[list[str], operator.add]


class Item(TypedDict, total=False):
    item: str
    done: Annotated[list[str], operator.add]


def build_helpers(saver: BaseCheckpointSaver[Any], ran: list[tuple[str, str]]) -> Graph:
    async def work(state: Item, config: RunnableConfig) -> Item:
        ran.append((state["item"], config["configurable"]["checkpoint_ns"]))
        await asyncio.sleep(0.05)  # still running while its sibling starts
        return {"done": [state["item"]]}

    return _one_task_per_item(saver, "work", work)


def build_recording(saver: BaseCheckpointSaver[Any], ran: list[tuple[str, str]]) -> Graph:
    """One node, at the root, that records that it ran."""
    graph = StateGraph(Item)
    graph.add_node("record", lambda s: ran.append((s["item"], "")) or {"done": [s["item"]]})
    graph.add_edge(START, "record")
    graph.add_edge("record", END)
    return graph.compile(checkpointer=saver)


def build_asking(saver: BaseCheckpointSaver[Any]) -> Graph:
    """One subgraph task per item, concurrently, each asking before it is done."""
    def ask_item(state: Item) -> Item:
        item = state["item"]
        return {"done": [f"{item}: {interrupt(f'may I {item}?')}"]}

    return _one_task_per_item(saver, "ask", ask_item)


def _one_task_per_item(saver: BaseCheckpointSaver[Any], name: str, node: Any) -> Graph:
    """A root that sends each of its items to a subgraph of one node, as a task of its own."""
    helper = StateGraph(Item)
    helper.add_node(name, node)
    helper.add_edge(START, name)
    helper.add_edge(name, END)
    graph = StateGraph(Items)
    graph.add_node("helper", helper.compile())
    graph.add_conditional_edges(START, lambda s: [Send("helper", {"item": i}) for i in s["items"]], ["helper"])
    graph.add_edge("helper", END)
    return graph.compile(checkpointer=saver)


def build_failing(saver: BaseCheckpointSaver[Any]) -> Graph:
    def broken(state: Work) -> Work:
        raise ValueError(f"cannot {state['request']}")

    sub = StateGraph(Work)
    sub.add_node("broken", broken)
    sub.add_edge(START, "broken")
    sub.add_edge("broken", END)
    graph = StateGraph(Work)
    graph.add_node("delegate", sub.compile())
    graph.add_edge(START, "delegate")
    graph.add_edge("delegate", END)
    return graph.compile(checkpointer=saver)


GRAPHS = {"build": build, "build_reviewed": build_reviewed}
SUMMARIES = {"build": lambda values: values["done"], "build_reviewed": lambda values: "; ".join(values["notes"])}


async def resume(url: str, creds: str, thread_id: str, answer: str) -> dict[str, Any]:
    nc = await nats.connect(servers=[url], user_credentials=creds)
    try:
        graph = build(await JetStreamSaver.open(nc))
        return dict(await graph.ainvoke(Command(resume=answer), {"configurable": {"thread_id": thread_id}}))
    finally:
        await nc.close()


async def resume_ledger(args: dict[str, str]) -> dict[str, Any]:
    """A second process: a connection, a saver and a graph of its own, resuming the run."""
    async with await Ledger.connect(args["tenant"], nats_url=args["url"], creds=args["creds"], prefix=args["prefix"],
                                    stream=args["stream"], actor="usr_reviewer", env={}) as ledger:
        graph = LedgerGraph(GRAPHS[args["graph"]](await LedgerSaver.open(ledger)), agent="agt_reviewer",
                            summary=SUMMARIES[args["graph"]])
        return dict(await graph.ainvoke(Command(resume=args["answer"]), {"configurable": {"thread_id": args["thread"]}}))


if __name__ == "__main__":
    if sys.argv[1] == "ledger":
        print(json.dumps(asyncio.run(resume_ledger(json.loads(sys.argv[2])))))
    else:
        print(json.dumps(asyncio.run(resume(*sys.argv[1:5]))))
