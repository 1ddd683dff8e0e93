"""The same races on a 3-node cluster with a replicated (R3) stream, the two engines talking to
different nodes. On R3 the server only serialises writers that send the identical filter
string, and reports a racing check as 10164 rather than 10071; both are covered here."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.schemas.replies import CommandReply
from tests.conftest import AGENT, config_for, start_cluster
from tests.races.archive_gate import run_gate_race
from tests.races.delegation_width import run_width_race
from tests.races.session_ids import run_session_id_race
from tests.replicas import Replicas, body, code, race_seed, replay

TRIALS = 200


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory, deployment: Deployment) -> AsyncIterator[list[EmbeddedNats]]:
    nodes = await start_cluster(deployment, [Path(tmp_path_factory.mktemp(f"n{i}")) for i in range(3)], "ledger")
    yield nodes
    for n in nodes:
        await n.stop()


@pytest.fixture
async def r3_engines(cluster: list[EmbeddedNats], deployment: Deployment) -> AsyncIterator[tuple[Engine, Engine]]:
    name = uuid.uuid4().hex[:8]
    configs = [config_for(deployment, node.url, prefix=f"c{name}", stream=f"R3_{name}", replicas=3,
                            process_manager=False) for node in cluster[:2]]
    a, b = Engine(configs[0]), Engine(configs[1])
    await a.start(serve=False)
    await b.start(serve=False)
    assert a.store is not None
    info = await a.store.js.stream_info(configs[0].stream)
    assert info.config.num_replicas == 3 and info.cluster is not None and len(info.cluster.replicas or []) == 2
    yield a, b
    await a.stop()
    await b.stop()


async def test_archive_gate_holds_on_a_replicated_stream(r3_engines: tuple[Engine, Engine]) -> None:
    await run_gate_race(*r3_engines, TRIALS)


async def reads_behind_the_follower(cluster: list[EmbeddedNats], a: Engine, b: Engine) -> None:
    """Place `b` (connected to the second node) where its loads can lag its live follower: the
    stream led by another node, so b's direct gets are answered by a follower of the stream on
    b's node, and b's follower (an ordered consumer, placed on a random node) on the leader."""
    assert a.nc and a.store and b.store
    stream = a.config.stream
    for _ in range(20):
        leader = (await a.store.js.stream_info(stream)).cluster.leader  # type: ignore[union-attr]
        if leader != "n1":
            break
        await a.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
        await asyncio.sleep(0.5)
    assert leader != "n1", "the second node kept the stream's leadership"
    for _ in range(60):
        assert b.follower is not None
        if (await b.follower.consumer_info()).cluster.leader == leader:  # type: ignore[union-attr]
            return
        await b.follow_again()
    raise AssertionError("the follower was never placed on the stream leader")


async def archive(engine: Engine, thread: str, delay: float) -> CommandReply:
    await asyncio.sleep(delay)
    assert engine.commands
    return await engine.commands.execute("tnt_lag", "thread.archive", body(thread_id=thread))


async def test_archive_gate_holds_on_a_replica_whose_loads_lag_its_follower(
        cluster: list[EmbeddedNats], r3_engines: tuple[Engine, Engine]) -> None:
    """`session.start` always goes to the replica that has not seen the thread: its load can come
    back without the session its follower already delivered (docs/architecture.md, "Live events
    apply in order"), and the archive racing it must not be applied over that hole."""
    a, b = r3_engines
    await reads_behind_the_follower(cluster, a, b)
    assert a.commands and b.commands
    rng = random.Random(race_seed(31))
    await a.commands.execute("tnt_lag", "project.create", body(project_id="prj_l", name="lag"))
    won: dict[str, str] = {}
    for trial in range(TRIALS):
        thread, session = f"thd_l{trial}", f"ses_l{trial}"
        assert (await a.commands.execute("tnt_lag", "thread.create", body(project_id="prj_l", thread_id=thread))).ok
        assert (await a.commands.execute("tnt_lag", "session.create",
                                         body(thread_id=thread, session_id=session, owner=AGENT))).ok

        archived, started = await asyncio.gather(
            archive(a, thread, rng.random() * 0.004),  # b first reads the session's claim, then the thread
            b.commands.execute("tnt_lag", "session.start", body(session_id=session)))
        assert (code(archived), code(started)) in (("ok", "thread_closed"), ("thread_not_empty", "ok")), \
            (trial, archived, started)
        won[thread] = "archive" if archived.ok else "start"
    assert set(won.values()) == {"archive", "start"}, Counter(won.values())
    assert a.store
    models = await replay(a.store, a.config)  # the log agrees with the replies
    for thread, winner in won.items():
        state = models.thread("tnt_lag", thread)
        assert (state.status, state.sessions[f"ses_l{thread[5:]}"].status) == (
            ("archived", "idle") if winner == "archive" else ("open", "active"))


async def test_width_cap_holds_on_a_replicated_stream(r3_engines: tuple[Engine, Engine]) -> None:
    await run_width_race(Replicas(*r3_engines, tenant="tnt_r3"), TRIALS)


async def test_session_ids_stay_unique_on_a_replicated_stream(r3_engines: tuple[Engine, Engine]) -> None:
    await run_session_id_race(Replicas(*r3_engines, "tnt_sid"), 60)
