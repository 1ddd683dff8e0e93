"""Every command of the contract is complete in its one place (engine/commands.py), and a repeat of
any command id answers exactly what the first attempt answered."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

from agentledger.engine.commands import SPECS
from agentledger.engine.service import ENGINE
from agentledger.engine.snapshots import MODELS
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.results import Result
from tests.conftest import AGENT, USER, Client_
from tests.sandbox_support import eventually


@pytest.fixture
def engine_config(engine_config: EngineConfig) -> EngineConfig:
    engine_config.exec_reply_within = 0.2  # no effect handler runs here: an exec's reply says `running`
    return engine_config


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_declares_what_it_needs(name: str) -> None:
    command = COMMANDS[name]
    spec = SPECS[command]
    assert (command.__doc__ or "").strip(), f"{name}: its docstring's first line is its help"
    assert issubclass(command.RESULT, Result)
    hints = typing.get_type_hints(spec.result)
    assert hints["return"] is command.RESULT, f"{name}: the spec's result function must build {command.RESULT.__name__}"
    applied = {t for model in MODELS for t in model.projected_types}
    events = typing.get_args(hints["e"]) or (hints["e"],)
    assert set(events) <= applied, f"{name}: every event its result reads is applied by a boundary model"
    if spec.new_id is not None:
        field, prefix = spec.new_id
        assert field in command.__struct_fields__ and prefix.endswith("_")


class Repeats:
    """Sends each command twice with one command id, and keeps what was answered."""

    def __init__(self, client: Client_, engine: Engine) -> None:
        self.client, self.engine = client, engine
        self.sent: set[str] = set()

    async def twice(self, name: str, /, by_engine: bool = False, **fields: Any) -> dict[str, Any]:
        command_id = f"rep-{name}-{len(self.sent)}"
        replies = []
        for _ in range(2):
            if by_engine:  # what the effect handler sends, in process
                assert self.engine.commands is not None
                body = msgspec.json.encode({"actor": {"kind": "system", "id": "sys_sandbox_effects"},
                                            "command_id": command_id, **fields})
                reply = self.engine.commands.execute(self.client.tenant, name, body, ENGINE)
                replies.append(msgspec.json.decode(msgspec.json.encode(await reply)))
            else:
                replies.append(await self.client.cmd(name, command_id=command_id, **fields))
        first, again = replies
        assert first["ok"], first
        assert again == first, f"{name}: the repeat answered differently"
        self.sent.add(name)
        return first


async def test_a_repeat_of_every_command_answers_exactly_its_first_reply(client: Client_, engine: Engine) -> None:
    r = Repeats(client, engine)
    await r.twice("project.create", project_id="prj_rep", name="repeats")
    await r.twice("thread.create", project_id="prj_rep", thread_id="thd_rep")
    await r.twice("session.create", thread_id="thd_rep", session_id="ses_lead", owner=AGENT)
    await r.twice("session.start", session_id="ses_lead")
    await r.twice("session.request_input", session_id="ses_lead", prompt="which branch?")
    await r.twice("session.provide_input", session_id="ses_lead")
    await r.twice("session.spawn", parent_session_id="ses_lead", session_id="ses_kid", agent=AGENT)
    await r.twice("session.fail", session_id="ses_kid", reason="broke")
    await r.twice("session.archive", session_id="ses_kid")
    await r.twice("session.restore", session_id="ses_kid")
    await r.twice("session.cancel", session_id="ses_lead")
    single = await r.twice("handoff.single", source_session_id="ses_lead", recipient=AGENT, expected_owner_version=0)
    await r.twice("session.complete", session_id=single["result"]["session_id"],
                  summary={"outcome": "succeeded", "text": "done"})
    await r.twice("handoff.broadcast", source_session_id="ses_lead", expected_owner_version=1,
                  recipients=[USER, {"kind": "agent", "id": "agt_other"}])
    await r.twice("thread.create", project_id="prj_rep", thread_id="thd_gone")
    await r.twice("thread.archive", thread_id="thd_gone")
    await r.twice("thread.unarchive", thread_id="thd_gone")
    await r.twice("thread.delete", thread_id="thd_gone")
    created = await r.twice("sandbox.create", sandbox_id="sbx_rep")
    await r.twice("sandbox.report_outcome", by_engine=True, sandbox_id="sbx_rep", op="create", ok=True,
                  location="/sandboxes/sbx_rep", request_position=created["position"])
    paused = await r.twice("sandbox.pause", sandbox_id="sbx_rep", reason="idle")
    await r.twice("sandbox.report_outcome", by_engine=True, sandbox_id="sbx_rep", op="pause", ok=True,
                  request_position=paused["position"])
    await r.twice("sandbox.resume", sandbox_id="sbx_rep")
    await r.twice("sandbox.fork", sandbox_id="sbx_rep", new_sandbox_id="sbx_copy")
    await r.twice("sandbox.destroy", sandbox_id="sbx_copy")
    await client.ok("session.create", thread_id="thd_rep", session_id="ses_runner", owner=AGENT,
                    sandbox={"mode": "new", "sandbox_id": "sbx_run"})

    async def requested() -> bool:
        return bool((await client.qry("sandbox.get", sandbox_id="sbx_run"))["ok"])
    await eventually(requested, "the process manager asked for the sandbox")
    running = await r.twice("sandbox.exec", sandbox_id="sbx_run", session_id="ses_runner", argv=["true"])
    assert running["result"]["status"] == "running"  # no effect handler here: its outcome is reported below
    outcome = {"exit_code": 0, "duration_ms": 3}
    await r.twice("sandbox.report_outcome", by_engine=True, sandbox_id="sbx_run", op="exec", ok=True, exec=outcome,
                  request_position=running["position"])
    assert r.sent == set(COMMANDS), f"not exercised: {sorted(set(COMMANDS) - r.sent)}"
