"""The provider interface: what the effect handler asks of a place where sandboxes live, and the
value types that cross that line. A provider depends on `agentledger.schemas` and nothing else
of the engine, so a cloud adapter is one small module (docs/sandboxes.md, *Writing a provider*).

Every mutating call is idempotent for its sandbox: the effect handler may call it again for the
same request after a crash (its own, or one between the call and the recorded outcome), and the
provider must then find and report the first result, never make a second sandbox or process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

import msgspec

from agentledger.schemas.sandboxes import ProviderCapabilities, SandboxLimits, SandboxOptions


@dataclass(frozen=True)
class SandboxRef:
    """A sandbox as the ledger names it: unique per tenant, never reused."""

    tenant_id: str
    sandbox_id: str


class ProviderError(Exception):
    """The provider could not do it; recorded as `sandbox.failed`."""


class ExecResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one program run in a sandbox did. Output is bounded: `stdout`/`stderr` hold at most
    the provider's output limit (the first bytes), `*_size` and `*_sha256` describe all of it."""

    exit_code: int | None  # None when it never exited on its own (killed at its timeout)
    duration_ms: int
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_size: int = 0
    stderr_size: int = 0
    stdout_sha256: str = ""
    stderr_sha256: str = ""
    timed_out: bool = False
    limits_hit: list[Literal["memory", "pids"]] = []  # a limit the sandbox reached while it ran

    @property
    def truncated(self) -> bool:
        return self.stdout_size > len(self.stdout) or self.stderr_size > len(self.stderr)


class SandboxStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the provider has for one sandbox, as the reconciler and operators see it."""

    exists: bool
    paused: bool = False
    location: str | None = None
    processes: int = 0  # live processes of the sandbox (its command and anything it started)
    limits_hit: list[Literal["memory", "pids"]] = []


class ProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """How a provider isolates, said at start (a log line) and in /metrics."""

    name: str  # the provider name the ledger records (`local`, `e2b`, ...)
    kind: str  # which implementation serves it (`bubblewrap`, `directory`, ...)
    isolation: str  # one line for an operator: what a sandboxed program can and cannot reach
    freeze: str  # how pause works: cgroup.freeze, freezer, sigstop, or the remote's own
    limits: bool  # memory, pids and CPU limits are enforced
    network: bool  # sandboxes may reach the network
    notes: list[str] = []  # why something weaker is in force (a fallback), for the start log


@dataclass(frozen=True)
class Caps:
    """A deployment's per-sandbox limits: the default, and the most one sandbox may ask for."""

    memory_mb: int = 1024
    pids: int = 512
    cpus: float = 1.0


def _cpus() -> float:
    return float(os.cpu_count() or 1)


@dataclass(frozen=True)
class ProviderConfig:
    """The deployment's sandbox settings (CLI flags / environment, docs/sandboxes.md)."""

    root: Path  # where sandboxes live (local providers); a cloud provider may ignore it
    commands: frozenset[str] = frozenset()  # programs (argv[0], exactly) a sandbox may run; none by default
    repos: tuple[Path, ...] = ()  # directories whose git repositories a sandbox may check out
    env: dict[str, str] = field(default_factory=dict)  # the only variables a sandboxed program gets (with PATH, HOME)
    network: bool = False  # sandboxes may reach the network
    private: tuple[Path, ...] = ()  # paths no sandbox may see (data directory, keys, creds)
    uid: int = 65534  # who sandboxed programs run as when the effect handler is root
    gid: int = 65534
    defaults: Caps = Caps()
    caps: Caps = field(default_factory=lambda: Caps(memory_mb=8192, pids=4096, cpus=_cpus()))
    output_limit: int = 65536  # bytes of stdout and of stderr an exec result keeps

    def limits_for(self, asked: SandboxLimits | None) -> Caps:
        """The limits a sandbox gets: what it asked for, else the default; refused above the caps."""
        asked = asked or SandboxLimits()
        got = Caps(memory_mb=asked.memory_mb or self.defaults.memory_mb, pids=asked.pids or self.defaults.pids,
                   cpus=asked.cpus or self.defaults.cpus)
        for what, flag in (("memory_mb", "--sandbox-memory-max"), ("pids", "--sandbox-pids-max"),
                           ("cpus", "--sandbox-cpus-max")):
            value, cap = getattr(got, what), getattr(self.caps, what)
            if value > cap:
                raise ProviderError(f"limits.{what} {value} is above this deployment's cap of {cap} (set with {flag})")
        return got


@runtime_checkable
class SandboxProvider(Protocol):
    """One place sandboxes live. `name` is what the ledger records as the sandbox's provider."""

    name: str
    capabilities: ProviderCapabilities

    def info(self) -> ProviderInfo: ...

    async def create(self, ref: SandboxRef, options: SandboxOptions) -> str:
        """Create the sandbox (or find it created); return its location."""

    async def fork(self, source: SandboxRef, target: SandboxRef, options: SandboxOptions) -> str:
        """Create `target` as a copy of `source`, leaving the source untouched; return its location."""

    async def pause(self, ref: SandboxRef) -> None:
        """Freeze everything running in the sandbox (idempotent)."""

    async def resume(self, ref: SandboxRef) -> None:
        """Undo a pause (idempotent)."""

    async def destroy(self, ref: SandboxRef) -> None:
        """Remove the sandbox and everything running in it; an absent sandbox is already destroyed."""

    async def exec(self, ref: SandboxRef, argv: list[str], timeout: float, stdin: bytes = b"") -> ExecResult:
        """Run one allowed program in a running sandbox, to completion or its timeout."""

    async def list(self) -> list[SandboxRef]:
        """Every sandbox this provider has anything of (for the reconciler), made whole or not."""

    async def status(self, ref: SandboxRef) -> SandboxStatus: ...


class ProviderFactory(Protocol):
    """What an `agentledger.providers` entry point names: a provider class (or any callable with
    these attributes) that the effect handler calls with the deployment's settings."""

    name: ClassVar[str]
    capabilities: ClassVar[ProviderCapabilities]

    def __call__(self, config: ProviderConfig) -> SandboxProvider: ...
