"""The same races on a 3-node cluster with a replicated (R3) stream, the two engines talking to
different nodes. On R3 the server only serialises writers that send the identical filter
string, and reports a racing check as 10164 rather than 10071; both are covered here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.nats_server import EmbeddedNats
from tests.conftest import config_for, start_cluster
from tests.races.archive_gate import run_gate_race
from tests.races.delegation_width import run_width_race
from tests.races.session_ids import run_session_id_race
from tests.replicas import Replicas

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


async def test_width_cap_holds_on_a_replicated_stream(r3_engines: tuple[Engine, Engine]) -> None:
    await run_width_race(Replicas(*r3_engines, tenant="tnt_r3"), TRIALS)


async def test_session_ids_stay_unique_on_a_replicated_stream(r3_engines: tuple[Engine, Engine]) -> None:
    await run_session_id_race(Replicas(*r3_engines, "tnt_sid"), 60)
