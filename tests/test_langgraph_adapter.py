"""LangGraph runs as ledger sessions, against a real engine with a member's credentials, with plain
graphs (no model): an interrupt answered from a second process, a subgraph task as a spawned
session (and one that asks for input, answered from a second process), depth, a width cap refusing
a concurrent subgraph before it runs, a failing subgraph, an archived thread refusing a run before
any node runs, `copy_thread` as a fork, and links from every event to its checkpoint. Each is
checked against the thread's events and its replay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from agentledger.adapters.langgraph import RUN_KEY, LedgerGraph, LedgerSaver, linked_checkpoint, namespaces
from agentledger.client import AlreadyExists, CapacityExceeded, InvalidCommand, Ledger, NotFound, ProjectConfig, ThreadClosed
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.schemas.events import StoredEvent
from tests.client_support import creds_file, ledger_for
from tests.conftest import Tenants
from tests.langgraph_graph import (
    State,
    build,
    build_asking,
    build_failing,
    build_helpers,
    build_nested,
    build_recording,
    build_reviewed,
    build_sequence,
)

ROOT = Path(__file__).resolve().parent.parent
TENANT = "tnt_lgrun"


@dataclass
class Setup:
    ledger: Ledger
    saver: LedgerSaver
    creds: Path
    engine: Engine
    project: str

    async def thread(self) -> str:
        """A new thread: the bucket is the tenant's, shared by the tests, so each has its own."""
        thread_id = f"thd_{uuid.uuid4().hex[:10]}"
        await self.ledger.thread.create(project_id=self.project, thread_id=thread_id)
        return thread_id

    async def events(self, thread_id: str) -> list[StoredEvent]:
        return [e async for e in self.ledger.events(thread_id=thread_id, follow=False)]

    def resume_elsewhere(self, graph: str, thread_id: str, answer: str) -> dict[str, object]:
        """Resume the run in a second process, with a connection, a saver and a graph of its own."""
        config = self.engine.config
        args = {"url": config.nats_url, "creds": str(self.creds), "tenant": TENANT, "prefix": config.prefix,
                "stream": config.stream, "graph": graph, "thread": thread_id, "answer": answer}
        proc = subprocess.run([sys.executable, "-m", "tests.langgraph_graph", "ledger", json.dumps(args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
async def setup(engine: Engine, tenants: Tenants, deployment: Deployment, tmp_path: Path) -> AsyncIterator[Setup]:
    creds = await creds_file(deployment, tenants, tmp_path, tenant=TENANT)
    async with ledger_for(engine.config, creds, tenant=TENANT, actor="usr_alice") as ledger:
        await ledger.project.create(project_id="prj_graphs", name="graphs", config=ProjectConfig(max_delegation_width=4))
        yield Setup(ledger, await LedgerSaver.open(ledger), creds, engine, "prj_graphs")


def _types(events: list[StoredEvent]) -> list[str]:
    return [e.type for e in events]


async def _linked(setup: Setup, thread_id: str, events: list[StoredEvent]) -> None:
    """Each event links to a checkpoint of the thread, and the link resolves."""
    for event in events:
        checkpoint_id = linked_checkpoint(event.causation_id)
        assert checkpoint_id is not None, event
        assert await setup.saver.locate(thread_id, checkpoint_id) is not None, event


async def test_an_interrupt_is_a_request_for_input_answered_from_a_second_process(setup: Setup) -> None:
    thread_id = await setup.thread()
    graph = LedgerGraph(build(setup.saver), agent="agt_reviewer", summary=lambda values: values["done"])
    paused = await graph.ainvoke({"request": "merge the fix"}, {"configurable": {"thread_id": thread_id}})
    assert [i.value for i in paused["__interrupt__"]] == [{"question": "may I merge the fix?"}]

    events = await setup.events(thread_id)
    assert _types(events) == ["thread.created", "session.created", "session.started", "session.input_requested"]
    root = events[1].data.session_id  # type: ignore[union-attr]
    asked = events[3]
    assert asked.data.prompt == '{"question": "may I merge the fix?"}'  # type: ignore[union-attr]
    assert asked.actor.id == "agt_reviewer"
    state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    assert state.metadata is not None and state.metadata[RUN_KEY] == root
    assert linked_checkpoint(asked.causation_id) == state.config["configurable"]["checkpoint_id"]
    waiting = await setup.ledger.replay(thread_id)
    assert [(s.session_id, s.status) for s in waiting.sessions] == [(root, "awaiting_hitl")]

    done = await asyncio.to_thread(setup.resume_elsewhere, "build", thread_id, "yes")
    assert done["done"] == "merge the fix: yes"

    events = await setup.events(thread_id)
    assert _types(events)[4:] == ["session.input_provided", "session.completed"]
    provided, completed = events[4:]
    assert provided.actor.id == "usr_reviewer" and provided.data.session_id == root  # type: ignore[union-attr]
    assert linked_checkpoint(provided.causation_id) == linked_checkpoint(asked.causation_id)  # the checkpoint it resumed
    assert completed.data.summary.text == "merge the fix: yes"  # type: ignore[union-attr]
    await _linked(setup, thread_id, events[3:])  # a new thread has no checkpoint to start from
    final = await setup.ledger.replay(thread_id)
    assert [(s.session_id, s.status) for s in final.sessions] == [(root, "idle")]
    at_question = await setup.ledger.replay(thread_id, at=asked.position)
    assert [s.status for s in at_question.sessions] == ["awaiting_hitl"]


async def test_a_subgraph_task_is_a_spawned_session_that_asks_and_is_answered_from_a_second_process(setup: Setup) -> None:
    thread_id = await setup.thread()
    graph = LedgerGraph(build_reviewed(setup.saver), agent="agt_reviewer", summary=lambda values: "; ".join(values["notes"]))
    paused = await graph.ainvoke({"request": "ship it"}, {"configurable": {"thread_id": thread_id}})
    assert [i.value for i in paused["__interrupt__"]] == ["review: may I ship it?"]

    events = await setup.events(thread_id)
    assert _types(events) == ["thread.created", "session.created", "session.started", "session.spawned",
                              "session.input_requested"]
    root = events[1].data.session_id  # type: ignore[union-attr]
    spawned, asked = events[3:]
    child = spawned.data.session_id  # type: ignore[union-attr]
    assert (spawned.data.parent_session_id, spawned.data.depth, spawned.data.agent.id) == (root, 1, "agt_review")  # type: ignore[union-attr]
    assert asked.data.session_id == child and asked.data.prompt == "review: may I ship it?"  # type: ignore[union-attr]
    waiting = {s.session_id: s.status for s in (await setup.ledger.replay(thread_id)).sessions}
    assert waiting == {root: "active", child: "awaiting_hitl"}  # the root waits on its child, the child on a human

    done = await asyncio.to_thread(setup.resume_elsewhere, "build_reviewed", thread_id, "yes")
    assert done["notes"] == ["planned ship it", "reviewed: yes", "reported"]

    events = await setup.events(thread_id)
    assert [(e.type, e.data.session_id) for e in events[5:]] == [  # type: ignore[union-attr]
        ("session.input_provided", child), ("session.completed", child), ("session.completed", root)]
    assert events[-1].data.summary.text == "planned ship it; reviewed: yes; reported"  # type: ignore[union-attr]
    await _linked(setup, thread_id, events[3:])
    tree = (await setup.ledger.session.tree(session_id=root)).tree
    assert [(c.session_id, c.status, c.edge_status) for c in tree.children] == [(child, "idle", "completed")]
    final = await setup.ledger.replay(thread_id)
    assert {s.session_id: s.status for s in final.sessions} == {root: "idle", child: "idle"}


async def test_a_subgraph_inside_a_subgraph_is_spawned_at_depth_two(setup: Setup) -> None:
    thread_id = await setup.thread()
    graph = LedgerGraph(build_nested(setup.saver))
    assert (await graph.ainvoke({"request": "x"}, {"configurable": {"thread_id": thread_id}}))["verdict"] == "checked"

    events = await setup.events(thread_id)
    root = events[1].data.session_id  # type: ignore[union-attr]
    spawned = [e.data for e in events if e.type == "session.spawned"]
    assert [(s.agent.id, s.depth) for s in spawned] == [("agt_middle", 1), ("agt_inner", 2)]  # type: ignore[union-attr]
    middle, inner = (s.session_id for s in spawned)  # type: ignore[union-attr]
    assert [s.parent_session_id for s in spawned] == [root, middle]  # type: ignore[union-attr]
    assert sorted(e.data.session_id for e in events if e.type == "session.completed") == sorted([root, middle, inner])  # type: ignore[union-attr]
    assert events[-1].data.session_id == root  # type: ignore[union-attr]
    await _linked(setup, thread_id, events[3:])
    replay = await setup.ledger.replay(thread_id)
    assert {s.session_id: (s.status, s.depth) for s in replay.sessions} == {root: ("idle", 0), middle: ("idle", 1),
                                                                           inner: ("idle", 2)}


async def test_concurrent_subgraph_tasks_are_concurrent_sessions(setup: Setup) -> None:
    thread_id = await setup.thread()
    ran: list[tuple[str, str]] = []
    graph = LedgerGraph(build_helpers(setup.saver, ran))
    result = await graph.ainvoke({"items": ["a", "b", "c"]}, {"configurable": {"thread_id": thread_id}})
    assert sorted(result["done"]) == sorted(item for item, _ in ran) == ["a", "b", "c"]
    events = await setup.events(thread_id)
    assert _types(events).count("session.spawned") == 3 and _types(events).count("session.completed") == 4
    root = events[1].data.session_id  # type: ignore[union-attr]
    tree = (await setup.ledger.session.tree(session_id=root)).tree
    assert sorted((c.edge_status, c.owner.id) for c in tree.children) == [("completed", "agt_helper")] * 3


async def test_a_width_cap_refuses_a_concurrent_subgraph_before_it_runs(setup: Setup) -> None:
    """Width 1: two helpers start together; the ledger takes one and refuses the other, whose node
    never runs; the run raises the ledger's CapacityExceeded and ends its sessions. Run many times:
    which helper wins is a race, that exactly one runs is not."""
    await setup.ledger.project.create(project_id="prj_narrow", name="narrow", config=ProjectConfig(max_delegation_width=1))
    for _ in range(5):
        thread_id = f"thd_{uuid.uuid4().hex[:10]}"
        await setup.ledger.thread.create(project_id="prj_narrow", thread_id=thread_id)
        ran: list[tuple[str, str]] = []
        graph = LedgerGraph(build_helpers(setup.saver, ran))
        with pytest.raises(CapacityExceeded) as refused:
            await graph.ainvoke({"items": ["a", "b"]}, {"configurable": {"thread_id": thread_id}})
        assert (refused.value.details.dimension, refused.value.details.limit) == ("width", 1)

        events = await setup.events(thread_id)
        root = events[1].data.session_id  # type: ignore[union-attr]
        spawned = [e.data.session_id for e in events if e.type == "session.spawned"]  # type: ignore[union-attr]
        assert len(spawned) == 1
        # a node that ran did so in the one helper the ledger took (the other may be stopped before its
        # node starts): the refused one never ran
        assert len(ran) <= 1
        assert all(namespaces.child_session_id(root, namespaces.parent(ns)) == spawned[0] for _, ns in ran)
        assert events[-1].type == "session.failed" and events[-1].data.session_id == root  # type: ignore[union-attr]
        assert events[-1].data.reason.startswith("CapacityExceeded: capacity_exceeded")  # type: ignore[union-attr]
        final = await setup.ledger.replay(thread_id)
        assert final.thread.blocking_sessions == 0  # nothing left running: the thread can be archived
        assert (await setup.ledger.thread.archive(thread_id=thread_id)).status == "archived"


async def test_under_a_width_cap_of_one_subgraph_tasks_run_one_after_the_other(setup: Setup) -> None:
    """The first task's session ends (with its writes) before the second's is spawned, so a width
    cap of one lets subgraph tasks run one after the other (several times: ending and spawn are
    sent from different LangGraph tasks)."""
    await setup.ledger.project.create(project_id="prj_single", name="single", config=ProjectConfig(max_delegation_width=1))
    for _ in range(5):
        thread_id = f"thd_{uuid.uuid4().hex[:10]}"
        await setup.ledger.thread.create(project_id="prj_single", thread_id=thread_id)
        graph = LedgerGraph(build_sequence(setup.saver))
        done = await graph.ainvoke({"request": "r"}, {"configurable": {"thread_id": thread_id}})
        assert done["verdict"] == "second"
        events = await setup.events(thread_id)
        assert _types(events)[3:] == ["session.spawned", "session.completed", "session.spawned", "session.completed",
                                      "session.completed"]


async def test_a_failing_subgraph_fails_its_session_and_the_run(setup: Setup) -> None:
    thread_id = await setup.thread()
    graph = LedgerGraph(build_failing(setup.saver))
    with pytest.raises(ValueError, match="cannot deploy"):
        await graph.ainvoke({"request": "deploy"}, {"configurable": {"thread_id": thread_id}})
    events = await setup.events(thread_id)
    root = events[1].data.session_id  # type: ignore[union-attr]
    child = events[3].data.session_id  # type: ignore[union-attr]
    assert [(e.type, e.data.session_id, e.data.reason) for e in events[4:]] == [  # type: ignore[union-attr]
        ("session.failed", child, "ValueError: cannot deploy"), ("session.failed", root, "ValueError: cannot deploy")]
    await _linked(setup, thread_id, events[3:])
    replay = await setup.ledger.replay(thread_id)
    assert {s.session_id: s.status for s in replay.sessions} == {root: "failed", child: "failed"}


async def test_a_run_on_an_archived_thread_is_refused_before_any_node_runs(setup: Setup) -> None:
    thread_id = await setup.thread()
    await setup.ledger.thread.archive(thread_id=thread_id)
    before = await setup.events(thread_id)
    ran: list[tuple[str, str]] = []
    graph = LedgerGraph(build_recording(setup.saver, ran))
    with pytest.raises(ThreadClosed) as refused:
        await graph.ainvoke({"item": "a"}, {"configurable": {"thread_id": thread_id}})
    assert (refused.value.details.thread_id, refused.value.details.op) == (thread_id, "session.create")
    assert ran == []  # no node ran
    assert await setup.events(thread_id) == before  # nothing appended
    assert [t async for t in setup.saver.alist({"configurable": {"thread_id": thread_id}})] == []  # nothing checkpointed
    await setup.ledger.thread.unarchive(thread_id=thread_id)  # the same run on the open thread: the node runs
    assert (await graph.ainvoke({"item": "a"}, {"configurable": {"thread_id": thread_id}}))["done"] == ["a"]
    assert ran == [("a", "")]


async def test_copy_thread_forks_the_ledger_thread_and_copies_the_checkpoints(setup: Setup) -> None:
    source = await setup.thread()
    graph = LedgerGraph(build(setup.saver), summary=lambda values: values["done"])
    await graph.ainvoke({"request": "tag a release"}, {"configurable": {"thread_id": source}})
    source_events = await setup.events(source)
    target = f"thd_{uuid.uuid4().hex[:10]}"
    await setup.saver.acopy_thread(source, target)

    fork = (await setup.ledger.thread.get(thread_id=target)).thread
    assert fork.forked_from is not None
    assert (fork.forked_from.thread_id, fork.forked_from.position) == (source, source_events[-1].position)
    history = await setup.events(target)
    assert history[:len(source_events)] == source_events and history[-1].type == "thread.created"
    copied = await graph.aget_state({"configurable": {"thread_id": target}})
    assert copied.values == (await graph.aget_state({"configurable": {"thread_id": source}})).values
    assert linked_checkpoint(history[-1].causation_id) == copied.config["configurable"]["checkpoint_id"]

    # the fork goes its own way: a new run of its own answers the copied question
    done = await graph.ainvoke(Command(resume="no"), {"configurable": {"thread_id": target}})
    assert done["done"] == "tag a release: no"
    own = (await setup.events(target))[len(history):]
    assert _types(own) == ["session.created", "session.started", "session.completed"]
    source_root = source_events[1].data.session_id  # type: ignore[union-attr]
    assert [(s.session_id, s.status) for s in (await setup.ledger.replay(source)).sessions] == [(source_root, "awaiting_hitl")]

    with pytest.raises(AlreadyExists):  # a fork that is refused copies nothing
        await setup.saver.acopy_thread(target, source)
    assert "done" not in (await graph.aget_state({"configurable": {"thread_id": source}})).values


async def test_a_fresh_input_supersedes_a_run_that_waits(setup: Setup) -> None:
    """LangGraph drops the unanswered question when a new input comes: so does the ledger."""
    thread_id = await setup.thread()
    graph = LedgerGraph(build(setup.saver))
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    await graph.ainvoke({"request": "merge"}, config)
    await graph.ainvoke({"request": "revert"}, config)
    events = await setup.events(thread_id)
    assert _types(events) == ["thread.created", "session.created", "session.started", "session.input_requested",
                              "session.cancelled", "session.created", "session.started", "session.input_requested"]
    first, second = events[1].data.session_id, events[5].data.session_id  # type: ignore[union-attr]
    assert (events[4].data.session_id, events[4].data.reason) == (first, "superseded by a new input")  # type: ignore[union-attr]
    assert events[7].data.prompt == '{"question": "may I revert?"}'  # type: ignore[union-attr]
    replay = await setup.ledger.replay(thread_id)
    assert {s.session_id: s.status for s in replay.sessions} == {first: "idle", second: "awaiting_hitl"}


async def test_a_run_id_planted_in_the_checkpoints_is_not_trusted(setup: Setup) -> None:
    """Any member can write the bucket: a checkpoint whose metadata names another thread's waiting
    session (or no session at all) starts a run of its own, and the other thread is left alone."""
    graph = LedgerGraph(build(setup.saver))
    victim = await setup.thread()
    await graph.ainvoke({"request": "pay"}, {"configurable": {"thread_id": victim}})
    victim_events = await setup.events(victim)
    waiting = victim_events[1].data.session_id  # type: ignore[union-attr]
    plain = build(setup.saver)  # outside a LedgerGraph run the saver is the plain checkpointer
    for planted in (waiting, "not a session"):
        thread_id = await setup.thread()
        await plain.ainvoke({"request": "pay"}, {"configurable": {"thread_id": thread_id, RUN_KEY: planted}})
        assert (await plain.aget_state({"configurable": {"thread_id": thread_id}})).metadata[RUN_KEY] == planted  # type: ignore[index]
        done = await graph.ainvoke(Command(resume="yes"), {"configurable": {"thread_id": thread_id}})
        assert done["done"] == "pay: yes"
        assert _types(await setup.events(thread_id)) == ["thread.created", "session.created", "session.started",
                                                           "session.completed"]
    assert await setup.events(victim) == victim_events


async def test_a_breakpoint_asks_the_root_and_none_continues(setup: Setup) -> None:
    thread_id = await setup.thread()
    ran: list[str] = []
    builder = StateGraph(State)
    builder.add_node("draft", lambda s: ran.append("draft") or {"done": "drafted"})
    builder.add_node("publish", lambda s: ran.append("publish") or {"done": "published"})
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "publish")
    builder.add_edge("publish", END)
    graph = LedgerGraph(builder.compile(checkpointer=setup.saver, interrupt_before=["publish"]))
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    await graph.ainvoke({"request": "post"}, config)
    assert ran == ["draft"]
    events = await setup.events(thread_id)
    assert (events[-1].type, events[-1].data.prompt) == ("session.input_requested", "paused before publish")  # type: ignore[union-attr]
    assert (await graph.ainvoke(None, config))["done"] == "published"
    assert ran == ["draft", "publish"]
    assert _types(await setup.events(thread_id))[len(events):] == ["session.input_provided", "session.completed"]


async def test_a_caller_that_stops_streaming_cancels_the_run(setup: Setup) -> None:
    thread_id = await setup.thread()
    graph = LedgerGraph(build_reviewed(setup.saver))
    async with contextlib.aclosing(graph.astream({"request": "scan"}, {"configurable": {"thread_id": thread_id}})) as parts:
        async for part in parts:
            assert "plan" in part
            break
    events = await setup.events(thread_id)
    root = events[1].data.session_id  # type: ignore[union-attr]
    assert (events[-1].type, events[-1].data.session_id, events[-1].data.reason) == (  # type: ignore[union-attr]
        "session.cancelled", root, "stopped by its caller")
    assert (await setup.ledger.replay(thread_id)).thread.blocking_sessions == 0


async def test_the_ledger_saver_keeps_the_checkpointers_conformance(setup: Setup) -> None:
    """Outside a run the saver is the checkpointer, and LangGraph's suite says so (copy_thread forks
    a ledger thread, so it is tested above with ledger threads instead)."""

    @checkpointer_test(name="LedgerSaver")
    async def factory() -> AsyncIterator[LedgerSaver]:
        yield setup.saver

    caps = {c.value for c in BASE_CAPABILITIES} | {"delete_for_runs", "prune"}
    report = await validate(factory, capabilities=caps)
    ran = {name: result.passed for name, result in report.results.items() if result.passed is not None}
    assert ran == dict.fromkeys(caps, True), report.results
    assert sum(r.tests_passed for r in report.results.values()) >= 60


async def test_a_run_on_a_thread_the_ledger_does_not_know_is_refused(setup: Setup) -> None:
    ran: list[tuple[str, str]] = []
    graph = LedgerGraph(build_helpers(setup.saver, ran))
    with pytest.raises(NotFound) as refused:
        await graph.ainvoke({"items": ["a"]}, {"configurable": {"thread_id": "thd_nowhere"}})
    assert (refused.value.details.kind, refused.value.details.id) == ("thread", "thd_nowhere")
    with pytest.raises(InvalidCommand, match="thread id must start with thd_"):
        await graph.ainvoke({"items": ["a"]}, {"configurable": {"thread_id": "my-thread"}})
    assert ran == []


async def test_the_integrations_example_runs_as_written(setup: Setup, deployment: Deployment, tenants: Tenants,
                                                        tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "integrations.md").read_text()
    section = doc[doc.index("## LangGraph\n"):doc.index("## LangGraph checkpointer")]
    code, shown = re.findall(r"^```(?:python)?\n(.*?)^```", section, re.M | re.S)[:2]
    assert "python merge.py" in section
    await setup.ledger.close()  # the example connects on its own
    (await creds_file(deployment, tenants, tmp_path, tenant="tnt_acme")).rename(tmp_path / "alice.creds")
    (tmp_path / "merge.py").write_text(code)
    config = setup.engine.config
    env = {**os.environ, "NATS_URL": config.nats_url, "AGENTLEDGER_PREFIX": config.prefix, "AGENTLEDGER_STREAM": config.stream}
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "merge.py"], cwd=tmp_path, capture_output=True,
                                   text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    printed = re.sub(r"ses_lg-[a-z0-9]+", "ses_lg-…", proc.stdout)
    assert re.sub(r"ses_[a-z0-9]{12}\b", "ses_…", printed) == shown


async def test_a_resume_by_interrupt_id_answers_only_the_sessions_it_names(setup: Setup) -> None:
    thread_id = await setup.thread()
    graph = LedgerGraph(build_asking(setup.saver))
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    paused = await graph.ainvoke({"items": ["tag", "push"]}, config)
    asked = {i.value: i.id for i in paused["__interrupt__"]}
    assert set(asked) == {"may I tag?", "may I push?"}
    events = await setup.events(thread_id)
    prompts = {e.data.prompt: e.data.session_id for e in events if e.type == "session.input_requested"}  # type: ignore[union-attr]
    assert set(prompts) == set(asked) and len(set(prompts.values())) == 2  # one session per helper, each asking

    paused = await graph.ainvoke(Command(resume={asked["may I tag?"]: "yes"}), config)
    assert [i.value for i in paused["__interrupt__"]] == ["may I push?"]
    later = (await setup.events(thread_id))[len(events):]
    assert [(e.type, e.data.session_id) for e in later] == [  # type: ignore[union-attr]
        ("session.input_provided", prompts["may I tag?"]), ("session.completed", prompts["may I tag?"])]

    done = await graph.ainvoke(Command(resume="no"), config)  # the one question left
    assert sorted(done["done"]) == ["push: no", "tag: yes"]
    last = (await setup.events(thread_id))[len(events) + len(later):]
    root = events[1].data.session_id  # type: ignore[union-attr]
    assert [(e.type, e.data.session_id) for e in last] == [  # type: ignore[union-attr]
        ("session.input_provided", prompts["may I push?"]), ("session.completed", prompts["may I push?"]),
        ("session.completed", root)]
