"""Fixtures: one real nats-server for the whole run (embedded, as the engine uses it), a fresh
stream name per test so tests never see each other's events, and engines on top."""

from __future__ import annotations

import itertools
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client

from engine.nats_server import EmbeddedNats, free_port
from handlers.app import Engine, EngineConfig

_counter = itertools.count()
MONITOR_PORT: list[int] = []  # the session server's monitoring port, for failure reports


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), port=free_port(), http_port=free_port())
    await server.start()
    MONITOR_PORT.append(server.http_port or 0)
    yield server
    await server.stop()


@pytest.fixture
def engine_config(nats_server: EmbeddedNats) -> EngineConfig:
    """A private stream and subject prefix per test."""
    n = next(_counter)
    return EngineConfig(nats_url=nats_server.url, prefix=f"t{n}x{uuid.uuid4().hex[:6]}", stream=f"LEDGER_T{n}")


@pytest.fixture
async def engine(engine_config: EngineConfig) -> AsyncIterator[Engine]:
    eng = Engine(engine_config)
    await eng.start()
    yield eng
    await eng.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    conn = await nats.connect(servers=[nats_server.url])
    yield conn
    await conn.close()


USER = {"kind": "user", "id": "usr_tester"}
AGENT = {"kind": "agent", "id": "agt_worker"}


class Client_:
    """A protocol client as a user would write one: JSON over NATS request/reply."""

    def __init__(self, nc: Client, config: EngineConfig, tenant: str = "tnt_acme") -> None:
        self.nc, self.config, self.tenant = nc, config, tenant

    async def raw(self, subject: str, body: bytes, timeout: float = 5.0) -> dict[str, Any]:
        try:
            msg = await self.nc.request(subject, body, timeout=timeout)
        except nats.errors.NoRespondersError:
            # Should never happen once an engine said it is ready; keep the server's view for the report.
            with urllib.request.urlopen(f"http://127.0.0.1:{MONITOR_PORT[0]}/connz?subs=1") as page:
                raise AssertionError(f"no responders for {subject}: {page.read().decode()[-6000:]}") from None
        return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]

    async def cmd(self, command: str, /, tenant: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"actor": USER, **fields}
        return await self.raw(f"{self.config.prefix}.cmd.{tenant or self.tenant}.{command}", msgspec.json.encode(body))

    async def qry(self, query: str, /, tenant: str | None = None, **fields: Any) -> dict[str, Any]:
        return await self.raw(f"{self.config.prefix}.qry.{tenant or self.tenant}.{query}", msgspec.json.encode(fields))

    async def ok(self, command: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.cmd(command, **fields)
        assert reply["ok"], reply
        return reply

    async def setup_thread(self, project_id: str = "prj_p1", thread_id: str = "thd_t1",
                           config: dict[str, int] | None = None) -> None:
        await self.ok("project.create", project_id=project_id, name="proj", **({"config": config} if config else {}))
        await self.ok("thread.create", project_id=project_id, thread_id=thread_id)


@pytest.fixture
async def client(nc: Client, engine: Engine, engine_config: EngineConfig) -> Client_:
    return Client_(nc, engine_config)


async def stream_messages(nc: Client, stream: str) -> int:
    info = await nc.jetstream().stream_info(stream)
    return int(info.state.messages)

