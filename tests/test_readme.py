"""The README's walkthrough and Python snippet run exactly as written, in order, on a fresh
engine started the way `make run` starts it (only the port differs: NATS_URL points at it), and
so does the raw-NATS request of docs/protocol.md that continues it."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import pytest

from tests.fresh_support import HANG, sh

pytestmark = pytest.mark.integration  # runs `agentledger serve` and the README's commands
ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.M | re.S)


def walkthrough() -> tuple[str, list[str]]:
    """The shell block that drives the engine: its `A=…` preamble and one command per line."""
    block = next(b for b in blocks("sh") if b.startswith("A="))
    preamble, *lines = block.replace("\\\n", "").splitlines()
    return preamble, [line for line in lines if line.strip()]


def snippet(text: str = README) -> tuple[str, str]:
    """The first Python block of a page, and the command the page gives to run it."""
    code = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)[0]
    run = re.search(r"`(\.venv/bin/python \S+\.py)`", text)
    assert run, "the page says how to run the snippet"
    return code, run.group(1)


async def follow_until(cwd: Path, env: dict[str, str], preamble: str, line: str, last: str) -> str:
    """Run a command that follows the log until the line with `last` shows, then press Ctrl-C."""
    proc = await asyncio.create_subprocess_exec("bash", "-c", f"{preamble}\nexec {line}", cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    seen = []
    while not seen or last not in seen[-1]:
        line = (await asyncio.wait_for(proc.stdout.readline(), HANG)).decode()
        assert line, f"ended before {last}: {''.join(seen)}"
        seen.append(line)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 0, err
    return "".join(seen)


async def test_the_readme_walkthrough_and_snippet_run_as_written(fresh: tuple[Path, dict[str, str]]) -> None:
    cwd, env = fresh
    preamble, lines = walkthrough()
    outputs = []
    for line in lines:
        script = f"{preamble}\n{line}"
        if "events tail" in line:  # follows live until Ctrl-C
            out = await follow_until(cwd, env, preamble, line, "session.spawned")
            outputs.append(out)
            continue
        code, out, err = await sh(cwd, env, script)
        claim = re.search(r"# error (\w+)", line)
        if claim:  # the comment says which error the line shows
            assert code == 1 and f"error {claim.group(1)}:" in err, (line, code, out, err)
        else:
            assert code == 0, (line, code, out, err)
        outputs.append(out)
    transcript = "\n".join(outputs)
    for expected in ("project prj_demo", "thread thd_demo", "session ses_lead", "-> active", "agent_spawn",
                     "replayed from the log up to position 5"):
        assert expected in transcript, transcript

    code, run = snippet()
    (cwd / run.split()[-1]).write_text(code)
    status, out, err = await sh(cwd, env, run)
    assert (status, out) == (0, "awaiting_hitl\n"), (out, err)

    code, run = snippet(PROTOCOL)  # the same engine, in raw NATS: the session resumes
    (cwd / run.split()[-1]).write_text(code)
    status, out, err = await sh(cwd, env, run)
    assert status == 0 and '"ok":true' in out.replace(" ", "") and '"status":"active"' in out.replace(" ", ""), (out, err)
