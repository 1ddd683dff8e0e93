"""The Python client (`agentledger.client`) against a real engine: every command and query typed,
command ids reused on retries, one exception class per error code, ids checked in words,
paged queries and `events()` (history, then live)."""

from __future__ import annotations

import asyncio
import re
import typing
import uuid
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentledger.client import (
    ERRORS,
    AlreadyExists,
    BadReply,
    CapacityExceeded,
    Conflict,
    CrossProject,
    CrossThread,
    Forbidden,
    HandoffRejected,
    IllegalTransition,
    Internal,
    InvalidCommand,
    LedgerError,
    NotFound,
    ProjectConfig,
    RateLimited,
    Retry,
    SandboxSpec,
    Summary,
    ThreadClosed,
    ThreadNotEmpty,
    Unavailable,
    UnknownCommand,
    Unsupported,
    VersionConflict,
    api,
    codegen,
)
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_tenant
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.schemas import errors as schema_errors
from agentledger.schemas.commands import COMMANDS
from agentledger.schemas.errors import AnyError, BlockingSession, CapacityDetails, EntityDetails
from agentledger.schemas.events import StoredEvent
from agentledger.schemas.queries import QUERIES, QUERY_RESULTS
from agentledger.schemas.tenants import TenantQuota
from tests.client_support import HANG, creds_file, ledger_for, wiretap
from tests.conftest import Tenants


def test_the_typed_surface_is_generated_from_the_contract() -> None:
    """clients/python/api.py is what the generator makes of the contract today."""
    assert Path(api.__file__).read_text() == codegen.source(), "run: python -m agentledger.client.codegen"
    methods = {f"{head}.{name}" for head in {n.partition(".")[0] for n in [*COMMANDS, *QUERIES]}
               for name in dir(getattr(api, head.capitalize() + "Group")) if not name.startswith("_")}
    assert {*COMMANDS, *QUERIES} <= methods


def test_every_error_code_has_its_exception_with_typed_details() -> None:
    codes = {str(cls.__struct_config__.tag): cls for cls in typing.get_args(AnyError)}
    assert set(ERRORS) == set(codes)
    for code, struct in codes.items():
        exception = ERRORS[code]
        assert issubclass(exception, LedgerError) and exception.code == code
        details = typing.get_type_hints(struct)["details"]
        assert typing.get_type_hints(exception)["details"] is details, code
    # the codes a client cannot provoke through the typed methods, from their wire form
    for body, cls, field in [
        ({"code": "conflict", "message": "m", "retryable": True, "details": {"boundary": "b"}}, Conflict, "boundary"),
        ({"code": "unknown_command", "message": "m", "details": {"command": "x.y"}}, UnknownCommand, "command"),
        ({"code": "unsupported", "message": "m", "details": {"provider": "p", "operation": "fork"}}, Unsupported,
         "operation"),
        ({"code": "internal", "message": "m", "details": {"trace_id": "t1"}}, Internal, "trace_id"),
    ]:
        error = api.exception(msgspec.convert(body, AnyError))
        assert type(error) is cls and error.retryable is body.get("retryable", False)
        assert getattr(error.details, field) == body["details"][field] and error.message == "m"


async def test_every_command_and_query_answers_its_own_result_type(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    sent: dict[str, object] = {}
    async with ledger_for(engine_config, creds) as ledger:

        async def run(name: str, call: typing.Awaitable[typing.Any]) -> typing.Any:
            result = await call
            assert type(result) is COMMANDS[name].RESULT, (name, result)
            sent[name] = result
            return result

        assert (await run("project.create", ledger.project.create(
            name="demo", project_id="prj_c", config=ProjectConfig(max_delegation_width=3)))).project_id == "prj_c"
        await run("thread.create", ledger.thread.create(project_id="prj_c", thread_id="thd_c", title="main"))
        lead = await run("session.create", ledger.session.create(thread_id="thd_c", session_id="ses_lead", owner="agt_lead",
                                                                  budget=100, sandbox=SandboxSpec(mode="new",
                                                                                                  shutdown="pause")))
        assert lead.sandbox_id is not None and lead.sandbox_id.startswith("sbx_")
        assert (await run("session.start", ledger.session.start(session_id="ses_lead"))).status == "active"
        assert (await run("session.request_input", ledger.session.request_input(session_id="ses_lead", prompt="ok?"))
                ).status == "awaiting_hitl"
        assert (await run("session.provide_input", ledger.session.provide_input(session_id="ses_lead"))).status == "active"
        kid = await run("session.spawn", ledger.session.spawn(parent_session_id="ses_lead", session_id="ses_kid",
                                                               agent="agt_kid", failure_mode="fail_fast", budget=10))
        assert (kid.session_id, kid.depth, kid.sandbox_id) == ("ses_kid", 1, None) and kid.edge_id.startswith("sub_")
        done = await run("session.complete", ledger.session.complete(session_id="ses_kid", usage=3, summary=Summary(
            outcome="succeeded", text="done", deliverables=["a.txt"])))
        assert done.status == "idle" and done.summary_id.startswith("sum_")
        single = await run("handoff.single", ledger.handoff.single(source_session_id="ses_kid", recipient="agt_next",
                                                                    expected_owner_version=0))
        assert single.owner_version == 1 and single.handoff_id.startswith("hof_")
        await ledger.session.create(thread_id="thd_c", session_id="ses_b", owner="agt_b")
        broadcast = await run("handoff.broadcast", ledger.handoff.broadcast(
            source_session_id="ses_b", recipients=["agt_x", "agt_y"], expected_owner_version=0))
        x, y = broadcast.session_ids
        assert (await run("session.cancel", ledger.session.cancel(session_id=x, reason="enough"))).status == "idle"
        assert (await run("session.fail", ledger.session.fail(session_id=y, reason="broke"))).status == "failed"
        assert (await run("session.archive", ledger.session.archive(session_id=y))).status == "archived"
        assert (await run("session.restore", ledger.session.restore(session_id=y))).status == "idle"
        await ledger.thread.create(project_id="prj_c", thread_id="thd_2")
        assert (await run("thread.archive", ledger.thread.archive(thread_id="thd_2"))).status == "archived"
        assert (await run("thread.unarchive", ledger.thread.unarchive(thread_id="thd_2"))).status == "open"
        assert (await run("thread.delete", ledger.thread.delete(thread_id="thd_2"))).status == "deleted"
        fork = await ledger.thread.create(project_id="prj_c", thread_id="thd_f", mode="fork", source_thread_id="thd_c")
        assert fork.thread_id == "thd_f"
        assert (await run("sandbox.create", ledger.sandbox.create(sandbox_id="sbx_s"))).status == "creating"
        requested = ledger.position  # the create request's position, which the outcome answers
        with pytest.raises(api.Forbidden):  # only the effect handler reports outcomes, on a subject of its own
            await ledger.sandbox.report_outcome(sandbox_id="sbx_s", request_position=requested, op="create", ok=True,
                                                location=str(tmp_path))
        sent["sandbox.report_outcome"] = "forbidden"
        assert engine.commands is not None  # what the effect handler inside an engine records
        reported = await engine.commands.execute("tnt_acme", "sandbox.report_outcome", msgspec.json.encode({
            "actor": {"kind": "system", "id": "sys_sandbox_effects"}, "sandbox_id": "sbx_s",
            "request_position": requested, "op": "create", "ok": True, "location": str(tmp_path)}))
        assert reported.ok and reported.result is not None and reported.result.status == "running"
        assert lead.sandbox_id is not None  # no effect handler here: the exec waits behind its create, and says so
        execd = await run("sandbox.exec", ledger.sandbox.exec(sandbox_id=lead.sandbox_id, session_id="ses_lead",
                                                              argv=["true"]))
        assert execd.status == "running"
        forked = await run("sandbox.fork", ledger.sandbox.fork(sandbox_id="sbx_s", new_sandbox_id="sbx_f"))
        assert (forked.sandbox_id, forked.status) == ("sbx_f", "creating")
        assert (await run("sandbox.pause", ledger.sandbox.pause(sandbox_id="sbx_s"))).status == "paused"
        assert (await run("sandbox.resume", ledger.sandbox.resume(sandbox_id="sbx_s"))).status == "running"
        assert (await run("sandbox.destroy", ledger.sandbox.destroy(sandbox_id="sbx_s"))).status == "destroyed"
        assert set(sent) == set(COMMANDS), "a command the client was not tried with"

        at = ledger.position
        answers = {
            "thread.get": await ledger.thread.get(thread_id="thd_c", min_position=at),
            "thread.list": await ledger.thread.list(project_id="prj_c"),
            "session.get": await ledger.session.get(session_id="ses_lead"),
            "session.tree": await ledger.session.tree(session_id="ses_lead"),
            "sandbox.get": await ledger.sandbox.get(sandbox_id="sbx_s"),
            "events.read": await ledger.events.read(thread_id="thd_c", limit=5),
            "quarantine.list": await ledger.quarantine.list(),
        }
        with pytest.raises(api.Forbidden):  # the deployment's own query: it spans tenants
            await ledger.sandbox.list_live()
        assert set(answers) == set(QUERIES) - {"sandbox.list_live"}
        for name, answer in answers.items():
            assert type(answer) is QUERY_RESULTS[name], name
        assert answers["session.get"].session.budget.reserved_for_children == 0  # the kid's edge closed
        assert [r.thread_id for r in answers["thread.list"].threads] == ["thd_c", "thd_2", "thd_f"]
        assert answers["sandbox.get"].sandbox.intent == "destroyed"


async def test_paged_queries_iterate_every_page(engine: Engine, engine_config: EngineConfig, deployment: Deployment,
                                                tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger:
        await ledger.project.create(name="p", project_id="prj_pg")
        for n in range(3):
            await ledger.thread.create(project_id="prj_pg", thread_id=f"thd_{n}")
        await ledger.session.create(thread_id="thd_0", session_id="ses_0", owner="agt_a")
        await ledger.session.start(session_id="ses_0")
        rows = [row.thread_id async for row in ledger.thread.list_all(project_id="prj_pg", limit=1)]
        assert rows == ["thd_0", "thd_1", "thd_2"]
        paged = [e.position async for e in ledger.events.read_all(thread_id="thd_0", limit=1)]
        whole = (await ledger.events.read(thread_id="thd_0")).events
        assert paged == [e.position for e in whole] and len(paged) == 3
        assert [q async for q in ledger.quarantine.list_all(limit=1)] == []


async def test_a_retry_after_unavailable_reuses_the_command_id_and_is_answered_once(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, nc: Client,
        tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    assert engine.commands is not None
    async with ledger_for(engine_config, creds) as ledger, wiretap(nc, engine_config) as tap:
        await ledger.project.create(name="p", project_id="prj_r")
        await ledger.thread.create(project_id="prj_r", thread_id="thd_r")
        await ledger.session.create(thread_id="thd_r", session_id="ses_r", owner="agt_r")
        before = len(tap.bodies)
        engine.commands.decide_within = 0.0  # every command now arrives too late to be decided: `unavailable`
        start = asyncio.ensure_future(ledger.session.start(session_id="ses_r"))
        await tap.wait_for(before + 2)  # the first attempt was refused as unavailable, and sent again
        engine.commands.decide_within = 2.0
        result = await asyncio.wait_for(start, HANG)
        attempts = tap.bodies[before:]
        events = [e async for e in ledger.events(thread_id="thd_r", follow=False)]
    ids = {a["command_id"] for a in attempts}
    assert len(attempts) >= 2 and len(ids) == 1, attempts
    assert (result.session_id, result.status) == ("ses_r", "active")
    assert [e.type for e in events if e.command_id in ids] == ["session.started"]  # decided once


async def test_a_rate_limited_command_is_sent_again_once_its_retry_after_has_passed(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants,
        nats_server: EmbeddedNats, nc: Client, tmp_path: Path) -> None:
    """A tenant allowed one command a second: the second command at once is refused `rate_limited`
    with the seconds until its token is due, and the client waits that long before the retry,
    which is then taken (rather than spent on more refusals); decided once."""
    tenant = f"tnt_r{uuid.uuid4().hex[:10]}"
    await add_tenant(nats_server.url, deployment, tenant, quota=TenantQuota(commands_per_second=1))
    creds = await creds_file(deployment, tenants, tmp_path, tenant=tenant)
    retries: list[Retry] = []
    async with ledger_for(engine_config, creds, tenant=tenant, on_retry=retries.append) as ledger, \
            wiretap(nc, engine_config) as tap:
        await ledger.project.create(name="p", project_id="prj_r1")
        before = len(tap.bodies)
        await ledger.project.create(name="p", project_id="prj_r2")
        attempts = tap.bodies[before:]
        events = [e async for e in ledger.events(follow=False)]
    limited = [r for r in retries if isinstance(r.error, RateLimited)]
    assert limited and all(r.pause >= r.error.details.retry_after > 0 for r in limited), retries
    assert len(attempts) == 2 and attempts[0]["command_id"] == attempts[1]["command_id"], attempts
    assert [e.type for e in events] == ["project.created", "project.created"]


async def test_a_request_nobody_answers_is_sent_again_with_its_command_id_once_the_engine_could_not_decide_it(
        engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, nc: Client, tmp_path: Path) -> None:
    """No engine runs yet (only the wiretap hears the request): the retry waits out the engine's
    decide-within bound, then goes out with the same id, and the engine started meanwhile answers it."""
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds, timeout=1.0, deadline=HANG) as ledger, wiretap(nc, engine_config) as tap:
        create = asyncio.ensure_future(ledger.project.create(name="late", project_id="prj_late"))
        await tap.wait_for(1)
        engine = Engine(engine_config)
        await engine.start()
        try:
            result = await asyncio.wait_for(create, HANG)
            again = await ledger.project.create(name="late", project_id="prj_late2")
        finally:
            await engine.stop()
    assert result.project_id == "prj_late" and again.project_id == "prj_late2"
    first = [b for b in tap.bodies if b.get("project_id") == "prj_late"]
    assert len(first) >= 2 and len({b["command_id"] for b in first}) == 1


async def test_each_refusal_is_raised_as_its_own_exception_with_typed_details(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    auditor = await creds_file(deployment, tenants, tmp_path, user="usr_audit", role="auditor")
    assert engine.commands is not None
    async with ledger_for(engine_config, creds) as ledger:
        await ledger.project.create(name="p", project_id="prj_e", config=ProjectConfig(max_delegation_width=1))
        await ledger.project.create(name="q", project_id="prj_o")
        for thread, project in (("thd_e", "prj_e"), ("thd_side", "prj_e"), ("thd_other", "prj_o"), ("thd_done", "prj_e")):
            await ledger.thread.create(project_id=project, thread_id=thread)
        await ledger.session.create(thread_id="thd_e", session_id="ses_p", owner="agt_p")
        await ledger.session.start(session_id="ses_p")
        await ledger.session.spawn(parent_session_id="ses_p", session_id="ses_k", agent="agt_k")
        await ledger.thread.archive(thread_id="thd_done")

        async def refused(call: typing.Awaitable[typing.Any], cls: type[LedgerError]) -> typing.Any:
            with pytest.raises(cls) as caught:
                await call
            assert type(caught.value) is cls and isinstance(caught.value.error, getattr(schema_errors, cls.__name__))
            assert not caught.value.retryable or cls is Unavailable
            return caught.value.details

        assert await refused(ledger.session.start(session_id="ses_none"), NotFound) == EntityDetails(kind="session",
                                                                                                     id="ses_none")
        assert (await refused(ledger.project.create(name="p", project_id="prj_e"), AlreadyExists)).kind == "project"
        assert (await refused(ledger.session.create(thread_id="thd_done", owner="agt_z"), ThreadClosed)).op == \
            "session.create"
        blocking = await refused(ledger.thread.archive(thread_id="thd_e"), ThreadNotEmpty)
        assert blocking.blocking_sessions == [BlockingSession("ses_p", "active"), BlockingSession("ses_k", "active")]
        assert (await refused(ledger.session.provide_input(session_id="ses_p"), IllegalTransition)).from_ == "active"
        assert await refused(ledger.session.spawn(parent_session_id="ses_p", agent="agt_2"), CapacityExceeded) == \
            CapacityDetails(dimension="width", current=1, limit=1, session_id="ses_p")
        assert (await refused(ledger.session.spawn(parent_session_id="ses_p", agent="agt_2", thread_id="thd_side"),
                              CrossThread)).parent_thread_id == "thd_e"
        assert (await refused(ledger.session.spawn(parent_session_id="ses_p", agent="agt_2", thread_id="thd_other"),
                              CrossProject)).parent_thread_id == "thd_e"
        assert (await refused(ledger.handoff.single(source_session_id="ses_p", recipient="agt_h", expected_owner_version=7),
                              VersionConflict)).actual == 0
        assert (await refused(ledger.handoff.single(source_session_id="ses_p", recipient="agt_h", expected_owner_version=0),
                              HandoffRejected)).reason == "active_run"
        fork = ledger.thread.create(project_id="prj_e", mode="fork", source_thread_id="thd_e", at_position=1)
        assert [e.path for e in (await refused(fork, InvalidCommand)).errors] == ["$.at_position"]
    async with ledger_for(engine_config, auditor) as audit:
        denied = await refused(audit.thread.create(project_id="prj_e"), Forbidden)
        assert (denied.principal, denied.role, denied.tenant) == ("usr_audit", "auditor", "tnt_acme")
    async with ledger_for(engine_config, creds, deadline=0) as impatient:
        engine.commands.decide_within = 0.0
        try:
            with pytest.raises(Unavailable) as caught:
                await impatient.session.start(session_id="ses_p")
        finally:
            engine.commands.decide_within = 2.0
        assert caught.value.retryable and "not decided within" in caught.value.message


async def test_ids_are_checked_before_sending_and_refused_in_words(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, nc: Client,
        tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger, wiretap(nc, engine_config) as tap:
        cases = [
            (ledger.session.start(session_id="ses bad"), "$.session_id",
             "session id must start with ses_ followed by 1-64 letters, digits, _ or -, not 'ses bad'"),
            (ledger.thread.create(project_id="prj_x", thread_id="thread-1"), "$.thread_id",
             "thread id must start with thd_ followed by 1-64 letters, digits, _ or -, not 'thread-1'"),
            (ledger.session.start(session_id="ses_x", command_id="a b"), "$.command_id",
             "command id must be 1-128 letters, digits, _, ., : or -, not 'a b'"),
            (ledger.session.create(thread_id="thd_x", owner="bob"), "$.owner",
             "'bob' is not an actor id: it starts with usr_, agt_ or sys_"),
            (ledger.session.create(thread_id="thd_x", owner="agt_a b"), "$.owner",
             "agent actor id must start with agt_ followed by 1-64 letters, digits, _ or -, not 'agt_a b'"),
        ]
        for call, path, words in cases:
            with pytest.raises(InvalidCommand) as caught:
                await call
            assert [(e.path, e.message) for e in caught.value.details.errors] == [(path, words)]
            assert not re.search(r"regex|\[A-Za-z|\(\?!", caught.value.message), caught.value.message
    assert tap.bodies == []  # nothing was sent


async def test_events_reads_the_history_then_follows_live(engine: Engine, engine_config: EngineConfig,
                                                           deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds) as ledger:
        await ledger.project.create(name="p", project_id="prj_v")
        await ledger.thread.create(project_id="prj_v", thread_id="thd_v")
        await ledger.session.create(thread_id="thd_v", session_id="ses_v", owner="agt_v")
        thread_feed, tenant_feed = ledger.events(thread_id="thd_v"), ledger.events()
        history = [await anext(thread_feed) for _ in range(2)]
        assert [e.type for e in history] == ["thread.created", "session.created"]
        assert [(await anext(tenant_feed)).type for _ in range(3)] == ["project.created", "thread.created",
                                                                      "session.created"]
        live, tenant_live = asyncio.ensure_future(anext(thread_feed)), asyncio.ensure_future(anext(tenant_feed))
        await asyncio.sleep(0)
        await ledger.thread.create(project_id="prj_v", thread_id="thd_w")  # the tenant's, not this thread's
        started = await ledger.session.start(session_id="ses_v")
        event = await asyncio.wait_for(live, HANG)
        assert isinstance(event, StoredEvent) and event.type == "session.started" and event.data.session_id == started.session_id
        assert event.position == ledger.position and event.position > history[-1].position
        assert (await asyncio.wait_for(tenant_live, HANG)).type == "thread.created"
        assert (await asyncio.wait_for(anext(tenant_feed), HANG)).type == "session.started"
        await thread_feed.aclose()
        await tenant_feed.aclose()


async def test_a_reply_that_is_no_engines_is_refused_and_not_sent_again(
        engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, nc: Client, tmp_path: Path) -> None:
    """Something else answers on the engine's subjects (no engine runs): its reply is not trusted."""
    creds = await creds_file(deployment, tenants, tmp_path)
    asked: list[bytes] = []

    async def impostor(msg: Msg) -> None:
        asked.append(msg.data)
        await msg.respond(b'{"ok": true, "command_id": "x", "position": 1, "events": [], "result": {"owned": "yes"}}')

    sub = await nc.subscribe(f"{engine_config.prefix}.cmd.>", cb=impostor)
    try:
        async with ledger_for(engine_config, creds) as ledger:
            with pytest.raises(BadReply) as caught:
                await ledger.project.create(name="p")
    finally:
        await sub.unsubscribe()
    assert not caught.value.retryable and "owned" in caught.value.message and len(asked) == 1


async def test_events_keeps_following_across_an_engine_restart(
        engine: Engine, engine_config: EngineConfig, deployment: Deployment, tenants: Tenants, tmp_path: Path) -> None:
    creds = await creds_file(deployment, tenants, tmp_path)
    async with ledger_for(engine_config, creds, deadline=HANG) as ledger:
        await ledger.project.create(name="p", project_id="prj_x")
        await ledger.thread.create(project_id="prj_x", thread_id="thd_x")
        await ledger.session.create(thread_id="thd_x", session_id="ses_x", owner="agt_x")
        feed = ledger.events(thread_id="thd_x")
        assert [(await anext(feed)).type for _ in range(2)] == ["thread.created", "session.created"]
        following = asyncio.ensure_future(anext(feed))
        await engine.stop()  # the feed meets no engine for a while
        replacement = Engine(engine_config)
        await replacement.start()
        try:
            await ledger.session.start(session_id="ses_x")
            assert (await asyncio.wait_for(following, HANG)).type == "session.started"
        finally:
            await feed.aclose()
            await replacement.stop()
