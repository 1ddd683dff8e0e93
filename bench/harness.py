"""Timing, percentiles, CPU accounting and child processes for the benchmark.

Nothing here judges a number: the benchmark reports, it does not pass or fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


# -- latencies -------------------------------------------------------------------------------
def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in microseconds."""
    if not sorted_ns:
        return float("nan")
    rank = max(0, min(len(sorted_ns) - 1, round(q * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[rank] / 1000


@dataclass
class Stats:
    """`n` operations that took `wall` seconds in total, with one latency sample per operation."""

    n: int
    wall: float
    latencies_ns: list[int]
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> CPU seconds during the run
    settle: float = 0.0  # seconds after the last reply until background consumers caught up

    @property
    def rate(self) -> float:
        return self.n / self.wall if self.wall else float("nan")

    @property
    def p50(self) -> float:
        return percentile(sorted(self.latencies_ns), 0.50)

    @property
    def p99(self) -> float:
        return percentile(sorted(self.latencies_ns), 0.99)

    def cpu_us_per_op(self, name: str) -> float:
        return self.cpu.get(name, float("nan")) / self.n * 1e6

    def merged(self, other: Stats) -> Stats:
        cpu = {k: self.cpu.get(k, 0.0) + other.cpu.get(k, 0.0) for k in self.cpu.keys() | other.cpu.keys()}
        return Stats(self.n + other.n, self.wall + other.wall, self.latencies_ns + other.latencies_ns, cpu,
                     max(self.settle, other.settle))


# -- CPU of the processes sharing the box ------------------------------------------------------
def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (this one when pid is None), from /proc."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15 of stat)


class CpuMeter:
    """Measures the CPU each named process spends between `start` and `stop`."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: process_cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}


# -- running operations --------------------------------------------------------------------
Op = Callable[[int, int], Awaitable[object]]  # (lane, i) -> awaitable
Settle = Callable[[], Awaitable[float]]  # waits until background work caused by the run is done


async def run_lanes(lanes: int, per_lane: int, op: Op, cpu: CpuMeter | None = None,
                    settle: Settle | None = None) -> Stats:
    """`lanes` concurrent lanes, each running `per_lane` operations one after another.

    With lanes=1 this is a plain sequential loop. Every operation's latency is recorded; the
    rate is all operations over the wall time until the last reply. With `settle`, the CPU
    measurement goes on until the background work the run caused is done, so the CPU per
    operation includes it (and the next workload does not run alongside it).
    """
    latencies: list[int] = []
    clock = time.perf_counter_ns

    async def lane(k: int) -> None:
        for i in range(per_lane):
            t0 = clock()
            await op(k, i)
            latencies.append(clock() - t0)

    if cpu:
        cpu.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(lanes)))
    wall = time.perf_counter() - t0
    settled = await settle() if settle else 0.0
    used = cpu.stop() if cpu else {}
    return Stats(lanes * per_lane, wall, latencies, used, settled)


# -- child processes -------------------------------------------------------------------------
SOURCE_PACKAGES = ("engine", "projections", "handlers", "schemas", "cli")  # installed as agentledger.<name>


def snapshot_sources(dest: Path, repo: Path = REPO) -> Path:
    """Copy the project's packages as they are now, so that every process started during one run
    (including an engine restart minutes later) runs the same code even if files change meanwhile.
    They are laid out as installed (`agentledger/engine`, ...): a child with `dest` first on its
    PYTHONPATH imports them from here, ahead of the editable install's finder."""
    ignore = shutil.ignore_patterns("__pycache__", "results")
    for package in SOURCE_PACKAGES:
        shutil.copytree(repo / package, dest / "agentledger" / package, ignore=ignore)
    shutil.copytree(repo / "bench", dest / "bench", ignore=ignore)
    return dest


class ChildProcess:
    """A Python child (the engine, the echo responder) that prints a line containing `ready_marker`
    on stdout once it takes requests. Stderr goes to a log file, so a full pipe never blocks it."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_marker: str, source: Path | None = None):
        """`source`: a `snapshot_sources` directory to import the project from (default: the repo)."""
        self.name, self.argv, self.log_path, self.ready_marker = name, argv, log_path, ready_marker
        self.source = source
        self.proc: asyncio.subprocess.Process | None = None
        self.ready_seconds = float("nan")
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 300.0) -> float:
        """Start the process; return the seconds from spawn to its ready line."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.source is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.source), env.get("PYTHONPATH")]))
        log = self.log_path.open("ab")
        t0 = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE, stderr=log,
                                                         stdin=asyncio.subprocess.DEVNULL, env=env,
                                                         cwd=self.source or REPO)
        log.close()
        assert self.proc.stdout is not None
        try:
            while True:
                line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
                if not line:
                    raise RuntimeError(f"{self.name} exited before it was ready (rc={await self.proc.wait()}); "
                                       f"see {self.log_path}")
                if self.ready_marker in line.decode(errors="replace"):
                    break
        except BaseException:
            await self.stop()
            raise
        self.ready_seconds = time.perf_counter() - t0
        self._drain = asyncio.create_task(self._drain_stdout())
        return self.ready_seconds

    async def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    async def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None


def engine_process(nats_url: str, prefix: str, stream: str, log_path: Path, source: Path | None) -> ChildProcess:
    argv = [str(VENV_BIN / "agentledger"), "serve", "--nats-url", nats_url, "--prefix", prefix, "--stream", stream]
    return ChildProcess("engine", argv, log_path, "ready", source)


def engine_without_workers(nats_url: str, prefix: str, stream: str, log_path: Path,
                           source: Path | None) -> ChildProcess:
    argv = [sys.executable, "-m", "bench.engine_variant", nats_url, prefix, stream]
    return ChildProcess("engine without background workers", argv, log_path, "ready", source)


def echo_process(nats_url: str, prefix: str, log_path: Path, source: Path | None) -> ChildProcess:
    argv = [sys.executable, "-m", "bench.echo", nats_url, prefix]
    return ChildProcess("echo", argv, log_path, "ready", source)
