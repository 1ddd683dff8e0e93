"""Crash injection: the effect handler runs as its own process and is killed between the
provider call and the outcome event. After a restart nothing is created twice, nothing is lost,
and the log records each outcome exactly once."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

from nats.aio.client import Client

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.effects import CRASH_ENV
from agentledger.providers.base import SandboxRef
from agentledger.providers.directory import STALL_ENV
from agentledger.providers.isolated import BubblewrapProvider
from tests.conftest import AGENT, Client_, effects_creds
from tests.sandbox_support import destroy_all, eventually, local_provider, process_state, sandbox_dirs, settled

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")
DONE = {"outcome": "succeeded", "text": "ok"}


async def start_effects(config: EngineConfig, sandbox_dir: Path, crash: bool, ack_wait: float = 1,
                        stall: Path | None = None, commands: str = "sleep") -> asyncio.subprocess.Process:
    env = {**os.environ, "NATS_URL": config.nats_url, "AGENTLEDGER_PREFIX": config.prefix,
           "AGENTLEDGER_STREAM": config.stream, "AGENTLEDGER_SANDBOX_DIR": str(sandbox_dir),
           "NATS_CREDS": effects_creds(config), "AGENTLEDGER_SANDBOX_COMMANDS": commands,
           "AGENTLEDGER_RECONCILE_EVERY": "0.5"}
    env.pop(CRASH_ENV, None)
    env.pop(STALL_ENV, None)
    if crash:
        env[CRASH_ENV] = "1"
    if stall is not None:
        env[STALL_ENV] = str(stall)
    proc = await asyncio.create_subprocess_exec(AGENTLEDGER, "effects", "--ack-wait", str(ack_wait), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"ready" in line, line
    return proc


async def event_types(client: Client_, sandbox_id: str) -> Counter[str]:
    events = (await client.qry("events.read", limit=1000))["result"]["events"]
    return Counter(e["type"] for e in events if e["data"].get("sandbox_id") == sandbox_id)


async def test_effect_handler_killed_between_provider_call_and_outcome(engine_config: EngineConfig, nc: Client,
                                                                      tmp_path: Path) -> None:
    sandbox_dir = tmp_path / "sandboxes"
    engine = Engine(engine_config)  # process manager in the engine; effects in their own process
    await engine.start()
    client = Client_(nc, engine_config)
    try:
        await client.setup_thread()
        created = await client.ok("session.create", thread_id="thd_t1", owner=AGENT, sandbox={"mode": "new"})
        sandbox_id = created["result"]["sandbox_id"]
        await client.ok("session.start", session_id=created["result"]["session_id"])

        for step, after in (("create", "running"), ("destroy", "destroyed")):
            if step == "destroy":
                await client.ok("session.complete", session_id=created["result"]["session_id"], summary=DONE)
            crashing = await start_effects(engine_config, sandbox_dir, crash=True)
            assert await asyncio.wait_for(crashing.wait(), 30) == 86  # died right after the provider call
            types = await event_types(client, sandbox_id)
            assert types[f"sandbox.{step}_requested"] == 1
            assert types["sandbox.created" if step == "create" else "sandbox.destroyed"] == 0  # outcome lost with it
            assert sandbox_dirs(sandbox_dir, "tnt_acme") == ([sandbox_id] if step == "create" else [])

            worker = await start_effects(engine_config, sandbox_dir, crash=False)
            try:
                await settled(client, sandbox_id, after)
                types = await event_types(client, sandbox_id)
                assert types["sandbox.created"] == 1 and types["sandbox.failed"] == 0
                assert types["sandbox.destroyed"] == (1 if step == "destroy" else 0)
                assert sandbox_dirs(sandbox_dir, "tnt_acme") == ([sandbox_id] if step == "create" else [])
            finally:
                worker.terminate()
                await worker.wait()

        # and the engine's process manager never sent a command twice either
        async def all_requests() -> Counter[str]:
            return await event_types(client, sandbox_id)
        types = await eventually(all_requests, "requests recorded")
        assert types["sandbox.create_requested"] == 1 and types["sandbox.destroy_requested"] == 1
    finally:
        await engine.stop()


async def test_process_manager_redelivery_repeats_nothing(engine_config: EngineConfig, nc: Client) -> None:
    """The process manager dies after sending its command but before acknowledging the event:
    the event comes back, the command is sent again with the same id, and nothing repeats."""
    from agentledger.handlers.process_manager import SandboxProcessManager
    from agentledger.handlers.workers import process_manager_worker

    engine_config.process_manager = False
    engine = Engine(engine_config)
    await engine.start()
    assert engine.commands is not None and engine.store is not None
    crashed: set[str] = set()
    pm = SandboxProcessManager(engine.commands.execute)

    async def crash_once(envelope, position):  # type: ignore[no-untyped-def]
        done = await pm.handle(envelope, position)
        if envelope.event_id not in crashed:
            crashed.add(envelope.event_id)
            raise RuntimeError("killed before the ack")
        return done

    worker = process_manager_worker(engine_config, engine.store, engine.commands.execute)
    worker.handler, worker.retry_delay = crash_once, 0.05
    await worker.start()
    client = Client_(nc, engine_config)
    try:
        await client.setup_thread()
        created = await client.ok("session.create", thread_id="thd_t1", owner=AGENT, sandbox={"mode": "new"})
        session_id, sandbox_id = created["result"]["session_id"], created["result"]["sandbox_id"]
        await client.ok("session.start", session_id=session_id)
        await client.ok("session.complete", session_id=session_id, summary=DONE)

        async def destroy_requested() -> bool:
            return (await event_types(client, sandbox_id))["sandbox.destroy_requested"] == 1
        await eventually(destroy_requested, "destroy requested")
        # the worker fetches only the types it acts on: session.created, .started, .completed
        await eventually(lambda: asyncio.sleep(0, worker.handled >= 3), "every such thread event acknowledged")
        types = await event_types(client, sandbox_id)
        assert types["sandbox.create_requested"] == 1 and types["sandbox.destroy_requested"] == 1
        assert len(crashed) == 3  # every event was handled twice
    finally:
        await worker.stop()
        await engine.stop()


async def test_killed_mid_create_the_redelivered_create_goes_before_its_own_destroy(
        engine_config: EngineConfig, nc: Client, tmp_path: Path) -> None:
    """kill -9 of the effect handler in the middle of a create (its process started, its
    bookkeeping not written). The session ends meanwhile, so the sandbox's destroy is requested
    behind the create. A new effect handler gets the destroy first and the create back only after
    the ack wait: the create must go first (not wait behind the destroy that waits for it), the
    first attempt's process must die, and nothing may be left once the reconciler has run."""
    sandbox_dir, stalled = tmp_path / "sandboxes", tmp_path / "stalled"
    engine = Engine(engine_config)
    await engine.start()
    client = Client_(nc, engine_config)
    ack_wait = 12  # long enough that the destroy is handed out before the create comes back
    try:
        await client.setup_thread()
        created = await client.ok("session.create", thread_id="thd_t1", owner=AGENT,
                                  sandbox={"mode": "new", "options": {"command": ["sleep", "300"]}})
        session_id, sandbox_id = created["result"]["session_id"], created["result"]["sandbox_id"]
        await client.ok("session.start", session_id=session_id)
        crashing = await start_effects(engine_config, sandbox_dir, crash=False, ack_wait=ack_wait, stall=stalled)
        await eventually(lambda: asyncio.sleep(0, stalled.exists()), "the create started its process")
        first = int(stalled.read_text())
        crashing.kill()  # SIGKILL, mid-create
        assert await crashing.wait() == -9
        assert process_state(first) not in (None, "Z")  # the first attempt's process outlived it

        await client.ok("session.complete", session_id=session_id, summary=DONE)
        types = await event_types(client, sandbox_id)
        assert types["sandbox.create_requested"] == 1 and types["sandbox.destroy_requested"] == 1
        assert types["sandbox.created"] == 0

        worker = await start_effects(engine_config, sandbox_dir, crash=False, ack_wait=ack_wait)
        try:
            view = await eventually(lambda: _destroyed(client, sandbox_id), "the sandbox is destroyed",
                                    attempts=int((3 * ack_wait + 30) / 0.05))
            assert view["pending"] == []
            types = await event_types(client, sandbox_id)
            assert types["sandbox.created"] == 1 and types["sandbox.destroyed"] == 1 and types["sandbox.failed"] == 0
            assert process_state(first) in (None, "Z")  # killed, not left running beside a second one
            provider = local_provider(sandbox_dir)
            await eventually(lambda: _nothing_left(provider), "the provider has nothing left")
            assert sandbox_dirs(sandbox_dir, "tnt_acme") == []
        finally:
            worker.terminate()
            await worker.wait()
        assert worker.stderr is not None
        logs = (await worker.stderr.read()).decode()
        assert "sandbox provider local:" in logs and "reconciler pass failed" not in logs  # it ran, as effects.creds
    finally:
        await engine.stop()


async def test_killed_mid_exec_the_exec_is_recorded_interrupted_and_never_run_twice(
        engine_config: EngineConfig, nc: Client, tmp_path: Path) -> None:
    """kill -9 of the effect handler while an exec's program runs. A program cannot be run
    idempotently, so the request, delivered again to a new effect handler, is recorded as failed
    (interrupted) rather than run a second time; the sandbox's next exec runs as usual."""
    sandbox_dir = tmp_path / "sandboxes"
    engine_config.exec_reply_within = 0.5
    engine = Engine(engine_config)
    await engine.start()
    client = Client_(nc, engine_config)
    try:
        await client.setup_thread()
        await client.ok("session.create", thread_id="thd_t1", session_id="ses_lead", owner=AGENT,
                        sandbox={"mode": "new", "sandbox_id": "sbx_run"})
        await client.ok("session.start", session_id="ses_lead")
        crashing = await start_effects(engine_config, sandbox_dir, crash=False, commands="sleep sh")
        view = await settled(client, "sbx_run", "running")
        runs = Path(view["location"], "runs")
        exec_ = {"sandbox_id": "sbx_run", "session_id": "ses_lead", "command_id": "exec-once",
                 "argv": ["sh", "-c", "echo run >> runs; sleep 120"], "timeout_ms": 300_000}
        reply = await client.ok("sandbox.exec", **exec_)
        assert reply["result"]["status"] == "running"
        await eventually(lambda: asyncio.sleep(0, runs.exists()), "the program started")
        crashing.kill()  # SIGKILL, mid-exec
        assert await crashing.wait() == -9

        worker = await start_effects(engine_config, sandbox_dir, crash=False, commands="sleep sh")
        try:
            async def answered() -> dict[str, object] | None:
                again = await client.ok("sandbox.exec", **exec_)  # a repeat: the outcome, once recorded
                return again if again["result"]["status"] != "running" else None
            again = await eventually(answered, "the exec's outcome", attempts=600)
            assert again["result"]["status"] == "failed" and again["result"]["error"].startswith("interrupted:")
            assert runs.read_text() == "run\n"  # it ran once, and not again
            types = await event_types(client, "sbx_run")
            assert types["sandbox.exec_failed"] == 1 and types["sandbox.exec_finished"] == 0
            provider = local_provider(sandbox_dir)
            if isinstance(provider, BubblewrapProvider):  # its program died with the handler that ran it
                status = await provider.status(SandboxRef("tnt_acme", "sbx_run"))
                assert status.processes == 0
            later = await client.ok("sandbox.exec", sandbox_id="sbx_run", session_id="ses_lead",
                                    argv=["sh", "-c", "cat runs"])
            if later["result"]["status"] == "running":
                later = await eventually(lambda: _outcome(client, later["command_id"], later),
                                         "the next exec's outcome", attempts=600)
            assert later["result"]["outcome"]["stdout"]["text"] == "run\n"
        finally:
            worker.terminate()
            await worker.wait()
    finally:
        await engine.stop()
        await destroy_all(sandbox_dir)


async def _outcome(client: Client_, command_id: str, first: dict[str, object]) -> dict[str, object] | None:
    events = first["events"]
    assert isinstance(events, list)
    body = events[0]["data"]
    again = await client.ok("sandbox.exec", command_id=command_id, sandbox_id=body["sandbox_id"],
                            session_id=body["session_id"], argv=body["argv"])
    return again if again["result"]["status"] != "running" else None


async def _destroyed(client: Client_, sandbox_id: str) -> dict[str, object] | None:
    view = (await client.qry("sandbox.get", sandbox_id=sandbox_id))["result"]["sandbox"]
    return view if view["status"] == "destroyed" and not view["pending"] else None  # type: ignore[no-any-return]


async def _nothing_left(provider: object) -> bool:
    return await provider.list() == []  # type: ignore[attr-defined, no-any-return]
