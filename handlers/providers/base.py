"""The provider protocol. Every operation is idempotent: the effect handler may call it again
for the same request after a crash, and it must then find and report the first result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agentledger.schemas.sandboxes import ProviderCapabilities, SandboxOptions


@dataclass(frozen=True)
class SandboxRef:
    tenant_id: str
    sandbox_id: str


class ProviderError(Exception):
    """The provider could not do it; recorded as `sandbox.failed`."""


class SandboxProvider(Protocol):
    name: str
    capabilities: ProviderCapabilities

    async def create(self, ref: SandboxRef, options: SandboxOptions) -> str:
        """Create the sandbox (or find it created); return its location."""

    async def fork(self, source: SandboxRef, target: SandboxRef, options: SandboxOptions) -> str:
        """Create `target` as a copy of `source`, leaving the source untouched; return its location."""

    async def pause(self, ref: SandboxRef) -> None: ...

    async def resume(self, ref: SandboxRef) -> None: ...

    async def destroy(self, ref: SandboxRef) -> None:
        """Remove the sandbox; an absent sandbox is already destroyed."""
