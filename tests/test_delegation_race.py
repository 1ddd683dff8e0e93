"""Delegation limits hold against any interleaving from two engine replicas: each race runs
at least 200 times, and the log is replayed afterwards to check what the replies claimed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentledger.engine.repository import Repository
from agentledger.handlers.config import EngineConfig
from agentledger.schemas.common import BLOCKING_STATUSES
from agentledger.schemas.events import Envelope, SessionCompleted, SessionFailed, SessionSpawned
from tests.races.delegation_width import AGENT, run_width_race, thread_with_active_root
from tests.replicas import Replicas, code, replay, started_pair

TRIALS = 200
TENANT = "tnt_deleg"
DONE = {"outcome": "succeeded", "text": "ok"}


@pytest.fixture
async def replicas(engine_config: EngineConfig) -> Any:
    async with started_pair(engine_config) as (a, b):
        yield Replicas(a, b, TENANT)


async def test_concurrent_spawns_fill_exactly_the_width(replicas: Replicas) -> None:
    await run_width_race(replicas, TRIALS)


async def test_complete_archive_and_spawn_at_once(replicas: Replicas) -> None:
    r = replicas
    await r.ok("project.create", project_id="prj_c", name="c")
    violations: list[str] = []

    def check(models: Repository, envelope: Envelope) -> None:
        if isinstance(envelope.data, SessionSpawned):
            thread = models.thread(envelope.tenant_id, envelope.boundary.split(".")[-2])
            parent = thread.sessions[envelope.data.parent_session_id]
            if parent.status not in ("active", "awaiting_hitl") or thread.status != "open":
                violations.append(f"spawn under {parent.session_id} in status {parent.status}/{thread.status}")

    outcomes: Counter[tuple[str, str, str]] = Counter()
    for trial in range(TRIALS):
        thread, root = await thread_with_active_root(r, "c", trial)
        done, archived, spawned = await r.race(
            ("session.complete", {"session_id": root, "summary": DONE}),
            ("thread.archive", {"thread_id": thread}),
            ("session.spawn", {"parent_session_id": root, "agent": AGENT}))
        outcomes[(code(done), code(archived), code(spawned))] += 1
    a = r.engines[0]
    assert a.store
    models = await replay(a.store, a.config, check)
    assert violations == []
    for trial in range(TRIALS):
        state = models.thread(TENANT, f"thd_c{trial}")
        if state.status == "archived":
            assert not state.blocking
            assert not any(s.status in BLOCKING_STATUSES for s in state.sessions.values())
    # the interleavings really varied: the spawn both won and lost
    assert {o[2] for o in outcomes} >= {"ok", "illegal_transition"}, outcomes


async def test_concurrent_handoffs_with_one_expected_version(replicas: Replicas) -> None:
    r = replicas
    await r.ok("project.create", project_id="prj_h", name="h")
    for trial in range(TRIALS):
        thread, source = f"thd_h{trial}", f"ses_h{trial}"
        await r.ok("thread.create", project_id="prj_h", thread_id=thread)
        await r.ok("session.create", thread_id=thread, session_id=source, owner=AGENT)
        replies = await r.race(*[("handoff.single", {"source_session_id": source, "expected_owner_version": 0,
                                                     "recipient": {"kind": "agent", "id": f"agt_{k}"}})
                                 for k in range(4)])
        assert Counter(code(x) for x in replies) == {"ok": 1, "version_conflict": 3}
        winner = next(x for x in replies if x.ok)
        assert winner.result is not None and winner.result.owner_version == 1
    a = r.engines[0]
    assert a.store
    models = await replay(a.store, a.config)
    for trial in range(TRIALS):
        source = models.thread(TENANT, f"thd_h{trial}").sessions[f"ses_h{trial}"]
        assert source.owner_version == 1 and len(source.previous_actors) == 1 and len(source.children) == 1


async def test_broadcast_source_ends_idle_exactly_once(replicas: Replicas) -> None:
    r = replicas
    await r.ok("project.create", project_id="prj_b", name="b")
    merges: Counter[str] = Counter()

    def count_merge(models: Repository, envelope: Envelope) -> None:
        if isinstance(envelope.data, (SessionCompleted, SessionFailed)):
            thread = models.thread(envelope.tenant_id, envelope.boundary.split(".")[-2])
            child = thread.sessions[envelope.data.session_id]
            if child.parent_session_id and thread.sessions[child.parent_session_id].status == "awaiting_merge":
                handoff = thread.handoffs[thread.edges[child.edge_id].handoff_id]  # type: ignore[index]
                if handoff.pending == [child.session_id]:
                    merges[child.parent_session_id] += 1

    for trial in range(TRIALS):
        thread, source = f"thd_b{trial}", f"ses_b{trial}"
        await r.ok("thread.create", project_id="prj_b", thread_id=thread)
        await r.ok("session.create", thread_id=thread, session_id=source, owner=AGENT)
        broadcast = await r.ok("handoff.broadcast", source_session_id=source, expected_owner_version=0,
                               recipients=[{"kind": "agent", "id": f"agt_{k}"} for k in range(3)])
        assert broadcast.result and broadcast.result.session_ids
        replies = await r.race(*[("session.complete" if i else "session.fail",
                                  {"session_id": s, **({"summary": DONE} if i else {})})
                                 for i, s in enumerate(broadcast.result.session_ids)])
        assert all(x.ok for x in replies), replies
    a = r.engines[0]
    assert a.store
    models = await replay(a.store, a.config, count_merge)
    for trial in range(TRIALS):
        source = models.thread(TENANT, f"thd_b{trial}").sessions[f"ses_b{trial}"]
        assert source.status == "idle" and merges[source.session_id] == 1
        assert source.merge_result is not None
        assert sorted(m.outcome for m in source.merge_result) == ["failed", "succeeded", "succeeded"]
