"""docs/clients.md: each client's complete example runs as written, on a fresh engine started the
way `make run` starts it, and prints what the page says it prints."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.client_support import HANG, serving

DOC = (Path(__file__).resolve().parent.parent / "docs" / "clients.md").read_text()


def section(heading: str) -> str:
    start = DOC.index(f"\n## {heading}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


async def test_the_python_example_runs_as_written(tmp_path: Path) -> None:
    python = section("Python")
    code = re.search(r"^```python\n(.*?)^```", python, re.M | re.S)
    run = re.search(r"`(\.venv/bin/python (\S+\.py))`", python)
    shown = re.search(r"on a fresh `make run`:\n\n```\n(.*?)```", python, re.S)
    assert code and run and shown, "the section has the example, how to run it and what it prints"
    (tmp_path / run.group(2)).write_text(code.group(1))
    async with serving(tmp_path) as env:
        proc = await asyncio.create_subprocess_exec("bash", "-c", run.group(1), cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 0, err.decode()
    expected = shown.group(1).splitlines()
    lines = out.decode().splitlines()
    assert len(lines) == len(expected), (lines, expected)
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(".*?".join(map(re.escape, pattern.split("…"))), line), (line, pattern)
