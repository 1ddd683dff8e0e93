"""Providers by name: the `agentledger.providers` entry point group, and `auto`, which takes the
isolating provider where the machine supports it and says so when it cannot."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from agentledger.providers.base import ProviderConfig, ProviderError, SandboxProvider

GROUP = "agentledger.providers"
AUTO = "auto"


def names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load(name: str) -> Any:
    """The factory (usually a provider class) an entry point names."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise ProviderError(f"no sandbox provider {name!r}; installed: {', '.join(names()) or 'none'} (or {AUTO})")
    return found[0].load()


def open_provider(name: str, config: ProviderConfig) -> tuple[SandboxProvider, list[str]]:
    """The provider `name` on `config`, and why it is weaker than asked (for the start log).
    `auto`: bubblewrap where this machine can run it, else directory."""
    notes: list[str] = []
    if name == AUTO:
        isolating = load("bubblewrap")
        reason = isolating.unsupported(config)
        if reason is None:
            return isolating(config), notes
        notes.append(f"sandboxes are plain directories, not isolated: {reason}")
        name = "directory"
    factory = load(name)
    reason = getattr(factory, "unsupported", lambda _c: None)(config)
    if reason is not None:
        raise ProviderError(f"sandbox provider {name!r} cannot run here: {reason}")
    return factory(config), notes

