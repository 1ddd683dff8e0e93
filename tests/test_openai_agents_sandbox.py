"""A `SandboxAgent` in the ledger's sandboxes, offline against a real engine with its effect handler
(bubblewrap where the machine can run it): the agent's shell and file tools run as `sandbox.exec` by
its session, in the sandbox its session's binding made, and the ledger's shutdown policy decides
what becomes of it when the session ends."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig
from agents.sandbox import SandboxAgent, SandboxRunConfig
from agents.testing import ScriptedModel
from openai.types.responses import ResponseCustomToolCall

from agentledger.adapters.openai_agents import LedgerRun, Unmapped, decide, ledger_tool
from agentledger.adapters.openai_agents.sandbox import LedgerSandboxClient
from agentledger.client import SandboxSpec
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from tests.conftest import Tenants
from tests.openai_agents_support import DEPLOYED, calls, deploy, member_ledger, says, usage
from tests.sandbox_support import sandbox_engine, settled_view


def patch(text: str, call_id: str, tokens: int = 5) -> dict[str, Any]:
    """A model step applying a patch with the sandbox's `apply_patch` tool."""
    return {"output": [ResponseCustomToolCall(type="custom_tool_call", call_id=call_id, name="apply_patch", input=text)],
            "usage": usage(tokens)}


def tool_outputs(model: ScriptedModel, call: int) -> list[str]:
    return [str(item["output"]) for item in model.calls[call].input
            if isinstance(item, dict) and item.get("type") in ("function_call_output", "custom_tool_call_output")]


@pytest.fixture
async def fx_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ("sh",)) as eng:
        yield eng


async def test_a_sandbox_agents_commands_are_execs_by_its_session_in_its_bound_sandbox(
        fx_engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(fx_engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        coder_model = ScriptedModel([
            calls(("exec_command", {"cmd": "echo 'print(1)' > main.py && wc -c main.py"}, "x1"), tokens=11),
            says("wrote main.py", tokens=4)])
        coder = SandboxAgent(name="coder", instructions="Write code.", model=coder_model)
        run = await LedgerRun.open(ledger, thread_id="thd_sbx", project_id="prj_oa", agent=coder,
                                   sandbox=SandboxSpec(mode="new", sandbox_id="sbx_coder", shutdown="pause"))
        config = RunConfig(sandbox=SandboxRunConfig(client=LedgerSandboxClient(ledger)))
        result = await run.run(coder, "write main.py", run_config=config)
        assert result.final_output == "wrote main.py"
        tool_output = next(item["output"] for item in coder_model.calls[1].input
                           if isinstance(item, dict) and item.get("type") == "function_call_output")
        assert "9 main.py" in tool_output

        replay = await ledger.replay("thd_sbx")
        (ours,) = [e for e in replay.execs if "main.py" in " ".join(e.argv)]
        assert ours.session_id == run.session_id and ours.status == "finished"
        assert ours.outcome is not None and ours.outcome.exit_code == 0
        assert all(e.session_id == run.session_id for e in replay.execs)
        view = await settled_view(ledger, "sbx_coder", "paused")  # the shutdown policy, applied by the ledger
        assert view.location is not None and (Path(view.location) / "main.py").read_text() == "print(1)\n"
        (root,) = replay.sessions
        assert (root.status, root.budget.used) == ("idle", 15)


async def test_a_sandbox_paused_when_its_session_ends_is_resumed_by_the_ledger_for_the_next_turn(
        fx_engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(fx_engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        def coder(cmd: str, call_id: str, answer: str) -> SandboxAgent[Any]:
            return SandboxAgent(name="coder", model=ScriptedModel([calls(("exec_command", {"cmd": cmd}, call_id), tokens=3),
                                                                   says(answer, tokens=2)]))

        first = coder("echo one > turns.txt", "x1", "first turn done")
        run = await LedgerRun.open(ledger, thread_id="thd_turns", project_id="prj_oa", agent=first,
                                   sandbox=SandboxSpec(mode="new", sandbox_id="sbx_turns", shutdown="pause"))
        config = RunConfig(sandbox=SandboxRunConfig(client=LedgerSandboxClient(ledger)))
        assert (await run.run(first, "turn one", run_config=config)).final_output == "first turn done"
        await settled_view(ledger, "sbx_turns", "paused")

        second = coder("echo two >> turns.txt; cat turns.txt", "x2", "second turn done")
        assert (await run.run(second, "turn two", run_config=config)).final_output == "second turn done"
        view = await settled_view(ledger, "sbx_turns", "paused")
        assert view.location is not None and (Path(view.location) / "turns.txt").read_text() == "one\ntwo\n"

        lifecycle = ("session.started", "session.completed", "sandbox.pause_requested", "sandbox.paused",
                     "sandbox.resume_requested", "sandbox.resumed")
        kinds = [e.type async for e in ledger.events(follow=False)  # the tenant's log: sandbox events included
                 if e.type in lifecycle and getattr(e.data, "sandbox_id", "sbx_turns") == "sbx_turns"]
        assert kinds == ["session.started", "session.completed", "sandbox.pause_requested", "sandbox.paused",
                         "session.started", "sandbox.resume_requested", "sandbox.resumed",
                         "session.completed", "sandbox.pause_requested", "sandbox.paused"]
        (root,) = (await ledger.replay("thd_turns")).sessions
        assert (root.status, root.budget.used) == ("idle", 10)


async def test_files_are_read_and_written_through_execs_in_the_sandbox(
        fx_engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(fx_engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        model = ScriptedModel([
            patch("*** Begin Patch\n*** Add File: notes/todo.md\n+- write tests\n+- ship\n*** End Patch\n", "p1"),
            patch("*** Begin Patch\n*** Update File: notes/todo.md\n@@\n-- ship\n+- ship it\n*** End Patch\n", "p2"),
            says("notes kept")])
        coder = SandboxAgent(name="coder", model=model)
        run = await LedgerRun.open(ledger, thread_id="thd_files", project_id="prj_oa", agent=coder,
                                   sandbox=SandboxSpec(mode="new", sandbox_id="sbx_files", shutdown="keep"))
        config = RunConfig(sandbox=SandboxRunConfig(client=LedgerSandboxClient(ledger)))
        assert (await run.run(coder, "keep notes", run_config=config)).final_output == "notes kept"
        assert not any("error" in out.lower() for out in tool_outputs(model, 2)), tool_outputs(model, 2)

        view = await settled_view(ledger, "sbx_files", "running")  # keep: the ledger leaves it running
        assert view.location is not None
        assert (Path(view.location) / "notes" / "todo.md").read_text() == "- write tests\n- ship it"
        execs = (await ledger.replay("thd_files")).execs
        writes = [e for e in execs if e.argv[:2] == ["sh", "-c"] and "base64 -d" in e.argv[2]]
        assert len(writes) == 2 and all(e.outcome is not None and e.outcome.exit_code == 0 for e in writes)
        reads = [e for e in execs if e.argv[:2] == ["sh", "-c"] and e.argv[2].endswith('base64 "$1"')]
        assert len(reads) == 1 and reads[0].outcome is not None
        assert base64.b64decode(reads[0].outcome.stdout.text) == b"- write tests\n- ship"


async def test_a_sub_agent_works_in_a_fork_of_its_callers_sandbox_which_the_ledger_destroys_after_it(
        fx_engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(fx_engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        tester = SandboxAgent(name="tester", model=ScriptedModel([
            calls(("exec_command", {"cmd": "cat plan.txt; echo tried > attempt.txt"}, "t1"), tokens=6),
            says("the plan reads fine", tokens=2)]))
        lead_model = ScriptedModel([
            calls(("exec_command", {"cmd": "echo 'step 1' > plan.txt"}, "l1"), tokens=3),
            calls(("try_it", {"input": "try the plan"}, "l2"), tokens=3),
            says("tried in a copy", tokens=3)])
        lead = SandboxAgent(name="lead", model=lead_model, tools=[
            ledger_tool(tester, "try_it", "Try the plan in a copy of the workspace.", sandbox="fork")])
        run = await LedgerRun.open(ledger, thread_id="thd_fork", project_id="prj_oa", agent=lead,
                                   sandbox=SandboxSpec(mode="new", sandbox_id="sbx_lead", shutdown="keep"))
        config = RunConfig(sandbox=SandboxRunConfig(client=LedgerSandboxClient(ledger)))
        assert (await run.run(lead, "plan and try", run_config=config)).final_output == "tried in a copy"
        assert tool_outputs(lead_model, 2)[-1] == "the plan reads fine"

        replay = await ledger.replay("thd_fork")
        child = next(s for s in replay.sessions if s.parent_session_id == run.session_id)
        assert child.sandbox is not None and child.sandbox.mode == "fork" and child.sandbox.source_sandbox_id == "sbx_lead"
        copy = child.sandbox.sandbox_id
        by_session = {e.session_id for e in replay.execs if e.sandbox_id == copy}
        assert by_session == {child.session_id}
        tried = next(e for e in replay.execs if "attempt.txt" in " ".join(e.argv))
        assert tried.outcome is not None and tried.outcome.stdout.text == "step 1\n"
        await settled_view(ledger, copy, "destroyed")  # the child's shutdown policy (destroy), the ledger's doing
        lead_view = await settled_view(ledger, "sbx_lead", "running")
        assert lead_view.location is not None and not (Path(lead_view.location) / "attempt.txt").exists()


async def test_a_sandbox_agent_in_a_session_without_a_sandbox_is_refused_and_its_session_failed(
        fx_engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    async with member_ledger(fx_engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        coder_model = ScriptedModel([says("unreached")])
        coder = SandboxAgent(name="coder", model=coder_model)
        plain = Agent(name="plain", model=ScriptedModel([says("unused")]))
        run = await LedgerRun.open(ledger, thread_id="thd_nosbx", project_id="prj_oa", agent=plain)
        config = RunConfig(sandbox=SandboxRunConfig(client=LedgerSandboxClient(ledger)))
        with pytest.raises(Unmapped, match="holds no sandbox"):
            await run.run(coder, "go", run_config=config)
        assert coder_model.calls == ()
        (root,) = (await ledger.replay("thd_nosbx")).sessions
        assert root.status == "failed"


async def test_a_sandbox_agent_paused_for_approval_goes_on_in_the_same_sandbox_after_the_decision(
        fx_engine: Engine, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    DEPLOYED.clear()
    async with member_ledger(fx_engine.config, deployment, tenants, tmp_path) as (ledger, _, _):
        def coder(*steps: Any) -> SandboxAgent[Any]:  # built again for the resume, as a second process would
            return SandboxAgent(name="coder", model=ScriptedModel(list(steps)), tools=[deploy])

        first = coder(calls(("exec_command", {"cmd": "echo built > build.txt"}, "x1"), tokens=3),
                      calls(("deploy", {"branch": "main"}, "call_deploy"), tokens=3))
        run = await LedgerRun.open(ledger, thread_id="thd_sbxhitl", project_id="prj_oa", agent=first,
                                   sandbox=SandboxSpec(mode="new", sandbox_id="sbx_hitl", shutdown="pause"))
        config = RunConfig(sandbox=SandboxRunConfig(client=LedgerSandboxClient(ledger)))
        paused = await run.run(first, "build and deploy", run_config=config)
        assert [i.call_id for i in paused.interruptions] == ["call_deploy"]
        assert (await ledger.sandbox.get(sandbox_id="sbx_hitl")).sandbox.intent == "running"  # the session has not ended

        await decide(ledger, run.session_id, approve=True)
        after_model = ScriptedModel([calls(("exec_command", {"cmd": "cat build.txt"}, "x2"), tokens=3),
                                     says("deployed what was built", tokens=2)])
        after = SandboxAgent(name="coder", model=after_model, tools=[deploy])
        result = await run.resume(after, timeout=60, run_config=config)
        assert result.final_output == "deployed what was built" and DEPLOYED == ["main"]
        assert "built" in tool_outputs(after_model, 1)[-1]

        replay = await ledger.replay("thd_sbxhitl")
        assert {e.session_id for e in replay.execs} == {run.session_id}
        assert [e.argv[-1] for e in replay.execs if "build.txt" in e.argv[-1]] == ["echo built > build.txt", "cat build.txt"]
        await settled_view(ledger, "sbx_hitl", "paused")
