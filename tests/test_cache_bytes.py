"""The model cache is bounded by bytes as well as by count: boundaries with big summaries push the
least recently used out once their estimated size passes `cache_bytes`, and an evicted thread
loads again whole. Waiting for the follower to reach a position costs one wake-up per waiter."""

from __future__ import annotations

import asyncio

from agentledger.engine import snapshots
from agentledger.engine.repository import Repository
from agentledger.engine.store import RawEvent
from agentledger.engine.subjects import Subjects
from agentledger.handlers.config import EngineConfig
from tests.conftest import AGENT, Client_

BIG = {"outcome": "succeeded", "text": "s" * 4000, "deliverables": ["d" * 1900] * 30}  # about 60 KB


async def test_big_summaries_are_evicted_by_bytes_and_load_again_whole(engine_config: EngineConfig) -> None:
    from agentledger.handlers.app import Engine

    engine_config.cache_bytes = 1_000_000
    engine = Engine(engine_config)
    await engine.start()
    try:
        client = Client_(engine.nc, engine_config)
        await client.ok("project.create", project_id="prj_b", name="b")
        threads = [f"thd_b{t}" for t in range(8)]
        for thread in threads:
            await client.ok("thread.create", project_id="prj_b", thread_id=thread)
            for s in range(4):  # about 240 KB of summaries per thread
                sid = f"ses_{thread[4:]}x{s}"
                await client.ok("session.create", thread_id=thread, session_id=sid, owner=AGENT)
                await client.ok("session.start", session_id=sid)
                await client.ok("session.complete", session_id=sid, summary=BIG)
        models = engine.models
        assert models.evictions > 0 and len(models) < 1 + 2 * len(threads)  # project, threads, ...
        assert models.bytes <= engine_config.cache_bytes
        held = [m for m in models.cached() if models.size_of(m) is not None]
        assert sum(models.size_of(m) or 0 for m in held) == models.bytes
        for model in held:  # each estimate is a measure of the model at or before its current state
            assert 0 < (models.size_of(model) or 0) <= len(snapshots.encode(model))
        # the first thread was evicted long ago: it loads again, with every summary
        first = engine_config.subjects.thread_filter("tnt_acme", threads[0])
        assert first not in models
        for s in range(4):
            session = (await client.qry("session.get", session_id=f"ses_b0x{s}"))["result"]["session"]
            assert session["status"] == "idle" and session["summary"] == BIG
        assert models.bytes <= engine_config.cache_bytes
    finally:
        await engine.stop()


async def test_a_model_bigger_than_the_bound_stays_while_it_is_the_one_in_use(engine_config: EngineConfig) -> None:
    from agentledger.handlers.app import Engine

    engine_config.cache_bytes = 100_000
    engine = Engine(engine_config)
    await engine.start()
    try:
        client = Client_(engine.nc, engine_config)
        await client.setup_thread("prj_o", "thd_o")
        for s in range(3):
            await client.ok("session.create", thread_id="thd_o", session_id=f"ses_o{s}", owner=AGENT)
            await client.ok("session.start", session_id=f"ses_o{s}")
            await client.ok("session.complete", session_id=f"ses_o{s}", summary=BIG)
        thread = engine.models.thread("tnt_acme", "thd_o")
        assert list(engine.models.cached()) == [thread]  # everything else went; it stays
        assert (engine.models.size_of(thread) or 0) > engine_config.cache_bytes
    finally:
        await engine.stop()


async def test_many_waiters_cost_one_wake_each_and_given_up_ones_are_dropped() -> None:
    models = Repository(Subjects("t"), cache_size=10)
    far = [asyncio.ensure_future(models.wait_for(2**53 - 1, 0.05)) for _ in range(500)]
    near = [asyncio.ensure_future(models.wait_for(p, 5.0)) for p in (3, 1, 2, 3)]
    await asyncio.sleep(0)
    for position in (1, 2):
        models.follow(RawEvent(position, f"t.evt.tnt_x.thr.thd_x{position}.thread.created.prj_x", b""))
    assert await asyncio.gather(near[1], near[2]) == [True, True]
    assert not near[0].done() and not near[3].done()
    assert await asyncio.gather(*far) == [False] * 500
    models.follow(RawEvent(3, "t.evt.tnt_x.thr.thd_x.session.created", b""))
    assert await asyncio.gather(*near) == [True] * 4
    waiting, kept = models.waiters
    assert waiting == 0 and kept <= 64  # the far ones are not kept
    assert await models.wait_for(3, 0.0) is True  # already there: no wait at all
