"""Connecting fails clearly: credentials are looked up in the documented order; no credentials, a
missing creds file and credentials the server refuses are distinct errors, never retryable, with
exit codes of their own in the CLI; a refused connection fails at once; the CLI works from any
directory below the data directory; `tenant add` against a NATS that is down or refuses it says
so in one line and leaves no tenant behind."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import nats
import pytest

from agentledger.cli.transport import EXIT_CREDS_MISSING, EXIT_NO_CREDENTIALS, EXIT_NOT_AUTHORISED
from agentledger.client import ConnectionRefused, CredsFileMissing, Ledger, NoCredentials, NotAuthorised
from agentledger.client.credentials import find
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.identity import TENANTS_BUCKET
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_tenant
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats, free_port
from tests.client_support import HANG, creds_file
from tests.conftest import Tenants

pytestmark = pytest.mark.integration  # the CLI and servers run as processes of their own

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("creds")
    return path


def test_credentials_are_looked_up_in_the_documented_order(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    deep = project / "docs" / "deeper"
    deep.mkdir(parents=True)
    flag, variable = _touch(tmp_path / "flag.creds"), _touch(tmp_path / "env.creds")
    data = _touch(project / ".agentledger" / "auth" / "admin.creds")
    config = _touch(home / "config" / "agentledger" / "credentials.creds")
    env = {"NATS_CREDS": str(variable), "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)}
    assert find(flag, env=env, cwd=deep).path == flag  # 1. the argument
    assert find(None, env=env, cwd=deep).path == variable  # 2. NATS_CREDS
    del env["NATS_CREDS"]
    assert find(None, env=env, cwd=deep).path == data  # 3. the data directory, from the working directory up
    assert find(None, env=env, cwd=tmp_path).path == config  # 4. the user's config directory
    assert find(None, env={"HOME": str(home)}, cwd=tmp_path).path is None  # ~/.config by default, not there
    assert find(None, env={"HOME": str(tmp_path / "h2")}, cwd=tmp_path).path is None
    _touch(tmp_path / "h2" / ".config" / "agentledger" / "credentials.creds")
    assert find(None, env={"HOME": str(tmp_path / "h2")}, cwd=tmp_path).path is not None
    nothing = find(None, env={"HOME": str(home)}, cwd=tmp_path)
    assert nothing.looked == ("--creds", "NATS_CREDS", f".agentledger/auth/admin.creds in {tmp_path} and its parents",
                              str(home / ".config" / "agentledger" / "credentials.creds"))
    with pytest.raises(CredsFileMissing) as missing:  # a named file must exist: a typo is not "no credentials"
        find(tmp_path / "typo.creds", env=env, cwd=deep)
    assert (missing.value.source, missing.value.retryable) == ("--creds", False)
    with pytest.raises(CredsFileMissing) as missing:
        find(None, env={"NATS_CREDS": str(tmp_path / "gone.creds")}, cwd=deep)
    assert missing.value.source == "NATS_CREDS" and "gone.creds" in missing.value.message


async def test_each_way_of_failing_to_connect_is_its_own_error(nats_server: EmbeddedNats, deployment: Deployment,
                                                               tenants: Tenants, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}  # no creds anywhere
    with pytest.raises(NoCredentials) as none:
        await Ledger.connect(nats_url=nats_server.url, env=env, cwd=tmp_path)
    assert not none.value.retryable and "no credentials found" in none.value.message
    assert "NATS_CREDS" in none.value.message and ".agentledger/auth/admin.creds" in none.value.message

    with pytest.raises(CredsFileMissing):
        await Ledger.connect(nats_url=nats_server.url, creds=tmp_path / "missing.creds", env=env, cwd=tmp_path)

    stranger = Deployment.open(tmp_path / "other", prefix="*", stream="*")  # another operator: keys this server never saw
    foreign = tmp_path / "foreign.creds"
    stranger.write(stranger.engine_creds("admin"), foreign)
    with pytest.raises(NotAuthorised) as refused:
        await Ledger.connect(nats_url=nats_server.url, creds=foreign, env=env, cwd=tmp_path)
    assert not refused.value.retryable and "Authorization Violation" in refused.value.message

    garbage = tmp_path / "garbage.creds"
    garbage.write_text("not a creds file")
    with pytest.raises(NotAuthorised):
        await Ledger.connect(nats_url=nats_server.url, creds=garbage, env=env, cwd=tmp_path)

    # nothing listens: refused at once (a timeout far beyond HANG would otherwise be waited out)
    url = f"nats://127.0.0.1:{free_port()}"
    creds = await creds_file(deployment, tenants, tmp_path)
    with pytest.raises(ConnectionRefused) as closed:
        await asyncio.wait_for(Ledger.connect(nats_url=url, creds=creds, timeout=3600, env=env, cwd=tmp_path), HANG)
    assert closed.value.retryable and closed.value.code == "unavailable" and "connection refused" in closed.value.message


async def test_a_revoked_user_gets_not_authorised(engine: Engine, engine_config: EngineConfig, deployment: Deployment,
                                                  tenants: Tenants, tmp_path: Path) -> None:
    """The server closes a revoked user's connection: what was a working client now says why."""
    from agentledger.handlers.auth.keys import user_key_of
    from agentledger.handlers.auth.tenants import revoke_user

    creds = await creds_file(deployment, tenants, tmp_path, user="usr_gone")
    ledger = await Ledger.connect("tnt_acme", nats_url=engine_config.nats_url, creds=creds, prefix=engine_config.prefix,
                                  env={}, cwd=tmp_path)
    try:
        await ledger.project.create(name="before", project_id="prj_before")
        await revoke_user(engine_config.nats_url, deployment, "tnt_acme", user_key_of(creds.read_text()))
        with pytest.raises(NotAuthorised):
            for _ in range(100):  # until the server has closed the connection
                await ledger.thread.list()
                await asyncio.sleep(0.05)
    finally:
        await ledger.close()


async def _cli(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "NATS_", "XDG_"))}
    return keep | {"HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"} | extra


async def test_the_cli_finds_the_data_directory_from_below_and_fails_each_way_with_its_exit_code(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    docs = checkout / "docs"
    docs.mkdir(parents=True)
    env = _clean_env(tmp_path, NATS_URL=engine_config.nats_url, AGENTLEDGER_PREFIX=engine_config.prefix)
    ask = ("quarantine", "list")

    code, out, err = await _cli(*ask, cwd=docs, env=env)
    assert (code, out) == (EXIT_NO_CREDENTIALS, "") and err.startswith("error no_credentials: no credentials found"), err
    assert len(err.splitlines()) == 1, err

    deployment.write(deployment.engine_creds("admin"), checkout / ".agentledger" / "auth" / "admin.creds")
    code, out, err = await _cli(*ask, cwd=docs, env=env)  # as `make run` would have left it, two levels up
    assert code == 0 and "nothing quarantined" in out, (code, out, err)

    code, out, err = await _cli(*ask, "--creds", "nope.creds", cwd=docs, env=env)
    assert (code, err) == (EXIT_CREDS_MISSING, "error creds_file_missing: creds file nope.creds (from --creds) does "
                                               "not exist\n"), err
    code, _, err = await _cli(*ask, cwd=docs, env=env | {"NATS_CREDS": str(tmp_path / "gone.creds")})
    assert code == EXIT_CREDS_MISSING and "(from NATS_CREDS)" in err, err

    stranger = Deployment.open(tmp_path / "other", prefix="*", stream="*")
    stranger.write(stranger.engine_creds("admin"), tmp_path / "foreign.creds")
    code, out, err = await _cli(*ask, "--creds", str(tmp_path / "foreign.creds"), cwd=docs, env=env)
    assert (code, out, len(err.splitlines())) == (EXIT_NOT_AUTHORISED, "", 1), err
    assert err.startswith("error not_authorised: NATS at") and "Authorization Violation" in err, err


async def test_help_shows_flags_without_bool_and_the_exit_codes(tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    code, out, _ = await _cli("--help", cwd=tmp_path, env=env)
    assert code == 0 and "<bool>" not in out and "--version" in out
    for exit_code, words in ((66, "a credentials file"), (75, "retryable"), (77, "not authorised"), (78, "no credentials")):
        assert re.search(rf"{exit_code} {words}", " ".join(out.split())), (exit_code, out)
    code, out, _ = await _cli("session", "complete", "--help", cwd=tmp_path, env=env)
    assert code == 0 and "<bool>" not in out and "--json" in out
    code, _, err = await _cli("thread", "get", "--thread-id", "thread 1", cwd=tmp_path, env=env)
    assert code == 1 and "thread id must start with thd_ followed by 1-64 letters, digits, _ or -" in err, err
    assert "regex" not in err and "[A-Za-z" not in err
    code, _, err = await _cli("thread", "get", "--thread-id", "thd_1", "--tenant", "acme", cwd=tmp_path, env=env)
    assert code == 2 and "tenant id must start with tnt_" in " ".join(err.replace("│", " ").split()), err


async def test_tenant_add_with_nats_down_or_refusing_fails_in_one_line_and_leaves_no_tenant(
        nats_server: EmbeddedNats, tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    env = _clean_env(tmp_path)
    code, _, err = await _cli("auth", "init", "--auth-dir", str(auth), "--out", str(tmp_path / "auth.conf"),
                              "--resolver-dir", str(tmp_path / "jwt"), cwd=tmp_path, env=env)
    assert code == 0, err

    async def left_behind() -> None:
        code, out, err = await _cli("tenant", "list", "--auth-dir", str(auth), cwd=tmp_path, env=env)
        assert (code, out) == (0, ""), (out, err)
        code, _, err = await _cli("tenant", "creds", "tnt_new", "--user", "usr_a", "--out", str(tmp_path / "a.creds"),
                                  "--auth-dir", str(auth), cwd=tmp_path, env=env)
        assert code == 1 and "no tenant tnt_new" in err, err

    down = f"nats://127.0.0.1:{free_port()}"
    code, out, err = await _cli("tenant", "add", "tnt_new", "--auth-dir", str(auth), "--nats-url", down, cwd=tmp_path,
                                env=env)
    assert (code, out, err) == (75, "", f"error unavailable: cannot reach NATS at {down}: connection refused "
                                        "(is the server running?) (retryable)\n")
    await left_behind()

    # a server of another deployment refuses this deployment's keys
    code, out, err = await _cli("tenant", "add", "tnt_new", "--auth-dir", str(auth), "--nats-url", nats_server.url,
                                cwd=tmp_path, env=env)
    assert (code, out, len(err.splitlines())) == (EXIT_NOT_AUTHORISED, "", 1), err
    assert err.startswith("error not_authorised:") and "Authorization Violation" in err, err
    await left_behind()


async def test_a_tenant_add_that_fails_half_way_removes_the_new_tenant(tmp_path: Path) -> None:
    """A server that trusts the deployment but keeps account JWTs in memory only: it lets the
    deployment connect, then has no one to take the account ($SYS.REQ.CLAIMS.UPDATE)."""
    deployment = Deployment.open(tmp_path / "auth", prefix="ledger", stream="LEDGER")
    config = re.sub(r"resolver: \{.*?\n\}\n", "resolver: MEMORY\n", deployment.server_config(tmp_path / "jwt"), flags=re.S)
    server = EmbeddedNats(tmp_path / "nats", auth=config, port=free_port())
    await server.start()
    try:
        with pytest.raises(nats.errors.NoRespondersError):
            await add_tenant(server.url, deployment, "tnt_half")
        assert deployment.tenants() == [] and deployment.tenant_account("tnt_half", create=False) is None
        nc = await nats.connect(server.url, user_credentials=deployment.engine_creds("admin").raw())
        try:  # the engines were never told of it
            try:
                keys = await (await nc.jetstream().key_value(TENANTS_BUCKET)).keys()
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError):
                keys = []
            assert keys == []
        finally:
            await nc.close()
    finally:
        await server.stop()
