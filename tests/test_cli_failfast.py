"""The CLI fails fast and says why: `--timeout` bounds connecting, a server without JetStream gets
one line, retryable failures have their own exit code; plus `--version` and shell completion.

Each case runs the installed console script against a real endpoint: a closed port, a port that
accepts and never speaks, or a real nats-server started without JetStream.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

import nats
import pytest

from agentledger.cli.output import EXIT_REFUSED, EXIT_RETRYABLE
from agentledger.handlers.nats_server import free_port, nats_server_binary

pytestmark = pytest.mark.integration  # runs the console script against endpoints of its own
AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "NATS_"))} | {
    "COLUMNS": "200", "NO_COLOR": "1"}
# nats-py alone retries a dead server for about 120 s; a run that is still going after this long
# ignored --timeout.
HANG = 60


async def agentledger(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *args, env=env or ENV, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never sends the NATS greeting."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def plain_nats(tmp_path: Path) -> AsyncIterator[str]:
    """A real nats-server without JetStream."""
    port = free_port()
    log = (tmp_path / "nats.log").open("wb")
    proc = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"nats://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                await (await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)).close()
                break
            except Exception:
                await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait()
        log.close()


UNREACHABLE_RUNS = [
    ("thread", "get", "--thread-id", "thd_x"),
    ("session", "start", "--session-id", "ses_x"),
    ("events", "tail", "--thread-id", "thd_x"),
    ("replay", "--thread-id", "thd_x"),
]


async def test_a_closed_port_fails_at_once_not_after_the_timeout() -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    # a timeout far beyond HANG: a run that waited for it would be reported stuck
    runs = await asyncio.gather(*(agentledger(*args, "--nats-url", url, "--timeout", "3600") for args in UNREACHABLE_RUNS))
    for args, (code, out, err) in zip(UNREACHABLE_RUNS, runs, strict=True):
        assert (code, out, err) == (EXIT_RETRYABLE, "", f"error unavailable: cannot reach NATS at {url}: connection "
                                                        "refused (is the server running?) (retryable)\n"), args


async def test_timeout_bounds_connecting_to_a_server_that_never_answers(silent_port: int) -> None:
    url = f"nats://127.0.0.1:{silent_port}"
    runs = await asyncio.gather(*(agentledger(*args, "--nats-url", url, "--timeout", "0.5") for args in UNREACHABLE_RUNS))
    for args, (code, out, err) in zip(UNREACHABLE_RUNS, runs, strict=True):
        assert (code, out, len(err.splitlines())) == (EXIT_RETRYABLE, "", 1), (args, code, out, err)
        assert err.startswith(f"error unavailable: cannot reach NATS at {url} within 0.5s"), err


async def test_a_server_without_jetstream_gets_one_line(plain_nats: str) -> None:
    code, out, err = await agentledger("events", "tail", "--nats-url", plain_nats)
    assert (code, out) == (EXIT_REFUSED, ""), (code, err)
    assert err.splitlines() == [f"error unavailable: NATS at {plain_nats} has no JetStream: this command reads "
                                "the event stream directly, so it needs the server the engine logs to"], err
    # no engine there either: a request (replay and export read through events.read) meets no
    # responders, which is worth retrying
    for args, query in [(("thread", "get", "--thread-id", "thd_x"), "thread.get"),
                        (("replay", "--thread-id", "thd_x"), "events.read"), (("events", "export"), "events.read")]:
        code, out, err = await agentledger(*args, "--nats-url", plain_nats)
        assert (code, out) == (EXIT_RETRYABLE, ""), (args, code, err)
        assert err.splitlines() == [f"error unavailable: no engine answers on ledger.qry.tnt_default.{query} "
                                    "(check the NATS URL and the prefix) (retryable)"], err


async def test_version_and_shell_completion() -> None:
    code, out, _ = await agentledger("--version")
    assert (code, out) == (0, f"agentledger {metadata.version('agentledger')}\n")

    def complete(words: str, cword: int) -> list[str]:
        env = ENV | {"_AGENTLEDGER_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        r = subprocess.run([AGENTLEDGER], env=env, capture_output=True, text=True, check=True)
        return r.stdout.split()

    assert complete("agentledger sess", 1) == ["session"]
    assert complete("agentledger replay --thr", 2) == ["--thread-id"]
    assert "request-input" in complete("agentledger session re", 2)
    # as a user runs it: from their shell, which is what `--show-completion` detects
    r = subprocess.run(["bash", "-c", f"{AGENTLEDGER} --show-completion; exit $?"], env=ENV, capture_output=True,
                       text=True)  # (a last command alone would be exec-ed in place of bash)
    assert r.returncode == 0 and "_AGENTLEDGER_COMPLETE=complete_bash" in r.stdout, r.stdout + r.stderr


def test_the_cli_loads_what_a_subcommand_needs_and_no_more(tmp_path: Path) -> None:
    """`--version` loads typer and nothing of the ledger; a command loads its options and the client,
    not the engine's store or processes, nor nats-py's WebSocket transport (aiohttp)."""
    probe = ("import sys\nfrom agentledger.cli.main import main\nsys.argv = ['agentledger', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(' '.join(m if m.startswith('agentledger.') else m.split('.')[0] for m in sys.modules), file=sys.stderr)\n")

    def loaded(*args: str) -> set[str]:
        r = subprocess.run([sys.executable, "-c", probe, *args], env=ENV, capture_output=True, text=True, cwd=tmp_path)
        return set(r.stderr.splitlines()[-1].split())

    version = loaded("--version")
    assert "typer" in version and not version & {"nats", "msgspec", "pydantic", "rich"}
    assert not {m for m in version if m.startswith("agentledger.") and not m.startswith("agentledger.cli")}
    command = loaded("thread", "get", "--thread-id", "thd_x", "--nats-url", f"nats://127.0.0.1:{free_port()}")
    assert {"nats", "agentledger.client.connection", "agentledger.schemas.queries"} <= command
    assert not command & {"aiohttp", "agentledger.engine.store", "agentledger.engine.service", "agentledger.handlers.app"}
    assert not {m for m in command if m.startswith("agentledger.projections")}
