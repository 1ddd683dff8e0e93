"""Markdown output: tables, number formatting, and the machine the numbers came from."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from importlib import metadata
from pathlib import Path

from agentledger.handlers.nats_server import nats_server_binary
from bench.harness import Stats


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def rate(x: float) -> str:
    return f"{x:,.0f}"


def us(x: float) -> str:
    """Microseconds, shown as µs below 10 ms and as ms above."""
    if x != x:  # nan
        return "—"
    return f"{x:,.0f} µs" if x < 10_000 else f"{x / 1000:,.1f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "—"


def rates_summary(runs: list[Stats]) -> tuple[float, str]:
    """Median rate over repeated runs, and the min–max range as text."""
    rates = [s.rate for s in runs]
    med = statistics.median(rates)
    spread = f"{min(rates):,.0f}–{max(rates):,.0f}" if len(rates) > 1 else ""
    return med, spread


def pooled(runs: list[Stats]) -> Stats:
    out = runs[0]
    for s in runs[1:]:
        out = out.merged(s)
    return out


def cpu_cells(s: Stats, names: list[str]) -> list[str]:
    return [f"{s.cpu_us_per_op(n):,.0f}" if n in s.cpu else "—" for n in names]


def _cmd(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine(data_dir: Path) -> list[list[object]]:
    df = _cmd(["df", "-T", str(data_dir)]).splitlines()
    device = " ".join(df[-1].split()[:2]) if len(df) > 1 else "?"

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return [
        ["CPU", f"{os.cpu_count()} × {_cpu_model()} (nproc {_cmd(['nproc'])})"],
        ["kernel", platform.release()],
        ["data dir device, fs", device],
        ["python", platform.python_version()],
        ["nats-server", _cmd([nats_server_binary(), "--version"])],
        ["nats-py / faststream / msgspec", f"{version('nats-py')} / {version('faststream')} / {version('msgspec')}"],
    ]
