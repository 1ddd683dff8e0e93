"""The bounded model cache: a replica that evicted a boundary decides on it again correctly under a
race, loads from a snapshot plus the tail give what a replay of the whole log gives, and a start
replays nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentledger.engine import snapshots
from agentledger.engine.project_model import ProjectState
from agentledger.engine.sandbox_model import SandboxState
from agentledger.engine.thread_model import ThreadState
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.projections.views import thread_view
from tests.replicas import Replicas, code, replay, started_pair

TRIALS = 80
TENANT = "tnt_cache"
AGENT = {"kind": "agent", "id": "agt_c"}
DONE = {"outcome": "succeeded", "text": "ok"}


@pytest.fixture
def small_cache(engine_config: EngineConfig) -> EngineConfig:
    engine_config.cache_size = 2
    engine_config.snapshot_every = 3
    return engine_config


@pytest.fixture
async def replicas(small_cache: EngineConfig) -> Any:
    async with started_pair(small_cache) as (a, b):
        yield Replicas(a, b, TENANT, seed=5)


def test_snapshot_field_lists_match_the_models() -> None:
    for kind in (ThreadState, ProjectState, SandboxState):
        assert snapshots.state_fields(kind(TENANT, "x.>", "x")) == set(snapshots.FIELDS[kind]), kind


async def _evicted_everywhere(r: Replicas, thread: str, trial: int) -> None:
    """Use other boundaries on both replicas until neither holds `thread` any more."""
    for n in range(2):
        for engine in r.engines:
            await r.send(engine, "thread.create", project_id="prj_c", thread_id=f"thd_f{trial}x{n}{id(engine) % 97}")
    for engine in r.engines:
        assert engine.config.subjects.thread_filter(TENANT, thread) not in engine.models


async def test_evicted_boundaries_decide_again_under_races(replicas: Replicas) -> None:
    r = replicas
    width = 3
    await r.ok("project.create", project_id="prj_c", name="c", config={"max_delegation_width": width})
    for trial in range(TRIALS):
        thread, root = f"thd_c{trial}", f"ses_c{trial}"
        await r.ok("thread.create", project_id="prj_c", thread_id=thread)
        await r.ok("session.create", thread_id=thread, session_id=root, owner=AGENT)
        await r.ok("session.start", session_id=root)
        await _evicted_everywhere(r, thread, trial)
        replies = await r.race(*[("session.spawn", {"parent_session_id": root, "agent": AGENT})] * 5)
        codes = Counter(code(x) for x in replies)
        assert codes == {"ok": width, "capacity_exceeded": 5 - width}, (trial, codes)
        await _evicted_everywhere(r, thread, 1000 + trial)
        done, archived = await r.race(("session.complete", {"session_id": root, "summary": DONE}),
                                      ("thread.archive", {"thread_id": thread}))
        # the archive gate: the thread archives only if it saw the root (and its children) done
        assert done.ok, done
        assert archived.ok or code(archived) == "thread_not_empty", archived

    a = r.engines[0]
    assert a.store
    models = await replay(a.store, a.config)
    for trial in range(TRIALS):
        state = models.thread(TENANT, f"thd_c{trial}")
        assert len(state.sessions[f"ses_c{trial}"].children) == width
        assert state.status != "archived" or not state.blocking, (trial, state.blocking)
    for engine in r.engines:
        assert engine.models.evictions > 0 and engine.models.loads > 0 and len(engine.models) <= 2
    assert r.conflicts > 0


async def test_load_from_snapshot_and_tail_equals_replay(small_cache: EngineConfig) -> None:
    first = Engine(small_cache)
    await first.start(serve=False)
    r = Replicas(first, first, TENANT)
    await r.ok("project.create", project_id="prj_c", name="c")
    await r.ok("thread.create", project_id="prj_c", thread_id="thd_s")
    await r.ok("session.create", thread_id="thd_s", session_id="ses_s", owner=AGENT)
    await r.ok("session.start", session_id="ses_s")
    for n in range(20):
        await r.ok("session.request_input" if n % 2 == 0 else "session.provide_input", session_id="ses_s",
                   **({"prompt": "?"} if n % 2 == 0 else {}))
    await first.stop()

    second = Engine(small_cache)
    await second.start(serve=False)
    try:
        assert len(second.models) == 0  # the start replayed nothing
        assert second.store and second.models.snapshots
        boundary = small_cache.subjects.thread_filter(TENANT, "thd_s")
        data = await second.models.snapshots.get(boundary)
        assert data is not None
        snap = ThreadState(TENANT, boundary, "thd_s")
        assert snapshots.restore(snap, data) and snap.position > 0
        tail = await second.store.read(boundary, after=snap.position)
        assert len(tail) <= small_cache.snapshot_every
        loaded = await second.models.loaded(second.store, second.models.thread(TENANT, "thd_s"))
        replayed = (await replay(second.store, small_cache)).thread(TENANT, "thd_s")
        assert thread_view(loaded) == thread_view(replayed) and loaded.position == replayed.position
        assert list(loaded.commands) == list(replayed.commands)[-len(loaded.commands):]
        # a command id from before the snapshot is still answered as a repeat
        created = next(iter(replayed.commands))
        again = await r.send(second, "thread.create", command_id=created, project_id="prj_c", thread_id="thd_s")
        assert again.ok and again.position == replayed.commands[created].position
    finally:
        await second.stop()
