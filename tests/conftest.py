"""Fixtures: one real nats-server for the whole run (embedded, as the engine uses it, with
authentication on: operator mode, one account per tenant), a fresh stream name per test so tests
never see each other's events, and engines on top.

`deployment` holds the keys; its exports are written for any subject prefix (`*`), so every
test's private prefix works with the same tenant accounts. `nc` is the engine's identity;
`client` sends as a member of its tenant (`client.as_(tenant=..., role=...)` as anyone else)."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_tenant
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import ClusterNode, EmbeddedNats, free_port

# every test is marked unit or integration; `cli`, `cli_env`: the console script against the test's engine
pytest_plugins = ("tests.markers", "tests.cli_support")

_counter = itertools.count()
MONITOR_PORT: list[int] = []  # the session server's monitoring port, for failure reports


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """Operator, system, engine and tenant account keys for every server of the run."""
    return Deployment.open(tmp_path_factory.mktemp("auth"), prefix="*", stream="*")


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory, deployment: Deployment) -> AsyncIterator[EmbeddedNats]:
    server = deployment.embedded(tmp_path_factory.mktemp("nats"), port=free_port(), http_port=free_port())
    await server.start()
    MONITOR_PORT.append(server.http_port or 0)
    yield server
    await server.stop()


def config_for(deployment: Deployment, url: str, **fields: Any) -> EngineConfig:
    """An EngineConfig with the engine's credentials (for tests that run their own servers);
    `effects_creds(config)` writes the effect handler's for it, beside them."""
    return EngineConfig(nats_url=url, creds=deployment.creds_path("engine"), **fields)


def effects_creds(config: EngineConfig) -> str:
    """The effect handler's own credentials for this config's prefix and stream (its permissions are
    an allow-list naming its own consumer): it may not append, serve requests, or read the log."""
    assert config.creds is not None
    auth = Path(config.creds).parent
    path = auth / f"effects-{config.prefix}.creds"
    if not path.exists():
        Deployment.write(Deployment.open(auth).engine_creds("effects", prefix=config.prefix, stream=config.stream), path)
    return str(path)


async def connect(deployment: Deployment, url: str | list[str], role: Literal["engine", "effects", "admin"] = "admin",
                  **options: Any) -> Client:
    """A connection as one of the deployment's own identities (admin: reads everything, appends nothing)."""
    return await nats.connect(servers=[url] if isinstance(url, str) else url,
                              user_credentials=str(deployment.creds_path(role)), **options)


async def start_cluster(deployment: Deployment, data_dirs: list[Path], name: str) -> list[EmbeddedNats]:
    """A local 3-node cluster with authentication on, returned once it has a JetStream meta leader."""
    ports, routes = [free_port() for _ in data_dirs], [free_port() for _ in data_dirs]
    nodes = [deployment.embedded(data_dir, port=ports[i],
                                 cluster=ClusterNode(name, f"n{i}", routes[i], tuple(p for j, p in enumerate(routes) if j != i)))
             for i, data_dir in enumerate(data_dirs)]
    await asyncio.gather(*(n.start() for n in nodes))
    nc = await connect(deployment, [n.url for n in nodes], role="engine")
    js = nc.jetstream()
    for _ in range(100):  # until the cluster has a JetStream meta leader
        try:
            await js.add_stream(StreamConfig(name="PROBE", subjects=["probe.>"], num_replicas=3))
            break
        except Exception:
            await asyncio.sleep(0.2)
    await js.delete_stream("PROBE")
    await nc.close()
    return nodes


class Tenants:
    """Member/auditor connections to the session server, one per (tenant, role), made on first
    use; a tenant's account is added (at run time, as `agentledger tenant add` does) first."""

    def __init__(self, deployment: Deployment, url: str) -> None:
        self.deployment, self.url = deployment, url
        self._conns: dict[tuple[str, str], Client] = {}
        self._added: set[str] = set()

    async def add(self, tenant: str) -> None:
        if tenant not in self._added:
            await add_tenant(self.url, self.deployment, tenant)
            self._added.add(tenant)

    async def conn(self, tenant: str, role: str = "member", user: str = "usr_tester") -> Client:
        key = (tenant, role)
        if key not in self._conns:
            await self.add(tenant)
            creds = self.deployment.tenant_creds(tenant, user, role)  # type: ignore[arg-type]
            self._conns[key] = await nats.connect(servers=[self.url], user_credentials=creds.raw())
        return self._conns[key]

    async def close(self) -> None:
        for conn in self._conns.values():
            await conn.close()


@pytest.fixture(scope="session")
async def tenants(nats_server: EmbeddedNats, deployment: Deployment) -> AsyncIterator[Tenants]:
    pool = Tenants(deployment, nats_server.url)
    yield pool
    await pool.close()


@pytest.fixture
def engine_config(nats_server: EmbeddedNats, deployment: Deployment) -> EngineConfig:
    """A private stream and subject prefix per test, and the engine's credentials."""
    n = next(_counter)
    return config_for(deployment, nats_server.url, prefix=f"t{n}x{uuid.uuid4().hex[:6]}", stream=f"LEDGER_T{n}")


@pytest.fixture
async def engine(engine_config: EngineConfig) -> AsyncIterator[Engine]:
    eng = Engine(engine_config)
    await eng.start()
    yield eng
    await eng.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNats, deployment: Deployment) -> AsyncIterator[Client]:
    """The engine's own identity: reads every test's stream, and can write to it (to play a
    compromised internal writer)."""
    conn = await connect(deployment, nats_server.url, role="engine")
    yield conn
    await conn.close()


USER = {"kind": "user", "id": "usr_tester"}
AGENT = {"kind": "agent", "id": "agt_worker"}


class Client_:
    """A protocol client as a user would write one: JSON over NATS request/reply. With `tenants`,
    it sends as a `role` user of the tenant it names (as a tenant's own client would); without,
    through `nc` (the deployment's connection)."""

    def __init__(self, nc: Client | None, config: EngineConfig, tenant: str = "tnt_acme",
                 tenants: Tenants | None = None, role: str = "member") -> None:
        self.nc, self.config, self.tenant, self.tenants, self.role = nc, config, tenant, tenants, role

    def as_(self, tenant: str | None = None, role: str | None = None) -> Client_:
        """The same client acting as another tenant's user, or in another role."""
        return Client_(self.nc, self.config, tenant or self.tenant, self.tenants, role or self.role)

    async def conn(self, tenant: str | None = None) -> Client:
        if self.tenants is None:
            assert self.nc is not None
            return self.nc
        return await self.tenants.conn(tenant or self.tenant, self.role)

    async def raw(self, subject: str, body: bytes, timeout: float = 5.0, tenant: str | None = None) -> dict[str, Any]:
        conn = await self.conn(tenant)
        try:
            msg = await conn.request(subject, body, timeout=timeout)
        except nats.errors.NoRespondersError:
            # Should never happen once an engine said it is ready; keep the server's view for the report.
            with urllib.request.urlopen(f"http://127.0.0.1:{MONITOR_PORT[0]}/connz?subs=1") as page:
                raise AssertionError(f"no responders for {subject}: {page.read().decode()[-6000:]}") from None
        return msgspec.json.decode(msg.data)  # type: ignore[no-any-return]

    async def cmd(self, command: str, /, tenant: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"actor": USER, **fields}
        tenant = tenant or self.tenant
        return await self.raw(f"{self.config.prefix}.cmd.{tenant}.{command}", msgspec.json.encode(body), tenant=tenant)

    async def qry(self, query: str, /, tenant: str | None = None, **fields: Any) -> dict[str, Any]:
        tenant = tenant or self.tenant
        return await self.raw(f"{self.config.prefix}.qry.{tenant}.{query}", msgspec.json.encode(fields), tenant=tenant)

    async def ok(self, command: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.cmd(command, **fields)
        assert reply["ok"], reply
        return reply

    async def setup_thread(self, project_id: str = "prj_p1", thread_id: str = "thd_t1",
                           config: dict[str, int] | None = None) -> None:
        await self.ok("project.create", project_id=project_id, name="proj", **({"config": config} if config else {}))
        await self.ok("thread.create", project_id=project_id, thread_id=thread_id)


@pytest.fixture
async def client(nc: Client, engine: Engine, engine_config: EngineConfig, tenants: Tenants) -> Client_:
    return Client_(nc, engine_config, tenants=tenants)


async def stream_messages(nc: Client, stream: str) -> int:
    info = await nc.jetstream().stream_info(stream)
    return int(info.state.messages)


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[tuple[Path, dict[str, str]]]:
    """A directory like a fresh checkout (the venv linked in) with `agentledger serve` running in it."""
    from tests.fresh_support import serving

    async with serving(tmp_path) as env:
        yield tmp_path, env  # the second terminal
