"""A large log, built fast: valid events published straight to a stream (no engine), then the
engine started on it (ready time), serving commands on random threads (RSS, cold and warm
latency), and two engine replicas side by side.

Each seeded thread is what the engine itself would have written: `thread.created` (with its
project token), `session.created` with the session's claim, `session.started`, then
`session.input_requested` / `session.input_provided` alternately, ending with the session
active. The engine checks every event it loads (admission), so a wrong seed would show as
quarantined events, not as silently wrong numbers.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from agentledger.engine import codec
from agentledger.engine.store import EventStore
from agentledger.engine.subjects import Subjects
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.workers import process_manager_worker
from agentledger.schemas.common import Actor, ProjectConfig
from agentledger.schemas.events import (
    Envelope,
    Event,
    ProjectCreated,
    SessionCreated,
    SessionInputProvided,
    SessionInputRequested,
    SessionStarted,
    ThreadCreated,
)
from bench.client import TENANT, LedgerClient
from bench.harness import Stats, run_lanes

ACTOR = Actor(kind="user", id="usr_bench")
PROJECT = "prj_seed"


def thread_id(i: int) -> str:
    return f"thd_s{i:06d}"


def session_id(i: int) -> str:
    return f"ses_s{i:06d}"


class Seeder:
    """Publishes a seeded log; pipelined (`publish_async`), so build it on a server without fsync."""

    def __init__(self, nc: Client, prefix: str, stream: str) -> None:
        self.nc, self.subjects, self.stream = nc, Subjects(prefix), stream
        self.js = nc.jetstream(publish_async_max_pending=4096)
        self.at = datetime.now(UTC).isoformat()

    def _envelope(self, boundary: str, command: str, data: Event) -> bytes:
        return codec.encode(Envelope(
            event_id=uuid.uuid4().hex, type=type(data).__struct_config__.tag, tenant_id=TENANT,  # type: ignore[attr-defined]
            boundary=boundary, command=command, command_id=f"cmd_{uuid.uuid4().hex[:16]}",
            correlation_id="seed", actor=ACTOR, at=self.at, data=data))

    def _thread(self, i: int, events: int) -> Iterator[tuple[str, bytes]]:
        s, tid, sid = self.subjects, thread_id(i), session_id(i)
        boundary = s.thread_filter(TENANT, tid)
        yield s.thread_created_subject(boundary, PROJECT), self._envelope(boundary, "thread.create", ThreadCreated(
            thread_id=tid, project_id=PROJECT, title="", max_delegation_depth=4, max_delegation_width=8))
        yield s.event_subject(boundary, "session.created"), self._envelope(
            boundary, "session.create", SessionCreated(session_id=sid, owner=ACTOR))
        yield s.session_claim_subject(TENANT, sid, tid), b""
        yield s.event_subject(boundary, "session.started"), self._envelope(
            boundary, "session.start", SessionStarted(session_id=sid))
        for k in range(events - 3):
            data: Event = SessionInputRequested(session_id=sid) if k % 2 == 0 else SessionInputProvided(session_id=sid)
            yield s.event_subject(boundary, data.__struct_config__.tag), self._envelope(  # type: ignore[attr-defined]
                boundary, "session.request_input" if k % 2 == 0 else "session.provide_input", data)

    async def seed(self, threads: int, events_per_thread: int) -> int:
        """`threads` threads of `events_per_thread` events (an even number of inputs: the session ends
        active); returns the stream's message count."""
        assert (events_per_thread - 3) % 2 == 0
        await EventStore(self.nc, self.stream).ensure_stream(self.subjects.stream_subjects)
        project = self.subjects.project_filter(TENANT, PROJECT)
        await self.js.publish(self.subjects.event_subject(project, "project.created"), self._envelope(
            project, "project.create", ProjectCreated(project_id=PROJECT, name="seed", config=ProjectConfig())))
        for i in range(threads):
            for subject, data in self._thread(i, events_per_thread):
                await self.js.publish_async(subject, data)
            if i % 200 == 199:
                await self.js.publish_async_completed()
        await self.js.publish_async_completed()
        info = await self.js.stream_info(self.stream)
        await self._workers_caught_up(info.state.last_seq)
        return int(info.state.messages)

    async def _workers_caught_up(self, last: int) -> None:
        """The engine's process manager is a durable consumer of every thread event; a seeded log
        stands for history its workers have already handled, so its durable starts after it."""
        config = EngineConfig(prefix=self.subjects.prefix, stream=self.stream)
        consumer = process_manager_worker(config, EventStore(self.nc, self.stream), _never).config()
        consumer.deliver_policy, consumer.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, last + 1
        await self.js.add_consumer(self.stream, consumer)


async def _never(tenant: str, name: str, body: bytes) -> object:
    raise AssertionError("the seeded log needs no sandbox work")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """The highest RSS of one process, sampled every 50 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self.peak = rss_mb(self.pid)
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_mb(self.pid))


@dataclass
class RandomThreads:
    """One session per seeded thread, each alternating request_input / provide_input."""

    client: LedgerClient
    threads: int
    seed: int = 1

    def __post_init__(self) -> None:
        self.awaiting = [False] * self.threads
        self.rng = random.Random(self.seed)

    async def step(self, i: int) -> None:
        command = "session.provide_input" if self.awaiting[i] else "session.request_input"
        await self.client.ok(command, session_id=session_id(i))
        self.awaiting[i] = not self.awaiting[i]

    async def spread(self, order: list[int], lanes: int) -> Stats:
        """One command on each thread of `order`, `lanes` in flight."""
        queue = iter(order)
        per_lane = len(order) // lanes

        async def op(lane: int, n: int) -> None:
            await self.step(next(queue))

        return await run_lanes(lanes, per_lane, op)

    async def cold_then_warm(self, threads: list[int]) -> tuple[Stats, Stats]:
        """Sequentially, per thread: a command on it (cold: not in the engine's cache), then another (warm)."""
        cold: list[int] = []
        warm: list[int] = []
        wall = [0.0, 0.0]
        for i in threads:
            for k, rec in enumerate((cold, warm)):
                t0 = time.perf_counter_ns()
                await self.step(i)
                dt = time.perf_counter_ns() - t0
                rec.append(dt)
                wall[k] += dt / 1e9
        return Stats(len(cold), wall[0], cold), Stats(len(warm), wall[1], warm)
