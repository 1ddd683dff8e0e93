"""The directory provider: a sandbox is a directory (optionally a git worktree of a repository)
with an optional long-running process started in it. It isolates nothing beyond the OS user;
it is what runs where the machine has no namespaces (the bubblewrap provider builds on it).

What a sandboxed program gets: an empty environment plus the deployment's variables
(`ProviderConfig.env`, with PATH and HOME); when the effect handler is root, an unprivileged
uid and gid (`ProviderConfig.uid`, nobody by default), and the deployment's private paths and
this root's bookkeeping closed to others. It runs in its own session and process group:
pause stops the group (SIGSTOP) and removes write permission from the tree; destroy kills the
group and removes the directory; fork copies the directory (`cp --reflink=auto`).

Bookkeeping lives beside the sandboxes (`<root>/.meta`), not inside them, so a fork never
copies it and the program never sees it. A sandbox counts as created once its bookkeeping
lands; the process is recorded (pid and start time) as soon as it exists, so a create retried
after a crash kills what the first attempt started instead of starting a second one.

Nothing here trusts the request: ids are checked again, every path is resolved and must lie under
the root, a program runs only when it is on the deployment's allowlist, a worktree is made only
from a repository under an allowed directory, and git gets `--` before paths and refs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from agentledger.providers.base import (
    Caps,
    ExecResult,
    ProviderConfig,
    ProviderError,
    ProviderInfo,
    SandboxRef,
    SandboxStatus,
)
from agentledger.providers.execution import Running, run_bounded
from agentledger.schemas.ids import TENANT_RE, id_pattern
from agentledger.schemas.sandboxes import ProviderCapabilities, SandboxOptions

_TENANT = re.compile(TENANT_RE)
_SANDBOX = re.compile(id_pattern("sbx_"))
COMMANDS_SETTING = "--allow-command / AGENTLEDGER_SANDBOX_COMMANDS"
REPOS_SETTING = "--allow-repo / AGENTLEDGER_SANDBOX_REPOS"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
STALL_ENV = "AGENTLEDGER_PROVIDER_STALL_AFTER_START"  # fault injection for tests: hang mid-create (then kill -9)


class LocalMeta(msgspec.Struct, kw_only=True):
    sandbox_id: str
    location: str
    pid: int | None = None
    started: int | None = None  # the process's start time (clock ticks since boot): a reused pid is not ours
    repo: str | None = None
    paused: bool = False
    kind: str = "directory"
    limits: dict[str, float] | None = None


def _set_writable(root: Path, writable: bool) -> None:
    write = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    paths = [root, *root.rglob("*")]
    if writable:
        paths.reverse()
    for path in paths:
        if path.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            mode = path.stat().st_mode
            path.chmod((mode | stat.S_IWUSR) if writable else (mode & ~write))


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (None: no such process)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def _ours(pid: int | None, started: int | None) -> bool:
    """The process we started is still there (not a later one that got its pid)."""
    return pid is not None and started is not None and start_time(pid) == started


def _group_members(pgid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if fields[2] == str(pgid) and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    """`pid` and every process below it (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, ()))
    return found


def _signal_group(pid: int | None, sig: signal.Signals) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "X"


async def until_stopped(pids: set[int], attempts: int = 200) -> None:
    """A stop signal is delivered asynchronously: wait until every process shows it took effect."""
    for _ in range(attempts):
        if all(_state(pid) in ("T", "t", "Z", "X") for pid in pids):
            return
        await asyncio.sleep(0.01)


async def _reap(pid: int | None) -> None:
    """Collect a killed process we started, so it does not linger as a zombie."""
    if pid is None:
        return
    for _ in range(50):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # started by an earlier process of ours: init reaps it
            return
        if done:
            return
        await asyncio.sleep(0.02)


class DirectoryProvider:
    name: ClassVar[str] = "local"
    kind: ClassVar[str] = "directory"
    capabilities: ClassVar[ProviderCapabilities] = ProviderCapabilities(fork=True, pause=True)

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.root = Path(config.root).resolve()
        self.commands = frozenset(config.commands)
        self.repos = tuple(Path(r).resolve() for r in config.repos)
        self.as_root = os.geteuid() == 0
        self._execs: dict[SandboxRef, Running] = {}  # each sandbox's running execs
        self._prepare_root()

    @classmethod
    def unsupported(cls, config: ProviderConfig) -> str | None:
        """Why this machine cannot run this provider (None: it can)."""
        return None

    def info(self) -> ProviderInfo:
        who = f"uid {self.config.uid}" if self.as_root else "the effect handler's own user (not root: cannot drop)"
        return ProviderInfo(
            name=self.name, kind=self.kind, freeze="sigstop", limits=False, network=True,
            isolation=f"a directory; programs run as {who} with an empty environment plus allowed variables; "
                      "no namespaces: they see the host's processes and network",
            notes=[] if self.as_root else ["not root: sandboxed programs run as the engine's user and can read "
                                           "whatever it can; use the bubblewrap provider"])

    # -- bookkeeping ------------------------------------------------------------------------
    def _prepare_root(self) -> None:
        """The root and its bookkeeping exist, and when we are root, no sandbox uid can read the
        bookkeeping or the deployment's private paths."""
        self.root.mkdir(parents=True, exist_ok=True)
        meta = self.root / ".meta"
        meta.mkdir(exist_ok=True)
        meta.chmod(0o700)
        if not self.as_root:
            return
        self.root.chmod(0o711)  # sandboxes reach their own directory, list nothing
        for path in self.config.private:
            with contextlib.suppress(FileNotFoundError, PermissionError):
                mode = path.stat().st_mode
                path.chmod(stat.S_IMODE(mode) & 0o700)

    def _inside(self, path: Path) -> Path:
        """`path` resolved, or ProviderError when that leaves the root (a `..`, an absolute id, a symlink)."""
        resolved = path.resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise ProviderError(f"refusing path {str(path)[:200]!r}: it resolves outside the sandbox root")
        return resolved

    @staticmethod
    def _check(ref: SandboxRef) -> None:
        if not _TENANT.fullmatch(ref.tenant_id) or not _SANDBOX.fullmatch(ref.sandbox_id):
            raise ProviderError(f"refusing sandbox {ref.tenant_id[:80]!r}/{ref.sandbox_id[:80]!r}: not a tenant and sandbox id")

    def path(self, ref: SandboxRef) -> Path:
        self._check(ref)
        return self._inside(self.root / ref.tenant_id / ref.sandbox_id)

    def _book(self, ref: SandboxRef, suffix: str) -> Path:
        self._check(ref)
        return self._inside(self.root / ".meta" / ref.tenant_id / f"{ref.sandbox_id}{suffix}")

    def meta(self, ref: SandboxRef) -> LocalMeta | None:
        try:
            meta = msgspec.json.decode(self._book(ref, ".json").read_bytes(), type=LocalMeta)
        except FileNotFoundError:
            return None
        if Path(meta.location).resolve() != self.path(ref):
            raise ProviderError(f"bookkeeping of {ref.sandbox_id} names a location that is not its own")
        return meta

    def _save(self, ref: SandboxRef, meta: LocalMeta) -> None:
        path = self._book(ref, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(meta))
        tmp.replace(path)  # the sandbox counts as created only once this lands

    @contextlib.asynccontextmanager
    async def _locked(self, ref: SandboxRef) -> AsyncIterator[None]:
        """One call at a time per sandbox, across every process on this root."""
        path = self._book(ref, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.02)
            yield
        finally:
            os.close(fd)

    def _allowed(self, options: SandboxOptions) -> None:
        """Refuse before anything is created: an unlisted program or repository is the deployment's call."""
        if options.command:
            self._allowed_program(options.command[0])
        if options.repo:
            repo = Path(options.repo).resolve()
            if not any(repo == r or repo.is_relative_to(r) for r in self.repos):
                raise ProviderError(f"repository {options.repo[:200]!r} is not under an allowed directory; "
                                    f"the deployment allows repositories with {REPOS_SETTING}")
        if options.ref is not None and (options.ref.startswith("-") or not options.ref.strip()):
            raise ProviderError(f"refusing git ref {options.ref[:80]!r}: a ref never starts with '-'")

    def _allowed_program(self, program: str) -> None:
        if program not in self.commands:
            allowed = ", ".join(sorted(self.commands)) or "none"
            raise ProviderError(f"command {program[:200]!r} is not allowed in sandboxes here "
                                f"(allowed: {allowed}); the deployment allows programs with {COMMANDS_SETTING}")

    async def _git(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec("git", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                    stdin=subprocess.DEVNULL)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ProviderError(f"git {' '.join(args)}: {err.decode(errors='replace').strip() or out.decode().strip()}")
        return out.decode().strip()

    async def _commit_of(self, repo: str, ref: str) -> str:
        """The commit `ref` names in `repo`: git reads it as a revision, never as an option."""
        return await self._git("-C", repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")

    async def _clear_partial(self, ref: SandboxRef, repo: str | None) -> None:
        """What a crash mid-create left (a process, a directory, no bookkeeping): gone, so we start over."""
        await self._kill_started(ref)
        target = self.path(ref)
        if target.exists():
            _set_writable(target, True)
            if repo:
                with contextlib.suppress(ProviderError):
                    await self._git("-c", f"safe.directory={target}", "-C", repo, "worktree", "remove", "--force",
                                    "--", str(target))
            shutil.rmtree(target, ignore_errors=True)
        if repo:
            with contextlib.suppress(ProviderError):
                await self._git("-C", repo, "worktree", "prune")

    # -- processes (the bubblewrap provider overrides these) ----------------------------------
    def _env(self, workdir: Path) -> dict[str, str]:
        return {"PATH": DEFAULT_PATH, "HOME": str(workdir), **self.config.env}

    def _drop(self) -> dict[str, Any]:
        """Popen options that run a program as the sandbox uid when we are root."""
        if not self.as_root:
            return {}
        return {"user": self.config.uid, "group": self.config.gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        """A new sandbox directory belongs to the uid its programs run as."""
        if not self.as_root:
            return
        for p in [path, *path.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(p, self.config.uid, self.config.gid)

    async def _prepare(self, ref: SandboxRef, target: Path, limits: Caps) -> None:
        """Whatever the sandbox needs before a process starts in it (nothing, here)."""

    def _spawn(self, ref: SandboxRef, target: Path, command: list[str], log: int) -> int:
        proc = subprocess.Popen(command, cwd=target, env=self._env(target), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True, **self._drop())
        return proc.pid

    def _start(self, ref: SandboxRef, target: Path, command: list[str] | None) -> tuple[int | None, int | None]:
        if not command:
            return None, None
        self._allowed_program(command[0])
        program = command[0] if "/" not in command[0] or command[0].startswith("/") else str(target / command[0])
        if shutil.which(program, path=self._env(target)["PATH"]) is None:
            raise ProviderError(f"cannot start {command[0]!r}: no such program")
        log = os.open(self._book(ref, ".log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            pid = self._spawn(ref, target, command, log)
        except OSError as e:
            raise ProviderError(f"cannot start {command[0]!r}: {e}") from e
        finally:
            os.close(log)
        started = start_time(pid)
        self._book(ref, ".pid").write_text(f"{pid} {started}")  # found again if we crash before the bookkeeping
        if stall := os.environ.get(STALL_ENV):
            Path(stall).write_text(str(pid))
            while True:  # the test kills us here
                time.sleep(1)
        return pid, started

    async def _kill_started(self, ref: SandboxRef) -> None:
        """Kill the process a create started, from the pid file (bookkeeping may not exist yet)."""
        pidfile = self._book(ref, ".pid")
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid, started = (int(x) if x != "None" else None for x in pidfile.read_text().split())
            if _ours(pid, started):
                _signal_group(pid, signal.SIGKILL)
                _signal_group(pid, signal.SIGCONT)
                await _reap(pid)
        pidfile.unlink(missing_ok=True)

    def processes(self, ref: SandboxRef, meta: LocalMeta) -> set[int]:
        """The pids of the sandbox's processes (none once they are gone, or when the pid was reused)."""
        return _group_members(meta.pid) if _ours(meta.pid, meta.started) else set()

    async def _freeze(self, ref: SandboxRef, meta: LocalMeta, frozen: bool) -> None:
        if _ours(meta.pid, meta.started):
            _signal_group(meta.pid, signal.SIGSTOP if frozen else signal.SIGCONT)
            if frozen:
                await until_stopped(self.processes(ref, meta))

    def _counters(self, ref: SandboxRef) -> dict[str, int]:
        return {}

    async def _run(self, ref: SandboxRef, meta: LocalMeta, argv: list[str], timeout: float, stdin: bytes) -> ExecResult:
        workdir = Path(meta.location)
        return await run_bounded(argv, stdin=stdin, timeout=timeout, limit=self.config.output_limit,
                                 kill=self._kill_exec, running=self._running(ref), cwd=workdir, env=self._env(workdir),
                                 start_new_session=True, **self._drop())

    def _running(self, ref: SandboxRef) -> Running:
        running = self._execs.get(ref)
        if running is None:
            running = self._execs[ref] = Running(self._kill_exec)
        return running

    def _kill_exec(self, pid: int) -> None:
        """An exec and whatever it started (its own process group)."""
        _signal_group(pid, signal.SIGKILL)

    # -- the interface ----------------------------------------------------------------------
    async def create(self, ref: SandboxRef, options: SandboxOptions) -> str:
        async with self._locked(ref):
            existing = self.meta(ref)
            if existing is not None:
                return existing.location
            self._allowed(options)
            limits = self.config.limits_for(options.limits)
            await self._clear_partial(ref, options.repo)
            target = self.path(ref)
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.as_root:
                target.parent.chmod(0o711)
            if options.repo:
                commit = await self._commit_of(options.repo, options.ref or "HEAD")
                await self._git("-C", options.repo, "worktree", "add", "--detach", "--", str(target), commit)
            else:
                target.mkdir()
            self._own(target)
            await self._prepare(ref, target, limits)
            pid, started = self._start(ref, target, options.command)
            self._save(ref, LocalMeta(sandbox_id=ref.sandbox_id, location=str(target), pid=pid, started=started,
                                      repo=options.repo, kind=self.kind, limits=_as_dict(limits)))
            return str(target)

    async def fork(self, source: SandboxRef, target: SandboxRef, options: SandboxOptions) -> str:
        async with self._locked(target):
            existing = self.meta(target)
            if existing is not None:
                return existing.location
            self._allowed(SandboxOptions(command=options.command))
            limits = self.config.limits_for(options.limits)
            src = self.meta(source)
            if src is None or not Path(src.location).exists():
                raise ProviderError(f"source sandbox {source.sandbox_id} has no directory to copy")
            await self._clear_partial(target, src.repo)
            dest = self.path(target)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self.as_root:
                dest.parent.chmod(0o711)
            if src.repo:
                # the copy belongs to the sandbox uid: git, run by us, is told to trust it
                head = await self._git("-c", f"safe.directory={src.location}", "-C", src.location, "rev-parse",
                                       "--verify", "HEAD")
                await self._git("-C", src.repo, "worktree", "add", "--detach", "--", str(dest), head)
                link = (dest / ".git").read_bytes()  # the copy must keep its own worktree link
                await _copy(f"{src.location}/.", str(dest))
                (dest / ".git").write_bytes(link)
            else:
                await _copy(src.location, str(dest))
            _set_writable(dest, True)  # a copy of a paused sandbox starts out running
            self._own(dest)
            await self._prepare(target, dest, limits)
            pid, started = self._start(target, dest, options.command)
            self._save(target, LocalMeta(sandbox_id=target.sandbox_id, location=str(dest), pid=pid, started=started,
                                         repo=src.repo, kind=self.kind, limits=_as_dict(limits)))
            return str(dest)

    async def pause(self, ref: SandboxRef) -> None:
        async with self._locked(ref):
            meta = self._require(ref)
            await self._freeze(ref, meta, True)
            _set_writable(Path(meta.location), False)
            meta.paused = True
            self._save(ref, meta)

    async def resume(self, ref: SandboxRef) -> None:
        async with self._locked(ref):
            meta = self._require(ref)
            _set_writable(Path(meta.location), True)
            await self._freeze(ref, meta, False)
            meta.paused = False
            self._save(ref, meta)

    async def destroy(self, ref: SandboxRef) -> None:
        async with self._locked(ref):
            meta = self.meta(ref)
            running = self._execs.pop(ref, None)
            if running is not None:  # execs running now (or starting) end with their sandbox
                running.end()
            await self._kill_started(ref)
            if meta is not None and _ours(meta.pid, meta.started):
                _signal_group(meta.pid, signal.SIGKILL)
                _signal_group(meta.pid, signal.SIGCONT)
                await _reap(meta.pid)
            await self._clear_partial(ref, meta.repo if meta else None)
            await self._teardown(ref)
            for suffix in (".json", ".log"):
                self._book(ref, suffix).unlink(missing_ok=True)

    async def _teardown(self, ref: SandboxRef) -> None:
        """Whatever else a sandbox had (nothing, here)."""

    async def exec(self, ref: SandboxRef, argv: list[str], timeout: float, stdin: bytes = b"") -> ExecResult:
        if not argv:
            raise ProviderError("exec needs a program")
        self._allowed_program(argv[0])
        meta = self._require(ref)
        if meta.paused:
            raise ProviderError(f"sandbox {ref.sandbox_id} is paused; resume it first")
        before = self._counters(ref)
        try:
            result = await self._run(ref, meta, argv, timeout, stdin)
        except OSError as e:
            raise ProviderError(f"cannot run {argv[0]!r}: {e}") from e
        after = self._counters(ref)
        hit = [k for k in ("memory", "pids") if after.get(k, 0) > before.get(k, 0)]
        return msgspec.structs.replace(result, limits_hit=hit) if hit else result

    async def list(self) -> list[SandboxRef]:
        found: set[SandboxRef] = set()
        for book in (self.root / ".meta").glob("*/*"):
            if book.suffix in (".json", ".pid"):
                found.add(SandboxRef(book.parent.name, book.stem))
        for tenant in self.root.iterdir():
            if tenant.name != ".meta" and tenant.is_dir() and _TENANT.fullmatch(tenant.name):
                found.update(SandboxRef(tenant.name, d.name) for d in tenant.iterdir() if _SANDBOX.fullmatch(d.name))
        return sorted(found, key=lambda r: (r.tenant_id, r.sandbox_id))

    async def status(self, ref: SandboxRef) -> SandboxStatus:
        meta = self.meta(ref)
        if meta is None:
            return SandboxStatus(exists=False)
        counters = self._counters(ref)
        return SandboxStatus(exists=Path(meta.location).is_dir(), paused=meta.paused, location=meta.location,
                             processes=len(self.processes(ref, meta)),
                             limits_hit=[k for k in ("memory", "pids") if counters.get(k)])  # type: ignore[misc]

    def _require(self, ref: SandboxRef) -> LocalMeta:
        meta = self.meta(ref)
        if meta is None:
            raise ProviderError(f"sandbox {ref.sandbox_id} does not exist here")
        return meta


def _as_dict(limits: Caps) -> dict[str, float]:
    return {"memory_mb": limits.memory_mb, "pids": limits.pids, "cpus": limits.cpus}


async def _copy(source: str, dest: str) -> None:
    """A copy of the tree with modes and owners, sharing blocks where the file system can (reflink)."""
    proc = await asyncio.create_subprocess_exec("cp", "-a", "--reflink=auto", "--", source, dest,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise ProviderError(f"copying the sandbox failed: {err.decode(errors='replace').strip()[:500]}")
