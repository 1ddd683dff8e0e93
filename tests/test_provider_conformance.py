"""Both local providers pass the conformance suite shipped in the package, on the real machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.providers.base import ProviderConfig, SandboxProvider
from agentledger.providers.cgroups import Hierarchies
from agentledger.providers.conformance import ProviderConformance
from agentledger.providers.directory import DirectoryProvider
from agentledger.providers.isolated import BubblewrapProvider


def config(root: Path) -> ProviderConfig:
    return ProviderConfig(root=root, commands=frozenset({"sleep", "sh"}))


pytestmark = pytest.mark.integration  # the providers start real processes, namespaces and cgroups

UNSUPPORTED = BubblewrapProvider.unsupported(config(Path("/nonexistent")))


class TestDirectoryProvider(ProviderConformance):
    def make_provider(self, root: Path) -> SandboxProvider:
        return DirectoryProvider(config(root))


@pytest.mark.skipif(UNSUPPORTED is not None, reason=f"no user namespaces for bubblewrap here: {UNSUPPORTED}")
class TestBubblewrapProvider(ProviderConformance):
    def make_provider(self, root: Path) -> SandboxProvider:
        return BubblewrapProvider(config(root))


@pytest.mark.skipif(UNSUPPORTED is not None, reason=f"no user namespaces for bubblewrap here: {UNSUPPORTED}")
class TestBubblewrapProviderWithoutCgroups(ProviderConformance):
    """The fallback of a machine with namespaces and no writable cgroups: pause and destroy by
    signals to the whole process tree."""

    def make_provider(self, root: Path) -> SandboxProvider:
        return BubblewrapProvider(config(root), machine=Hierarchies(problem="left out by this test"))
