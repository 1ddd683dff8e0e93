"""`sandbox.exec` end to end, with the effect handler and the local provider (bubblewrap where the
machine can run it): only the session that holds a sandbox may exec in it, and the log records
each request and its outcome (exit code, bounded output with full sizes and digests, a timeout, a
refusal, a destroy that killed it)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.schemas.sandboxes import EXEC_OUTPUT_JSON, EXEC_OUTPUT_KEPT
from tests.conftest import AGENT, Client_, stream_messages
from tests.sandbox_support import eventually, sandbox_engine, settled

DONE = {"outcome": "succeeded", "text": "ok"}
WAIT_FOR_GO = "while [ ! -e go ]; do sleep 0.05; done; echo released"  # runs until the test lets it go


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def fx_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    engine_config.exec_reply_within = 1.5
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ("sh", "sleep"), ack_wait=2.0) as eng:
        yield eng


@pytest.fixture
async def held(nc: Client, fx_engine: Engine) -> tuple[Client_, dict[str, Any]]:
    """A running session holding a running sandbox: (client, the sandbox's view)."""
    client = Client_(nc, fx_engine.config)
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_lead", owner=AGENT,
                    sandbox={"mode": "new", "sandbox_id": "sbx_work", "shutdown": "destroy"})
    await client.ok("session.start", session_id="ses_lead")
    return client, await settled(client, "sbx_work", "running")


async def sandbox_events(client: Client_, sandbox_id: str) -> list[dict[str, Any]]:
    events = (await client.qry("events.read", limit=1000))["result"]["events"]
    return [e for e in events if e["data"].get("sandbox_id") == sandbox_id]


async def outcome_event(client: Client_, request_position: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        found = [e for e in await sandbox_events(client, "sbx_work")
                 if e["data"].get("request_position") == request_position]
        return found[0] if found else None
    return await eventually(probe, f"the outcome of the exec at {request_position}", attempts=1200)  # type: ignore[no-any-return]


async def test_an_exec_by_the_holding_session_lands_request_and_outcome_in_the_log(
        held: tuple[Client_, dict[str, Any]]) -> None:
    client, _ = held
    body = {"sandbox_id": "sbx_work", "session_id": "ses_lead", "command_id": "exec-1",
            "argv": ["sh", "-c", "printf 'out\\n'; cat >&2; exit 3"], "stdin": "fed in", "timeout_ms": 30_000}
    reply = await client.ok("sandbox.exec", **body)
    [requested] = reply["events"]
    assert requested["type"] == "sandbox.exec_requested" and reply["position"] == requested["position"]
    assert requested["data"]["argv"] == body["argv"] and requested["data"]["session_id"] == "ses_lead"
    assert requested["data"]["stdin"] == "fed in" and requested["data"]["timeout_ms"] == 30_000
    if reply["result"]["status"] == "running":  # a slow machine: the outcome comes as its own event
        await outcome_event(client, reply["position"])
        reply = await client.ok("sandbox.exec", **body)  # a repeat, now that the outcome is in
    result = reply["result"]
    assert result["status"] == "finished" and result["error"] is None
    outcome = result["outcome"]
    assert outcome["exit_code"] == 3 and not outcome["timed_out"] and not outcome["killed"]
    assert outcome["stdout"] == {"text": "out\n", "size": 4, "kept": 4, "sha256": sha(b"out\n")}
    assert outcome["stderr"] == {"text": "fed in", "size": 6, "kept": 6, "sha256": sha(b"fed in")}

    event = await outcome_event(client, reply["position"])
    assert event["type"] == "sandbox.exec_finished" and event["position"] == result["outcome_position"]
    assert event["data"]["outcome"] == outcome and event["data"]["sandbox_status"] == "running"
    assert event["actor"]["id"] == "sys_sandbox_effects" and event["causation_id"] == requested["event_id"]
    assert await client.ok("sandbox.exec", **body) == reply  # a repeat once the outcome is in: the same, exactly
    view = await settled(client, "sbx_work", "running")  # an exec changes nothing of the sandbox
    assert view["pending"] == [] and view["last_error"] is None


async def test_output_is_kept_bounded_with_full_sizes_and_digests(held: tuple[Client_, dict[str, Any]]) -> None:
    client, _ = held
    script = "head -c 100000 /dev/zero | tr '\\0' a; head -c 20000 /dev/zero >&2"
    reply = await client.ok("sandbox.exec", sandbox_id="sbx_work", session_id="ses_lead", argv=["sh", "-c", script])
    event = await outcome_event(client, reply["position"])
    out, err = event["data"]["outcome"]["stdout"], event["data"]["outcome"]["stderr"]
    assert out == {"text": "a" * EXEC_OUTPUT_KEPT, "size": 100_000, "kept": EXEC_OUTPUT_KEPT, "sha256": sha(b"a" * 100_000)}
    # NUL bytes take six bytes each as JSON: fewer are kept, so the outcome still fits one command
    assert err["size"] == 20_000 and err["sha256"] == sha(bytes(20_000))
    assert err["kept"] == (EXEC_OUTPUT_JSON - 2) // 6 and err["text"] == "\0" * err["kept"]


async def test_a_session_that_does_not_hold_the_sandbox_is_refused_and_nothing_appended(
        nc: Client, held: tuple[Client_, dict[str, Any]], fx_engine: Engine) -> None:
    client, _ = held
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_other", owner=AGENT)
    await client.ok("session.start", session_id="ses_other")
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_t2")
    await client.ok("session.create", thread_id="thd_t2", session_id="ses_elsewhere", owner=AGENT)
    before = await stream_messages(nc, fx_engine.config.stream)
    for session_id, holder in (("ses_other", "ses_lead"), ("ses_elsewhere", None)):
        reply = await client.cmd("sandbox.exec", sandbox_id="sbx_work", session_id=session_id, argv=["sh", "-c", "id"])
        assert not reply["ok"] and reply["error"]["code"] == "not_holder", reply
        assert reply["error"]["details"] == {"sandbox_id": "sbx_work", "session_id": session_id, "holder": holder}
    reply = await client.cmd("sandbox.exec", sandbox_id="sbx_work", session_id="ses_ghost", argv=["sh"])
    assert reply["error"]["code"] == "not_found" and reply["error"]["details"]["kind"] == "session"
    reply = await client.cmd("sandbox.exec", sandbox_id="sbx_none", session_id="ses_lead", argv=["sh"])
    assert reply["error"]["code"] == "not_found" and reply["error"]["details"]["kind"] == "sandbox"
    assert await stream_messages(nc, fx_engine.config.stream) == before

    # the holder's run ends (its policy destroys the sandbox): it holds it no more
    await client.ok("session.complete", session_id="ses_lead", summary=DONE)
    reply = await client.cmd("sandbox.exec", sandbox_id="sbx_work", session_id="ses_lead", argv=["sh"])
    assert reply["error"]["code"] == "not_holder" and reply["error"]["details"]["holder"] is None


async def test_exec_on_a_paused_or_destroyed_sandbox_is_refused(nc: Client, held: tuple[Client_, dict[str, Any]],
                                                                fx_engine: Engine) -> None:
    client, _ = held
    for request, status in (("sandbox.pause", "paused"), ("sandbox.destroy", "destroyed")):
        await client.ok(request, sandbox_id="sbx_work")
        await settled(client, "sbx_work", status)
        before = await stream_messages(nc, fx_engine.config.stream)
        reply = await client.cmd("sandbox.exec", sandbox_id="sbx_work", session_id="ses_lead", argv=["sh", "-c", "id"])
        assert reply["error"]["code"] == "illegal_transition" and reply["error"]["details"]["from"] == status
        assert await stream_messages(nc, fx_engine.config.stream) == before


async def test_a_program_the_deployment_does_not_allow_is_recorded_as_failed(
        held: tuple[Client_, dict[str, Any]], tmp_path: Path) -> None:
    client, view = held
    reply = await client.ok("sandbox.exec", sandbox_id="sbx_work", session_id="ses_lead",
                            argv=["touch", f"{view['location']}/pwned"])
    event = await outcome_event(client, reply["position"])
    assert event["type"] == "sandbox.exec_failed"
    assert "--allow-command" in event["data"]["error"] and event["data"]["sandbox_status"] == "running"
    assert not Path(view["location"], "pwned").exists()
    again = await client.ok("sandbox.exec", sandbox_id="sbx_work", session_id="ses_lead",
                            argv=["touch", f"{view['location']}/pwned"], command_id=reply["command_id"])
    assert again["result"] == {"sandbox_id": "sbx_work", "status": "failed", "outcome_position": event["position"],
                               "outcome": None, "error": event["data"]["error"]}


async def test_a_timeout_is_recorded(held: tuple[Client_, dict[str, Any]]) -> None:
    client, _ = held
    reply = await client.ok("sandbox.exec", sandbox_id="sbx_work", session_id="ses_lead",
                            argv=["sh", "-c", "echo begun; sleep 30"], timeout_ms=300)
    outcome = (await outcome_event(client, reply["position"]))["data"]["outcome"]
    assert outcome["timed_out"] and outcome["exit_code"] is None and not outcome["killed"]
    assert outcome["stdout"]["text"] == "begun\n"


async def test_a_long_exec_answers_running_and_its_outcome_follows_as_an_event(
        held: tuple[Client_, dict[str, Any]]) -> None:
    """The reply waits a few seconds at most: a longer exec answers `running`, and its caller reads
    the outcome event (or repeats the command id, which then answers with it)."""
    client, view = held
    body = {"sandbox_id": "sbx_work", "session_id": "ses_lead", "argv": ["sh", "-c", WAIT_FOR_GO],
            "command_id": "exec-long"}
    first = await client.ok("sandbox.exec", **body)
    assert first["result"] == {"sandbox_id": "sbx_work", "status": "running", "outcome_position": None,
                               "outcome": None, "error": None}
    assert await client.ok("sandbox.exec", **body) == first  # still running: a repeat answers the same
    assert (await client.qry("sandbox.get", sandbox_id="sbx_work"))["result"]["sandbox"]["pending"] == ["exec"]
    Path(view["location"], "go").touch()
    event = await outcome_event(client, first["position"])
    assert event["data"]["outcome"]["stdout"]["text"] == "released\n"
    repeat = await client.ok("sandbox.exec", **body)
    assert repeat["position"] == first["position"] and repeat["events"] == first["events"]
    assert repeat["result"]["status"] == "finished" and repeat["result"]["outcome"] == event["data"]["outcome"]


async def test_a_destroy_kills_a_running_exec_and_the_outcome_says_so(held: tuple[Client_, dict[str, Any]]) -> None:
    client, _ = held
    reply = await client.ok("sandbox.exec", sandbox_id="sbx_work", session_id="ses_lead",
                            argv=["sh", "-c", WAIT_FOR_GO], timeout_ms=20_000)
    assert reply["result"]["status"] == "running"
    await client.ok("session.complete", session_id="ses_lead", summary=DONE)  # its policy destroys the sandbox
    outcome = (await outcome_event(client, reply["position"]))["data"]["outcome"]
    assert outcome["killed"] and outcome["exit_code"] != 0
    view = await settled(client, "sbx_work", "destroyed")
    assert view["last_error"] is None
    types = [e["type"] for e in await sandbox_events(client, "sbx_work")]
    assert types[-4:] == ["sandbox.exec_requested", "sandbox.destroy_requested", "sandbox.exec_finished",
                          "sandbox.destroyed"]


async def agentledger(config: EngineConfig, *args: str) -> tuple[int, str]:
    """The installed CLI against the engine under test: (exit code, stdout and stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")} | {
        "NATS_URL": config.nats_url, "AGENTLEDGER_PREFIX": config.prefix, "AGENTLEDGER_TENANT": "tnt_acme",
        "NATS_CREDS": str(config.creds), "COLUMNS": "200", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(str(Path(sys.executable).parent / "agentledger"), *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_the_cli_shows_an_exec_and_replay_lists_it(held: tuple[Client_, dict[str, Any]],
                                                          fx_engine: Engine) -> None:
    client, _ = held
    code, out = await agentledger(fx_engine.config, "sandbox", "exec", "--sandbox-id", "sbx_work", "--session-id",
                                  "ses_lead", "--argv", "sh", "--argv", "-c", "--argv",
                                  "printf 'two\\nlines \\033[2J'; echo oops >&2; exit 2", "--command-id", "cli-exec")
    if "still running" in out:  # a slow machine: repeat the command id once the outcome is in
        await outcome_event(client, int(out.split("position ")[1].split()[0]))
        code, out = await agentledger(fx_engine.config, "sandbox", "exec", "--sandbox-id", "sbx_work", "--session-id",
                                      "ses_lead", "--argv", "sh", "--command-id", "cli-exec")
    assert code == 0, out  # the exec was accepted and ran; its own exit code is in the outcome
    lines = out.splitlines()
    assert "sandbox.exec_requested: sandbox sbx_work -> finished" in lines[0], out
    assert "exit code 2" in lines[1] and "stdout (14 bytes, sha256 " in out and "stderr (5 bytes" in out
    assert "    two" in lines and "    lines \u241b[2J" in lines and "    oops" in lines  # ESC shown as its picture

    replayed = (await agentledger(fx_engine.config, "replay", "--thread-id", "thd_t1"))[1]
    [row] = [line for line in replayed.splitlines() if "sbx_work" in line and "ses_lead" in line and "exit" in line]
    assert "sh -c" in row and "exit 2" in row and "two …" in row
    before = (await agentledger(fx_engine.config, "replay", "--thread-id", "thd_t1", "--at", "3"))[1]
    assert "execs" not in before  # as of position 3, nothing had run yet
    events = (await agentledger(fx_engine.config, "events", "read", "--sandbox-id", "sbx_work"))[1]
    assert "sandbox.exec_requested" in events and "argv=sh -c" in events and "exit=2" in events
