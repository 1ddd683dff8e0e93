"""The conformance suite every sandbox provider runs: subclass `ProviderConformance`, say how to
make your provider, and collect it with pytest (needs pytest and pytest-asyncio):

    from agentledger.providers.conformance import ProviderConformance

    class TestMyProvider(ProviderConformance):
        def make_provider(self, root):
            return MyProvider(ProviderConfig(root=root, commands=frozenset({"sleep", "sh"})))

What it holds a provider to: create, pause, resume, destroy and fork are idempotent; a call
repeated after a crash between the call and its recorded outcome (a new provider object on the
same state) finds the first result and starts no second process; a sandbox is found again after
a restart; `exec` returns output, exit code, sizes and digests, bounded, stops at its timeout
and ends with its sandbox's destroy; `list` and `status` tell the reconciler what exists. The provider's config must allow
`long_running[0]` and `shell` as programs.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
import pytest_asyncio

from agentledger.providers.base import ProviderError, SandboxProvider, SandboxRef
from agentledger.schemas.sandboxes import SandboxOptions

TENANT = "tnt_conformance"


class ProviderConformance:
    long_running: ClassVar[list[str]] = ["sleep", "300"]  # an allowed program that runs until killed
    shell: ClassVar[str] = "sh"  # an allowed POSIX shell, for exec

    pytestmark = pytest.mark.asyncio

    def make_provider(self, root: Path) -> SandboxProvider:
        """A provider on `root`; called again for a "restart" (same root, new object)."""
        raise NotImplementedError

    # -- fixtures and helpers -----------------------------------------------------------------
    @pytest_asyncio.fixture
    async def root(self, tmp_path: Path) -> AsyncIterator[Path]:
        root = tmp_path / "sandboxes"
        yield root
        provider = self.make_provider(root)  # nothing outlives a test
        for ref in await provider.list():
            await provider.destroy(ref)

    @pytest_asyncio.fixture
    async def provider(self, root: Path) -> SandboxProvider:
        return self.make_provider(root)

    @staticmethod
    def ref(name: str) -> SandboxRef:
        return SandboxRef(TENANT, f"sbx_{name}")

    @staticmethod
    async def settled_processes(provider: SandboxProvider, ref: SandboxRef) -> int:
        """The sandbox's process count once it stops changing (a program may still be starting)."""
        last, same = -1, 0
        for _ in range(200):
            now = (await provider.status(ref)).processes
            same = same + 1 if now == last and now > 0 else 0
            if same >= 5:
                return now
            last = now
            await asyncio.sleep(0.02)
        raise AssertionError(f"process count never settled (last {last})")

    def run(self, script: str) -> list[str]:
        return [self.shell, "-c", script]

    # -- create -------------------------------------------------------------------------------
    async def test_create_is_idempotent(self, provider: SandboxProvider) -> None:
        ref = self.ref("a")
        location = await provider.create(ref, SandboxOptions())
        assert await provider.create(ref, SandboxOptions()) == location
        status = await provider.status(ref)
        assert status.exists and not status.paused and status.location == location
        assert ref in await provider.list()

    async def test_create_called_again_after_a_crash_starts_no_second_process(self, provider: SandboxProvider,
                                                                              root: Path) -> None:
        ref, options = self.ref("once"), SandboxOptions(command=self.long_running)
        location = await provider.create(ref, options)
        before = await self.settled_processes(provider, ref)
        assert before > 0
        # the effect handler died before the outcome was recorded: a new one calls again
        restarted = self.make_provider(root)
        assert await restarted.create(ref, options) == location
        assert await self.settled_processes(restarted, ref) == before

    async def test_a_restarted_provider_finds_its_sandboxes_and_controls_them(self, provider: SandboxProvider,
                                                                             root: Path) -> None:
        ref = self.ref("kept")
        location = await provider.create(ref, SandboxOptions(command=self.long_running))
        await self.settled_processes(provider, ref)
        restarted = self.make_provider(root)
        assert ref in await restarted.list()
        status = await restarted.status(ref)
        assert status.exists and status.location == location and status.processes > 0
        if restarted.capabilities.pause:
            await restarted.pause(ref)
            assert (await self.make_provider(root).status(ref)).paused
            await restarted.resume(ref)
        await restarted.destroy(ref)
        gone = await self.make_provider(root).status(ref)
        assert not gone.exists and gone.processes == 0
        assert ref not in await provider.list()

    # -- pause and resume ---------------------------------------------------------------------
    async def test_pause_and_resume_are_idempotent(self, provider: SandboxProvider) -> None:
        if not provider.capabilities.pause:
            pytest.skip("the provider cannot pause")
        ref = self.ref("p")
        await provider.create(ref, SandboxOptions(command=self.long_running))
        for _ in range(2):
            await provider.pause(ref)
            assert (await provider.status(ref)).paused
        with pytest.raises(ProviderError):  # nothing runs in a paused sandbox
            await provider.exec(ref, self.run("true"), timeout=10)
        for _ in range(2):
            await provider.resume(ref)
            assert not (await provider.status(ref)).paused
        assert (await provider.exec(ref, self.run("exit 0"), timeout=30)).exit_code == 0

    # -- destroy ------------------------------------------------------------------------------
    async def test_destroy_is_idempotent_and_leaves_nothing(self, provider: SandboxProvider) -> None:
        ref = self.ref("d")
        await provider.create(ref, SandboxOptions(command=self.long_running))
        await self.settled_processes(provider, ref)
        await provider.destroy(ref)
        await provider.destroy(ref)
        await provider.destroy(self.ref("never"))  # an absent sandbox is already destroyed
        status = await provider.status(ref)
        assert not status.exists and status.processes == 0
        assert ref not in await provider.list()
        with pytest.raises(ProviderError):
            await provider.exec(ref, self.run("true"), timeout=10)

    # -- fork ---------------------------------------------------------------------------------
    async def test_fork_copies_and_is_idempotent(self, provider: SandboxProvider) -> None:
        if not provider.capabilities.fork:
            pytest.skip("the provider cannot fork")
        source, copy = self.ref("src"), self.ref("copy")
        await provider.create(source, SandboxOptions())
        assert (await provider.exec(source, self.run("echo base > notes.txt"), timeout=30)).exit_code == 0
        location = await provider.fork(source, copy, SandboxOptions())
        assert await provider.fork(source, copy, SandboxOptions()) == location
        read = await provider.exec(copy, self.run("cat notes.txt; echo fork > notes.txt"), timeout=30)
        assert read.stdout == b"base\n"
        assert (await provider.exec(source, self.run("cat notes.txt"), timeout=30)).stdout == b"base\n"
        with pytest.raises(ProviderError):
            await provider.fork(self.ref("missing"), self.ref("copy2"), SandboxOptions())

    # -- exec ---------------------------------------------------------------------------------
    async def test_exec_returns_output_exit_code_sizes_and_digests(self, provider: SandboxProvider) -> None:
        ref = self.ref("x")
        await provider.create(ref, SandboxOptions())
        result = await provider.exec(ref, self.run("echo out; echo err >&2; exit 3"), timeout=30)
        assert (result.exit_code, result.stdout, result.stderr, result.timed_out) == (3, b"out\n", b"err\n", False)
        assert result.stdout_size == 4 and result.stdout_sha256 == hashlib.sha256(b"out\n").hexdigest()
        fed = await provider.exec(ref, self.run("cat"), timeout=30, stdin=b"from stdin")
        assert fed.stdout == b"from stdin"

    async def test_exec_output_is_bounded_but_measured_whole(self, provider: SandboxProvider) -> None:
        ref = self.ref("big")
        await provider.create(ref, SandboxOptions())
        size = 3_000_000
        result = await provider.exec(ref, self.run(f"head -c {size} /dev/zero"), timeout=60)
        assert result.exit_code == 0 and result.stdout_size == size
        assert result.stdout_sha256 == hashlib.sha256(bytes(size)).hexdigest()
        assert len(result.stdout) < size and result.truncated and result.stdout == bytes(len(result.stdout))

    async def test_exec_stops_at_its_timeout(self, provider: SandboxProvider) -> None:
        ref = self.ref("t")
        await provider.create(ref, SandboxOptions())
        result = await provider.exec(ref, self.run("echo started; sleep 60 & sleep 60"), timeout=1)
        assert result.timed_out and result.exit_code is None and result.stdout == b"started\n"

    async def test_a_destroy_ends_a_running_exec(self, provider: SandboxProvider) -> None:
        ref = self.ref("end")
        await provider.create(ref, SandboxOptions())
        running = asyncio.ensure_future(provider.exec(ref, self.run("touch begun; sleep 30 & sleep 30"), timeout=120))
        while (await provider.exec(ref, self.run("test -e begun"), timeout=30)).exit_code != 0:
            assert not running.done(), running.result()
            await asyncio.sleep(0.01)
        await provider.destroy(ref)
        result = await running  # at once, not after the program's 30 s (which would exit 0)
        assert result.exit_code != 0 and not result.timed_out
        assert not (await provider.status(ref)).exists

    async def test_exec_refuses_a_program_the_deployment_did_not_allow(self, provider: SandboxProvider) -> None:
        ref = self.ref("deny")
        await provider.create(ref, SandboxOptions())
        with pytest.raises(ProviderError, match="not allowed"):
            await provider.exec(ref, ["/definitely/not/allowed"], timeout=10)
