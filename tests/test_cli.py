"""The CLI end to end: the installed console script, as a subprocess, against a real engine.

Subprocesses are slow, so each test packs a few invocations; setup that is not under test goes
through the protocol client instead.
"""

from __future__ import annotations

import asyncio
import re

import click
import msgspec
import typer.main

from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.errors import ThreadNotEmpty
from agentledger.schemas.events import StoredEvent
from agentledger.schemas.queries import QUERIES, SessionResult
from agentledger.schemas.replies import CommandReply, QueryReply
from agentledger.schemas.results import SessionSpawnResult
from tests.cli_support import AGENTLEDGER, Cli, following
from tests.conftest import AGENT, Client_


def test_every_command_and_query_has_a_subcommand() -> None:
    from agentledger.cli.app import app

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    groups = {name: root.get_command(ctx, name) for name in root.list_commands(ctx)}  # type: ignore[attr-defined]
    names = {f"{g}.{c.replace('-', '_')}" for g, grp in groups.items() for c in getattr(grp, "commands", {})}
    assert set(COMMANDS) | set(QUERIES) | {"events.tail"} <= names
    assert "replay" in groups


async def test_command_round_trip_and_archive_gate(cli: Cli) -> None:
    r = await cli("project", "create", "--project-id", "prj_p1", "--name", "proj")
    assert (r.code, r.out.splitlines()[0]) == (0, "ok position 1 project.created: project prj_p1"), r
    r = await cli("thread", "create", "--project-id", "prj_p1", "--thread-id", "thd_t1", "--title", "first")
    assert r.code == 0 and "thread thd_t1" in r.out, r
    r = await cli("session", "create", "--thread-id", "thd_t1", "--session-id", "ses_a", "--owner", "agt_worker")
    assert r.code == 0 and "session ses_a" in r.out, r
    r = await cli("session", "start", "--session-id", "ses_a")
    assert r.code == 0 and "session.started: session ses_a -> active" in r.out, r

    r = await cli("thread", "archive", "--thread-id", "thd_t1")
    assert r.code == 1, r
    assert "error thread_not_empty:" in r.err and re.search(r"session_id=ses_a\s+status=active", r.err), r


async def test_json_replies_nested_fields_and_views(cli: Cli, client: Client_) -> None:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT, budget=10)
    await client.ok("session.start", session_id="ses_a")

    r = await cli("thread", "archive", "--thread-id", "thd_t1", "--json")
    reply = msgspec.json.decode(r.out, type=CommandReply)
    assert r.code == 1 and isinstance(reply.error, ThreadNotEmpty), r

    r = await cli("session", "spawn", "--parent-session-id", "ses_a", "--agent", "agt_kid", "--session-id", "ses_b",
                  "--budget", "3", "--json")
    reply = msgspec.json.decode(r.out, type=CommandReply[SessionSpawnResult])
    assert r.code == 0 and reply.ok and reply.result and (reply.result.session_id, reply.result.depth) == ("ses_b", 1)

    r = await cli("session", "complete", "--session-id", "ses_b", "--summary-outcome", "succeeded",
                  "--summary-text", "done", "--summary-deliverable", "a.txt", "--summary-deliverable", "b.txt",
                  "--usage", "2")
    assert r.code == 0 and "session ses_b -> idle" in r.out, r

    r = await cli("session", "get", "--session-id", "ses_b", "--json")
    assert r.code == 0, r
    view = msgspec.convert(msgspec.json.decode(r.out, type=QueryReply).result, SessionResult).session
    assert view.summary and view.summary.deliverables == ["a.txt", "b.txt"] and view.budget.used == 2

    r = await cli("session", "get", "--session-id", "ses_a")
    assert r.code == 0, r
    for expected in ("session ses_a active", "agt_worker (version 0)", "8 of 10 left"):
        assert expected in r.out, r.out

    r = await cli("session", "create", "--thread-id", "thd_t1", "--owner", "agt_")  # refused before sending
    assert r.code == 1 and "error invalid_command:" in r.err and "$.owner" in r.err, r

    # every typed query result has a human view, not a line of JSON
    r = await cli("quarantine", "list")
    assert r.code == 0 and "nothing quarantined" in r.out and "0 quarantined since this engine started" in r.out, r
    await client.ok("sandbox.create", sandbox_id="sbx_cli", provider="local", thread_id="thd_t1")
    r = await cli("sandbox", "get", "--sandbox-id", "sbx_cli")
    assert r.code == 0 and r.out.startswith("sandbox sbx_cli") and "thd_t1" in r.out, r


async def test_events_tail_shows_the_log_from_a_position(cli: Cli, client: Client_) -> None:
    await client.setup_thread()
    created = (await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT))["position"]
    await client.ok("session.start", session_id="ses_a")

    r = await cli("events", "tail", "--limit", "3")
    lines = r.out.splitlines()
    assert r.code == 0 and len(lines) == 3, r
    assert re.match(r"\s*1\s+\S+ \S+\s+project\.created\s+project=prj_p1\s+by usr_tester$", lines[0]), lines[0]
    assert "session.created" in lines[2] and "session=ses_a" in lines[2]

    r = await cli("events", "tail", "--thread-id", "thd_t1", "--json", "--limit", "2")
    events = [msgspec.json.decode(line, type=StoredEvent) for line in r.out.splitlines()]
    assert [(e.position, e.type) for e in events] == [(2, "thread.created"), (created, "session.created")]
    assert created == 4  # position 3 is session ses_a's claim (not an event)


async def test_events_tail_follows_the_log_live(client: Client_, cli_env: dict[str, str]) -> None:
    """The tail runs on its own, as a user leaves it in a terminal: the thread's history first,
    then each event as it is appended, until Ctrl-C."""
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    started = (await client.ok("session.start", session_id="ses_a"))["position"]

    async with following(cli_env, "events", "tail", "--thread-id", "thd_t1") as tail:
        history = [await tail.line() for _ in range(3)]
        assert [line.split()[3] for line in history] == ["thread.created", "session.created", "session.started"], history
        assert re.match(rf"\s*{started}\s", history[2]), history
        # it has shown the last event there is: what comes now comes live
        asked = (await client.ok("session.request_input", session_id="ses_a", prompt="?"))["position"]
        line = await tail.line()
        assert re.match(rf"\s*{asked}\s.*session\.input_requested\s+session=ses_a", line), line
        answered = (await client.ok("session.provide_input", session_id="ses_a"))["position"]
        line = await tail.line()
        assert re.match(rf"\s*{answered}\s.*session\.input_provided\s+session=ses_a", line), line
        code, err = await tail.interrupt()
        assert (code, err) == (0, ""), err


async def test_replay_at_an_earlier_position(cli: Cli, client: Client_) -> None:
    await client.setup_thread()
    created = (await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT))["position"]
    await client.ok("session.start", session_id="ses_a")
    await client.ok("session.spawn", parent_session_id="ses_a", session_id="ses_b", agent={"kind": "agent", "id": "agt_kid"})
    await client.ok("session.complete", session_id="ses_b", summary={"outcome": "partial", "text": "half"})

    r = await cli("replay", "--thread-id", "thd_t1", "--at", str(created))
    assert r.code == 0 and re.search(r"ses_a\s+idle\s+agt_worker", r.out) and "ses_b" not in r.out, r

    r = await cli("replay", "--thread-id", "thd_t1")
    assert r.code == 0, r
    assert re.search(r"ses_a\s+active\s+agt_worker", r.out) and re.search(r"ses_b\s+idle\s+agt_kid\s+1\s+ses_a", r.out)
    assert re.search(r"└── ses_b idle .*\[agent_spawn completed\]\s+partial: half", r.out), r.out

    runs = [await cli("replay", "--thread-id", "thd_t1", "--json", *at) for at in (("--at", str(created)), ())]
    assert [r.code for r in runs] == [0, 0], runs
    then, now = (msgspec.json.decode(r.out) for r in runs)
    assert then["thread"]["position"] == created and [s["status"] for s in then["sessions"]] == ["idle"]
    assert [s["status"] for s in now["sessions"]] == ["active", "idle"] and now["trees"][0]["children"]

    r = await cli("replay", "--thread-id", "thd_t1", "--at", "1")  # position 1 is the project's, not the thread's
    assert r.code == 1 and "error not_found:" in r.err and "no events at or before position 1" in r.err, r


HOSTILE_TITLE = "\x1b]0;pwned\x07\x1b[2J\x9bm\u202eevil\x7f"  # retitle, clear screen, C1 CSI, right-to-left, DEL
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
OWN_STYLES = re.compile(r"\x1b\[[0-9;]*m")  # what the CLI itself colours with when the terminal has colours


async def test_human_output_shows_control_characters_and_json_keeps_them(cli: Cli, client: Client_,
                                                                          cli_env: dict[str, str]) -> None:
    await client.ok("project.create", project_id="prj_p1", name="proj")
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_t1", title=HOSTILE_TITLE)
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    await client.ok("session.start", session_id="ses_a")
    await client.ok("session.complete", session_id="ses_a", summary={"outcome": "failed", "text": "x\x1b[8mhidden"})
    coloured = {k: v for k, v in cli_env.items() if k != "NO_COLOR"} | {"FORCE_COLOR": "1"}
    runs = [(cli_env, ("thread", "list", "--project-id", "prj_p1")), (cli_env, ("session", "get", "--session-id", "ses_a")),
            (cli_env, ("replay", "--thread-id", "thd_t1")), (coloured, ("thread", "get", "--thread-id", "thd_t1"))]
    for env, args in runs:
        proc = await asyncio.create_subprocess_exec(AGENTLEDGER, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        text = out.decode()
        assert proc.returncode == 0 and "␛" in text, (args, text)  # the event text is there, its escapes shown
        assert ("\x1b[" in text) == (env is coloured), (args, text)  # the CLI's own colours still work
        assert not CONTROLS.search(OWN_STYLES.sub("", text)), (args, text)
    r = await cli("thread", "get", "--thread-id", "thd_t1")
    assert '"␛]0;pwned␛[2J\ufffdm\ufffdevil␡"' in r.out, r  # BEL (\x07) rich drops by itself
    r = await cli("session", "get", "--session-id", "ses_a")
    assert "x␛[8mhidden" in r.out, r
    r = await cli("thread", "get", "--thread-id", "thd_t1", "--json")  # the reply exactly, escapes and all
    assert msgspec.json.decode(r.out)["result"]["thread"]["title"] == HOSTILE_TITLE, r
