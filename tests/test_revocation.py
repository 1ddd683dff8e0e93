"""Revoking one user's credentials (`agentledger tenant revoke`) on the running server: that
user's open connection is closed and its `.creds` no longer connect, while the tenant's other
users and credentials issued afterwards to the same person keep working (each issue is a new
user key, revoked on its own). Real server, operator
mode; a tenant of its own, since its account changes for the rest of the run."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest

from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_tenant, revoke_user
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from tests.conftest import USER

pytestmark = pytest.mark.usefixtures("engine")


async def _connect(url: str, creds: str, closed: asyncio.Event | None = None) -> nats.aio.client.Client:
    async def on_closed() -> None:
        if closed is not None:
            closed.set()

    async def quiet(_: Exception) -> None:
        return None

    return await nats.connect(servers=[url], user_credentials=nats.aio.client.RawCredentials(creds),
                              allow_reconnect=False, max_reconnect_attempts=0, closed_cb=on_closed,
                              error_cb=quiet)


async def cli(deployment: Deployment, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(str(Path(sys.executable).parent / "agentledger"), *args,
                                                "--auth-dir", str(deployment.root), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    stdout, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, stdout.decode()


async def test_a_revoked_user_is_disconnected_and_refused_and_no_one_else(
        nats_server: EmbeddedNats, deployment: Deployment, engine_config: EngineConfig, tmp_path: Path) -> None:
    tenant = f"tnt_rv{uuid.uuid4().hex[:8]}"
    await add_tenant(nats_server.url, deployment, tenant)
    leaked = deployment.tenant_creds(tenant, "usr_leaked", "member")
    other = deployment.tenant_creds(tenant, "usr_other", "member")
    subject = engine_config.subjects.command(tenant, "project.create")
    body = msgspec.json.encode({"actor": USER, "project_id": "prj_rv", "name": "rv"})

    closed = asyncio.Event()
    victim = await _connect(nats_server.url, leaked.text, closed)
    assert msgspec.json.decode((await victim.request(subject, body, timeout=5)).data)["ok"]

    leaked_file = tmp_path / "leaked.creds"
    Deployment.write(leaked, leaked_file)
    assert (await cli(deployment, "tenant", "revoke", tenant, "--nats-url", nats_server.url))[0] == 2  # which user?
    code, text = await cli(deployment, "tenant", "revoke", tenant, "--creds", str(leaked_file),
                           "--nats-url", nats_server.url)
    assert code == 0 and leaked.public_key in text, text
    await asyncio.wait_for(closed.wait(), 10)  # the server closed the revoked user's connection
    with pytest.raises(nats.errors.Error) as refused:
        await _connect(nats_server.url, leaked.text)
    assert "authorization violation" in str(refused.value).lower()

    survivor = await _connect(nats_server.url, other.text)
    try:
        other_body = msgspec.json.encode({"actor": USER, "project_id": "prj_rv2", "name": "rv2"})
        assert msgspec.json.decode((await survivor.request(subject, other_body, timeout=5)).data)["ok"]
    finally:
        await survivor.close()

    reissued = deployment.tenant_creds(tenant, "usr_leaked", "member")  # a new user key: not revoked
    again = await _connect(nats_server.url, reissued.text)
    await again.close()

    await add_tenant(nats_server.url, deployment, tenant)  # refreshing the account keeps the revocation
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await _connect(nats_server.url, leaked.text)
    await revoke_user(nats_server.url, deployment, tenant, reissued.public_key)  # by key, as `--user-key` does
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await _connect(nats_server.url, reissued.text)
