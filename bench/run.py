"""`python -m bench.run` (`make bench`): the engine end to end against raw JetStream, on one box.

Starts its own nats-server (sync_interval: always, as in production) on a temporary data dir
and the engine as a separate process (`agentledger serve`), plus, for comparison, a second
nats-server with the default sync interval and its own engine, an engine with its background
workers off (`bench.engine_variant`), and a process of minimal responders (`bench.echo`).
Then it measures, in this order: the raw publish baseline and the engine's one-event commands,
together with where the time goes (interleaved rounds); delegation; cap and gate checks on
threads with long histories; the engine's cold start.

Tables go to stdout and to bench/results/latest.md (rewritten after every section). This is a
report: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.aio.client import Client

from agentledger.handlers.nats_server import EmbeddedNats, free_port
from bench import report as fmt
from bench.client import TENANT, LedgerClient
from bench.echo import engine_subjects, fs_pub_subjects, fs_subjects, raw_pub_subjects, raw_subjects
from bench.harness import (
    REPO,
    ChildProcess,
    CpuMeter,
    Settle,
    Stats,
    echo_process,
    engine_process,
    engine_without_workers,
    snapshot_sources,
)
from bench.scale import RandomThreads, RssSampler, Seeder, rss_mb
from bench.scenarios import (
    GateThread,
    HitlLoop,
    RawPublisher,
    active_sessions,
    build_thread,
    create_project,
    durable_consumers_settled,
    gate_checks,
    round_trips,
    spawn_cycles,
    stored_event_size,
    thread_events,
)

PREFIX, STREAM, RAW_STREAM = "bench", "BENCH", "RAW"
BARE_PREFIX, BARE_STREAM = "benchbare", "BENCHBARE"  # the engine without its background workers
LANES = 64
BIG_BUDGET_S = 300.0  # the ~100k-event thread is built only if that is projected to fit in this
BIG_FALLBACK = 20_000
RESULTS = REPO / "bench" / "results" / "latest.md"


@dataclass
class Sizes:
    rounds: int = 5
    raw_seq: int = 2000
    raw_conc_per_lane: int = 32
    e2e_seq: int = 1000
    e2e_conc_per_lane: int = 16
    echo_seq: int = 1000
    echo_conc_per_lane: int = 16
    spawn_rounds: int = 25  # x 2 parents x 8 children
    threads: tuple[int, int, int] = (10, 1_000, 100_000)
    build_lanes: int = 8
    gate_pairs: int = 100
    gate_archives: int = 300
    seeded_threads: tuple[int, int] = (100, 10_000)  # x seeded_events: the 10,000- and 1,000,000-message logs
    seeded_events: int = 99  # per thread, plus its session's claim: 100 messages
    ready_repeats: int = 3
    cold_samples: int = 1_000
    replica_rounds: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rounds=1, raw_seq=300, raw_conc_per_lane=4, e2e_seq=100, e2e_conc_per_lane=2, echo_seq=100,
                   echo_conc_per_lane=2, spawn_rounds=2, threads=(10, 200, 2_000), gate_pairs=10, gate_archives=20,
                   seeded_threads=(10, 640), ready_repeats=1, cold_samples=50, replica_rounds=1)


class Output:
    """Prints each section as soon as it is measured, and rewrites the results file with all so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, text: str) -> None:
        print(text + "\n", flush=True)
        self.parts.append(text)
        self.path.write_text("\n\n".join(self.parts) + "\n")

    def section(self, title: str, method: str, body: str) -> None:
        self.add(f"## {title}\n\n{method.strip()}\n\n{body}")


def _git_revision() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "engine", "projections", "handlers", "schemas", "cli")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted engine changes" if dirty else "")


def _server_pid(server: EmbeddedNats) -> int:
    assert server._proc is not None
    return server._proc.pid


Workload = Callable[[], Awaitable[Stats]]


async def interleaved(workloads: dict[str, Workload], rounds: int) -> dict[str, list[Stats]]:
    runs: dict[str, list[Stats]] = {k: [] for k in workloads}
    for _ in range(rounds):
        for key, workload in workloads.items():
            runs[key].append(await workload())
    return runs


def _lat(s: Stats) -> list[str]:
    return [fmt.us(s.p50), fmt.us(s.p99)]


@dataclass
class Rig:
    """Everything one run starts: servers, engine processes, responders, client connections."""

    tmp: Path
    src: Path
    server: EmbeddedNats  # sync_interval: always
    nosync: EmbeddedNats  # default sync interval
    processes: list[ChildProcess] = field(default_factory=list)
    connections: list[Client] = field(default_factory=list)
    extra_servers: list[EmbeddedNats] = field(default_factory=list)

    async def start(self, process: ChildProcess) -> float:
        seconds = await process.start()
        self.processes.append(process)
        return seconds

    async def connect(self, server: EmbeddedNats, name: str) -> Client:
        nc = await nats.connect(servers=[server.url], name=name)
        self.connections.append(nc)
        return nc

    async def close(self, nc: Client) -> None:
        self.connections.remove(nc)
        await nc.close()

    async def stop_all(self) -> None:
        for nc in self.connections:
            await nc.close()
        for p in reversed(self.processes):
            await p.stop()
        for s in self.extra_servers:
            await s.stop()
        await self.nosync.stop()
        await self.server.stop()


CPU_NAMES = ["client", "engine", "nats-server"]


def engine_meter(engine: ChildProcess, server: EmbeddedNats) -> CpuMeter:
    return CpuMeter(dict(zip(CPU_NAMES, [None, engine.pid, _server_pid(server)], strict=True)))


@dataclass
class Main:
    """The engine under test on the production-like server, and what later sections reuse."""

    engine: ChildProcess
    nc: Client
    client: LedgerClient
    cpu: CpuMeter
    settle: Settle
    project: str = ""
    empty_start: float = 0.0
    echo_start: float = 0.0


async def throughput(out: Output, rig: Rig, main: Main, sizes: Sizes) -> None:
    """Sections 1 and 2: raw publish vs one-event commands, and where the time goes, in interleaved rounds."""
    tmp, src, server, nc, client = rig.tmp, rig.src, rig.server, main.nc, main.client
    engine2 = engine_process(rig.nosync.url, PREFIX, STREAM, tmp / "engine-nosync.log", src)
    await rig.start(engine2)
    echo = echo_process(server.url, "echo", tmp / "echo.log", src)
    main.echo_start = await rig.start(echo)
    bare: ChildProcess | None = engine_without_workers(server.url, BARE_PREFIX, BARE_STREAM,
                                                       tmp / "engine-bare.log", src)
    try:
        await rig.start(bare)
    except RuntimeError as e:
        print(f"skipping the engine without background workers: {e}", file=sys.stderr)
        bare = None
    nc2 = await rig.connect(rig.nosync, "bench-client-nosync")
    client2 = LedgerClient(nc2, PREFIX)
    cpu2 = engine_meter(engine2, rig.nosync)
    echo_cpu = CpuMeter({"client": None, "responder": echo.pid, "nats-server": _server_pid(server)})

    raw, raw2 = RawPublisher(nc, RAW_STREAM), RawPublisher(nc2, RAW_STREAM)
    await raw.ensure_stream()
    await raw2.ensure_stream()
    main.project = await create_project(client)
    hitl = HitlLoop(client, await active_sessions(client, main.project, LANES), main.settle)
    hitl2 = HitlLoop(client2, await active_sessions(client2, await create_project(client2), LANES),
                     durable_consumers_settled(nc2, STREAM))
    loops = [hitl, hitl2]
    if bare is not None:
        client3 = LedgerClient(nc, BARE_PREFIX)
        hitl3 = HitlLoop(client3, await active_sessions(client3, await create_project(client3), LANES),
                         durable_consumers_settled(nc, BARE_STREAM))
        cpu3 = engine_meter(bare, server)
        loops.append(hitl3)
    echo_subjects = {"echo-raw": raw_subjects("echo"), "echo-rawpub": raw_pub_subjects("echo"),
                     "echo-enginepub": engine_subjects("echo"),
                     "echo-fs": fs_subjects("echo"), "echo-fspub": fs_pub_subjects("echo")}
    for r in (raw, raw2):  # warm-up
        await r.run(1, 200)
        await r.run(LANES, 4)
    for h in loops:
        await h.run(1, 100)
        await h.run(LANES, 2)
    for subjects in echo_subjects.values():
        await round_trips(nc, subjects.command(TENANT, "session.request_input"), 1, 100)

    def echo_workload(key: str, lanes: int, per_lane: int) -> Workload:
        subject = echo_subjects[key].command(TENANT, "session.request_input")
        return lambda: round_trips(nc, subject, lanes, per_lane, echo_cpu)

    cpu = main.cpu
    workloads: dict[str, Workload] = {
        "raw1": lambda: raw.run(1, sizes.raw_seq, cpu),
        "raw1-nosync": lambda: raw2.run(1, sizes.raw_seq, cpu2),
        "e2e1": lambda: hitl.run(1, sizes.e2e_seq, cpu),
        "e2e1-nosync": lambda: hitl2.run(1, sizes.e2e_seq, cpu2),
        "rawN": lambda: raw.run(LANES, sizes.raw_conc_per_lane, cpu),
        "rawN-nosync": lambda: raw2.run(LANES, sizes.raw_conc_per_lane, cpu2),
        "e2eN": lambda: hitl.run(LANES, sizes.e2e_conc_per_lane, cpu),
        "e2eN-nosync": lambda: hitl2.run(LANES, sizes.e2e_conc_per_lane, cpu2),
    }
    if bare is not None:
        workloads["e2e1-bare"] = lambda: hitl3.run(1, sizes.e2e_seq, cpu3)
        workloads["e2eN-bare"] = lambda: hitl3.run(LANES, sizes.e2e_conc_per_lane, cpu3)
    for key in echo_subjects:
        workloads[key + "1"] = echo_workload(key, 1, sizes.echo_seq)
        workloads[key + "N"] = echo_workload(key, LANES, sizes.echo_conc_per_lane)
    runs = await interleaved(workloads, sizes.rounds)
    med = {k: fmt.rates_summary(v) for k, v in runs.items()}
    pool = {k: fmt.pooled(v) for k, v in runs.items()}

    await rig.close(nc2)
    for p in (echo, engine2, bare):
        if p is not None:
            await p.stop()
    await rig.nosync.stop()

    evt_bytes, evt_headers = await stored_event_size(nc, STREAM, client.subjects.tenant_filter(TENANT))
    rows = []
    for key, label, flight, base in (("raw1", "raw `js.publish` + expected-seq headers", 1, None),
                                     ("e2e1", "engine: request_input / provide_input", 1, "raw1"),
                                     ("rawN", "raw `js.publish` + expected-seq headers", LANES, None),
                                     ("e2eN", "engine: request_input / provide_input", LANES, "rawN")):
        s = pool[key]
        rows.append([label, flight, f"{s.n:,}", fmt.rate(med[key][0]), med[key][1], *_lat(s),
                     fmt.ratio(med[key][0], med[base][0]) if base else "1 (baseline)",
                     f"{s.settle:.2f} s" if base else "—", *fmt.cpu_cells(s, CPU_NAMES)])
    goal, goal_n = med["e2e1"][0] / med["raw1"][0], med["e2eN"][0] / med["rawN"][0]
    rounds_text = (f"{sizes.rounds} rounds; in each round every workload of sections 1 and 2 runs once, in turn, so "
                   "that noise on the box falls on all of them alike. The rate is the median round (range alongside), "
                   "p50/p99 are over all rounds' samples. CPU = µs of CPU per operation in each process, from /proc "
                   "(10 ms ticks).")
    out.section(
        "1. Raw JetStream publish vs one-event commands end to end",
        f"""
Both on the same nats-server (`sync_interval: always`, file storage, R1; stream config as the engine's:
`allow_direct`, `deny_delete`, `deny_purge`). **Raw:** nats-py `js.publish` of a {len(raw.payload)} B JSON payload to
a per-thread subject with `Nats-Expected-Last-Subject-Sequence` + `-Subject` (the thread's filter), as the engine
appends. **Engine:** a JSON request to `{PREFIX}.cmd.<tenant>.session.request_input|provide_input` (alternating,
one event each; the stored event is {evt_bytes} B payload + {evt_headers} B headers), answered by the engine process
(`agentledger serve`, which also runs its process manager, a durable consumer of every thread event) after its
append is acknowledged. After each engine workload the benchmark waits until the engine's durable consumers have
caught up ("background catch-up": time after the last reply), so no workload runs alongside another's leftovers;
the CPU columns include that catch-up, the rate does not. Sequential: 1 in flight, on one thread ({sizes.raw_seq:,}
raw publishes / {sizes.e2e_seq:,} commands per round). Concurrent: {LANES} in flight, one lane per thread, each
lane sequential, so no two requests contend for a thread ({LANES} × {sizes.raw_conc_per_lane} publishes /
{LANES} × {sizes.e2e_conc_per_lane} commands per round). {rounds_text}""",
        fmt.table(["workload", "in flight", "ops", "ops/s (median)", "range", "p50", "p99", "ratio vs raw, same shape",
                   "background catch-up (max)", "CPU µs/op client", "engine", "nats-server"], rows)
        + f"\n\nGoals: end to end ≥ 0.6 × raw sequential publish: **{goal:.2f} → "
          f"{'met' if goal >= 0.6 else 'not met'}**; ≥ 0.8 × raw at {LANES} in flight: **{goal_n:.2f} → "
          f"{'met' if goal_n >= 0.8 else 'not met'}**.")

    rows = []
    for key, label in (("echo-raw", "nats-py subscription, answers at once"),
                       ("echo-rawpub", "nats-py subscription + one `js.publish` with headers"),
                       ("echo-enginepub", "the engine's request subscription (`Responder`) + one `js.publish`"),
                       ("echo-fs", "FastStream subscriber, empty handler"),
                       ("echo-fspub", "FastStream subscriber + one `js.publish` with headers")):
        for flight, suffix in ((1, "1"), (LANES, "N")):
            s = pool[key + suffix]
            rows.append([label, "always" if key.endswith("pub") else "—", flight, fmt.rate(med[key + suffix][0]),
                         med[key + suffix][1], *_lat(s), *fmt.cpu_cells(s, ["client", "responder", "nats-server"])])
    for key, label in (("raw1", "raw `js.publish` + headers"), ("e2e1", "engine end to end"),
                       ("rawN", "raw `js.publish` + headers"), ("e2eN", "engine end to end")):
        flight = 1 if key.endswith("1") else LANES
        variants = [("always", key), ("default", key + "-nosync")]
        if key.startswith("e2e") and bare is not None:
            variants.append(("always", key + "-bare"))
        for sync, k in variants:
            s = pool[k]
            name = label + (", process manager off" if k.endswith("-bare") else "")
            rows.append([name, sync, flight, fmt.rate(med[k][0]), med[k][1], *_lat(s),
                         *fmt.cpu_cells(s, ["client", "engine" if key.startswith("e2e") else "-", "nats-server"])])
    out.section(
        "2. Where the time goes",
        f"""
Request/reply against responders in a separate process (`bench/echo.py`) on the same server: a plain nats-py
subscription; the engine's own request subscription (`handlers.responder.Responder`: queue group, a task per
request, at most 64 at once); and a FastStream subscriber configured as the engine's was before it moved to
`Responder` (queue group, `max_workers=64`, no dependency injection, raw message in, bytes out). Each either
answers at once or first does only what the engine's append does: one `js.publish` of the raw baseline's payload
with the expected-sequence headers, to the
thread named in the request (one thread per lane), then the reply. Then the raw publish and the engine on a second
nats-server **without** `sync_interval: always` (default: flush every 2 min), with a second engine process; and a
third engine process on the main server with its process manager (and effect handler) switched off
(`bench/engine_variant.py`: `EngineConfig(process_manager=False)`, own prefix and stream). Sequential rows:
{sizes.echo_seq:,} requests per round; concurrent: {LANES} × {sizes.echo_conc_per_lane}. {rounds_text} CPU columns:
the client, the responder (echo process or engine), nats-server.""",
        fmt.table(["path", "sync_interval", "in flight", "ops/s (median)", "range", "p50", "p99",
                   "CPU µs/op client", "responder/engine", "nats-server"], rows))


async def delegation(out: Output, main: Main, sizes: Sizes) -> None:
    """Section 3: sequential spawn rate under parents below the width cap."""
    client = main.client
    parents = [(await active_sessions(client, main.project, 1))[0] for _ in range(2)]
    await spawn_cycles(client, parents, 1)
    spawns, completes = await spawn_cycles(client, parents, sizes.spawn_rounds)
    await main.settle()
    rows = [["`session.spawn` (parent below the width cap of 8)", f"{spawns.n:,}", fmt.rate(spawns.rate),
             *_lat(spawns)],
            ["`session.complete` of a spawned child (frees a slot)", f"{completes.n:,}", fmt.rate(completes.rate),
             *_lat(completes)]]
    out.section(
        "3. Delegation: spawn rate",
        f"""
Sequential, 1 in flight. Two active parents, each alone in its thread (default caps: depth 4, width 8). Per
round and parent: spawn 8 children (up to the width cap; each spawn is checked against depth, width and
budget), then complete all 8 with `session.complete` so the slots free up. {sizes.spawn_rounds} rounds after one
warm-up round. The rate is operations over the time spent in that operation.""",
        fmt.table(["command", "ops", "ops/s", "p50", "p99"], rows))


async def history(out: Output, main: Main, sizes: Sizes, big_events: int | None) -> GateThread:
    """Section 4: cap and gate checks on threads of ~10, ~1,000 and ~100,000 (or 20,000) events."""
    client, cpu, settle, project = main.client, main.cpu, main.settle, main.project
    small_n, mid_n, big_n = sizes.threads
    small = await build_thread(client, project, f"~{small_n:,}", small_n, 1, cpu, settle)
    mid = await build_thread(client, project, f"~{mid_n:,}", mid_n, sizes.build_lanes, cpu, settle)
    build_rate = mid.built_events / mid.build_seconds
    projected = big_n / build_rate
    decision = f"building {big_n:,} events was projected at {projected:,.0f} s ({build_rate:,.0f} events/s)"
    if big_events is not None:
        big_n = big_events
        decision += f"; size set on the command line: {big_n:,}"
    elif projected > BIG_BUDGET_S:
        big_n = min(big_n, BIG_FALLBACK)
        decision += f", over the {BIG_BUDGET_S:.0f} s budget, so the big thread has **{big_n:,}** events instead"
    big = await build_thread(client, project, f"~{big_n:,}", big_n, sizes.build_lanes, cpu, settle)
    threads: list[GateThread] = [small, mid, big]
    before = {}
    for t in threads:  # warm-up round, not counted
        await gate_checks(client, [t], 1, 1)
        before[t.thread_id] = await thread_events(client, t.thread_id, STREAM)
    await settle()
    results = await gate_checks(client, threads, sizes.gate_pairs, sizes.gate_archives)
    await settle()
    rows = [[f"{before[r.thread.thread_id]:,} → {r.events_after:,}", *_lat(r.pair), *_lat(r.spawn),
             *_lat(r.complete), *_lat(r.archive)] for r in results]
    build_rows = [[f"{t.built_events:,}", f"{t.build_seconds:,.1f} s", fmt.rate(t.built_events / t.build_seconds),
                   f"{t.settle_seconds:,.1f} s",
                   *(f"{(t.build_cpu or {}).get(n, float('nan')) / t.built_events * 1e6:,.0f}" for n in CPU_NAMES)]
                  for t in threads]
    out.section(
        "4. Cap and gate checks as a thread's history grows",
        f"""
Three threads in one project, every event written by the engine: thread.create, an active parent session, then
filler sessions alternating request_input / provide_input ({sizes.build_lanes} filler sessions in the same thread
run concurrently, each sequential, for the two larger threads; 1 for the small one), all completed at the end,
so in every thread the parent is the only session that blocks archiving. For the big thread {decision}.
Then, interleaved round by round across the three threads (sequential, 1 in flight): {sizes.gate_pairs}
`session.spawn` + `session.complete` pairs under the parent (depth/width/budget checks), and {sizes.gate_archives}
`thread.archive` requests, each refused with `thread_not_empty` (the gate; a refusal re-reads the thread's tail
from the log before answering). Events column: the thread's events in the log before → after the measurement
(pairs add 2 each).""",
        fmt.table(["thread events", "spawn+complete p50", "p99", "spawn p50", "p99", "complete p50", "p99",
                   "archive refusal p50", "p99"], rows)
        + "\n\nBuilding them through the engine:\n\n"
        + fmt.table(["thread events", "build time", "events/s", "then background catch-up",
                     "CPU µs/event client", "engine", "nats-server"], build_rows))
    return big


async def cold_start(out: Output, main: Main, big: GateThread) -> None:
    """Section 5: restart the engine process on the stream holding the big thread."""
    stream_events = (await main.nc.jetstream().stream_info(STREAM)).state.messages
    big_events_now = await thread_events(main.client, big.thread_id, STREAM)
    await main.engine.stop()
    restart = await main.engine.start()
    # the restarted engine loads the big thread (snapshot + tail) for its first check
    t0 = time.perf_counter()
    await main.client.refused("thread.archive", "thread_not_empty", thread_id=big.thread_id)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    await main.client.refused("thread.archive", "thread_not_empty", thread_id=big.thread_id)
    second = time.perf_counter() - t0
    rows = [["engine, empty stream (first start of this run)", "0", f"{main.empty_start:.2f} s"],
            [f"engine, stream with the {big_events_now:,}-event thread", f"{stream_events:,}", f"{restart:.2f} s"],
            ["echo process (Python + FastStream start, connect; nothing to load)", "—", f"{main.echo_start:.2f} s"]]
    out.section(
        "5. Restart",
        """
Time from spawning `agentledger serve` to its ready line. The engine reads no history before it is ready (its
follower starts at the stream's head); a boundary is loaded when first used, from its snapshot plus the log's
tail after it. The first check on the big thread after the restart loads it; the second finds it in memory.""",
        fmt.table(["process", "messages in the stream", "start → ready"], rows)
        + f"\n\nFirst `thread.archive` refusal on the big thread after the restart (loads it): {fmt.us(first * 1e6)}; "
          f"the next one: {fmt.us(second * 1e6)}.")


async def seeded_logs(out: Output, rig: Rig, sizes: Sizes) -> None:
    """Section 6: ready time, memory, cold and warm commands on a log of 1,000,000 messages."""
    small_n, big_n = sizes.seeded_threads
    per = sizes.seeded_events
    logs = {"small": ("s10k", "S10K", small_n), "big": ("s1m", "S1M", big_n)}
    data = rig.tmp / "nats-seeded"
    server = EmbeddedNats(data, port=free_port(), sync_always=False)  # pipelined seeding; fsync on again below
    await server.start()
    nc = await nats.connect(servers=[server.url], name="bench-seeder")
    messages, seed_seconds = {}, {}
    try:
        for key, (prefix, stream, threads) in logs.items():
            t0 = time.perf_counter()
            messages[key] = await Seeder(nc, prefix, stream).seed(threads, per)
            seed_seconds[key] = time.perf_counter() - t0
    finally:
        await nc.close()
        await server.stop()
    server = EmbeddedNats(data, port=server.port)  # sync_interval: always, as in production
    await server.start()
    rig.extra_servers.append(server)

    ready: dict[str, list[float]] = {k: [] for k in logs}
    rss_ready: dict[str, list[float]] = {k: [] for k in logs}
    for _ in range(sizes.ready_repeats):
        for key, (prefix, stream, _threads) in logs.items():
            p = engine_process(server.url, prefix, stream, rig.tmp / f"engine-{prefix}.log", rig.src)
            ready[key].append(await p.start())
            rss_ready[key].append(rss_mb(p.pid))
            await p.stop()

    prefix, stream, threads = logs["big"]
    engine = engine_process(server.url, prefix, stream, rig.tmp / f"engine-{prefix}.log", rig.src)
    await rig.start(engine)
    nc = await rig.connect(server, "bench-client-seeded")
    loop = RandomThreads(LedgerClient(nc, prefix), threads)
    order = list(range(threads))
    loop.rng.shuffle(order)
    cold_set, spread_set = order[:sizes.cold_samples], order[sizes.cold_samples:]
    spread_set = spread_set[:len(spread_set) // LANES * LANES]
    rss_start = rss_mb(engine.pid)
    with RssSampler(engine.pid) as rss:
        spread = await loop.spread(spread_set, LANES)
        lag = await durable_consumers_settled(nc, stream)()
        cold, warm = await loop.cold_then_warm(cold_set)
    quarantine = await nc.request(loop.client.subjects.query(TENANT, "quarantine.list"), b"{}", timeout=10)
    await rig.close(nc)

    med = {k: sorted(v)[len(v) // 2] for k, v in ready.items()}
    rows = [[f"{messages[k]:,} ({logs[k][2]:,} threads × {per + 1})", f"{seed_seconds[k]:,.1f} s",
             f"{med[k]:.2f} s", ", ".join(f"{x:.2f}" for x in ready[k]), f"{max(rss_ready[k]):.0f} MB"]
            for k in logs]
    ratio = med["big"] / med["small"]
    out.section(
        "6. A log of 1,000,000 messages: ready time, memory, cold and warm commands",
        f"""
Two logs seeded straight into their own streams (no engine; valid events exactly as the engine writes them, each
thread: `thread.created`, `session.created` + the session's claim, `session.started`, then
request_input / provide_input alternately: {per} events + 1 claim = {per + 1} messages per thread), built with
pipelined publishes on a server without fsync, which then restarts with `sync_interval: always` on the same data
before anything is measured. The process manager's durable consumer is created at the end of each seeded log
(the history stands for work already done). **Ready:** spawn of `agentledger serve` (default `--cache-size`
4,000) to its ready line, {sizes.ready_repeats} starts per log alternating small and big; the median, all starts,
and the engine's RSS at ready. **Serving:** then one engine on the big log: one command on each of most threads in
random order, {LANES} in flight; then, sequentially, {sizes.cold_samples:,} threads this engine had not touched
since it started (so not in memory): one command (cold), and at once a second one on the same thread (warm).""",
        fmt.table(["log", "seeding time", "start → ready (median)", "all starts", "RSS at ready"], rows)
        + f"\n\nReady time with {messages['big']:,} messages / with {messages['small']:,}: **{ratio:.2f}×** "
          f"(goal ≤ 1.5×: {'met' if ratio <= 1.5 else 'not met'}).")

    rows = [[f"one command on each of {spread.n:,} random threads", LANES, fmt.rate(spread.rate), *_lat(spread),
             f"{lag:.2f} s"],
            [f"cold: first command on a thread not in memory ({cold.n:,} threads)", 1, fmt.rate(cold.rate),
             *_lat(cold), "—"],
            ["warm: the next command on the same thread", 1, fmt.rate(warm.rate), *_lat(warm), "—"]]
    out.add(fmt.table(["on the 1,000,000-message log", "in flight", "cmds/s", "p50", "p99",
                       "process manager catch-up after"], rows)
            + f"\n\nEngine RSS: {rss_start:.0f} MB before, **{rss.peak:.0f} MB at most** while serving "
              f"(goal < 200 MB: {'met' if rss.peak < 200 else 'not met'}); sampled every 50 ms. "
              f"Cold minus warm p50: {fmt.us(cold.p50 - warm.p50)}. "
              f"Quarantine reply: `{quarantine.data[:120].decode()}`.")


async def two_replicas(out: Output, rig: Rig, main: Main, sizes: Sizes) -> None:
    """Section 7: what a second engine process adds on this box."""
    loop = HitlLoop(main.client, await active_sessions(main.client, main.project, LANES), main.settle)
    await loop.run(LANES, 2)
    one: list[Stats] = []
    two: list[Stats] = []
    for _ in range(sizes.replica_rounds):
        one.append(await loop.run(LANES, sizes.e2e_conc_per_lane * 2, engine_meter(main.engine, rig.server)))
        second = engine_process(rig.server.url, PREFIX, STREAM, rig.tmp / "engine-second.log", rig.src)
        await second.start()
        cpu = CpuMeter({"client": None, "engine": main.engine.pid, "second engine": second.pid,
                        "nats-server": _server_pid(rig.server)})
        await loop.run(LANES, 2)  # both replicas in the queue group before the clock starts
        two.append(await loop.run(LANES, sizes.e2e_conc_per_lane * 2, cpu))
        await second.stop()
    m1, m2 = fmt.rates_summary(one), fmt.rates_summary(two)
    p1, p2 = fmt.pooled(one), fmt.pooled(two)
    rows = [["one engine", fmt.rate(m1[0]), m1[1], *_lat(p1), *fmt.cpu_cells(p1, ["client", "engine", "nats-server"]),
             "—"],
            ["two engines (queue group)", fmt.rate(m2[0]), m2[1], *_lat(p2),
             *fmt.cpu_cells(p2, ["client", "engine", "nats-server"]), fmt.cpu_cells(p2, ["second engine"])[0]]]
    out.section(
        "7. Two engine replicas",
        f"""
The main server (`sync_interval: always`); {LANES} in flight on {LANES} threads of one tenant
(request_input / provide_input), {LANES} × {sizes.e2e_conc_per_lane * 2} commands per round, {sizes.replica_rounds}
rounds, each: one engine, then a second `agentledger serve` on the same stream and prefix (both in the queue
group; every request goes to one of them), then the second stops. Each replica loads the threads it is asked
about; a command decided on a model the other replica moved meets a conflict and is re-read.""",
        fmt.table(["engines", "cmds/s (median)", "range", "p50", "p99", "CPU µs/cmd client", "engine",
                   "nats-server", "second engine"], rows)
        + f"\n\nThe second replica changes the rate by **{m2[0] / m1[0]:.2f}×** on this 2-core box.")


async def run(sizes: Sizes, big_events: int | None, keep: bool) -> None:
    out = Output(RESULTS)
    tmp = Path(tempfile.mkdtemp(prefix="agentledger-bench-"))
    started = time.perf_counter()
    revision = _git_revision()
    src = snapshot_sources(tmp / "src")
    out.add(f"# Agent Ledger benchmark\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, revision {revision}")
    load = "load average {:.2f} / {:.2f} / {:.2f} (1 / 5 / 15 min)".format(*os.getloadavg())
    out.section("Machine", "Client, engine and nats-server all share these cores; every rate is a lower bound "
                "for a single box. Other work on the box shows in the load average.",
                fmt.table(["", ""], [*fmt.machine(tmp), ["at start", load]]))

    rig = Rig(tmp, src, EmbeddedNats(tmp / "nats", port=free_port()),
              EmbeddedNats(tmp / "nats-nosync", port=free_port(), sync_always=False))
    try:
        await rig.server.start()
        await rig.nosync.start()
        engine = engine_process(rig.server.url, PREFIX, STREAM, tmp / "engine.log", src)
        empty_start = await rig.start(engine)
        nc = await rig.connect(rig.server, "bench-client")
        main = Main(engine, nc, LedgerClient(nc, PREFIX), engine_meter(engine, rig.server),
                    durable_consumers_settled(nc, STREAM), empty_start=empty_start)
        await throughput(out, rig, main, sizes)
        await delegation(out, main, sizes)
        big = await history(out, main, sizes, big_events)
        await cold_start(out, main, big)
        await two_replicas(out, rig, main, sizes)
        await seeded_logs(out, rig, sizes)
        out.add(f"Total benchmark time: {time.perf_counter() - started:,.0f} s; at the end, "
                + "load average {:.2f} / {:.2f} / {:.2f}.".format(*os.getloadavg()))
    except BaseException:
        keep = True
        for log in sorted(tmp.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-20:]
            if tail:
                print(f"--- last lines of {log.name}:\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        await rig.stop_all()
        if keep:
            print(f"data and logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"results written to {RESULTS.relative_to(REPO)}", file=sys.stderr)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, to check that the benchmark runs")
    parser.add_argument("--big-events", type=int, help="size of the big thread (default: 100,000, or 20,000 when "
                                                       f"100,000 is projected to take over {BIG_BUDGET_S:.0f} s to build)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and process logs")
    args = parser.parse_args()
    asyncio.run(run(Sizes.quick() if args.quick else Sizes(), args.big_events, args.keep))


if __name__ == "__main__":
    cli()
