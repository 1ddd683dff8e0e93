"""One cgroup per sandbox: its processes, limits, freeze and kill, on whatever the machine has.

Three layouts are found: pure cgroup v2 (`/sys/fs/cgroup/cgroup.controllers`), the hybrid one
(v2 without controllers at `/sys/fs/cgroup/unified`, the v1 controllers beside it), and v1 only.
Limits come from the memory, pids and cpu controllers of either version; pause is v2
`cgroup.freeze`, else the v1 freezer; kill is v2 `cgroup.kill`, else SIGKILL of every member
while frozen, until none is left. A sandbox's cgroup is `<base>/<tenant>/<sandbox>` in each
hierarchy used; `<base>` names the sandbox root, so two effect handlers never share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from agentledger.providers.base import Caps

MOUNT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return ""


def _counter(path: Path, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


@dataclass(frozen=True)
class Hierarchies:
    """Where each job is done on this machine; None where nothing can do it."""

    v2: Path | None = None  # a v2 hierarchy we may make cgroups in (freeze, kill, and limits when pure)
    pure_v2: bool = False
    v1: dict[str, Path] = field(default_factory=dict)  # controller -> its v1 mount, for those we may use
    problem: str | None = None  # why there are no cgroups at all

    v2_freeze: bool = False  # the kernel has cgroup.freeze (5.2+)
    v2_kill: bool = False  # and cgroup.kill (5.14+)

    @property
    def freeze(self) -> str:
        if self.v2_freeze:
            return "cgroup.freeze"
        if "freezer" in self.v1:
            return "freezer"
        return "sigstop"

    @property
    def kill(self) -> str:
        return "cgroup.kill" if self.v2_kill else "signal"

    @property
    def limits(self) -> bool:
        if self.pure_v2:
            return True
        return all(c in self.v1 for c in CONTROLLERS)

    @property
    def usable(self) -> bool:
        return self.v2 is not None or bool(self.v1)


def _probe_v2(v2: Path) -> tuple[bool, bool]:
    """Whether a child cgroup has cgroup.freeze and cgroup.kill (the root cgroup has neither)."""
    probe = v2 / f"agentledger-probe-{os.getpid()}"
    try:
        probe.mkdir(exist_ok=True)
        return (probe / "cgroup.freeze").exists(), (probe / "cgroup.kill").exists()
    except OSError:
        return False, False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def detect(mount: Path = MOUNT) -> Hierarchies:
    """The cgroups this process can make sandboxes' cgroups in (root, or a delegated subtree)."""
    if (mount / "cgroup.controllers").exists():
        if not _writable(mount):
            return Hierarchies(problem=f"{mount} (cgroup v2) is not writable by this user (not root, no delegation)")
        return Hierarchies(mount, True, {}, None, *_probe_v2(mount))
    v2 = mount / "unified"
    v1 = {c: mount / c for c in (*CONTROLLERS, "freezer") if (mount / c / "cgroup.procs").exists() and _writable(mount / c)}
    has_v2 = (v2 / "cgroup.procs").exists() and _writable(v2)
    if not has_v2 and not v1:
        return Hierarchies(problem=f"no cgroup hierarchy under {mount} is writable by this user")
    freeze, kill = _probe_v2(v2) if has_v2 else (False, False)
    return Hierarchies(v2 if has_v2 else None, False, v1, None, freeze, kill)


class SandboxCgroup:
    """The cgroups of one sandbox, in every hierarchy this machine gives us."""

    def __init__(self, machine: Hierarchies, base: str, tenant: str, sandbox: str) -> None:
        self.machine = machine
        rel = Path(base, tenant, sandbox)
        self.rel = rel
        self.dirs: dict[str, Path] = {}  # job -> directory
        if machine.v2 is not None:
            self.dirs["v2"] = machine.v2 / rel
        for controller, mount in machine.v1.items():
            self.dirs[controller] = mount / rel

    # -- layout -------------------------------------------------------------------------------
    def _dir_for(self, controller: str) -> Path | None:
        if self.machine.pure_v2:
            return self.dirs.get("v2")
        return self.dirs.get(controller)

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs.values())

    def create(self, limits: Caps) -> None:
        for job, path in self.dirs.items():
            if job == "v2" and self.machine.pure_v2:
                self._enable_controllers(path)
            path.mkdir(parents=True, exist_ok=True)
        self.set_limits(limits)

    def _enable_controllers(self, leaf: Path) -> None:
        """On pure v2 a cgroup gets a controller only when every ancestor hands it down."""
        assert self.machine.v2 is not None
        wanted = " ".join(f"+{c}" for c in CONTROLLERS)
        node = self.machine.v2
        for part in self.rel.parts:
            with contextlib.suppress(OSError):
                (node / "cgroup.subtree_control").write_text(wanted)
            node = node / part
            node.mkdir(exist_ok=True)
            if node == leaf:
                break

    def set_limits(self, limits: Caps) -> None:
        memory = limits.memory_mb * 1024 * 1024
        quota = max(int(limits.cpus * CPU_PERIOD_US), 1000)
        if self.machine.pure_v2:
            d = self.dirs["v2"]
            self._write(d / "memory.max", str(memory))
            self._write(d / "memory.swap.max", "0", optional=True)
            self._write(d / "pids.max", str(limits.pids))
            self._write(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        if (d := self.dirs.get("memory")) is not None:
            self._write(d / "memory.limit_in_bytes", str(memory))
            self._write(d / "memory.memsw.limit_in_bytes", str(memory), optional=True)
        if (d := self.dirs.get("pids")) is not None:
            self._write(d / "pids.max", str(limits.pids))
        if (d := self.dirs.get("cpu")) is not None:
            self._write(d / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            self._write(d / "cpu.cfs_quota_us", str(quota))

    @staticmethod
    def _write(path: Path, value: str, optional: bool = False) -> None:
        try:
            path.write_text(value)
        except OSError:
            if not optional:
                raise

    def procs_files(self) -> list[Path]:
        """The files a new process writes its pid to, to join the sandbox's cgroups."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    # -- members ------------------------------------------------------------------------------
    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs.values():
            found.update(int(p) for p in _read(d / "cgroup.procs").split() if p.isdigit())
        return found

    def counters(self) -> dict[str, int]:
        """How often the sandbox met its limits: OOM kills and refused forks (monotonic)."""
        memory, pids = self._dir_for("memory"), self._dir_for("pids")
        oom = 0
        if memory is not None:
            oom = _counter(memory / ("memory.events" if self.machine.pure_v2 else "memory.oom_control"), "oom_kill")
        return {"memory": oom, "pids": _counter(pids / "pids.events", "max") if pids is not None else 0}

    # -- freeze and kill ----------------------------------------------------------------------
    async def freeze(self, frozen: bool) -> None:
        method = self.machine.freeze
        if method == "cgroup.freeze":
            d = self.dirs["v2"]
            self._write(d / "cgroup.freeze", "1" if frozen else "0")
            await self._until(lambda: _counter(d / "cgroup.events", "frozen") == int(frozen))
        elif method == "freezer":
            d = self.dirs["freezer"]
            state = "FROZEN" if frozen else "THAWED"
            self._write(d / "freezer.state", state)
            await self._until(lambda: _read(d / "freezer.state").strip() == state)
        else:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def frozen(self) -> bool:
        method = self.machine.freeze
        if method == "cgroup.freeze":
            return _read(self.dirs["v2"] / "cgroup.freeze").strip() == "1"
        if method == "freezer":
            return _read(self.dirs["freezer"] / "freezer.state").strip() != "THAWED"
        return False

    @staticmethod
    async def _until(done: object, attempts: int = 200) -> None:
        for _ in range(attempts):
            if done():  # type: ignore[operator]
                return
            await asyncio.sleep(0.01)

    async def kill(self) -> None:
        """Every process of the sandbox dead, whatever it did meanwhile (forks included)."""
        for _ in range(100):
            if not self.pids():
                return
            if self.machine.kill == "cgroup.kill":
                self._write(self.dirs["v2"] / "cgroup.kill", "1")
            else:
                await self.freeze(True)  # nothing forks while we kill
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await self.freeze(False)
            await asyncio.sleep(0.02)

    async def remove(self) -> None:
        await self.kill()
        for d in self.dirs.values():
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    await asyncio.sleep(0.02)
            for parent in (d.parent, d.parent.parent):  # the tenant's and the base's, once empty
                with contextlib.suppress(OSError):
                    parent.rmdir()


def sandboxes_in(machine: Hierarchies, base: str) -> set[tuple[str, str]]:
    """(tenant, sandbox) of every cgroup left under `base` in any hierarchy."""
    found: set[tuple[str, str]] = set()
    roots = ([machine.v2] if machine.v2 is not None else []) + list(machine.v1.values())
    for root in roots:
        top = root / base
        if not top.is_dir():
            continue
        for tenant in top.iterdir():
            if tenant.is_dir():
                found.update((tenant.name, s.name) for s in tenant.iterdir() if s.is_dir())
    return found
