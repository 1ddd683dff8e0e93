"""`events.read` over sandboxes: one sandbox's events (`sandbox_id`), and a thread's history
with the events of the sandboxes its sessions were bound to (`sandboxes`), each from the binding
on, paged forwards and backwards like one boundary; a sandbox replayed as of any position."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from agentledger.cli import transport
from agentledger.cli.query_client import QueryClient
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.projections.history import sandbox_at
from agentledger.schemas.queries import EventsPage, EventsRead, SandboxGet, SandboxResult
from tests.conftest import AGENT, Client_
from tests.sandbox_support import sandbox_engine, settled

DONE = {"outcome": "succeeded", "text": "ok"}


@pytest.fixture
async def sbx_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes") as eng:
        yield eng


class Run:
    """The thread the tests build: a sandbox made by hand before any binding (later inherited), a
    child's own sandbox created and then paused when the child completes, and a fork between."""

    base_bound = 0  # where ses_heir inherits sbx_base
    fork_at = 0


async def build(c: Client_) -> Run:
    run = Run()
    await c.setup_thread()
    await c.ok("sandbox.create", sandbox_id="sbx_base", thread_id="thd_t1")
    await settled(c, "sbx_base", "running")
    await c.ok("session.create", thread_id="thd_t1", session_id="ses_parent", owner=AGENT)
    await c.ok("session.start", session_id="ses_parent")
    await c.ok("session.spawn", parent_session_id="ses_parent", session_id="ses_child", agent=AGENT,
               sandbox={"mode": "new", "sandbox_id": "sbx_own", "shutdown": "pause"})
    await settled(c, "sbx_own", "running")
    run.fork_at = (await c.ok("session.request_input", session_id="ses_child", prompt="go on?"))["position"]
    await c.ok("session.provide_input", session_id="ses_child")
    spawned = await c.ok("session.spawn", parent_session_id="ses_parent", session_id="ses_heir", agent=AGENT,
                         sandbox={"mode": "inherit", "sandbox_id": "sbx_base"})
    run.base_bound = spawned["position"]
    await c.ok("session.complete", session_id="ses_child", summary=DONE)
    await settled(c, "sbx_own", "paused")
    await c.ok("sandbox.pause", sandbox_id="sbx_base")  # by hand, after the inheritance: part of the thread's history
    await settled(c, "sbx_base", "paused")
    await c.ok("thread.create", project_id="prj_p1", thread_id="thd_f", mode="fork", source_thread_id="thd_t1",
               at_position=run.fork_at)
    return run


async def read(c: Client_, **fields: Any) -> list[dict[str, Any]]:
    reply = await c.qry("events.read", **({"limit": 1000} | fields))
    assert reply["ok"], reply
    return reply["result"]["events"]  # type: ignore[no-any-return]


async def test_a_threads_history_with_its_sandboxes(nc: Client, sbx_engine: Engine) -> None:
    c = Client_(nc, sbx_engine.config)
    run = await build(c)
    own = await read(c, sandbox_id="sbx_own")
    base = await read(c, sandbox_id="sbx_base")
    assert [e["type"] for e in own] == ["sandbox.create_requested", "sandbox.created", "sandbox.pause_requested",
                                        "sandbox.paused"]
    assert [e["type"] for e in base] == ["sandbox.create_requested", "sandbox.created", "sandbox.pause_requested",
                                         "sandbox.paused"]
    thread = await read(c, thread_id="thd_t1")
    assert all(".thr.thd_t1." in e["boundary"] for e in thread)  # without the flag: the thread's own, as before

    # with it: the thread's events and its sandboxes', in log order; sbx_base only after it was inherited
    history = await read(c, thread_id="thd_t1", sandboxes=True)
    expected = sorted([e["position"] for e in thread + own] + [e["position"] for e in base if e["position"] > run.base_bound])
    assert [e["position"] for e in history] == expected
    assert base[0]["position"] < run.base_bound < base[-1]["position"]

    # paged forwards a few at a time, and backwards from anywhere, it is the same sequence
    positions, after = [], 0
    while True:
        page = (await c.qry("events.read", thread_id="thd_t1", sandboxes=True, after=after, limit=3))["result"]
        positions += [e["position"] for e in page["events"]]
        if not page["events"]:
            break
        after = page["next_after"]
    assert positions == expected
    for before in [expected[-1] + 1, *expected[::3]]:
        page = await read(c, thread_id="thd_t1", sandboxes=True, before=before, limit=4)
        assert [e["position"] for e in page] == [p for p in expected if p < before][-4:], before

    # a fork sees its source's sandbox events up to the fork point, as it sees the source's own
    fork = await read(c, thread_id="thd_f", sandboxes=True)
    lineage = [p for p in expected if p <= run.fork_at]
    assert [e["position"] for e in fork][:len(lineage)] == lineage
    assert [e["type"] for e in fork][len(lineage):] == ["thread.created"]
    assert any(e["type"] == "sandbox.created" for e in fork)


async def test_sandbox_reads_refuse_what_they_cannot_answer(nc: Client, sbx_engine: Engine) -> None:
    c = Client_(nc, sbx_engine.config)
    await c.setup_thread()
    missing = await c.qry("events.read", sandbox_id="sbx_nothere")
    assert missing["error"]["code"] == "not_found" and missing["error"]["details"]["kind"] == "sandbox"
    for fields in ({"thread_id": "thd_t1", "sandbox_id": "sbx_nothere"}, {"sandboxes": True}):
        reply = await c.qry("events.read", **fields)
        assert reply["error"]["code"] == "invalid_command", (fields, reply)


async def test_a_sandbox_replayed_as_of_each_position(nc: Client, sbx_engine: Engine) -> None:
    """The engine's own SandboxState folded up to a position: what `sandbox.get` said then."""
    c = Client_(nc, sbx_engine.config)
    await build(c)
    own = await read(c, sandbox_id="sbx_own")
    config = sbx_engine.config
    target = transport.Target(config.nats_url, config.prefix, "tnt_acme", 5.0, str(config.creds))
    async with QueryClient(target) as qc:
        async def pages(after: int, limit: int) -> EventsPage:
            return await qc.ask(EventsRead(sandbox_id="sbx_own", after=after, limit=limit), EventsPage)

        stops = [own[0]["position"] - 1, own[0]["position"], own[1]["position"], own[2]["position"], own[3]["position"]]
        views = await sandbox_at(pages, "sbx_own", stops)
        now = (await qc.ask(SandboxGet(sandbox_id="sbx_own"), SandboxResult)).sandbox
    assert views[0] is None  # not yet requested
    assert [(v.status, v.intent, v.pending) for v in views[1:] if v] == [
        ("creating", "running", ["create"]), ("running", "running", []), ("running", "paused", ["pause"]),
        ("paused", "paused", [])]
    assert msgspec.to_builtins(views[-1]) == msgspec.to_builtins(now)
