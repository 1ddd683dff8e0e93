"""The measured workloads. Each returns numbers; `bench.run` decides what to run and prints them.

Subjects and filters come from `engine.subjects.Subjects`, as everywhere else in the project.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from nats.aio.client import Client

from agentledger.engine.store import H_EXPECTED_SEQ, H_EXPECTED_SUBJECT, EventStore
from agentledger.engine.subjects import Subjects
from bench.client import AGENT, TENANT, BenchError, LedgerClient
from bench.harness import CpuMeter, Settle, Stats, run_lanes

_ids = itertools.count()
T = TypeVar("T")


def uid(prefix: str) -> str:
    """Ids unique within one benchmark run (a run always starts on an empty data dir)."""
    return f"{prefix}b{next(_ids)}"


# -- background work ------------------------------------------------------------------------------
def durable_consumers_settled(nc: Client, stream: str, timeout: float = 600.0) -> Settle:
    """A wait until every durable consumer of `stream` (the engine's process manager and effect
    handler) has no event left to deliver or to acknowledge; returns the seconds it took."""
    js = nc.jetstream()

    async def settled() -> float:
        t0 = time.perf_counter()
        while True:
            infos = await js.consumers_info(stream)
            if all(not i.config.durable_name or (i.num_pending or 0) + (i.num_ack_pending or 0) == 0 for i in infos):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"durable consumers of {stream} still behind after {timeout:.0f} s")
            await asyncio.sleep(0.02)

    return settled


# -- raw JetStream publish, the baseline ------------------------------------------------------------
def raw_payload(size: int = 400) -> bytes:
    """An envelope-shaped JSON document of exactly `size` bytes."""
    doc = {"event_id": "0" * 32, "type": "session.input_requested", "tenant_id": TENANT,
           "boundary": Subjects("raw").thread_filter(TENANT, "thd_raw"), "command_id": "cmd_000000000000",
           "actor": {"kind": "user", "id": "usr_bench"}, "at": "2026-01-01T00:00:00.000000+00:00",
           "data": {"type": "session.input_requested", "session_id": "ses_000000000000", "prompt": ""}}
    pad = size - len(msgspec.json.encode(doc))
    assert pad >= 0, "payload template is larger than the requested size"
    doc["data"]["prompt"] = "x" * pad  # type: ignore[index]
    out = msgspec.json.encode(doc)
    assert len(out) == size
    return out


class RawPublisher:
    """`js.publish` with the engine's expected-sequence headers, one thread subject per lane."""

    def __init__(self, nc: Client, stream: str, prefix: str = "raw") -> None:
        self.nc, self.stream, self.subjects = nc, stream, Subjects(prefix)
        self.js = nc.jetstream()
        self.payload = raw_payload()

    async def ensure_stream(self) -> None:
        # Same stream configuration as the engine's event stream (file storage, R1, direct get).
        await EventStore(self.nc, self.stream).ensure_stream(self.subjects.stream_subjects)

    async def run(self, lanes: int, per_lane: int, cpu: CpuMeter | None = None) -> Stats:
        filters = [self.subjects.thread_filter(TENANT, uid("thd_raw")) for _ in range(lanes)]
        subjects = [Subjects.event_subject(f, "session.input_requested") for f in filters]
        last = [0] * lanes
        js, payload = self.js, self.payload

        async def op(lane: int, i: int) -> None:
            ack = await js.publish(subjects[lane], payload,
                                   headers={H_EXPECTED_SEQ: str(last[lane]), H_EXPECTED_SUBJECT: filters[lane]})
            last[lane] = ack.seq

        return await run_lanes(lanes, per_lane, op, cpu)


# -- request/reply with no work behind it ------------------------------------------------------------
async def round_trips(nc: Client, subject: str, lanes: int, per_lane: int, cpu: CpuMeter | None = None) -> Stats:
    """Requests with a small JSON body naming one thread per lane, so lanes never share a thread."""
    threads = [uid("thd_") for _ in range(lanes)]
    bodies = [msgspec.json.encode({"thread": t, "actor": {"kind": "user", "id": "usr_bench"}}) for t in threads]

    async def op(lane: int, i: int) -> None:
        await nc.request(subject, bodies[lane], timeout=30)

    return await run_lanes(lanes, per_lane, op, cpu)


# -- end to end through the engine ---------------------------------------------------------------------
async def create_project(client: LedgerClient) -> str:
    project_id = uid("prj_")
    await client.ok("project.create", project_id=project_id, name="bench")
    return project_id


async def active_sessions(client: LedgerClient, project_id: str, count: int, lanes: int = 16) -> list[str]:
    """`count` active sessions, each alone in a thread of its own (4 commands each)."""
    sessions = [uid("ses_") for _ in range(count)]

    async def op(lane: int, i: int) -> None:
        k = i * lanes + lane
        if k >= count:
            return
        thread_id = uid("thd_")
        await client.ok("thread.create", project_id=project_id, thread_id=thread_id)
        await client.ok("session.create", thread_id=thread_id, session_id=sessions[k], owner=AGENT)
        await client.ok("session.start", session_id=sessions[k])

    await run_lanes(lanes, -(-count // lanes), op)
    return sessions


class HitlLoop:
    """Alternates `session.request_input` / `session.provide_input` (one event each) per session."""

    def __init__(self, client: LedgerClient, sessions: list[str], settle: Settle | None = None) -> None:
        self.client, self.sessions, self.settle = client, sessions, settle
        self.awaiting = [False] * len(sessions)

    async def step(self, k: int) -> None:
        command = "session.provide_input" if self.awaiting[k] else "session.request_input"
        await self.client.ok(command, session_id=self.sessions[k])
        self.awaiting[k] = not self.awaiting[k]

    async def run(self, lanes: int, per_lane: int, cpu: CpuMeter | None = None) -> Stats:
        assert lanes <= len(self.sessions)

        async def op(lane: int, i: int) -> None:
            await self.step(lane)

        return await run_lanes(lanes, per_lane, op, cpu, self.settle)


# -- delegation ------------------------------------------------------------------------------------------
@dataclass
class Timed:
    """Latencies of one kind of operation, collected across interleaved rounds."""

    latencies_ns: list[int]
    wall: float = 0.0

    def stats(self) -> Stats:
        return Stats(len(self.latencies_ns), self.wall, self.latencies_ns)


async def timed(rec: Timed, awaitable: Awaitable[T]) -> T:
    t0 = time.perf_counter_ns()
    result = await awaitable
    dt = time.perf_counter_ns() - t0
    rec.latencies_ns.append(dt)
    rec.wall += dt / 1e9
    return result


async def spawn_children(client: LedgerClient, parent: str, rec: Timed) -> list[str]:
    children = []
    for _ in range(8):
        reply = await timed(rec, client.ok("session.spawn", parent_session_id=parent, agent=AGENT))
        children.append(reply["result"]["session_id"])
    return children


async def complete(client: LedgerClient, session_id: str) -> None:
    await client.ok("session.complete", session_id=session_id, summary={"outcome": "succeeded", "text": "done"})


async def spawn_cycles(client: LedgerClient, parents: list[str], rounds: int) -> tuple[Stats, Stats]:
    """Per round and parent: spawn 8 children (the default width cap), then complete all 8."""
    spawns, completes = Timed([]), Timed([])
    for _ in range(rounds):
        for parent in parents:
            for child in await spawn_children(client, parent, spawns):
                await timed(completes, complete(client, child))
    return spawns.stats(), completes.stats()


# -- threads of growing history --------------------------------------------------------------------------
@dataclass
class GateThread:
    label: str
    thread_id: str
    parent: str  # an active session: it blocks archiving, and children are spawned under it
    built_events: int = 0
    build_seconds: float = 0.0  # until the engine accepted the last command
    settle_seconds: float = 0.0  # then until the engine's durable consumers caught up
    build_cpu: dict[str, float] | None = None  # process -> CPU seconds spent building


def filler_pairs(target_events: int, lanes: int) -> int:
    """Request/provide pairs per filler session so the thread ends near `target_events`.

    thread.create + parent create/start = 3 events; each filler session adds create, start,
    2 per pair, and complete."""
    return max(0, round((target_events - 3 - 3 * lanes) / (2 * lanes)))


async def build_thread(client: LedgerClient, project_id: str, label: str, target_events: int,
                       lanes: int, cpu: CpuMeter | None = None, settle: Settle | None = None) -> GateThread:
    """A thread whose history is about `target_events` long, all written by the engine.

    `lanes` filler sessions in the same thread run concurrently (each one sequential), so the
    engine always has the next command of this thread queued; they all end idle, leaving the
    parent as the only session that blocks archiving."""
    thread_id, parent = uid("thd_"), uid("ses_")
    if cpu:
        cpu.start()
    t0 = time.perf_counter()
    await client.ok("thread.create", project_id=project_id, thread_id=thread_id)
    await client.ok("session.create", thread_id=thread_id, session_id=parent, owner=AGENT)
    await client.ok("session.start", session_id=parent)
    fillers = [uid("ses_") for _ in range(lanes)]
    for sid in fillers:
        await client.ok("session.create", thread_id=thread_id, session_id=sid, owner=AGENT)
        await client.ok("session.start", session_id=sid)
    loop = HitlLoop(client, fillers)
    await loop.run(lanes, 2 * filler_pairs(target_events, lanes))
    for sid in fillers:
        await complete(client, sid)
    seconds = time.perf_counter() - t0
    settled = await settle() if settle else 0.0
    thread = GateThread(label, thread_id, parent, build_seconds=seconds, settle_seconds=settled,
                        build_cpu=cpu.stop() if cpu else None)
    thread.built_events = await thread_events(client, thread_id)
    return thread


async def thread_events(client: LedgerClient, thread_id: str, stream: str = "BENCH") -> int:
    """The thread's event count as the log has it (per-subject counts under the thread's filter)."""
    info = await client.nc.jetstream().stream_info(stream, subjects_filter=client.subjects.thread_filter(
        client.tenant, thread_id))
    return sum((info.state.subjects or {}).values())


@dataclass
class GateResult:
    thread: GateThread
    pair: Stats
    spawn: Stats
    complete: Stats
    archive: Stats
    events_after: int = 0


async def gate_checks(client: LedgerClient, threads: list[GateThread], pairs: int, archives: int) -> list[GateResult]:
    """Cap and gate checks, interleaved over the threads round by round so that machine noise
    falls on all of them alike: a spawn + complete pair under the active parent, and
    `thread.archive`, which is refused with thread_not_empty because the parent is active."""
    recs = {t.thread_id: (Timed([]), Timed([]), Timed([]), Timed([])) for t in threads}
    for r in range(max(pairs, archives)):
        for t in threads:
            pair, spawn, done, archive = recs[t.thread_id]
            if r < pairs:
                t0 = time.perf_counter_ns()
                reply = await timed(spawn, client.ok("session.spawn", parent_session_id=t.parent, agent=AGENT))
                await timed(done, complete(client, reply["result"]["session_id"]))
                dt = time.perf_counter_ns() - t0
                pair.latencies_ns.append(dt)
                pair.wall += dt / 1e9
            if r < archives:
                await timed(archive, client.refused("thread.archive", "thread_not_empty", thread_id=t.thread_id))
    out = []
    for t in threads:
        pair, spawn, done, archive = recs[t.thread_id]
        out.append(GateResult(t, pair.stats(), spawn.stats(), done.stats(), archive.stats(),
                              await thread_events(client, t.thread_id)))
    return out


async def stored_event_size(nc: Client, stream: str, subject_filter: str) -> tuple[int, int]:
    """(payload bytes, header bytes) of the last stored event under `subject_filter`."""
    msg = await nc.jetstream().get_last_msg(stream, subject_filter)
    headers = msg.headers or {}
    header_bytes = len("NATS/1.0\r\n") + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2
    return len(msg.data or b""), header_bytes
