"""Two engine replicas in one test, and a replay of the whole log that checks invariants as it goes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from agentledger.engine import codec
from agentledger.engine.repository import Repository
from agentledger.engine.store import EventStore
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.schemas.events import Envelope
from agentledger.schemas.replies import CommandReply
from tests.conftest import USER


def race_seed(default: int) -> int:
    """The seed of a race's jitter and replica choices: `default`, unless AGENTLEDGER_RACE_SEED
    gives another (the soak, tests/soak.py, sets one per trial and keeps it with a failing trial)."""
    return int(os.environ.get("AGENTLEDGER_RACE_SEED", default))


def body(**fields: Any) -> bytes:
    return msgspec.json.encode({"actor": USER, **fields})


@contextlib.asynccontextmanager
async def started_pair(config: EngineConfig) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engine replicas on one config, without request subscriptions (the tests call them directly)."""
    a, b = Engine(config), Engine(config)
    await a.start(serve=False)
    await b.start(serve=False)
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


class Replicas:
    def __init__(self, a: Engine, b: Engine, tenant: str, seed: int = 7) -> None:
        self.engines = (a, b)
        self.tenant = tenant
        self.rng = random.Random(race_seed(seed))

    async def send(self, engine: Engine, command: str, **fields: Any) -> CommandReply:
        await asyncio.sleep(self.rng.random() * 0.002)
        assert engine.commands is not None
        return await engine.commands.execute(self.tenant, command, body(**fields))

    async def ok(self, command: str, **fields: Any) -> CommandReply:
        reply = await self.send(self.rng.choice(self.engines), command, **fields)
        assert reply.ok, reply
        return reply

    async def race(self, *calls: tuple[str, dict[str, Any]]) -> list[CommandReply]:
        """Send every call at once, each to a randomly chosen replica."""
        return list(await asyncio.gather(*(self.send(self.rng.choice(self.engines), name, **fields)
                                           for name, fields in calls)))

    @property
    def conflicts(self) -> int:
        return sum(e.commands.conflicts for e in self.engines if e.commands)


def code(reply: CommandReply) -> str:
    return "ok" if reply.ok else type(reply.error).__struct_config__.tag  # type: ignore[no-any-return]


async def replay(store: EventStore, config: EngineConfig,
                 before_apply: Callable[[Repository, Envelope], None] | None = None) -> Repository:
    """Rebuild every model from the log alone, calling `before_apply` on each event first."""
    models = Repository(config.subjects)
    for raw in await store.read_latest(config.subjects.events_all):
        envelope = codec.decode(raw.data)
        if before_apply is not None:
            before_apply(models, envelope)
        models.apply(envelope, raw.position)
    return models
