"""One client-chosen session id, first used at once in different threads from two replicas: exactly
one use is accepted, and the log holds it once (its event and its claim), in every trial."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.handlers.config import EngineConfig
from tests.races.session_ids import run_session_id_race
from tests.replicas import Replicas, started_pair

TRIALS = 150
TENANT = "tnt_sid"


@pytest.fixture
async def replicas(engine_config: EngineConfig) -> Any:
    async with started_pair(engine_config) as (a, b):
        yield Replicas(a, b, TENANT, seed=11)


async def test_one_session_id_first_used_in_three_threads_at_once(replicas: Replicas) -> None:
    await run_session_id_race(replicas, TRIALS)
