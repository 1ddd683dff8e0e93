"""Sandboxes against hostile input: a program the deployment did not allow never runs, and no
id, forged event or planted symlink makes the local provider touch anything outside its root."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from agentledger.engine import codec
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.providers.base import ProviderConfig, ProviderError, SandboxRef
from agentledger.providers.directory import DirectoryProvider
from agentledger.schemas.common import Actor
from agentledger.schemas.events import Envelope, Event, SandboxCreateRequested, SandboxDestroyRequested
from agentledger.schemas.sandboxes import SandboxOptions
from tests.conftest import Client_
from tests.sandbox_support import eventually, sandbox, sandbox_dirs, sandbox_engine, settled


@pytest.fixture
async def fx_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ("sleep",), ack_wait=2.0) as eng:
        yield eng


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside the sandbox root that must survive every attempt."""
    path = tmp_path / "victim"
    path.mkdir()
    (path / "precious").write_text("keep")
    return path


async def test_a_command_not_on_the_allowlist_never_runs(nc: Client, fx_engine: Engine, tmp_path: Path) -> None:
    client = Client_(nc, fx_engine.config)
    marker = tmp_path / "pwned"
    await client.ok("sandbox.create", sandbox_id="sbx_evil", options={"command": ["sh", "-c", f"touch {marker}"]})
    view = await settled(client, "sbx_evil", "failed")
    assert "--allow-command" in view["last_error"] and "AGENTLEDGER_SANDBOX_COMMANDS" in view["last_error"]
    assert not marker.exists() and sandbox_dirs(tmp_path / "sandboxes", "tnt_acme") == []
    # a fork may not bring its own program either, and an allowed one runs
    await client.ok("sandbox.create", sandbox_id="sbx_ok", options={"command": ["sleep", "300"]})
    assert (await settled(client, "sbx_ok", "running"))["location"]
    await client.ok("sandbox.create", sandbox_id="sbx_repo", options={"repo": str(tmp_path)})
    assert "--allow-repo" in (await settled(client, "sbx_repo", "failed"))["last_error"]


def forged(tenant: str, boundary: str, event: Event) -> bytes:
    return codec.encode(Envelope(
        event_id=uuid.uuid4().hex, type=type(event).__struct_config__.tag, tenant_id=tenant, boundary=boundary,
        command="forged", command_id="forged", correlation_id="forged", actor=Actor(kind="user", id="usr_forger"),
        at="2026-01-01T00:00:00+00:00", data=event))


async def test_forged_requests_with_path_ids_touch_nothing_outside(
        nc: Client, fx_engine: Engine, engine_config: EngineConfig, victim: Path) -> None:
    client = Client_(nc, engine_config)
    subjects, js = engine_config.subjects, nc.jetstream()
    ids = ["../../victim", str(victim), "sbx_ok/../../../victim"]
    for bad in ids:
        # the id in the event data, on a well-formed subject
        boundary = subjects.sandbox_filter("tnt_acme", "sbx_cover")
        for event in (SandboxCreateRequested(sandbox_id=bad, provider="local"), SandboxDestroyRequested(sandbox_id=bad)):
            subject = subjects.event_subject(boundary, event.__struct_config__.tag)
            await js.publish(subject, forged("tnt_acme", boundary, event), stream=engine_config.stream)
        # the id in the subject itself, where it is one token
        if "." not in bad:
            boundary = f"{engine_config.prefix}.evt.tnt_acme.sbx.{bad}.>"
            event = SandboxDestroyRequested(sandbox_id=bad)
            await js.publish(subjects.event_subject(boundary, "sandbox.destroy_requested"),
                             forged("tnt_acme", boundary, event), stream=engine_config.stream)
    # a forged source for a fork, on a fully consistent subject
    boundary = subjects.sandbox_filter("tnt_acme", "sbx_copy")
    fork = SandboxCreateRequested(sandbox_id="sbx_copy", provider="local", forked_from="../../victim")
    await js.publish(subjects.event_subject(boundary, "sandbox.create_requested"),
                     forged("tnt_acme", boundary, fork), stream=engine_config.stream)
    # the effect handler flowed past all of it (skipping every message): a real sandbox after it is created
    await client.ok("sandbox.create", sandbox_id="sbx_after")
    await settled(client, "sbx_after", "running")
    fx = next(w for w in fx_engine.workers if w.durable.endswith("-fx"))
    expected = 2 * len(ids) + sum("." not in bad for bad in ids) + 1
    # its lanes run sandboxes in parallel: the other sandboxes' messages may still be in hand
    await eventually(lambda: asyncio.sleep(0, fx.quarantine.count == expected), "every forged request skipped")
    assert (victim / "precious").read_text() == "keep"
    assert (await client.qry("sandbox.get", sandbox_id="sbx_copy"))["error"]["code"] == "not_found"
    assert (await sandbox(client, "sbx_after"))["pending"] == []


@pytest.mark.parametrize("tenant,sandbox_id", [
    ("tnt_a", "../victim"), ("tnt_a", "/tmp"), ("..", "victim"), ("tnt_a", "sbx_x/../../../victim"),
    ("tnt_a", "sbx_x\n"), ("tnt_a", ""), ("tnt_a", "."),
])
async def test_the_provider_checks_ids_again(tmp_path: Path, victim: Path, tenant: str, sandbox_id: str) -> None:
    provider = DirectoryProvider(ProviderConfig(root=tmp_path / "root", commands=frozenset({"sleep"})))
    ref = SandboxRef(tenant, sandbox_id)
    for call in (provider.create(ref, SandboxOptions()), provider.destroy(ref), provider.pause(ref),
                 provider.resume(ref), provider.fork(ref, SandboxRef("tnt_a", "sbx_new"), SandboxOptions()),
                 provider.fork(SandboxRef("tnt_a", "sbx_src"), ref, SandboxOptions())):
        with pytest.raises(ProviderError):
            await call
    assert (victim / "precious").read_text() == "keep"
    assert not (tmp_path / "root" / "tnt_a").exists() or list((tmp_path / "root" / "tnt_a").iterdir()) == []


async def test_a_planted_symlink_is_not_followed_out_of_the_root(tmp_path: Path, victim: Path) -> None:
    provider = DirectoryProvider(ProviderConfig(root=tmp_path / "root"))
    real = await provider.create(SandboxRef("tnt_a", "sbx_real"), SandboxOptions())
    (tmp_path / "root" / "tnt_a" / "sbx_link").symlink_to(victim)
    for call in (provider.destroy(SandboxRef("tnt_a", "sbx_link")),
                 provider.create(SandboxRef("tnt_a", "sbx_link"), SandboxOptions())):
        with pytest.raises(ProviderError, match="outside the sandbox root"):
            await call
    # bookkeeping rewritten to point elsewhere is refused too
    meta = tmp_path / "root" / ".meta" / "tnt_a" / "sbx_real.json"
    meta.write_text(meta.read_text().replace(real, str(victim)))
    with pytest.raises(ProviderError, match="not its own"):
        await provider.destroy(SandboxRef("tnt_a", "sbx_real"))
    assert (victim / "precious").read_text() == "keep"
    with pytest.raises(ProviderError, match="--allow-command"):
        await provider.create(SandboxRef("tnt_a", "sbx_cmd"), SandboxOptions(command=["sleep", "1"]))
    assert not (tmp_path / "root" / "tnt_a" / "sbx_cmd").exists()
