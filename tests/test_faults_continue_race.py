"""One sandbox, one holder: sessions racing to `continue` the same sandbox from two engine
replicas. Every claim on a sandbox is decided by its own thread's boundary, so at most one
wins while the sandbox is held, and a claim from another thread never wins. The log is replayed
afterwards by a checker written here (not the engine's models) that tracks who holds each
sandbox and flags any claim made while another session held it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import pytest

from agentledger.engine.store import EventStore
from agentledger.handlers.config import EngineConfig
from tests.replicas import Replicas, code, started_pair

TRIALS = 200
TENANT = "tnt_cont"
AGENT = {"kind": "agent", "id": "agt_c"}
DONE = {"outcome": "succeeded", "text": "ok"}


@pytest.fixture
async def replicas(engine_config: EngineConfig) -> Any:
    engine_config.process_manager = False  # the sandbox boundary is driven by hand here
    async with started_pair(engine_config) as (a, b):
        yield Replicas(a, b, TENANT, seed=11)


def continue_(sandbox_id: str) -> dict[str, Any]:
    return {"mode": "continue", "sandbox_id": sandbox_id, "shutdown": "pause"}


async def claims_in_log(store: EventStore, config: EngineConfig) -> list[str]:
    """Replay: a session holds an owned sandbox from its binding until its run ends; a `continue`
    while another session holds it, or from a thread other than the sandbox's, is a violation."""
    home: dict[str, str | None] = {}
    holder: dict[str, str | None] = {}
    owned_by: dict[str, str] = {}
    violations: list[str] = []
    for raw in await store.read_latest(config.subjects.events_all):
        event = msgspec.json.decode(raw.data)
        data, thread = event["data"], event["boundary"].split(".")[-2]
        kind = event["type"]
        if kind == "sandbox.create_requested":
            home[data["sandbox_id"]] = data.get("thread_id")
        elif kind in ("session.created", "session.spawned") and data.get("sandbox"):
            binding = data["sandbox"]
            sbx = binding["sandbox_id"]
            if binding["mode"] == "continue":
                if home.get(sbx) != thread:
                    violations.append(f"{data['session_id']} continued {sbx} of {home.get(sbx)} from {thread}")
                if holder.get(sbx) is not None:
                    violations.append(f"{data['session_id']} continued {sbx} held by {holder[sbx]}")
            if binding["owned"]:
                holder[sbx], owned_by[data["session_id"]] = data["session_id"], sbx
        elif kind in ("session.completed", "session.failed", "session.cancelled"):
            sbx = owned_by.get(data["session_id"])
            if sbx is not None and holder.get(sbx) == data["session_id"]:
                holder[sbx] = None
    return violations


async def test_one_sandbox_is_never_continued_by_two_sessions_at_once(replicas: Replicas) -> None:
    r = replicas
    await r.ok("project.create", project_id="prj_c", name="c")
    outcomes: Counter[str] = Counter()
    for trial in range(TRIALS):
        thread, other, sbx = f"thd_c{trial}", f"thd_o{trial}", f"sbx_c{trial}"
        await r.ok("thread.create", project_id="prj_c", thread_id=thread)
        await r.ok("thread.create", project_id="prj_c", thread_id=other)
        await r.ok("sandbox.create", sandbox_id=sbx, thread_id=thread)
        await r.ok("session.create", thread_id=thread, session_id=f"ses_p{trial}", owner=AGENT)
        await r.ok("session.start", session_id=f"ses_p{trial}")
        calls: list[tuple[str, dict[str, Any]]] = [
            ("session.create", {"thread_id": thread, "session_id": f"ses_a{trial}", "owner": AGENT,
                                "sandbox": continue_(sbx)}),
            ("session.create", {"thread_id": thread, "session_id": f"ses_b{trial}", "owner": AGENT,
                                "sandbox": continue_(sbx)}),
            ("session.spawn", {"parent_session_id": f"ses_p{trial}", "session_id": f"ses_k{trial}", "agent": AGENT,
                               "sandbox": continue_(sbx)}),
            ("session.create", {"thread_id": other, "session_id": f"ses_x{trial}", "owner": AGENT,
                                "sandbox": continue_(sbx)}),
        ]
        if trial % 2:
            # the first holder's run ending races the claims: a claim may win only after it
            first = await r.ok("session.spawn", parent_session_id=f"ses_p{trial}", session_id=f"ses_h{trial}",
                               agent=AGENT, sandbox=continue_(sbx))
            assert first.ok
            calls.append(("session.complete", {"session_id": f"ses_h{trial}", "summary": DONE}))
        replies = await r.race(*calls)
        codes = [code(x) for x in replies]
        assert codes[3] == "invalid_command", replies[3]  # another thread's sandbox: never
        winners = [c for c in codes[:3] if c == "ok"]
        assert len(winners) <= 1, replies
        assert all(c in ("ok", "illegal_transition") for c in codes[:3]), replies
        for x in replies[:3]:
            if not x.ok:
                assert x.error is not None and x.error.details.from_ == "in_use"  # type: ignore[union-attr]
        if trial % 2 == 0:
            assert len(winners) == 1  # nobody held it: exactly one claim wins
        else:
            assert codes[4] == "ok"
            if winners:
                claim = next(x for x in replies[:3] if x.ok)
                assert claim.position is not None and replies[4].position is not None
                assert claim.position > replies[4].position
        outcomes["won" if winners else "refused"] += 1
    a = r.engines[0]
    assert a.store
    assert await claims_in_log(a.store, a.config) == []
    assert outcomes["won"] > TRIALS // 2, outcomes
    assert r.conflicts > 0
    print(f"continue race: {TRIALS} trials, {outcomes}, stale appends refused: {r.conflicts}")
