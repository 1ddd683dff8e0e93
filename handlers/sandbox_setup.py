"""Which sandbox providers an effect handler has: made from the deployment's settings, said in
one log line at start (with any fallback as a warning), and exported in /metrics with the
reconciler's counts."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agentledger.handlers.observability.metrics import EngineMetrics
from agentledger.handlers.reconciler import Reconciler
from agentledger.providers import registry
from agentledger.providers.base import ProviderConfig, SandboxProvider

log = logging.getLogger("agentledger.effects")


def provider_config(root: Path, commands: Iterable[str], repos: Iterable[str], settings: ProviderConfig | None) -> ProviderConfig:
    base = settings or ProviderConfig(root=root)
    return dataclasses.replace(base, root=Path(root), commands=frozenset(commands), repos=tuple(Path(r) for r in repos))


def open_providers(kind: str, config: ProviderConfig) -> dict[str, SandboxProvider]:
    provider, notes = registry.open_provider(kind, config)
    info = provider.info()
    log.info("sandbox provider %s: %s (%s); pause by %s; limits %s; network %s", info.name, info.kind, info.isolation,
             info.freeze, "enforced" if info.limits else "not enforced", "allowed" if info.network else "off")
    for note in [*notes, *info.notes]:
        log.warning("sandbox provider %s: %s", info.name, note)
    return {provider.name: provider}


class _ProviderInfo(Collector):
    def __init__(self, providers: dict[str, SandboxProvider]) -> None:
        self.providers = providers

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("agentledger_sandbox_provider", "The sandbox provider in force (always 1): which "
                                   "implementation, how pause works, whether limits are enforced, network allowed",
                                   labels=["provider", "kind", "freeze", "limits", "network"])
        for name, provider in self.providers.items():
            info = provider.info()
            family.add_metric([name, info.kind, info.freeze, str(info.limits).lower(), str(info.network).lower()], 1)
        yield family


def export(metrics: EngineMetrics, providers: dict[str, SandboxProvider], reconciler: Reconciler) -> None:
    metrics.registry.register(_ProviderInfo(providers))
    metrics.read_counter("agentledger_sandbox_orphans_destroyed", "Sandboxes the reconciler found alive at the "
                         "provider and not live in the ledger, and destroyed", lambda: reconciler.orphans)
    metrics.read_counter("agentledger_sandbox_lost", "Sandboxes live in the ledger that the reconciler found gone "
                         "at the provider (recorded as destroyed, reason lost)", lambda: reconciler.lost)
    metrics.read_counter("agentledger_sandbox_reconcile_runs", "Reconciler passes completed", lambda: reconciler.runs)
    metrics.read_counter("agentledger_sandbox_reconcile_failures", "Reconciler passes that failed (tried again at "
                         "the next period)", lambda: reconciler.failures)
