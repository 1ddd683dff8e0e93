"""The local provider: a sandbox is a directory (optionally a git worktree of a repository) with
an optional long-running process started in it.

pause freezes the process group (SIGSTOP) and removes write permission from the tree; resume
undoes both; fork copies the directory (a worktree gets its own worktree at the source's HEAD,
with the source's working files copied over); destroy kills the process group and removes the
directory. Bookkeeping lives beside the sandboxes (`<root>/.meta`), not inside them, so a fork
never copies it and the agent never sees it.

Nothing here trusts the request: ids are checked again, every path is resolved and must lie under
the root, a process is started only when its program is on the deployment's allowlist
(`--allow-command` / `AGENTLEDGER_SANDBOX_COMMANDS`, empty by default) and a worktree is made only
from a repository under an allowed directory (`--allow-repo` / `AGENTLEDGER_SANDBOX_REPOS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

import msgspec

from agentledger.handlers.providers.base import ProviderError, SandboxRef
from agentledger.schemas.ids import TENANT_RE, id_pattern
from agentledger.schemas.sandboxes import ProviderCapabilities, SandboxOptions

_TENANT = re.compile(TENANT_RE)
_SANDBOX = re.compile(id_pattern("sbx_"))
COMMANDS_SETTING = "--allow-command / AGENTLEDGER_SANDBOX_COMMANDS"
REPOS_SETTING = "--allow-repo / AGENTLEDGER_SANDBOX_REPOS"


class LocalMeta(msgspec.Struct, kw_only=True):
    sandbox_id: str
    location: str
    pid: int | None = None
    repo: str | None = None
    paused: bool = False


def _set_writable(root: Path, writable: bool) -> None:
    write = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    paths = [root, *root.rglob("*")]
    if writable:
        paths.reverse()
    for path in paths:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod((mode | stat.S_IWUSR) if writable else (mode & ~write))


def _signal_group(pid: int | None, sig: signal.Signals) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


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


class LocalProvider:
    name = "local"
    capabilities = ProviderCapabilities(fork=True, pause=True)

    def __init__(self, root: str | Path, commands: Iterable[str] = (), repos: Iterable[str | Path] = ()) -> None:
        self.root = Path(root).resolve()
        self.commands = frozenset(commands)  # programs (argv[0], exactly as requested) allowed to run
        self.repos = tuple(Path(r).resolve() for r in repos)  # directories whose repositories may be checked out

    # -- bookkeeping ------------------------------------------------------------------------
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

    def _meta_path(self, ref: SandboxRef) -> Path:
        self._check(ref)
        return self._inside(self.root / ".meta" / ref.tenant_id / f"{ref.sandbox_id}.json")

    def meta(self, ref: SandboxRef) -> LocalMeta | None:
        try:
            meta = msgspec.json.decode(self._meta_path(ref).read_bytes(), type=LocalMeta)
        except FileNotFoundError:
            return None
        if Path(meta.location).resolve() != self.path(ref):
            raise ProviderError(f"bookkeeping of {ref.sandbox_id} names a location that is not its own")
        return meta

    def _allowed(self, options: SandboxOptions) -> None:
        """Refuse before anything is created: an unlisted program or repository is the deployment's call."""
        if options.command and options.command[0] not in self.commands:
            allowed = ", ".join(sorted(self.commands)) or "none"
            raise ProviderError(f"command {options.command[0][:200]!r} is not allowed in sandboxes here "
                                f"(allowed: {allowed}); the deployment allows programs with {COMMANDS_SETTING}")
        if options.repo:
            repo = Path(options.repo).resolve()
            if not any(repo == r or repo.is_relative_to(r) for r in self.repos):
                raise ProviderError(f"repository {options.repo[:200]!r} is not under an allowed directory; "
                                    f"the deployment allows repositories with {REPOS_SETTING}")

    def _save(self, ref: SandboxRef, meta: LocalMeta) -> None:
        path = self._meta_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(meta))
        tmp.replace(path)  # the sandbox counts as created only once this lands

    async def _git(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec("git", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise ProviderError(f"git {' '.join(args)}: {err.decode().strip() or out.decode().strip()}")

    async def _clear_partial(self, ref: SandboxRef, repo: str | None) -> None:
        """A directory without metadata is what a crash mid-create left: start over."""
        target = self.path(ref)
        if target.exists():
            _set_writable(target, True)
            if repo:
                with contextlib.suppress(ProviderError):
                    await self._git("-C", repo, "worktree", "remove", "--force", str(target))
            shutil.rmtree(target, ignore_errors=True)
        if repo:
            with contextlib.suppress(ProviderError):
                await self._git("-C", repo, "worktree", "prune")

    def _start(self, target: Path, command: list[str] | None) -> int | None:
        if not command:
            return None
        if command[0] not in self.commands:
            raise ProviderError(f"command {command[0][:200]!r} is not allowed; see {COMMANDS_SETTING}")
        log = open(self._inside(self.root / ".meta" / f"{target.parent.name}.{target.name}.log"), "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(command, cwd=target, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        except OSError as e:
            raise ProviderError(f"cannot start {command[0]!r}: {e}") from e
        finally:
            log.close()
        return proc.pid

    # -- the protocol -----------------------------------------------------------------------
    async def create(self, ref: SandboxRef, options: SandboxOptions) -> str:
        existing = self.meta(ref)
        if existing is not None:
            return existing.location
        self._allowed(options)
        await self._clear_partial(ref, options.repo)
        target = self.path(ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        (self.root / ".meta").mkdir(parents=True, exist_ok=True)
        if options.repo:
            await self._git("-C", options.repo, "worktree", "add", "--detach", str(target), options.ref or "HEAD")
        else:
            target.mkdir()
        pid = self._start(target, options.command)
        self._save(ref, LocalMeta(sandbox_id=ref.sandbox_id, location=str(target), pid=pid, repo=options.repo))
        return str(target)

    async def fork(self, source: SandboxRef, target: SandboxRef, options: SandboxOptions) -> str:
        existing = self.meta(target)
        if existing is not None:
            return existing.location
        self._allowed(SandboxOptions(command=options.command))
        src = self.meta(source)
        if src is None or not Path(src.location).exists():
            raise ProviderError(f"source sandbox {source.sandbox_id} has no directory to copy")
        await self._clear_partial(target, src.repo)
        dest = self.path(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.repo:
            proc = await asyncio.create_subprocess_exec("git", "-C", src.location, "rev-parse", "HEAD",
                                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            head, _ = await proc.communicate()
            await self._git("-C", src.repo, "worktree", "add", "--detach", str(dest), head.decode().strip())
            shutil.copytree(src.location, dest, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        else:
            shutil.copytree(src.location, dest, symlinks=True)
        _set_writable(dest, True)  # a copy of a paused sandbox starts out running
        pid = self._start(dest, options.command)
        self._save(target, LocalMeta(sandbox_id=target.sandbox_id, location=str(dest), pid=pid, repo=src.repo))
        return str(dest)

    async def pause(self, ref: SandboxRef) -> None:
        meta = self._require(ref)
        _signal_group(meta.pid, signal.SIGSTOP)
        _set_writable(Path(meta.location), False)
        meta.paused = True
        self._save(ref, meta)

    async def resume(self, ref: SandboxRef) -> None:
        meta = self._require(ref)
        _set_writable(Path(meta.location), True)
        _signal_group(meta.pid, signal.SIGCONT)
        meta.paused = False
        self._save(ref, meta)

    async def destroy(self, ref: SandboxRef) -> None:
        meta = self.meta(ref)
        if meta is None:
            await self._clear_partial(ref, None)
            return
        _signal_group(meta.pid, signal.SIGKILL)
        _signal_group(meta.pid, signal.SIGCONT)
        await _reap(meta.pid)
        await self._clear_partial(ref, meta.repo)
        self._meta_path(ref).unlink(missing_ok=True)

    def _require(self, ref: SandboxRef) -> LocalMeta:
        meta = self.meta(ref)
        if meta is None:
            raise ProviderError(f"sandbox {ref.sandbox_id} does not exist here")
        return meta
