"""What a sandboxed program can and cannot do, tried on the real machine: the bubblewrap
provider's namespaces and cgroups, and what the directory provider still guarantees (issue
15.4: nothing of the engine's environment, user or data directory)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agentledger.providers import cgroups
from agentledger.providers.base import ProviderConfig, ProviderError, SandboxProvider, SandboxRef
from agentledger.providers.directory import DirectoryProvider
from agentledger.providers.isolated import BubblewrapProvider
from agentledger.schemas.sandboxes import SandboxLimits, SandboxOptions
from tests.sandbox_support import eventually

PROGRAMS = frozenset({"sh", "python3", "sleep"})
SECRET = "AGENTLEDGER_TEST_ENGINE_SECRET"
NO_BWRAP = BubblewrapProvider.unsupported(ProviderConfig(root=Path("/nonexistent")))
MACHINE = cgroups.detect()
needs_bwrap = pytest.mark.skipif(NO_BWRAP is not None, reason=f"no user namespaces for bubblewrap here: {NO_BWRAP}")
needs_cgroups = pytest.mark.skipif(MACHINE.problem is not None or not MACHINE.limits,
                                   reason=f"no writable cgroup controllers here: {MACHINE.problem or 'memory/pids/cpu'}")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the engine is not root here: there is no uid to drop")


def ref(name: str) -> SandboxRef:
    return SandboxRef("tnt_iso", f"sbx_{name}")


@pytest.fixture
def deployment(tmp_path: Path) -> dict[str, Path]:
    """A data directory with keys, and a creds file, as the engine keeps them."""
    data, creds = tmp_path / "data", tmp_path / "effects.creds"
    (data / "auth").mkdir(parents=True)
    (data / "auth" / "deployment.json").write_text('{"operator_seed": "SOPERATOR"}')
    (data / "auth").chmod(0o755)  # readable by anyone on the host: only the sandbox's view may hide it
    (data / "auth" / "deployment.json").chmod(0o644)
    creds.write_text("-----BEGIN NATS USER JWT-----")
    creds.chmod(0o644)
    return {"data": data, "creds": creds}


def settings(tmp_path: Path, deployment: dict[str, Path], **more: object) -> ProviderConfig:
    return ProviderConfig(root=tmp_path / "sandboxes", commands=PROGRAMS,
                          private=(deployment["data"], deployment["creds"]), **more)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def bwrap(tmp_path: Path, deployment: dict[str, Path]) -> AsyncIterator[BubblewrapProvider]:
    if NO_BWRAP is not None:
        pytest.skip(f"no user namespaces for bubblewrap here: {NO_BWRAP}")
    provider = BubblewrapProvider(settings(tmp_path, deployment, env={"ALLOWED_VAR": "yes"}))
    yield provider
    for r in await provider.list():
        await provider.destroy(r)


async def sh(provider: SandboxProvider, r: SandboxRef, script: str, timeout: float = 60) -> tuple[int | None, str]:
    result = await provider.exec(r, ["sh", "-c", script], timeout=timeout)
    return result.exit_code, (result.stdout + result.stderr).decode(errors="replace")


# -- the bubblewrap provider ------------------------------------------------------------------
@needs_bwrap
async def test_no_view_of_the_data_directory_keys_bookkeeping_or_other_sandboxes(
        bwrap: BubblewrapProvider, deployment: dict[str, Path]) -> None:
    mine = await bwrap.create(ref("a"), SandboxOptions())
    other = await bwrap.create(ref("b"), SandboxOptions())
    Path(other, "theirs.txt").write_text("other tenant's work")
    keys = deployment["data"] / "auth" / "deployment.json"
    for target in (keys, deployment["creds"], Path(other, "theirs.txt")):
        code, out = await sh(bwrap, ref("a"), f"cat {target}")
        assert "SOPERATOR" not in out and "NATS USER JWT" not in out and "other tenant" not in out, (target, out)
    for directory in (keys.parent, deployment["data"], bwrap.root / ".meta", bwrap.root / "tnt_iso", Path(other)):
        code, out = await sh(bwrap, ref("a"), f"ls -A {directory} 2>/dev/null")
        assert out.split() in ([], ["sbx_a"]), (directory, out)  # empty, or its own directory only
    code, out = await sh(bwrap, ref("a"), "echo mine > here.txt && cat here.txt")
    assert (code, out) == (0, "mine\n") and Path(mine, "here.txt").read_text() == "mine\n"  # the workdir is writable
    code, out = await sh(bwrap, ref("a"), "touch /usr/escape 2>&1; touch /etc/escape 2>&1")
    assert not Path("/usr/escape").exists() and not Path("/etc/escape").exists()  # the system is read-only


@needs_bwrap
async def test_no_engine_environment_only_the_allowed_variables(bwrap: BubblewrapProvider,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, "engine-only")
    await bwrap.create(ref("env"), SandboxOptions())
    code, out = await sh(bwrap, ref("env"), "env")
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert code == 0 and SECRET not in out and "engine-only" not in out
    assert names <= {"PATH", "HOME", "PWD", "SHLVL", "_", "ALLOWED_VAR"} and "ALLOWED_VAR=yes" in out


@needs_bwrap
@ROOT_ONLY
async def test_programs_run_unprivileged_outside_the_sandbox_too(bwrap: BubblewrapProvider) -> None:
    await bwrap.create(ref("uid"), SandboxOptions(command=["sleep", "300"]))
    group = bwrap.cgroup(ref("uid"))
    pids = await eventually(lambda: asyncio.sleep(0, group.pids() if group else set()), "the sandbox's processes")
    for pid in pids:  # as the host sees them: every one is the sandbox uid, none is root
        uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
        assert uids == [str(bwrap.config.uid)] * 4, (pid, uids)


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


CONNECT = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3); print('connected')"


@needs_bwrap
async def test_no_network_unless_the_deployment_allows_it(tmp_path: Path, deployment: dict[str, Path]) -> None:
    server = _listener()
    port = str(server.getsockname()[1])
    closed = BubblewrapProvider(settings(tmp_path, deployment))
    opened = BubblewrapProvider(settings(tmp_path, deployment, network=True))
    try:
        await closed.create(ref("net"), SandboxOptions())
        result = await closed.exec(ref("net"), ["python3", "-c", CONNECT, port], timeout=30)
        assert result.exit_code != 0 and b"connected" not in result.stdout
        interfaces = await closed.exec(ref("net"), ["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"], timeout=30)
        assert interfaces.stdout.split() == [b"lo"]  # a network namespace of its own: loopback only
        result = await opened.exec(ref("net"), ["python3", "-c", CONNECT, port], timeout=30)
        assert result.exit_code == 0 and result.stdout == b"connected\n"  # the same sandbox, network allowed
    finally:
        server.close()
        await closed.destroy(ref("net"))


@needs_bwrap
async def test_no_view_of_host_processes(bwrap: BubblewrapProvider) -> None:
    host = await asyncio.create_subprocess_exec("sleep", "312.5")  # a host process it must not see
    try:
        await bwrap.create(ref("ps"), SandboxOptions())
        code, out = await sh(bwrap, ref("ps"), "cat /proc/[0-9]*/comm")
        names = out.split()
        assert code == 0 and "sleep" not in names and not any(n.startswith(("python", "pytest")) for n in names)
        assert set(names) <= {"bwrap", "sh", "cat"}, names  # bwrap's init, this shell, its cat: nothing else
    finally:
        host.kill()
        await host.wait()


ALLOCATE = "x = bytearray(400 * 1024 * 1024); x[::4096] = b'x' * len(x[::4096]); print('survived')"


@needs_bwrap
@needs_cgroups
async def test_killed_at_its_memory_limit_and_the_outcome_says_so(bwrap: BubblewrapProvider) -> None:
    await bwrap.create(ref("mem"), SandboxOptions(limits=SandboxLimits(memory_mb=64)))
    result = await bwrap.exec(ref("mem"), ["python3", "-c", ALLOCATE], timeout=60)
    assert result.exit_code != 0 and b"survived" not in result.stdout
    assert result.limits_hit == ["memory"]
    # the sandbox's own long-running program too: its status says why it is gone
    await bwrap.create(ref("mem2"), SandboxOptions(command=["python3", "-c", ALLOCATE],
                                                   limits=SandboxLimits(memory_mb=64)))
    status = await eventually(lambda: _gone_with(bwrap, ref("mem2")), "the program killed at its limit")
    assert status.limits_hit == ["memory"]


async def _gone_with(provider: BubblewrapProvider, r: SandboxRef) -> object:
    status = await provider.status(r)
    return status if status.processes == 0 and status.limits_hit else None


@needs_bwrap
@needs_cgroups
async def test_stopped_at_its_pids_limit_and_the_outcome_says_so(bwrap: BubblewrapProvider) -> None:
    await bwrap.create(ref("pids"), SandboxOptions(limits=SandboxLimits(pids=16)))
    _code, out = await sh(bwrap, ref("pids"), "i=0; while [ $i -lt 64 ]; do sleep 30 & i=$((i+1)); done; echo done",
                         timeout=20)
    assert "fork" in out.lower() or "resource" in out.lower(), out
    assert (await bwrap.status(ref("pids"))).limits_hit == ["pids"]
    assert len(bwrap.cgroup(ref("pids")).pids()) <= 16  # type: ignore[union-attr]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


SPIN = """sh -c "sh -c 'while :; do :; done' & wait" & wait"""  # the program's child's child spins


@needs_bwrap
@pytest.mark.parametrize("with_cgroups", [True, False], ids=["cgroup-freeze", "sigstop-fallback"])
async def test_pause_freezes_a_forked_grandchild_and_resume_restarts_it(
        bwrap: BubblewrapProvider, with_cgroups: bool) -> None:
    if with_cgroups and not MACHINE.usable:
        pytest.skip(f"no writable cgroups here: {MACHINE.problem}")
    if not with_cgroups:  # what a machine without cgroups does: signals to the whole tree
        bwrap.machine = cgroups.Hierarchies(problem="left out by this test")
    r = ref("spin")
    await bwrap.create(r, SandboxOptions(command=["sh", "-c", SPIN]))
    meta = bwrap.meta(r)
    assert meta is not None

    def spinner() -> int | None:  # the grandchild: the inner shell running the loop
        for pid in bwrap.processes(r, meta):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sh\0-c\0while :; do :; done\0":
                    return pid
        return None

    pid = await eventually(lambda: asyncio.sleep(0, spinner()), "the grandchild spins")
    await eventually(lambda: asyncio.sleep(0, cpu_ticks(pid) > 0), "the grandchild uses CPU")
    await bwrap.pause(r)
    frozen_at = cpu_ticks(pid)
    await asyncio.sleep(0.5)
    assert cpu_ticks(pid) == frozen_at  # not one tick while paused
    await bwrap.resume(r)
    await eventually(lambda: asyncio.sleep(0, cpu_ticks(pid) > frozen_at), "the grandchild runs again")
    await bwrap.destroy(r)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


@needs_bwrap
async def test_exec_output_and_exit_code_come_back_from_inside(bwrap: BubblewrapProvider) -> None:
    await bwrap.create(ref("x"), SandboxOptions())
    result = await bwrap.exec(ref("x"), ["sh", "-c", "hostname; id -u; exit 7"], timeout=30)
    assert result.exit_code == 7 and result.stdout == b"sandbox\n65534\n"
    with pytest.raises(ProviderError, match="not allowed"):
        await bwrap.exec(ref("x"), ["/bin/cat", "/etc/hostname"], timeout=30)


# -- the directory provider (issue 15.4) --------------------------------------------------------
async def test_directory_provider_gives_nothing_of_the_engines(tmp_path: Path, deployment: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, "engine-only")
    provider = DirectoryProvider(settings(tmp_path, deployment, env={"ALLOWED_VAR": "yes"}))
    try:
        await provider.create(ref("d"), SandboxOptions())
        code, out = await sh(provider, ref("d"), "env")
        assert code == 0 and SECRET not in out and "ALLOWED_VAR=yes" in out
        if os.geteuid() != 0:
            pytest.skip("the engine is not root here: programs run as its own user (docs/sandboxes.md)")
        code, out = await sh(provider, ref("d"), "id -u")
        assert (code, out) == (0, f"{provider.config.uid}\n")
        keys = deployment["data"] / "auth" / "deployment.json"
        for target in (keys, deployment["creds"], provider.root / ".meta"):
            _code, out = await sh(provider, ref("d"), f"cat {target} 2>&1; ls {target} 2>&1")
            assert "SOPERATOR" not in out and "NATS USER JWT" not in out and "sbx_d.json" not in out, (target, out)
    finally:
        for r in await provider.list():
            await provider.destroy(r)


async def test_git_gets_refs_as_revisions_never_as_options(tmp_path: Path) -> None:
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    provider = DirectoryProvider(ProviderConfig(root=tmp_path / "root", repos=(repo,)))
    marker = tmp_path / "pwned"
    for bad in (f"--output={marker}", "-h", f"--upload-pack=touch {marker}"):
        with pytest.raises(ProviderError):
            await provider.create(ref("g"), SandboxOptions(repo=str(repo), ref=bad))
    with pytest.raises(ProviderError):  # a ref git does not know, read strictly as a revision
        await provider.create(ref("g"), SandboxOptions(repo=str(repo), ref="HEAD --detach"))
    assert not marker.exists()
    assert Path(await provider.create(ref("g"), SandboxOptions(repo=str(repo), ref="HEAD"))).is_dir()
    await provider.destroy(ref("g"))
