"""Model-based: hypothesis drives random sequences of commands against a real engine over NATS
and checks every reply against a small reference of the rules written apart from the engine
(tests/reference_rules.py). Each example runs in a fresh tenant; at its end the tenant's log is
replayed through the reference again, which must find no rule broken.

The state machine runs in a worker thread (hypothesis is synchronous); each command is sent on
the test's event loop, where the engine and the connection live."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from nats.aio.client import Client

from agentledger.engine.store import EventStore
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from tests.conftest import AGENT, Client_
from tests.reference_rules import RUNNING, Rules, replay

SETTINGS = settings(max_examples=40, stateful_step_count=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)
PROJECTS = {"prj_narrow": {"max_delegation_width": 2, "max_delegation_depth": 2}, "prj_wide": {}}
THREADS = ["thd_a", "thd_b", "thd_c"]
SESSIONS = [f"ses_{i}" for i in range(16)]
SANDBOXES = ["sbx_x", "sbx_y"]
POLICIES = ["destroy", "pause", "keep"]
DONE = {"outcome": "succeeded", "text": "done"}

pick = st.integers(min_value=0, max_value=63)  # an index into what exists so far
sandbox_specs = st.one_of(
    st.none(),
    st.builds(lambda p: {"mode": "new", "shutdown": p}, st.sampled_from(POLICIES)),
    st.builds(lambda s, p: {"mode": "continue", "sandbox_id": s, "shutdown": p},
              st.sampled_from(SANDBOXES), st.sampled_from(POLICIES)),
    st.builds(lambda s: {"mode": "inherit", "sandbox_id": s}, st.sampled_from(SANDBOXES)),
)
_tenants = itertools.count()


class LedgerMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    nc: Client
    config: EngineConfig
    seen: Counter[tuple[str, str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.tenant = f"tnt_model{next(_tenants)}"
        self.client = Client_(self.nc, self.config, tenant=self.tenant)
        self.rules = Rules()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def send(self, expected: str, command: str, **fields: Any) -> dict[str, Any]:
        reply = self._run(self.client.cmd(command, **fields))
        got = "ok" if reply["ok"] else reply["error"]["code"]
        self.seen[(command, got)] += 1
        if got == "illegal_transition" and reply["error"]["details"]["from"] == "in_use":
            self.seen[(command, "in_use")] += 1
        assert got == expected, f"{command} {fields}: the rules say {expected}, the engine said {reply}"
        return reply

    def session(self, i: int, *statuses: str) -> str:
        """Mostly a session in one of `statuses` (so commands reach deep states), otherwise any
        that exists (client ids and minted ones) or one that does not."""
        wanted = [s for s, x in self.rules.sessions.items() if x.status in statuses]
        known = wanted if wanted and i % 4 else [*self.rules.sessions, "ses_ghost"]
        return known[i % len(known)]

    @initialize()
    def setup(self) -> None:
        """A start worth exploring from: both projects, threads in each, one running session."""
        for project in sorted(PROJECTS):
            self.create_project(project)
        for thread, project in zip(THREADS, ["prj_narrow", "prj_wide", "prj_wide"], strict=True):
            self.create_thread(project, thread)
        self.sandbox_by_hand("sbx_x", "thd_a", 1)
        self.create_session("thd_a", "ses_0", None)
        self.create_session("thd_b", "ses_1", None)
        self.start(0)
        self.create_session("thd_a", "ses_2", {"mode": "continue", "sandbox_id": "sbx_x", "shutdown": "pause"})

    # -- projects, threads, sandboxes -----------------------------------------------------------
    @rule(project=st.sampled_from(sorted(PROJECTS)))
    def create_project(self, project: str) -> None:
        config = PROJECTS[project]
        self.send(self.rules.check_project_create(project), "project.create", project_id=project, name="p",
                  **({"config": config} if config else {}))
        self.rules.apply_project_create(project, config.get("max_delegation_depth", 4),
                                        config.get("max_delegation_width", 8))

    @rule(project=st.sampled_from(sorted(PROJECTS)), thread=st.sampled_from(THREADS))
    def create_thread(self, project: str, thread: str) -> None:
        if self.send(self.rules.check_thread_create(project, thread), "thread.create", project_id=project,
                     thread_id=thread)["ok"]:
            self.rules.apply_thread_create(project, thread)

    @rule(thread=st.sampled_from(THREADS))
    def archive_thread(self, thread: str) -> None:
        if self.send(self.rules.check_thread_archive(thread), "thread.archive", thread_id=thread)["ok"]:
            self.rules.apply_thread_archive(thread)

    @rule(thread=st.sampled_from(THREADS))
    def unarchive_thread(self, thread: str) -> None:
        if self.send(self.rules.check_thread_unarchive(thread), "thread.unarchive", thread_id=thread)["ok"]:
            self.rules.apply_thread_unarchive(thread)

    @rule(sandbox=st.sampled_from(SANDBOXES), thread=st.sampled_from([*THREADS, None]),
          destroy=st.integers(min_value=0, max_value=3))
    def sandbox_by_hand(self, sandbox: str, thread: str | None, destroy: int) -> None:
        """Now and then destroy one; otherwise (try to) create one, in a thread or in none."""
        if destroy == 0:
            if self.send(self.rules.check_sandbox_destroy(sandbox), "sandbox.destroy", sandbox_id=sandbox)["ok"]:
                self.rules.apply_sandbox_destroy(sandbox)
            return
        fields = {"thread_id": thread} if thread else {}
        if self.send(self.rules.check_sandbox_create(sandbox), "sandbox.create", sandbox_id=sandbox, **fields)["ok"]:
            self.rules.apply_sandbox_create(sandbox, thread)

    # -- sessions ---------------------------------------------------------------------------------
    def _bound(self, reply: dict[str, Any], spec: dict[str, Any] | None) -> dict[str, Any]:
        if spec is None:
            return {}
        return {"sandbox": reply["result"]["sandbox_id"], "owned": spec["mode"] != "inherit",
                "policy": spec.get("shutdown")}

    @rule(thread=st.sampled_from(THREADS), session=st.sampled_from(SESSIONS), spec=sandbox_specs)
    def create_session(self, thread: str, session: str, spec: dict[str, Any] | None) -> None:
        reply = self.send(self.rules.check_session_create(thread, session, spec), "session.create",
                          thread_id=thread, session_id=session, owner=AGENT, **({"sandbox": spec} if spec else {}))
        if reply["ok"]:
            self.rules.apply_session_create(thread, session, **self._bound(reply, spec))

    @rule(i=pick)
    def start(self, i: int) -> None:
        s = self.session(i, "idle")
        if self.send(self.rules.check_session_start(s), "session.start", session_id=s)["ok"]:
            self.rules.apply_session_start(s)

    def _end(self, i: int, how: str, outcome: str, **fields: Any) -> None:
        s = self.session(i, *RUNNING)
        if self.send(self.rules.check_running(s), f"session.{how}", session_id=s, **fields)["ok"]:
            self.rules.apply_end(s, outcome)

    @rule(i=pick)
    def complete(self, i: int) -> None:
        self._end(i, "complete", "completed", summary=DONE)

    @rule(i=pick)
    def fail(self, i: int) -> None:
        self._end(i, "fail", "failed")

    @rule(i=pick)
    def cancel(self, i: int) -> None:
        self._end(i, "cancel", "cancelled")

    @rule(i=pick, restore=st.booleans())
    def archive_or_restore(self, i: int, restore: bool) -> None:
        s = self.session(i, "archived" if restore else "idle", "failed")
        if restore:
            if self.send(self.rules.check_session_restore(s), "session.restore", session_id=s)["ok"]:
                self.rules.apply_session_restore(s)
        elif self.send(self.rules.check_session_archive(s), "session.archive", session_id=s)["ok"]:
            self.rules.apply_session_archive(s)

    @rule(i=pick, child=st.sampled_from(SESSIONS), fail_fast=st.booleans(), spec=sandbox_specs)
    def spawn(self, i: int, child: str, fail_fast: bool, spec: dict[str, Any] | None) -> None:
        parent = self.session(i, *RUNNING)
        reply = self.send(self.rules.check_spawn(parent, child, spec), "session.spawn", parent_session_id=parent,
                          session_id=child, agent=AGENT, failure_mode="fail_fast" if fail_fast else "delegate",
                          **({"sandbox": spec} if spec else {}))
        if reply["ok"]:
            self.rules.apply_spawn(parent, child, fail_fast, **self._bound(reply, spec))

    @rule(i=pick, stale=st.booleans(), recipients=st.integers(min_value=1, max_value=3))
    def handoff(self, i: int, stale: bool, recipients: int) -> None:
        s = self.session(i, "idle")
        current = self.rules.sessions[s].owner_version if s in self.rules.sessions else 0
        expected = current + 1 if stale else current
        actors = [{"kind": "agent", "id": f"agt_r{k}"} for k in range(recipients)]
        if recipients == 1:
            reply = self.send(self.rules.check_handoff(s, expected, 1), "handoff.single", source_session_id=s,
                              expected_owner_version=expected, recipient=actors[0])
            minted = [reply["result"]["session_id"]] if reply["ok"] else []
        else:
            reply = self.send(self.rules.check_handoff(s, expected, recipients), "handoff.broadcast",
                              source_session_id=s, expected_owner_version=expected, recipients=actors)
            minted = reply["result"]["session_ids"] if reply["ok"] else []
        if reply["ok"]:
            self.rules.apply_handoff(s, minted, recipients > 1, reply["result"]["handoff_id"])

    @invariant()
    def no_rule_broken(self) -> None:
        for thread in self.rules.threads:
            assert self.rules.broken(thread) == []

    def teardown(self) -> None:
        async def tenant_log() -> list[bytes]:
            store = EventStore(self.nc, self.config.stream)
            raws = await store.read_latest(self.config.subjects.events_all)
            return [r.data for r in raws if msgspec.json.decode(r.data)["tenant_id"] == self.tenant]

        assert replay(Rules(), self._run(tenant_log())) == []


@pytest.fixture
async def model_engine(engine_config: EngineConfig) -> AsyncIterator[Engine]:
    engine_config.process_manager = False  # sandboxes change only by the commands the model sends
    engine = Engine(engine_config)
    await engine.start()
    yield engine
    await engine.stop()


async def test_random_command_sequences_follow_the_reference_rules(model_engine: Engine, nc: Client) -> None:
    LedgerMachine.loop, LedgerMachine.nc, LedgerMachine.config = asyncio.get_running_loop(), nc, model_engine.config
    LedgerMachine.seen.clear()
    await asyncio.to_thread(run_state_machine_as_test, LedgerMachine, settings=SETTINGS)
    seen = LedgerMachine.seen
    print(f"model: {SETTINGS.max_examples} examples, {sum(seen.values())} commands checked: {sorted(seen.items())}")
    # the sequences reached deep states, not just refusals
    for outcome in [("session.spawn", "ok"), ("session.spawn", "capacity_exceeded"), ("session.complete", "ok"),
                    ("handoff.single", "ok"), ("handoff.broadcast", "ok"), ("thread.archive", "ok"),
                    ("thread.archive", "thread_not_empty")]:
        assert seen[outcome], (outcome, seen)
