"""Workers against a real log: an event a worker cannot handle is retried with backoff, then
parked where an operator sees it while the rest flows on; the effect handler works on different
sandboxes at once and keeps each sandbox's requests in log order, also across two replicas."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.durable import DurableWorker, backoff, delivery
from agentledger.handlers.parking import parked
from agentledger.handlers.process_manager import SandboxProcessManager
from agentledger.handlers.workers import effects_worker, process_manager_worker
from agentledger.providers.base import ProviderConfig, SandboxRef
from agentledger.providers.directory import DirectoryProvider
from agentledger.schemas.common import ParkedMessage
from agentledger.schemas.events import Envelope, SessionStarted
from agentledger.schemas.sandboxes import SandboxOptions
from tests.conftest import AGENT, Client_
from tests.sandbox_support import destroy_all, eventually, settled

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n, 0.1, 1.0) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.fixture
async def bare(engine_config: EngineConfig) -> AsyncIterator[Engine]:
    """An engine without its own workers: the tests start the workers they study."""
    engine_config.process_manager = False
    engine_config.worker_retry_delay = 0.01
    engine_config.worker_max_attempts = 3
    eng = Engine(engine_config)
    await eng.start()
    yield eng
    await eng.stop()


async def test_an_event_held_past_the_ack_wait_is_not_delivered_again(bare: Engine, nc: Client) -> None:
    """A worker keeps the events it holds, however long it takes: a handler that runs for three
    ack waits (an exec runs for minutes) sees its event once, and the next event of its lane
    follows, on its first delivery too. So a redelivery means the worker that held it stopped."""
    assert bare.store is not None
    config = bare.config
    seen: list[tuple[int, int]] = []

    async def handler(envelope: Envelope, position: int) -> bool:
        seen.append((position, delivery()))
        if len(seen) == 1:
            await asyncio.sleep(3.5)
        return True

    worker = DurableWorker(bare.store.js, config.stream, config.subjects.thread_events_of(("session.created",
                                                                                          "session.started")),
                           "keep", handler, config.subjects, ack_wait=1.0, key=config.subjects.boundary_of,
                           concurrency=4)
    await worker.start()
    client = Client_(nc, config)
    try:
        await client.setup_thread()
        created = await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
        started = await client.ok("session.start", session_id="ses_a")
        await eventually(lambda: asyncio.sleep(0, len(seen) >= 2), "both events handled")
        assert seen[:2] == [(created["position"], 1), (started["position"], 1)]  # no second delivery between
    finally:
        await worker.stop()


async def test_a_poison_event_is_parked_and_the_rest_flows_on(bare: Engine, nc: Client) -> None:
    assert bare.commands is not None and bare.store is not None
    config = bare.config
    pm = SandboxProcessManager(bare.commands.execute)
    seen: list[str] = []
    transient = {"left": 2}

    async def handler(envelope: Envelope, position: int) -> bool:
        data = envelope.data
        if isinstance(data, SessionStarted) and data.session_id == "ses_poison":
            raise ValueError("cannot handle this one")
        if isinstance(data, SessionStarted) and data.session_id == "ses_slow" and transient["left"]:
            transient["left"] -= 1
            return False  # not now: retried, never parked
        seen.append(getattr(data, "session_id", ""))
        return await pm.handle(envelope, position)

    worker = process_manager_worker(config, bare.store, bare.commands.execute)
    worker.handler = handler
    await worker.start()
    client = Client_(nc, config)
    try:
        await client.setup_thread()
        for sid in ("ses_poison", "ses_slow", "ses_after"):
            await client.ok("session.create", thread_id="thd_t1", session_id=sid, owner=AGENT)
        poison = await client.ok("session.start", session_id="ses_poison")
        await client.ok("session.start", session_id="ses_slow")
        await client.ok("session.start", session_id="ses_after")
        await eventually(lambda: asyncio.sleep(0, seen.count("ses_after") == 2), "the events after it handled")
        assert worker.parked == 1 and worker.retries >= 2 + 2
        assert seen == ["ses_poison", "ses_slow", "ses_after", "ses_slow", "ses_after"]
        [record] = await parked(nc.jetstream(), config.stream)
        assert (record.worker, record.position, record.attempts) == (worker.durable, poison["position"], 3)
        assert "ValueError: cannot handle this one" in record.error and record.subject.endswith("session.started")

        # the operator's listing, from the console script
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")}
        proc = await asyncio.create_subprocess_exec(
            AGENTLEDGER, "workers", "parked", "--json", "--stream", config.stream, "--nats-url", config.nats_url,
            "--creds", str(config.creds), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err
        assert msgspec.json.decode(out, type=list[ParkedMessage]) == [record]
    finally:
        await worker.stop()

    # parked means acknowledged: a restarted worker does not see it again
    again = process_manager_worker(config, bare.store, bare.commands.execute)
    again.handler = handler
    await again.start()
    try:
        await client.ok("session.create", thread_id="thd_t1", session_id="ses_last", owner=AGENT)
        await eventually(lambda: asyncio.sleep(0, "ses_last" in seen), "a new event handled")
        assert again.parked == 0 and seen.count("ses_poison") == 1
    finally:
        await again.stop()


async def test_an_idle_worker_takes_a_fetch_timeout_for_nothing_yet(bare: Engine, nc: Client,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A fetch of several events on an idle consumer ends in nats-py's own TimeoutError, or in
    asyncio's when the server's "no messages" lands just before the fetch's deadline (nats-py
    2.16, `_fetch_n`). Both mean "nothing yet": no error logged, no pause before the next fetch,
    and the next event is handled as soon as it is in the log."""
    assert bare.store is not None
    config = bare.config
    real_fetch = JetStreamContext.PullSubscription.fetch
    fetches = 0
    idle = asyncio.Event()  # the worker went on fetching: past the early timeouts and a few idle rounds

    async def fetch(sub: JetStreamContext.PullSubscription, batch: int = 1, timeout: float | None = 5,
                    heartbeat: float | None = None) -> list[Msg]:
        nonlocal fetches
        fetches += 1
        if fetches > 6:
            idle.set()
        if fetches <= 3:  # the race nats-py loses now and then, made certain (asyncio.TimeoutError is TimeoutError)
            raise TimeoutError
        return await real_fetch(sub, batch, timeout, heartbeat)

    handled: list[int] = []
    arrived = asyncio.Event()

    async def handler(envelope: Envelope, position: int) -> bool:
        handled.append(position)
        arrived.set()
        return True

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", fetch)
    caplog.set_level(logging.WARNING, logger="agentledger.workers")
    # keyed, as the effect handler is, so each fetch asks for several events; a failed fetch would pause 10 minutes
    worker = DurableWorker(bare.store.js, config.stream, config.subjects.events_all, "idle", handler, config.subjects,
                           max_retry_delay=600, key=lambda subject: subject, concurrency=4)
    await worker.start()
    try:
        await asyncio.wait_for(idle.wait(), 30)
        await Client_(nc, config).ok("project.create", project_id="prj_p1", name="p")
        await asyncio.wait_for(arrived.wait(), 30)
    finally:
        await worker.stop()
    assert handled == [1]
    assert [r.getMessage() for r in caplog.records if r.name == "agentledger.workers"] == []


class Recording(DirectoryProvider):
    """The local provider, recording the order of its calls per sandbox, with jitter so that
    work on different sandboxes interleaves; `sbx_first` waits until `sbx_second` exists."""

    def __init__(self, root: Path, calls: dict[str, list[str]], second: asyncio.Event) -> None:
        super().__init__(ProviderConfig(root=root))
        self.calls, self.second = calls, second

    async def _record(self, ref: SandboxRef, op: str) -> None:
        await asyncio.sleep(random.uniform(0, 0.005))
        self.calls.setdefault(ref.sandbox_id, []).append(op)

    async def create(self, ref: SandboxRef, options: SandboxOptions) -> str:
        if ref.sandbox_id == "sbx_first":
            await self.second.wait()  # only another sandbox's create can release this one
        location = await super().create(ref, options)
        await self._record(ref, "create")
        if ref.sandbox_id == "sbx_second":
            self.second.set()
        return location

    async def pause(self, ref: SandboxRef) -> None:
        await super().pause(ref)
        await self._record(ref, "pause")

    async def resume(self, ref: SandboxRef) -> None:
        await super().resume(ref)
        await self._record(ref, "resume")

    async def destroy(self, ref: SandboxRef) -> None:
        await super().destroy(ref)
        await self._record(ref, "destroy")


@pytest.mark.parametrize("trial", range(3))
async def test_effects_run_sandboxes_in_parallel_and_each_in_order(
        bare: Engine, nc: Client, tmp_path: Path, trial: int) -> None:
    assert bare.commands is not None and bare.store is not None
    config = bare.config
    config.effects_concurrency = 8
    root = tmp_path / "sandboxes"
    calls: dict[str, list[str]] = {}
    second = asyncio.Event()
    # two replicas of the effect handler share one durable consumer
    workers: list[DurableWorker] = [
        effects_worker(config, bare.store, bare.commands.execute, bare.queries.execute,
                       providers={"local": Recording(root, calls, second)})
        for _ in range(2)]
    for worker in workers:
        await worker.start()
    client = Client_(nc, config)
    others = [f"sbx_s{i}" for i in range(6)]
    try:
        await client.ok("sandbox.create", sandbox_id="sbx_first")
        await client.ok("sandbox.create", sandbox_id="sbx_second")
        for sid in others:
            await client.ok("sandbox.create", sandbox_id=sid)
            await client.ok("sandbox.pause", sandbox_id=sid)
            await client.ok("sandbox.resume", sandbox_id=sid)
            await client.ok("sandbox.destroy", sandbox_id=sid)
        await settled(client, "sbx_first", "running")  # released by sbx_second, behind it in the log
        for sid in others:
            await settled(client, sid, "destroyed")
        assert calls["sbx_second"] == ["create"] and calls["sbx_first"] == ["create"]
        assert {sid: calls[sid] for sid in others} == {sid: ["create", "pause", "resume", "destroy"] for sid in others}
        # every request handled once (the consumer also brings the outcomes, which need nothing done)
        assert sum(w.handled for w in workers) >= 2 + 4 * len(others)
    finally:
        for worker in workers:
            await worker.stop()
        await destroy_all(root)
