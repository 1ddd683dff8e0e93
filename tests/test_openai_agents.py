"""The OpenAI Agents SDK adapter against a real engine, offline: the SDK runs its agents on its own
test model (`ScriptedModel`), and every claim is checked against the thread's events and its replay
from the log: a run's sessions, usage and budgets, agents as tools under the width and budget caps,
handoffs (also on a thread archived meanwhile), fail_fast cascades, and approvals across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunContextWrapper, RunHooks
from agents.testing import ScriptedModel, assistant_message

from agentledger.adapters.openai_agents import (
    CascadedFailure,
    LedgerRun,
    NothingToResume,
    actor_id,
    decide,
    ledger_tool,
    pending_approval,
)
from agentledger.adapters.openai_agents.approvals import NO_DECISION
from agentledger.client import CapacityExceeded, ProjectConfig, ThreadClosed
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from tests.conftest import Tenants
from tests.openai_agents_support import (
    AFTER_APPROVAL,
    DEPLOYED,
    FIRST_TURN,
    approval_lead,
    calls,
    member_ledger,
    says,
    thread_events,
)

ROOT = Path(__file__).resolve().parent.parent


def test_agent_names_become_actor_ids() -> None:
    assert actor_id("lead") == "agt_lead"
    assert actor_id("code_reviewer-2") == "agt_code_reviewer-2"
    spaced, underscored = actor_id("Lead agent"), actor_id("Lead_agent")
    assert spaced.startswith("agt_Lead_agent-") and underscored == "agt_Lead_agent" and spaced != underscored
    long = actor_id("a" * 70)
    assert len(long) == 4 + 64 and long != actor_id("a" * 71)


async def test_a_run_is_its_threads_root_session_started_and_completed_with_its_usage(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        lead = Agent(name="lead", model=ScriptedModel([says("all done", tokens=42)]))
        run = await LedgerRun.open(ledger, thread_id="thd_basic", project_id="prj_oa", agent=lead, budget=1000)
        result = await run.run(lead, "do it")
        assert result.final_output == "all done"

        assert await thread_events(ledger, "thd_basic") == [
            ("thread.created", None), ("session.created", run.session_id), ("session.started", run.session_id),
            ("session.completed", run.session_id)]
        replay = await ledger.replay("thd_basic")
        (root,) = replay.sessions
        assert (root.status, root.owner.id, root.budget.used, root.budget.remaining) == ("idle", "agt_lead", 42, 958)
        assert root.summary is not None and (root.summary.outcome, root.summary.text) == ("succeeded", "all done")

        # a second turn starts the same root session again and charges it again
        again = Agent(name="lead", model=ScriptedModel([says("still done", tokens=8)]))
        await run.run(again, "and again")
        assert (await ledger.replay("thd_basic")).sessions[0].budget.used == 50


async def test_a_lead_spawning_three_helpers_under_a_width_cap_of_two_gets_two_and_a_reported_refusal(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    caps = ProjectConfig(max_delegation_width=2)
    async with member_ledger(engine.config, deployment, tenants, tmp_path, caps) as (ledger, _, _):
        run: LedgerRun | None = None
        gate = asyncio.Event()

        async def hold(_: Any) -> dict[str, Any]:  # a helper runs until the third spawn has been answered
            await gate.wait()
            return says("found it", tokens=20)

        async def open_gate() -> None:
            while run is None or not run.refusals:
                await asyncio.sleep(0.01)
            gate.set()

        helper = Agent(name="helper", model=ScriptedModel([{"responder": hold}] * 3))
        lead_model = ScriptedModel([
            calls(*[("ask_helper", {"input": f"part {n}"}, f"call_{n}") for n in (1, 2, 3)], tokens=15),
            says("two of three parts done", tokens=5)])
        lead = Agent(name="lead", model=lead_model, tools=[ledger_tool(helper, "ask_helper", "Ask a helper.")])
        run = await LedgerRun.open(ledger, thread_id="thd_width", project_id="prj_oa", agent=lead)
        opener = asyncio.create_task(open_gate())
        result = await asyncio.wait_for(run.run(lead, "split the work"), 60)
        await opener

        assert result.final_output == "two of three parts done"
        (refusal,) = run.refusals
        assert isinstance(refusal.error, CapacityExceeded) and refusal.agent == "agt_helper"
        assert (refusal.error.details.dimension, refusal.error.details.current, refusal.error.details.limit) == ("width", 2, 2)
        outputs = {item["call_id"]: item["output"] for item in lead_model.calls[1].input
                   if isinstance(item, dict) and item.get("type") == "function_call_output"}
        assert outputs[refusal.tool_call_id].startswith("The ledger refused to start this agent (capacity_exceeded)")
        assert sorted(o for c, o in outputs.items() if c != refusal.tool_call_id) == ["found it", "found it"]

        events = await thread_events(ledger, "thd_width")
        spawned = [s for t, s in events if t == "session.spawned"]
        assert len(spawned) == 2  # the refused spawn appended nothing
        assert sorted(t for t, s in events if s in spawned) == ["session.completed"] * 2 + ["session.spawned"] * 2
        assert events[-1] == ("session.completed", run.session_id)
        tree = (await ledger.replay("thd_width")).trees[0]
        assert [(c.owner.id, c.edge_status, c.budget.used) for c in tree.children] == [("agt_helper", "completed", 20)] * 2
        assert (tree.status, tree.budget.used, tree.budget.used_by_children) == ("idle", 20, 40)


async def test_a_handoff_is_handoff_single_before_the_recipient_runs(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        editor = Agent(name="editor", model=ScriptedModel([says("edited", tokens=7)]))
        writer = Agent(name="writer", model=ScriptedModel([calls(("transfer_to_editor", {}, "h2"), tokens=4)]),
                       handoffs=[editor])
        lead = Agent(name="lead", model=ScriptedModel([calls(("transfer_to_writer", {}, "h1"), tokens=3)]),
                     handoffs=[writer])
        run = await LedgerRun.open(ledger, thread_id="thd_handoff", project_id="prj_oa", agent=lead)
        result = await run.run(lead, "write it")
        assert result.final_output == "edited"

        events = await thread_events(ledger, "thd_handoff")
        assert [t for t, _ in events] == ["thread.created", "session.created", "session.started", "session.completed",
                                          "handoff.transferred", "session.completed", "handoff.transferred",
                                          "session.completed"]
        replay = await ledger.replay("thd_handoff")
        by_owner = {s.owner.id: s for s in replay.sessions}
        root = next(s for s in replay.sessions if s.session_id == run.session_id)
        assert (root.owner.id, root.owner_version, [a.id for a in root.previous_actors]) == ("agt_writer", 1, ["agt_lead"])
        writer_session = next(s for s in replay.sessions if s.parent_session_id == run.session_id)
        assert (writer_session.edge_kind, writer_session.depth, writer_session.budget.used) == ("handoff", 1, 4)
        assert writer_session.owner.id == "agt_editor"  # its own handoff moved its ownership on
        editor_session = next(s for s in replay.sessions if s.parent_session_id == writer_session.session_id)
        assert (editor_session.depth, editor_session.status, editor_session.budget.used) == (2, "idle", 7)
        assert root.summary is not None and root.summary.text == "handed off to agt_writer"
        assert set(by_owner) == {"agt_writer", "agt_editor"}


async def test_a_handoff_on_a_thread_archived_meanwhile_is_refused_before_the_recipient_runs(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        class Operator(RunHooks[Any]):  # someone archives the thread once the lead's session is idle
            async def on_handoff(self, context: RunContextWrapper[Any], from_agent: Agent[Any],
                                 to_agent: Agent[Any]) -> None:
                await ledger.thread.archive(thread_id="thd_archived", actor="usr_operator")

        writer_model = ScriptedModel([[assistant_message("never written")]])
        writer = Agent(name="writer", model=writer_model)
        lead = Agent(name="lead", model=ScriptedModel([calls(("transfer_to_writer", {}, "h1"), tokens=3)]),
                     handoffs=[writer])
        run = await LedgerRun.open(ledger, thread_id="thd_archived", project_id="prj_oa", agent=lead)
        with pytest.raises(ThreadClosed) as refused:
            await run.run(lead, "write it", hooks=Operator())
        assert refused.value.details.op == "handoff.single"
        assert writer_model.calls == ()  # the recipient never ran

        events = await thread_events(ledger, "thd_archived")
        assert [t for t, _ in events][-3:] == ["session.started", "session.completed", "thread.archived"]
        replay = await ledger.replay("thd_archived")
        assert replay.thread.status == "archived"
        assert [(s.session_id, s.status, s.owner.id) for s in replay.sessions] == [(run.session_id, "idle", "agt_lead")]


async def test_a_fail_fast_child_failure_fails_its_parent_in_the_same_event_and_stops_the_run(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        checker = Agent(name="checker", model=ScriptedModel([RuntimeError("the model is down")]))
        lead_model = ScriptedModel([calls(("check", {"input": "the build"}, "call_check"), tokens=9),
                                    says("never reached")])
        lead = Agent(name="lead", model=lead_model,
                     tools=[ledger_tool(checker, "check", "Check something.", failure_mode="fail_fast")])
        run = await LedgerRun.open(ledger, thread_id="thd_failfast", project_id="prj_oa", agent=lead)
        with pytest.raises(CascadedFailure) as stopped:
            await run.run(lead, "check the build")
        assert stopped.value.session_id == run.session_id
        assert stopped.value.reason == "RuntimeError: the model is down"
        assert len(lead_model.calls) == 1  # the lead's run stopped with its child

        events = await thread_events(ledger, "thd_failfast")
        child = stopped.value.child_session_id
        assert events[-2:] == [("session.spawned", child), ("session.failed", child)]  # one event fails both
        replay = await ledger.replay("thd_failfast")
        status = {s.session_id: s.status for s in replay.sessions}
        assert status == {run.session_id: "failed", child: "failed"}
        assert replay.trees[0].children[0].edge_status == "failed"


async def test_an_error_fails_the_agents_session_and_is_raised(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        lead = Agent(name="lead", model=ScriptedModel([calls(("nothing", {}, "c1"), tokens=6), says("unreached")]))
        run = await LedgerRun.open(ledger, thread_id="thd_error", project_id="prj_oa", agent=lead)
        with pytest.raises(Exception, match="nothing") as raised:
            await run.run(lead, "go")
        (failed,) = list((await ledger.replay("thd_error")).sessions)
        assert failed.status == "failed" and failed.budget.used == 6
        events = [e async for e in ledger.events("thd_error", follow=False)]
        assert events[-1].type == "session.failed"
        assert events[-1].data.reason.startswith(type(raised.value).__name__)  # type: ignore[union-attr]


async def test_spent_tokens_exhaust_the_budget_and_the_next_spawn_is_refused(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        helper = Agent(name="helper", model=ScriptedModel([says("first answer", tokens=50), says("unreached")]))
        lead_model = ScriptedModel([calls(("ask_helper", {"input": "one"}, "c1"), tokens=5),
                                    calls(("ask_helper", {"input": "two"}, "c2"), tokens=5),
                                    says("did what the budget allowed", tokens=5)])
        lead = Agent(name="lead", model=lead_model, tools=[ledger_tool(helper, "ask_helper", "Ask.", budget=60)])
        run = await LedgerRun.open(ledger, thread_id="thd_budget", project_id="prj_oa", agent=lead, budget=100)
        result = await run.run(lead, "go")
        assert result.final_output == "did what the budget allowed"
        (refusal,) = run.refusals
        assert isinstance(refusal.error, CapacityExceeded) and refusal.tool_call_id == "c2"
        assert (refusal.error.details.dimension, refusal.error.details.current, refusal.error.details.limit) == (
            "budget", 50, 100)

        events = await thread_events(ledger, "thd_budget")
        assert [t for t, _ in events].count("session.spawned") == 1
        root = (await ledger.replay("thd_budget")).trees[0]
        assert (root.budget.used, root.budget.used_by_children, root.budget.remaining) == (15, 50, 35)


def _cli(config: EngineConfig, creds: Path, tenant: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.openai_agents_support", args[0], config.nats_url, str(creds), tenant,
            config.prefix, config.stream, *args[1:]]


async def _in_a_second_process(argv: list[str]) -> str:
    proc = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def test_a_human_approval_answered_from_a_second_process_resumes_the_waiting_run(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    DEPLOYED.clear()
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, creds, tenant):
        lead = approval_lead(FIRST_TURN)
        run = await LedgerRun.open(ledger, thread_id="thd_approve", project_id="prj_oa", agent=lead)
        paused = await run.run(lead, "deploy main")
        assert [i.call_id for i in paused.interruptions] == ["call_deploy"] and paused.final_output is None
        asked = await pending_approval(ledger, run.session_id)
        assert [(c.call_id, c.tool, c.arguments) for c in asked.calls] == [("call_deploy", "deploy", '{"branch":"main"}')]
        view = (await ledger.session.get(session_id=run.session_id)).session
        assert view.status == "awaiting_hitl"
        requested = [e async for e in ledger.events("thd_approve", follow=False)][-1]
        assert requested.type == "session.input_requested"
        assert requested.data.prompt == 'Approve or reject: deploy({"branch":"main"}) [call call_deploy]'  # type: ignore[union-attr]

        waiting = asyncio.create_task(run.resume(approval_lead(AFTER_APPROVAL), timeout=60))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # it waits for the input, which has not come
        await _in_a_second_process(_cli(engine.config, creds, tenant, "approve", run.session_id, "yes"))
        result = await waiting
        assert result.final_output == "tool said: deployed main" and DEPLOYED == ["main"]

        events = [e async for e in ledger.events("thd_approve", follow=False)]
        assert [e.type for e in events][-4:] == ["session.started", "session.input_requested", "session.input_provided",
                                                 "session.completed"]
        assert events[-2].actor.id == "usr_approver"
        (root,) = (await ledger.replay("thd_approve")).sessions
        assert (root.status, root.budget.used) == ("idle", 42)  # both model calls, across the pause
        replay = await ledger.replay("thd_approve", at=events[-3].position)
        assert replay.sessions[0].status == "awaiting_hitl"
        with pytest.raises(NothingToResume):
            await run.resume(approval_lead(AFTER_APPROVAL))


async def test_a_run_paused_here_is_resumed_in_another_process_with_the_rejection(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    DEPLOYED.clear()
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, creds, tenant):
        lead = approval_lead(FIRST_TURN)
        run = await LedgerRun.open(ledger, thread_id="thd_reject", project_id="prj_oa", agent=lead)
        await run.run(lead, "deploy main")
        decision = await decide(ledger, run.session_id, approve=False, message="not on a Friday", actor="usr_alice")
        assert decision.approvals == {"call_deploy": False}

        out = await _in_a_second_process(_cli(engine.config, creds, tenant, "resume", "thd_reject", run.session_id))
        assert out.strip() == "tool said: not on a Friday []"
        assert DEPLOYED == []
        (root,) = (await ledger.replay("thd_reject")).sessions
        assert root.status == "idle" and root.summary is not None and root.summary.text == "tool said: not on a Friday"


async def test_input_provided_without_a_decision_rejects_every_call(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    DEPLOYED.clear()
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        lead = approval_lead(FIRST_TURN)
        run = await LedgerRun.open(ledger, thread_id="thd_nodecision", project_id="prj_oa", agent=lead)
        await run.run(lead, "deploy main")
        await ledger.session.provide_input(session_id=run.session_id)  # by hand, as `agentledger session provide-input`
        result = await run.resume(approval_lead(AFTER_APPROVAL), timeout=60)
        assert result.final_output == f"tool said: {NO_DECISION}" and DEPLOYED == []


async def test_of_two_processes_resuming_one_run_exactly_one_goes_on(
        engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    DEPLOYED.clear()
    async with member_ledger(engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        for trial in range(10):
            lead = approval_lead(FIRST_TURN)
            run = await LedgerRun.open(ledger, thread_id=f"thd_race{trial}", project_id="prj_oa", agent=lead)
            await run.run(lead, "deploy main")
            other = await LedgerRun.open(ledger, thread_id=f"thd_race{trial}", session_id=run.session_id)
            both = [asyncio.create_task(r.resume(approval_lead(AFTER_APPROVAL), timeout=60)) for r in (run, other)]
            await decide(ledger, run.session_id, approve=True)
            outcomes = await asyncio.gather(*both, return_exceptions=True)
            assert sorted(type(o).__name__ for o in outcomes) == ["NothingToResume", "RunResult"], outcomes
            assert len(DEPLOYED) == trial + 1
            assert [t for t, _ in await thread_events(ledger, f"thd_race{trial}")].count("session.completed") == 1
