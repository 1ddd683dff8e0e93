"""Credentials that end: `tenant creds --expires` on the real CLI and server (usable until then,
the connection closed and new ones refused after), the deployment's one-operation users (the
system account's included) minted short-lived, its own services' credentials not, and every
`.creds` file written 0600, also over a file that was there with wider rights."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import ONE_OPERATION_SECONDS, Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from tests.conftest import USER, Tenants

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


def claims(creds_text: str) -> dict[str, Any]:
    jwt = re.search(r"BEGIN NATS USER JWT-+\s*(\S+)", creds_text)
    assert jwt is not None
    body = jwt.group(1).split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


async def run(deployment: Deployment, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *args, "--auth-dir", str(deployment.root),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_creds_with_an_expiry_work_until_it_and_are_refused_after(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        tmp_path: Path) -> None:
    tenant, out = f"tnt_exp{uuid.uuid4().hex[:6]}", tmp_path / "alice.creds"
    out.write_text("an older file anyone may read\n")
    out.chmod(0o644)
    assert (await run(deployment, "tenant", "add", tenant, "--nats-url", nats_server.url))[0] == 0
    code, text = await run(deployment, "tenant", "creds", tenant, "--user", "usr_alice", "--expires", "4s",
                           "--out", str(out))
    assert code == 0 and ", expires 20" in text, text
    assert out.stat().st_mode & 0o777 == 0o600
    jwt = claims(out.read_text())
    assert jwt["exp"] - jwt["iat"] in (4, 5), jwt  # 4 s from when it was made (a second boundary may fall between)

    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    conn = await nats.connect(servers=[nats_server.url], user_credentials=str(out), allow_reconnect=False,
                              closed_cb=on_closed)
    try:
        msg = await conn.request(engine_config.subjects.command(tenant, "project.create"),
                                 msgspec.json.encode({"actor": USER, "project_id": "prj_1", "name": "p"}), timeout=60)
        assert msgspec.json.decode(msg.data)["ok"]
        await asyncio.wait_for(closed.wait(), 60)  # the server ends the connection when the credentials expire
    finally:
        await conn.close()
    while time.time() <= jwt["exp"] + 1:
        await asyncio.sleep(0.2)
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(servers=[nats_server.url], user_credentials=str(out), allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=10)

    code, text = await run(deployment, "tenant", "creds", tenant, "--user", "usr_bob", "--expires", "soon",
                           "--out", str(tmp_path / "bob.creds"))
    assert code == 2 and "--expires" in text and not (tmp_path / "bob.creds").exists(), text


async def test_the_deployments_own_one_operation_users_expire_and_its_services_do_not(deployment: Deployment,
                                                                                       tenants: Tenants) -> None:
    await tenants.add("tnt_acme")  # pushed with a system account user minted for it
    for creds in (deployment.system_creds(), deployment.provisioner_creds("tnt_acme")):
        jwt = claims(creds.text)
        assert jwt["exp"] - jwt["iat"] in (ONE_OPERATION_SECONDS, ONE_OPERATION_SECONDS + 1), jwt
    for role in ("engine", "effects", "admin"):  # long-running processes: an expiry would cut them off
        assert "exp" not in claims(deployment.creds_path(role).read_text())  # type: ignore[arg-type]
        assert deployment.creds_path(role).stat().st_mode & 0o777 == 0o600  # type: ignore[arg-type]
    assert "exp" not in claims(deployment.tenant_creds("tnt_acme", "usr_plain").text)
