"""The archive gate under real concurrency: two engine replicas, each with its own connection
and its own models, receive `thread.archive` and `session.start` / `session.create` for the
same thread at the same moment. The log is then replayed from scratch (the replies are not
trusted) to show that no archived thread holds a session in a blocking status, and every
reply is checked against what the log recorded."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from tests.conftest import AGENT
from tests.races.archive_gate import TENANT, run_gate_race
from tests.replicas import body, replay, started_pair

TRIALS = 240


@pytest.fixture
async def two_engines(engine_config: EngineConfig) -> Any:
    async with started_pair(engine_config) as pair:
        yield pair


async def test_archive_gate_holds_across_two_replicas(two_engines: tuple[Engine, Engine]) -> None:
    await run_gate_race(*two_engines, TRIALS)


async def test_replicas_behind_one_queue_group_share_commands(engine_config: EngineConfig) -> None:
    """The full path: two served engines in one queue group, a client racing archive and start."""
    import nats

    a, b = Engine(engine_config), Engine(engine_config)
    await a.start()
    await b.start()
    nc = await nats.connect(servers=[engine_config.nats_url], user_credentials=str(engine_config.creds))
    try:
        prefix = engine_config.prefix

        async def cmd(command: str, /, **fields: Any) -> dict[str, Any]:
            msg = await nc.request(f"{prefix}.cmd.{TENANT}.{command}", body(**fields), timeout=5)
            return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]

        await cmd("project.create", project_id="prj_q", name="q")
        for trial in range(40):
            thread, session = f"thd_q{trial}", f"ses_q{trial}"
            await cmd("thread.create", project_id="prj_q", thread_id=thread)
            await cmd("session.create", thread_id=thread, session_id=session, owner=AGENT)
            archive, start = await asyncio.gather(cmd("thread.archive", thread_id=thread),
                                                  cmd("session.start", session_id=session))
            assert archive["ok"] != start["ok"], (archive, start)
        assert a.store
        models = await replay(a.store, engine_config)
        for trial in range(40):
            state = models.thread(TENANT, f"thd_q{trial}")
            assert state.status == "open" or not state.blocking
    finally:
        await nc.close()
        await a.stop()
        await b.stop()
