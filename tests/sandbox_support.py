"""Helpers for sandbox tests: an engine that runs the process manager and the local effect
handler, and bounded waits for the asynchronous provider outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.providers import registry
from agentledger.providers.base import ProviderConfig, SandboxProvider, SandboxRef
from agentledger.providers.isolated import BubblewrapProvider
from tests.conftest import Client_


@contextlib.asynccontextmanager
async def sandbox_engine(config: EngineConfig, sandbox_dir: Path, commands: tuple[str, ...] = (),
                         ack_wait: float | None = None, provider: str = "auto") -> AsyncIterator[Engine]:
    """An engine running the process manager and the local effect handler on `sandbox_dir`, whose
    sandboxes (with their processes) are destroyed when it stops."""
    config.sandbox_dir = sandbox_dir
    config.sandbox_commands = commands
    config.sandbox_provider = provider
    if ack_wait is not None:
        config.worker_ack_wait = ack_wait
    engine = Engine(config)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()
        await destroy_all(sandbox_dir)


async def eventually(probe: Callable[[], Awaitable[Any]], what: str, attempts: int = 300) -> Any:
    """Poll until `probe` returns something truthy; fail (not hang) after `attempts` tries."""
    for _ in range(attempts):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def sandbox(client: Client_, sandbox_id: str) -> dict[str, Any]:
    reply = await client.qry("sandbox.get", sandbox_id=sandbox_id)
    assert reply["ok"], reply
    return reply["result"]["sandbox"]  # type: ignore[no-any-return]


async def settled(client: Client_, sandbox_id: str, status: str) -> dict[str, Any]:
    """Wait until the provider's outcome for every request is recorded and the status is `status`."""
    async def probe() -> dict[str, Any] | None:
        reply = await client.qry("sandbox.get", sandbox_id=sandbox_id)
        view = reply["result"]["sandbox"] if reply["ok"] else None
        return view if view and not view["pending"] and view["status"] == status else None

    return await eventually(probe, f"{sandbox_id} settles as {status}")  # type: ignore[no-any-return]


def writable(path: str | Path) -> bool:
    return bool(Path(path).stat().st_mode & 0o222)


def process_state(pid: int) -> str | None:
    """The kernel's state letter for a process (R/S running or sleeping, T stopped, Z zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def sandbox_dirs(root: Path, tenant: str) -> list[str]:
    base = root / tenant
    return sorted(os.listdir(base)) if base.exists() else []


def local_provider(root: Path, **settings: Any) -> SandboxProvider:
    """The local provider this machine gets by default (bubblewrap where it can), on `root`."""
    provider, _notes = registry.open_provider("auto", ProviderConfig(root=root, **settings))
    return provider


def frozen(root: Path, ref: SandboxRef) -> bool:
    """Every process of the sandbox is stopped: its cgroup frozen, or each process in state T."""
    provider = local_provider(root)
    group = provider.cgroup(ref) if isinstance(provider, BubblewrapProvider) else None
    if group is not None:
        return group.frozen()
    meta = provider.meta(ref)  # type: ignore[attr-defined]
    pids = provider.processes(ref, meta)  # type: ignore[attr-defined]
    return bool(pids) and all(process_state(pid) in ("T", "t") for pid in pids)


async def destroy_all(root: Path) -> None:
    """Tests leave no sandbox processes behind: destroy whatever the provider still has."""
    if not root.exists():
        return
    provider = local_provider(root)
    for ref in await provider.list():
        await provider.destroy(ref)
