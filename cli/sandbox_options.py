"""The effect handler's sandbox settings, shared by `serve` and `effects` (docs/sandboxes.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from agentledger.providers.base import ProviderConfig

Provider = Annotated[str, typer.Option(
    "--sandbox-provider", envvar="AGENTLEDGER_SANDBOX_PROVIDER",
    help="an agentledger.providers entry point (bubblewrap, directory, ...); auto: bubblewrap where the machine "
         "supports it, else directory")]
Env = Annotated[list[str] | None, typer.Option(
    "--sandbox-env", envvar="AGENTLEDGER_SANDBOX_ENV",
    help="a variable sandboxed programs get: NAME (its value here) or NAME=VALUE; repeat it; none by default "
         "besides PATH and HOME")]
Network = Annotated[bool, typer.Option("--sandbox-network/--no-sandbox-network", envvar="AGENTLEDGER_SANDBOX_NETWORK",
                                       help="let sandboxes reach the network (bubblewrap; off by default)")]
Private = Annotated[list[Path] | None, typer.Option(
    "--sandbox-private", envvar="AGENTLEDGER_SANDBOX_PRIVATE",
    help="a path no sandbox may see, besides the data directory, keys and creds; repeat it")]
Uid = Annotated[int, typer.Option("--sandbox-uid", envvar="AGENTLEDGER_SANDBOX_UID", min=1,
                                  help="uid (and gid) sandboxed programs run as when the effect handler is root")]
Memory = Annotated[int, typer.Option("--sandbox-memory", envvar="AGENTLEDGER_SANDBOX_MEMORY", min=16,
                                     help="memory limit of a sandbox in MiB, unless it asks (limits.memory_mb)")]
MemoryMax = Annotated[int, typer.Option("--sandbox-memory-max", envvar="AGENTLEDGER_SANDBOX_MEMORY_MAX", min=16,
                                        help="the most memory (MiB) one sandbox may ask for")]
Pids = Annotated[int, typer.Option("--sandbox-pids", envvar="AGENTLEDGER_SANDBOX_PIDS", min=8,
                                   help="processes (and threads) a sandbox may have at once, unless it asks")]
PidsMax = Annotated[int, typer.Option("--sandbox-pids-max", envvar="AGENTLEDGER_SANDBOX_PIDS_MAX", min=8,
                                      help="the most processes one sandbox may ask for")]
Cpus = Annotated[float, typer.Option("--sandbox-cpus", envvar="AGENTLEDGER_SANDBOX_CPUS", min=0.01,
                                     help="CPUs a sandbox may use, unless it asks")]
CpusMax = Annotated[float | None, typer.Option("--sandbox-cpus-max", envvar="AGENTLEDGER_SANDBOX_CPUS_MAX", min=0.01,
                                               help="the most CPUs one sandbox may ask for (default: all)")]
ReconcileEvery = Annotated[float, typer.Option("--reconcile-every", envvar="AGENTLEDGER_RECONCILE_EVERY", min=0.1,
                                               help="seconds between the sandbox reconciler's passes")]


def variables(specs: list[str] | None) -> dict[str, str]:
    """NAME=VALUE as given; NAME alone takes this process's value (skipped when unset)."""
    env: dict[str, str] = {}
    for spec in specs or ():
        for item in spec.split() if "=" not in spec else [spec]:
            name, eq, value = item.partition("=")
            if not name.isidentifier():
                raise typer.BadParameter(f"{name!r} is not a variable name", param_hint="--sandbox-env")
            if eq:
                env[name] = value
            elif name in os.environ:
                env[name] = os.environ[name]
    return env


def settings(root: Path, private: list[Path], env: list[str] | None, network: bool, uid: int, memory: int,
             memory_max: int, pids: int, pids_max: int, cpus: float, cpus_max: float | None) -> ProviderConfig:
    from agentledger.providers.base import Caps, ProviderConfig

    caps = Caps(memory_mb=memory_max, pids=pids_max, cpus=cpus_max or float(os.cpu_count() or 1))
    return ProviderConfig(root=root, env=variables(env), network=network, private=tuple(p.resolve() for p in private),
                          uid=uid, gid=uid, defaults=Caps(memory_mb=memory, pids=pids, cpus=min(cpus, caps.cpus)),
                          caps=caps)
