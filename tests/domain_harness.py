"""Drive the pure decisions without a log: decide, then apply the event at the next position,
exactly as the engine does after a successful append."""

from __future__ import annotations

from typing import Any

import msgspec

from agentledger.engine.commands import SPECS
from agentledger.engine.context import Context
from agentledger.engine.ids import Minter
from agentledger.engine.outcomes import Accepted, Outcome
from agentledger.engine.project_model import ProjectState
from agentledger.engine.thread_model import ThreadState
from agentledger.schemas.commands import COMMANDS, Command
from agentledger.schemas.common import ProjectConfig
from agentledger.schemas.errors import DomainError
from agentledger.schemas.events import Envelope, ProjectCreated
from agentledger.schemas.sandboxes import ProviderCapabilities

ACTOR = {"kind": "user", "id": "usr_t"}


class Thread:
    def __init__(self, max_depth: int = 4, max_width: int = 8) -> None:
        self.project = ProjectState("tnt_x", "p.>", "prj_1")
        self._apply_to(self.project, ProjectCreated(project_id="prj_1", name="p", config=ProjectConfig(
            max_delegation_depth=max_depth, max_delegation_width=max_width)), "project.create")
        self.state = ThreadState("tnt_x", "t.>", "thd_1")
        self.catalog = {"local": ProviderCapabilities(), "nofork": ProviderCapabilities(fork=False, pause=False)}
        self.n = 0
        self.last: Any = None  # the result the last accepted or unchanged command answered
        self.run("thread.create", thread_id="thd_1", project_id="prj_1")

    def _apply_to(self, model: Any, event: Any, command: str) -> None:
        pos = model.position + 1
        model.apply(Envelope(event_id=f"e{pos}", type=type(event).__struct_config__.tag, tenant_id="tnt_x",
                             boundary=model.boundary, command=command, command_id=f"c{pos}", correlation_id="c",
                             actor=msgspec.convert(ACTOR, type=Any), at="now", data=event), pos)

    def decide(self, name: str, sandbox: Any = None, **fields: Any) -> Outcome:
        """`sandbox` is the sandbox state a binding refers to (the service reads it from the log)."""
        cmd: Command = msgspec.convert({"actor": ACTOR, **fields}, type=COMMANDS[name])
        self.n += 1
        mint = Minter("tnt_x", f"cmd{self.n}")
        spec = SPECS[type(cmd)]
        cmd = spec.with_id(cmd, mint)
        ctx = Context(mint=mint, catalog=self.catalog, project=self.project, sandbox=sandbox)
        outcome = spec.decide(self.state, cmd, ctx)
        self.last = spec.result(outcome.event) if isinstance(outcome, Accepted) else outcome.result
        return outcome

    def run(self, name: str, sandbox: Any = None, **fields: Any) -> Outcome:
        outcome = self.decide(name, sandbox, **fields)
        if isinstance(outcome, Accepted):
            self._apply_to(self.state, outcome.event, name)
        return outcome

    def error(self, name: str, sandbox: Any = None, **fields: Any) -> Any:
        before = self.state.position
        try:
            self.decide(name, sandbox, **fields)
        except DomainError as e:
            assert self.state.position == before
            return e.error
        raise AssertionError(f"{name} {fields} was accepted")

    def status(self, session_id: str) -> str:
        return self.state.sessions[session_id].status
