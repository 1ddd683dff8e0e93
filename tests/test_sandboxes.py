"""Sandboxes end to end: every binding mode against every shutdown policy, parent-close and
archive cascades, invalid combinations, and the local provider really creating, copying,
freezing and deleting directories."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.providers.base import ProviderConfig, SandboxRef
from agentledger.providers.directory import DirectoryProvider
from agentledger.schemas.sandboxes import ProviderCapabilities
from tests.conftest import AGENT, Client_, stream_messages
from tests.sandbox_support import frozen, local_provider, sandbox, sandbox_dirs, sandbox_engine, settled, writable

DONE = {"outcome": "succeeded", "text": "ok"}
TENANT = "tnt_acme"


@pytest.fixture
async def sbx_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ("sleep", "/nonexistent/agent-tool"),
                              ack_wait=2.0) as eng:
        yield eng


@pytest.fixture
async def sbx(nc: Client, sbx_engine: Engine) -> Client_:
    client = Client_(nc, sbx_engine.config)
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_parent", owner=AGENT)
    await client.ok("session.start", session_id="ses_parent")
    return client


def root_of(engine: Engine) -> Path:
    assert engine.config.sandbox_dir is not None
    return engine.config.sandbox_dir


async def base_sandbox(client: Client_, sandbox_id: str, paused: bool = False) -> dict[str, Any]:
    await client.ok("sandbox.create", sandbox_id=sandbox_id, options={"command": ["sleep", "300"]}, thread_id="thd_t1")
    view = await settled(client, sandbox_id, "running")
    Path(view["location"], "notes.txt").write_text("from the base")
    if paused:
        await client.ok("sandbox.pause", sandbox_id=sandbox_id)
        view = await settled(client, sandbox_id, "paused")
    return view


# policy -> (status after the child ends, status after its parent ends)
POLICIES = {
    "destroy": ("destroyed", "destroyed"),
    "pause": ("paused", "paused"),
    "keep": ("running", "running"),
    "pause-until-parent-close": ("paused", "destroyed"),
}


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("mode", ["new", "continue", "fork"])
async def test_owned_sandbox_follows_its_policy(sbx: Client_, sbx_engine: Engine, mode: str, policy: str) -> None:
    spec: dict[str, Any] = {"mode": mode, "shutdown": policy}
    base = None
    if mode != "new":
        base = await base_sandbox(sbx, "sbx_base", paused=(mode == "continue"))
        spec["sandbox_id"] = "sbx_base"
    else:
        spec["options"] = {"command": ["sleep", "300"]}
    spawned = await sbx.ok("session.spawn", parent_session_id="ses_parent", session_id="ses_child", agent=AGENT,
                           sandbox=spec)
    sandbox_id = spawned["result"]["sandbox_id"]
    assert (sandbox_id == "sbx_base") == (mode == "continue")
    view = await settled(sbx, sandbox_id, "running")
    assert view["owner_session_id"] == "ses_child"
    location = Path(view["location"])
    assert location.is_dir() and writable(location)
    if mode == "fork":
        assert view["forked_from"] == "sbx_base"
        assert (location / "notes.txt").read_text() == "from the base"
        (location / "notes.txt").write_text("changed in the fork")
        assert Path(base["location"], "notes.txt").read_text() == "from the base"  # type: ignore[index]
        assert (await sandbox(sbx, "sbx_base"))["status"] == "running"

    after_child, after_parent = POLICIES[policy]
    await sbx.ok("session.complete", session_id="ses_child", summary=DONE)
    view = await settled(sbx, sandbox_id, after_child)
    assert location.exists() == (after_child != "destroyed")
    if after_child == "paused":
        assert not writable(location)

    held = (await sbx.qry("session.get", session_id="ses_parent"))["result"]["session"]["held_sandboxes"]
    assert held == ([sandbox_id] if policy == "pause-until-parent-close" else [])
    await sbx.ok("session.complete", session_id="ses_parent", summary=DONE)
    await settled(sbx, sandbox_id, after_parent)
    assert location.exists() == (after_parent != "destroyed")


async def test_inherited_sandbox_is_never_touched(sbx: Client_) -> None:
    base = await base_sandbox(sbx, "sbx_shared")
    spawned = await sbx.ok("session.spawn", parent_session_id="ses_parent", session_id="ses_child", agent=AGENT,
                           sandbox={"mode": "inherit", "sandbox_id": "sbx_shared"})
    assert spawned["result"]["sandbox_id"] == "sbx_shared"
    await sbx.ok("session.fail", session_id="ses_child", reason="boom")
    await sbx.ok("session.complete", session_id="ses_parent", summary=DONE)
    await sbx.ok("thread.archive", thread_id="thd_t1")
    view = await settled(sbx, "sbx_shared", "running")
    assert view["position"] == (await sandbox(sbx, "sbx_shared"))["position"]
    assert Path(base["location"]).is_dir() and writable(base["location"])
    events = (await sbx.qry("events.read"))["result"]["events"]
    assert not [e for e in events if e["type"] in ("sandbox.pause_requested", "sandbox.destroy_requested")]


async def test_archive_releases_sandboxes_the_threads_sessions_still_own(sbx: Client_, sbx_engine: Engine) -> None:
    spawned = await sbx.ok("session.spawn", parent_session_id="ses_parent", agent=AGENT,
                           sandbox={"mode": "new", "shutdown": "keep"})
    kept = spawned["result"]["sandbox_id"]
    await settled(sbx, kept, "running")
    await sbx.ok("session.complete", session_id=spawned["result"]["session_id"], summary=DONE)
    await sbx.ok("session.complete", session_id="ses_parent", summary=DONE)
    assert (await sandbox(sbx, kept))["intent"] == "running"
    archived = await sbx.ok("thread.archive", thread_id="thd_t1")
    assert [a["sandbox_id"] for a in archived["events"][0]["data"]["sandbox_actions"]] == [kept]
    await settled(sbx, kept, "destroyed")
    assert sandbox_dirs(root_of(sbx_engine), TENANT) == []


async def test_fail_fast_cascade_shuts_down_every_ending_sessions_sandbox(sbx: Client_) -> None:
    child = await sbx.ok("session.spawn", parent_session_id="ses_parent", session_id="ses_c", agent=AGENT,
                         failure_mode="fail_fast", sandbox={"mode": "new"})
    grand = await sbx.ok("session.spawn", parent_session_id="ses_c", session_id="ses_g", agent=AGENT,
                         failure_mode="fail_fast", sandbox={"mode": "new", "shutdown": "pause-until-parent-close"})
    failed = await sbx.ok("session.fail", session_id="ses_g", reason="crash")
    actions = {(a["sandbox_id"], a["action"]) for a in failed["events"][0]["data"]["sandbox_actions"]}
    # the grandchild's parent fails in the same decision, so its sandbox goes at once
    assert actions == {(grand["result"]["sandbox_id"], "destroy"), (child["result"]["sandbox_id"], "destroy")}
    await settled(sbx, grand["result"]["sandbox_id"], "destroyed")
    await settled(sbx, child["result"]["sandbox_id"], "destroyed")
    assert (await sbx.qry("session.get", session_id="ses_c"))["result"]["session"]["status"] == "failed"


async def test_restarting_a_session_resumes_its_paused_sandbox(sbx: Client_) -> None:
    created = await sbx.ok("session.create", thread_id="thd_t1", session_id="ses_r", owner=AGENT,
                           sandbox={"mode": "new", "shutdown": "pause", "options": {"command": ["sleep", "300"]}})
    sandbox_id = created["result"]["sandbox_id"]
    await sbx.ok("session.start", session_id="ses_r")
    view = await settled(sbx, sandbox_id, "running")
    root, ref = Path(view["location"]).parent.parent, SandboxRef(TENANT, sandbox_id)
    assert (await local_provider(root).status(ref)).processes > 0
    await sbx.ok("session.complete", session_id="ses_r", summary=DONE)
    await settled(sbx, sandbox_id, "paused")
    assert frozen(root, ref) and not writable(view["location"])
    await sbx.ok("session.start", session_id="ses_r")
    await settled(sbx, sandbox_id, "running")
    assert not frozen(root, ref) and writable(view["location"])
    assert (await local_provider(root).status(ref)).processes > 0


INVALID = [
    ({"mode": "continue"}, "invalid_command"),
    ({"mode": "fork"}, "invalid_command"),
    ({"mode": "inherit"}, "invalid_command"),
    ({"mode": "inherit", "sandbox_id": "sbx_live", "shutdown": "destroy"}, "invalid_command"),
    ({"mode": "continue", "sandbox_id": "sbx_live", "options": {"command": ["true"]}}, "invalid_command"),
    ({"mode": "new", "provider": "e2b"}, "invalid_command"),
    ({"mode": "new", "sandbox_id": "sbx_live"}, "already_exists"),
    ({"mode": "continue", "sandbox_id": "sbx_nope"}, "not_found"),
    ({"mode": "continue", "sandbox_id": "sbx_gone"}, "illegal_transition"),
    ({"mode": "fork", "sandbox_id": "sbx_gone"}, "illegal_transition"),
    ({"mode": "inherit", "sandbox_id": "sbx_gone"}, "illegal_transition"),
    ({"mode": "fork", "sandbox_id": "sbx_nofork"}, "unsupported"),
]


async def test_invalid_combinations_are_rejected_before_anything_is_recorded(sbx: Client_, sbx_engine: Engine,
                                                                            nc: Client) -> None:
    assert sbx_engine.commands is not None
    sbx_engine.commands.catalog = {**sbx_engine.commands.catalog, "nofork": ProviderCapabilities(fork=False)}
    await base_sandbox(sbx, "sbx_live")
    await base_sandbox(sbx, "sbx_gone")
    await sbx.ok("sandbox.destroy", sandbox_id="sbx_gone")
    await settled(sbx, "sbx_gone", "destroyed")
    await sbx.ok("sandbox.create", sandbox_id="sbx_nofork", provider="nofork")
    await settled(sbx, "sbx_nofork", "failed")  # this effect handler has no such provider: recorded as failed
    count = await stream_messages(nc, sbx_engine.config.stream)
    for spec, code in INVALID:
        for command, fields in [("session.create", {"thread_id": "thd_t1", "owner": AGENT}),
                                ("session.spawn", {"parent_session_id": "ses_parent", "agent": AGENT})]:
            reply = await sbx.cmd(command, sandbox=spec, **fields)
            assert not reply["ok"] and reply["error"]["code"] == code, (command, spec, reply)
    assert await stream_messages(nc, sbx_engine.config.stream) == count


async def test_direct_sandbox_commands(sbx: Client_, sbx_engine: Engine) -> None:
    await base_sandbox(sbx, "sbx_d")
    forked = await sbx.ok("sandbox.fork", sandbox_id="sbx_d", new_sandbox_id="sbx_d2")
    assert forked["result"] == {"sandbox_id": "sbx_d2", "status": "creating"}
    copy = await settled(sbx, "sbx_d2", "running")
    assert Path(copy["location"], "notes.txt").read_text() == "from the base"
    assert (await sbx.ok("sandbox.pause", sandbox_id="sbx_d"))["result"]["status"] == "paused"
    assert (await sbx.ok("sandbox.pause", sandbox_id="sbx_d"))["events"] == []  # already paused: no-op
    await settled(sbx, "sbx_d", "paused")
    await sbx.ok("sandbox.resume", sandbox_id="sbx_d")
    await settled(sbx, "sbx_d", "running")
    await sbx.ok("sandbox.destroy", sandbox_id="sbx_d")
    assert (await sbx.ok("sandbox.destroy", sandbox_id="sbx_d"))["events"] == []
    assert (await sbx.ok("sandbox.pause", sandbox_id="sbx_d"))["result"]["status"] == "destroyed"
    await settled(sbx, "sbx_d", "destroyed")
    assert (await sbx.cmd("sandbox.resume", sandbox_id="sbx_d"))["error"]["code"] == "illegal_transition"
    assert sandbox_dirs(root_of(sbx_engine), TENANT) == ["sbx_d2"]
    assert (await sbx.qry("sandbox.get", sandbox_id="sbx_missing"))["error"]["code"] == "not_found"


async def test_a_failing_provider_is_recorded_and_never_changes_the_session_outcome(sbx: Client_) -> None:
    spawned = await sbx.ok("session.spawn", parent_session_id="ses_parent", agent=AGENT,
                           sandbox={"mode": "new", "options": {"command": ["/nonexistent/agent-tool"]}})
    sandbox_id = spawned["result"]["sandbox_id"]
    view = await settled(sbx, sandbox_id, "failed")
    assert "cannot start" in view["last_error"]
    done = await sbx.ok("session.complete", session_id=spawned["result"]["session_id"], summary=DONE)
    assert done["result"]["status"] == "idle"
    await settled(sbx, sandbox_id, "destroyed")  # cleanup still happens: the half-made directory goes


@pytest.mark.integration  # runs git
async def test_local_provider_git_worktree_and_fork(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "README").write_text("hello")
    provider = DirectoryProvider(ProviderConfig(root=tmp_path / "root", repos=(repo,)))
    a, b = SandboxRef("tnt_x", "sbx_a"), SandboxRef("tnt_x", "sbx_b")
    from agentledger.schemas.sandboxes import SandboxOptions
    location = await provider.create(a, SandboxOptions(repo=str(repo)))
    assert await provider.create(a, SandboxOptions(repo=str(repo))) == location  # idempotent
    assert (Path(location) / ".git").is_file()
    Path(location, "work.txt").write_text("uncommitted")
    copy = await provider.fork(a, b, SandboxOptions())
    assert Path(copy, "work.txt").read_text() == "uncommitted"
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list", "--porcelain"], capture_output=True,
                               text=True, check=True).stdout
    assert location in worktrees and copy in worktrees
    await provider.destroy(a)
    await provider.destroy(a)  # idempotent
    assert not Path(location).exists() and Path(copy, "work.txt").exists()
    await provider.destroy(b)
    listed = subprocess.run(["git", "-C", str(repo), "worktree", "list", "--porcelain"], capture_output=True,
                            text=True, check=True).stdout
    assert location not in listed and copy not in listed
