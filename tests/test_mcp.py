"""The MCP server (`agentledger mcp`, agentledger.adapters.mcp) against a real engine, through the
MCP SDK's own client: in-process, as a stdio subprocess and over streamable HTTP. Its tools carry
the contract's schemas, send their commands as the server's actor and answer the command's result;
a refusal is a tool error with the ledger's code and details, and appends nothing."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator
from mcp import Client, ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.types import INVALID_PARAMS
from nats.aio.client import Client as Nats

from agentledger.adapters.mcp import build_server
from agentledger.adapters.mcp.contract import TOOL_COMMANDS
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.errors import CapacityDetails, IllegalTransitionDetails
from agentledger.schemas.queries import EventsPage, SandboxResult, SessionResult, ThreadListResult, ThreadResult, TreeResult
from agentledger.schemas.results import SessionSpawnResult, SessionStatusResult
from tests.cli_support import AGENTLEDGER
from tests.client_support import creds_file, ledger_for
from tests.conftest import Tenants, stream_messages
from tests.mcp_support import HANG, LEAD, clean_env, http_server, lead_world, mcp_args, refusal, result

CONTRACT = json.loads((Path(__file__).resolve().parent.parent / "docs" / "schema.json").read_text())["$defs"]
LEAD_ACTOR = {"kind": "agent", "id": LEAD}


def expected_input_schema(command: str) -> dict[str, Any]:
    """docs/schema.json's schema of `command` without `actor`, which the server fills in."""
    schema = json.loads(json.dumps(CONTRACT[COMMANDS[command].__name__]))
    del schema["properties"]["actor"]
    schema["required"].remove("actor")
    return schema


def resolved(schema: dict[str, Any]) -> None:
    """Every `$ref` in `schema` names a definition it carries, equal to docs/schema.json's."""
    refs = set(re.findall(r'"\$ref": "#/\$defs/(\w+)"', json.dumps(schema)))
    assert refs <= set(schema.get("$defs", {})), refs
    for name, definition in schema.get("$defs", {}).items():
        assert definition == CONTRACT[name], name


async def test_tools_carry_the_contracts_schemas(engine: Engine, engine_config: EngineConfig, deployment: Deployment,
                                                 tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger, Client(build_server(ledger, actor=LEAD)) as mcp:
        listed = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        assert list(listed) == [name.replace(".", "_") for name in TOOL_COMMANDS]
        assert {"session.spawn", "handoff.single", "handoff.broadcast", "session.request_input", "session.complete",
                "session.fail", "sandbox.exec", "sandbox.create", "sandbox.destroy"} <= set(TOOL_COMMANDS)
        for command in TOOL_COMMANDS:
            tool = listed[command.replace(".", "_")]
            inputs = dict(tool.input_schema)
            carried = inputs.pop("$defs", {})
            assert inputs == expected_input_schema(command), command
            resolved({**inputs, "$defs": carried})
            Draft202012Validator.check_schema(tool.input_schema)
            assert tool.output_schema is not None
            outputs = dict(tool.output_schema)
            carried = outputs.pop("$defs", {})
            assert outputs == CONTRACT[COMMANDS[command].RESULT.__name__], command
            resolved({**outputs, "$defs": carried})
            assert tool.description == (COMMANDS[command].__doc__ or "").strip().splitlines()[0]
            assert tool.annotations is not None and tool.annotations.destructive_hint is (
                command in {"session.fail", "session.cancel", "sandbox.destroy"})


async def test_every_tool_acts_on_a_real_thread_as_the_servers_actor(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    called: set[str] = set()
    async with ledger_for(engine_config, creds) as ledger, Client(build_server(ledger, actor=LEAD)) as mcp:
        await lead_world(ledger)
        before = ledger.position

        async def tool(name: str, **arguments: Any) -> Any:
            called.add(name)
            return result(await mcp.call_tool(name, arguments), COMMANDS[name.replace("_", ".", 1)].RESULT)

        assert (await tool("session_start", session_id="ses_lead")).status == "active"
        asked = await tool("session_request_input", session_id="ses_lead", prompt="Which branch?")
        assert asked.status == "awaiting_hitl"
        assert (await tool("session_provide_input", session_id="ses_lead")).status == "active"
        kid = await tool("session_spawn", parent_session_id="ses_lead", agent={"kind": "agent", "id": "agt_coder"},
                         session_id="ses_kid", failure_mode="fail_fast", budget=10)
        assert (kid.session_id, kid.depth) == ("ses_kid", 1) and kid.edge_id.startswith("sub_")
        done = await tool("session_complete", session_id="ses_kid", usage=2,
                          summary={"outcome": "succeeded", "text": "fixed", "deliverables": ["a.patch"]})
        assert done.status == "idle" and done.summary_id.startswith("sum_")
        single = await tool("handoff_single", source_session_id="ses_kid", recipient={"kind": "agent", "id": "agt_rev"},
                            expected_owner_version=0)
        assert single.owner_version == 1 and single.handoff_id.startswith("hof_")
        await ledger.session.create(thread_id="thd_m", session_id="ses_b", owner=LEAD)
        broadcast = await tool("handoff_broadcast", source_session_id="ses_b", expected_owner_version=0,
                               recipients=[{"kind": "agent", "id": "agt_x"}, {"kind": "agent", "id": "agt_y"}])
        x, y = broadcast.session_ids
        assert (await tool("session_cancel", session_id=x, reason="enough")).status == "idle"
        assert (await tool("session_fail", session_id=y, reason="broke")).status == "failed"

        lead = (await ledger.session.get(session_id="ses_lead")).session
        assert lead.sandbox is not None
        execd = await tool("sandbox_exec", sandbox_id=lead.sandbox.sandbox_id, session_id="ses_lead", argv=["true"])
        assert execd.status == "running"  # no effect handler here: the exec waits behind its sandbox's creation
        assert (await tool("sandbox_create", sandbox_id="sbx_m", thread_id="thd_m")).status == "creating"
        assert engine.commands is not None  # what the effect handler inside an engine records once it made it
        made = await engine.commands.execute("tnt_acme", "sandbox.report_outcome", msgspec.json.encode({
            "actor": {"kind": "system", "id": "sys_sandbox_effects"}, "sandbox_id": "sbx_m",
            "request_position": ledger.position, "op": "create", "ok": True, "location": str(tmp_path)}))
        assert made.ok, made
        assert (await tool("sandbox_fork", sandbox_id="sbx_m", new_sandbox_id="sbx_f")).status == "creating"
        assert (await tool("sandbox_pause", sandbox_id="sbx_m", reason="lunch")).status == "paused"
        assert (await tool("sandbox_resume", sandbox_id="sbx_m")).status == "running"
        assert (await tool("sandbox_destroy", sandbox_id="sbx_m", reason="done")).status == "destroyed"
        assert called == {name.replace(".", "_") for name in TOOL_COMMANDS}, "a tool not tried"

        page = await ledger.events.read(after=before, limit=1000)
        by_lead = {e.command for e in page.events if (e.actor.kind, e.actor.id) == ("agent", LEAD)}
        assert by_lead == set(TOOL_COMMANDS)  # each tool's command, recorded as the server's actor
        others = {(e.command, e.actor.id) for e in page.events if e.actor.id != LEAD}
        assert {actor for command, actor in others if command in TOOL_COMMANDS} <= {"sys_process_manager"}, others


async def test_a_refusal_is_a_tool_error_with_the_ledgers_code_and_details_and_appends_nothing(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, tmp_path: Path,
        nc: Nats) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger, Client(build_server(ledger, actor=LEAD)) as mcp:
        await lead_world(ledger, width=1)
        await ledger.session.start(session_id="ses_lead")
        first = await mcp.call_tool("session_spawn", {"parent_session_id": "ses_lead", "agent": LEAD_ACTOR})
        assert result(first, SessionSpawnResult).depth == 1
        stored = await stream_messages(nc, engine_config.stream)

        over = refusal(await mcp.call_tool("session_spawn", {"parent_session_id": "ses_lead", "agent": LEAD_ACTOR}))
        assert (over["code"], over["retryable"]) == ("capacity_exceeded", False)
        assert msgspec.convert(over["details"], CapacityDetails) == CapacityDetails(
            dimension="width", current=1, limit=1, session_id="ses_lead")
        again = refusal(await mcp.call_tool("session_start", {"session_id": "ses_lead"}))
        assert again["code"] == "illegal_transition"
        assert msgspec.convert(again["details"], IllegalTransitionDetails) == IllegalTransitionDetails(
            kind="session", id="ses_lead", from_="active", command="session.start")

        bad_id = refusal(await mcp.call_tool("session_fail", {"session_id": "ses 1"}))  # refused before it is sent
        assert bad_id["code"] == "invalid_command" and "session id must start with ses_" in bad_id["message"]
        assert bad_id["details"]["errors"][0]["path"] == "$.session_id"
        posing = refusal(await mcp.call_tool("session_fail", {"session_id": "ses_lead",
                                                              "actor": {"kind": "user", "id": "usr_boss"}}))
        assert posing["code"] == "invalid_command" and posing["details"]["errors"][0]["path"] == "$.actor"
        unknown = refusal(await mcp.call_tool("thread_archive", {"thread_id": "thd_m"}))
        assert (unknown["code"], unknown["details"]) == ("unknown_command", {"command": "thread_archive"})
        assert await stream_messages(nc, engine_config.stream) == stored, "a refusal appended something"
        assert (await ledger.session.get(session_id="ses_lead")).session.status == "active"


async def test_resources_read_threads_sessions_sandboxes_and_a_paged_timeline(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger, Client(build_server(ledger, actor=LEAD)) as mcp:
        await lead_world(ledger)
        await ledger.thread.create(project_id="prj_m", thread_id="thd_other", title="second")
        await ledger.session.start(session_id="ses_lead")
        await ledger.session.spawn(parent_session_id="ses_lead", session_id="ses_kid", agent="agt_coder")

        async def read(uri: str) -> tuple[Any, dict[str, Any] | None]:
            contents = (await mcp.read_resource(uri)).contents
            assert len(contents) == 1 and contents[0].mime_type == "application/json" and str(contents[0].uri) == uri
            return json.loads(contents[0].text), contents[0].meta  # type: ignore[union-attr]

        listed = [str(r.uri) for r in (await mcp.list_resources()).resources]
        assert listed == ["ledger://threads", "ledger://threads/thd_m", "ledger://threads/thd_other"]
        templates = {t.uri_template for t in (await mcp.list_resource_templates()).resource_templates}
        assert templates == {"ledger://threads{?project_id,status,after,limit}", "ledger://threads/{thread_id}",
                             "ledger://threads/{thread_id}/timeline{?after,limit}", "ledger://sessions/{session_id}",
                             "ledger://sandboxes/{sandbox_id}"}

        threads, _ = await read("ledger://threads")
        assert [row.thread_id for row in msgspec.convert(threads, ThreadListResult).threads] == ["thd_m", "thd_other"]
        first, following = await read("ledger://threads?limit=1")
        assert [row["thread_id"] for row in first["threads"]] == ["thd_m"] and following is not None
        second, _ = await read(following["agentledger/next"])
        assert [row["thread_id"] for row in second["threads"]] == ["thd_other"]
        thread, _ = await read("ledger://threads/thd_m")
        assert {s.session_id for s in msgspec.convert(thread, ThreadResult).thread.sessions} == {"ses_lead", "ses_kid"}

        session, _ = await read("ledger://sessions/ses_lead")
        assert set(session) == {"session", "tree"}
        assert msgspec.convert(session, SessionResult).session.open_children == 1
        assert [k.session_id for k in msgspec.convert(session, TreeResult).tree.children] == ["ses_kid"]
        lead = msgspec.convert(session, SessionResult).session
        assert lead.sandbox is not None
        sandbox, _ = await read(f"ledger://sandboxes/{lead.sandbox.sandbox_id}")
        assert msgspec.convert(sandbox, SandboxResult).sandbox.owner_session_id == "ses_lead"

        whole = (await ledger.events.read(thread_id="thd_m")).events
        paged, pages, uri = [], 0, "ledger://threads/thd_m/timeline?limit=3"
        while uri:
            page, meta = await read(uri)
            paged += msgspec.convert(page, EventsPage).events
            pages, uri = pages + 1, (meta or {}).get("agentledger/next")
        assert [e.position for e in paged] == [e.position for e in whole] and (len(whole), pages) == (4, 2)

        with pytest.raises(MCPError) as missing:
            await mcp.read_resource("ledger://threads/thd_missing")
        assert missing.value.code == INVALID_PARAMS
        assert missing.value.data["code"] == "not_found" and missing.value.data["details"] == {
            "kind": "thread", "id": "thd_missing"}
        with pytest.raises(MCPError) as malformed:
            await mcp.read_resource("ledger://sessions/nope")
        assert (malformed.value.code, malformed.value.data["code"]) == (INVALID_PARAMS, "invalid_command")
        assert "session id must start with ses_" in malformed.value.data["message"]


def test_an_actor_that_is_not_one_is_refused_when_the_server_is_built() -> None:
    with pytest.raises(ValueError, match="not an actor id"):
        build_server(None, actor="lead")  # type: ignore[arg-type]


async def test_agentledger_mcp_over_stdio(engine: Engine, engine_config: EngineConfig, deployment: Deployment,
                                          tenants: Tenants, tmp_path: Path) -> None:
    """The console script as an MCP host starts it: initialize, list, one call, one refusal."""
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger:
        await lead_world(ledger)
    server = StdioServerParameters(command=AGENTLEDGER, args=mcp_args(engine_config, creds), env=clean_env())
    with (tmp_path / "stderr").open("w") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            hello = await session.initialize()
            assert hello.server_info.name == "agentledger" and hello.instructions and LEAD in hello.instructions
            assert len((await session.list_tools()).tools) == len(TOOL_COMMANDS)
            started = await session.call_tool("session_start", {"session_id": "ses_lead"})
            assert result(started, SessionStatusResult).status == "active"
            again = refusal(await session.call_tool("session_start", {"session_id": "ses_lead"}))
            assert (again["code"], again["details"]["from"]) == ("illegal_transition", "active")
    assert "MCP server of tnt_acme as agt_lead on stdio" in (tmp_path / "stderr").read_text()


async def test_agentledger_mcp_over_streamable_http(engine: Engine, engine_config: EngineConfig, deployment: Deployment,
                                                    tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger:
        await lead_world(ledger)
    async with http_server(engine_config, creds) as url, Client(url) as mcp:
        assert len((await mcp.list_tools()).tools) == len(TOOL_COMMANDS)
        started = result(await mcp.call_tool("session_start", {"session_id": "ses_lead"}), SessionStatusResult)
        assert started.status == "active"
        assert refusal(await mcp.call_tool("session_start", {"session_id": "ses_lead"}))["code"] == "illegal_transition"
        thread = json.loads((await mcp.read_resource("ledger://threads/thd_m")).contents[0].text)  # type: ignore[union-attr]
        assert thread["thread"]["blocking_sessions"] == 1

        def post(**headers: str) -> int:
            request = urllib.request.Request(url, data=b"{}", method="POST", headers={
                "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
            try:
                with urllib.request.urlopen(request, timeout=HANG) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as refused:
                return refused.code

        # a page elsewhere that gets a browser to call it by another name, or from another origin, is refused
        assert await asyncio.to_thread(post, Host="ledger.attacker.example") == 421
        assert await asyncio.to_thread(post, Origin="http://attacker.example") == 403


async def test_without_credentials_that_work_it_fails_at_once_and_says_why(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, "mcp", "--actor", LEAD, "--creds", str(tmp_path / "no.creds"),
                                                env=clean_env(), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert (proc.returncode, out) == (66, b""), err
    assert "creds_file_missing" in err.decode()
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, "mcp", "--actor", "lead", env=clean_env() | {"COLUMNS": "300"},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert (proc.returncode, out) == (2, b"") and "is not an actor id" in err.decode(), err
