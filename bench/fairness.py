"""`python -m bench.fairness`: what one tenant's load does to another tenant, measured.

Starts nats-server in operator mode (the deployment's keys in a temporary directory) and one
engine process (`agentledger serve --nats-url … --creds engine.creds`, its effect handler on a
temporary sandbox root), adds two tenants, `tnt_attacker` and `tnt_victim`, and connects as a
member of each. Then, one scenario at a time, the attacker loads the engine while the victim
does something small, and the victim's wait is reported next to its wait on an idle engine:

- `waits`: 320 `thread.get` with `min_position` 9007199254740991, then the victim's `thread.get`;
- `flood`: 5,000 `thread.get` at once, then the victim's `thread.get`;
- `sandboxes`: 2,000 `session.create` with a new sandbox each, then the victim's session with a
  new sandbox: the time until its sandbox is `running`;
- `archive`: the attacker archives that thread (2,000 sandbox destroys), then the same;
- `cache`: 1,500 sessions over 150 threads, each completed with a 60 KB summary: the engine's RSS.

`--source DIR` runs the engine from another checkout (say, `git archive main`), for a before and
after; `--engine-arg` passes options to `serve`. A report, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.client import Client

from agentledger.engine.subjects import Subjects
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_tenant
from agentledger.handlers.nats_server import free_port
from bench.harness import REPO, VENV_BIN, ChildProcess, snapshot_sources
from bench.scale import rss_mb

PREFIX, STREAM = "fair", "FAIR"
ATTACKER, VICTIM = "tnt_attacker", "tnt_victim"
USER = {"kind": "user", "id": "usr_bench"}
AGENT = {"kind": "agent", "id": "agt_bench"}
FAR = 2**53 - 1
SCENARIOS = ("waits", "flood", "sandboxes", "archive", "cache")
_encode, _decode = msgspec.json.Encoder().encode, msgspec.json.Decoder().decode


class Tenant:
    def __init__(self, nc: Client, tenant: str) -> None:
        self.nc, self.tenant, self.subjects = nc, tenant, Subjects(PREFIX)

    async def request(self, kind: str, what: str, /, timeout: float = 120.0, **fields: Any) -> dict[str, Any]:
        subject = self.subjects.command(self.tenant, what) if kind == "cmd" else self.subjects.query(self.tenant, what)
        body = {"actor": USER, **fields} if kind == "cmd" else fields
        try:
            msg = await self.nc.request(subject, _encode(body), timeout=timeout)
        except nats.errors.TimeoutError:
            return {"ok": False, "error": {"code": "(timeout)"}}
        return _decode(msg.data)  # type: ignore[no-any-return]

    async def ok(self, what: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.request("cmd", what, **fields)
        if not reply.get("ok"):
            raise RuntimeError(f"{self.tenant} {what}: {reply}")
        return reply

    async def timed_get(self, thread_id: str) -> float:
        t0 = time.perf_counter()
        reply = await self.request("qry", "thread.get", thread_id=thread_id)
        if not reply.get("ok"):
            raise RuntimeError(f"victim thread.get: {reply}")
        return time.perf_counter() - t0

    async def sandbox_running(self, sandbox_id: str, timeout: float = 300.0) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            reply = await self.request("qry", "sandbox.get", sandbox_id=sandbox_id)
            if reply.get("ok") and reply["result"]["sandbox"]["status"] == "running":
                return time.perf_counter() - t0
            await asyncio.sleep(0.02)
        return float("inf")


def codes(replies: list[dict[str, Any]]) -> str:
    count = Counter("ok" if r.get("ok") else r["error"]["code"] for r in replies)
    return ", ".join(f"{k} {v:,}" for k, v in count.most_common())


async def gather_bounded(coros: list[Any], lanes: int) -> list[Any]:
    slots = asyncio.Semaphore(lanes)

    async def one(c: Any) -> Any:
        async with slots:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def idle_get(victim: Tenant) -> float:
    return statistics.median([await victim.timed_get("thd_v") for _ in range(20)])


async def burst_then_victim(attacker: Tenant, body: dict[str, Any], count: int, victim: Tenant,
                            delay: float) -> tuple[float, float, list[Any]]:
    """Publish `count` attacking `thread.get` requests as fast as the connection takes them (each
    with its own reply subject), wait `delay`, time the victim's `thread.get`, then collect."""
    nc, replies = attacker.nc, []
    inbox = nc.new_inbox()
    all_in = asyncio.get_running_loop().create_future()

    async def collect(msg: Any) -> None:
        replies.append(_decode(msg.data))
        if len(replies) == count and not all_in.done():
            all_in.set_result(None)

    sub = await nc.subscribe(f"{inbox}.*", cb=collect)
    t0 = time.perf_counter()
    data, subject = _encode(body), attacker.subjects.query(attacker.tenant, "thread.get")
    for i in range(count):
        await nc.publish(subject, data, reply=f"{inbox}.{i}")
    await nc.flush()
    await asyncio.sleep(delay)
    victim_s = await victim.timed_get("thd_v")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in, 300)
    await sub.unsubscribe()
    replies += [{"ok": False, "error": {"code": "(no reply)"}}] * (count - len(replies))
    return victim_s, time.perf_counter() - t0, replies


async def waits(attacker: Tenant, victim: Tenant) -> str:
    idle = await idle_get(victim)
    body = {"thread_id": "thd_a", "min_position": FAR}
    victim_s, total, replies = await burst_then_victim(attacker, body, 320, victim, 0.3)
    return (f"waits: victim thread.get {victim_s * 1000:,.0f} ms (idle {idle * 1000:.1f} ms); "
            f"320 attacker replies in {total:.1f} s: {codes(replies)}")


async def flood(attacker: Tenant, victim: Tenant) -> str:
    idle = await idle_get(victim)
    victim_s, total, replies = await burst_then_victim(attacker, {"thread_id": "thd_a"}, 5_000, victim, 0.0)
    return (f"flood: victim thread.get {victim_s * 1000:,.0f} ms (idle {idle * 1000:.1f} ms); "
            f"5,000 attacker replies in {total:.1f} s: {codes(replies)}")


async def victim_sandbox(victim: Tenant, n: int) -> float:
    await victim.ok("session.create", thread_id="thd_v", session_id=f"ses_v{n}", owner=AGENT,
                    sandbox={"mode": "new", "sandbox_id": f"sbx_v{n}"})
    return await victim.sandbox_running(f"sbx_v{n}")


async def sandboxes(attacker: Tenant, victim: Tenant, count: int = 2_000) -> str:
    idle = await victim_sandbox(victim, 0)
    t0 = time.perf_counter()
    replies = await gather_bounded([attacker.request("cmd", "session.create", thread_id="thd_s", owner=AGENT,
                                                     session_id=f"ses_s{i}",
                                                     sandbox={"mode": "new", "sandbox_id": f"sbx_s{i}"})
                                    for i in range(count)], 64)
    created = time.perf_counter() - t0
    victim_s = await victim_sandbox(victim, 1)
    last = await attacker.sandbox_running(f"sbx_s{count - 1}", timeout=600)
    return (f"sandboxes: victim's new sandbox running after {victim_s:,.2f} s (idle {idle:.2f} s); "
            f"{count:,} attacker session.create in {created:.1f} s ({codes(replies)}), "
            f"its last sandbox running {last:.1f} s after that")


async def archive(attacker: Tenant, victim: Tenant) -> str:
    t0 = time.perf_counter()
    reply = await attacker.request("cmd", "thread.archive", thread_id="thd_s")
    victim_s = await victim_sandbox(victim, 2)
    return (f"archive: victim's new sandbox running after {victim_s:,.2f} s "
            f"(archive {'ok' if reply.get('ok') else reply}; victim done {time.perf_counter() - t0:.1f} s after it)")


async def cache(attacker: Tenant, engine: ChildProcess) -> str:
    before = rss_mb(engine.pid)
    summary = {"outcome": "succeeded", "text": "s" * 4000, "deliverables": ["d" * 1900] * 30}

    async def one(i: int) -> None:
        thread = f"thd_c{i // 10}"
        sid = f"ses_c{i}"
        await attacker.ok("session.create", thread_id=thread, session_id=sid, owner=AGENT)
        await attacker.ok("session.start", session_id=sid)
        await attacker.ok("session.complete", session_id=sid, summary=summary)

    for t in range(150):
        await attacker.ok("thread.create", project_id="prj_a", thread_id=f"thd_c{t}")
    await gather_bounded([one(i) for i in range(1_500)], 16)
    return (f"cache: engine RSS {before:,.0f} MB -> {rss_mb(engine.pid):,.0f} MB after 1,500 sessions with "
            f"60 KB summaries over 150 threads")


async def run(source: Path | None, engine_args: list[str], only: list[str]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="agentledger-fair-"))
    deployment = Deployment.open(tmp / "auth", prefix=PREFIX, stream=STREAM)
    server = deployment.embedded(tmp / "nats", port=free_port())
    await server.start()
    src = snapshot_sources(tmp / "src", source or REPO)
    argv = [str(VENV_BIN / "agentledger"), "serve", "--nats-url", server.url, "--prefix", PREFIX, "--stream", STREAM,
            "--creds", str(deployment.creds_path("engine")), "--sandbox-dir", str(tmp / "sandboxes"), *engine_args]
    engine = ChildProcess("engine", argv, tmp / "engine.log", "ready", src)
    conns: list[Client] = []
    try:
        await engine.start()
        tenants = {}
        for name in (ATTACKER, VICTIM):
            await add_tenant(server.url, deployment, name)
            nc = await nats.connect(servers=[server.url], user_credentials=deployment.tenant_creds(name, "usr_b").raw(),
                                    pending_size=256 * 1024 * 1024)
            conns.append(nc)
            tenants[name] = Tenant(nc, name)
        attacker, victim = tenants[ATTACKER], tenants[VICTIM]
        for t, thread in ((attacker, "thd_a"), (attacker, "thd_s"), (victim, "thd_v")):
            await t.request("cmd", "project.create", project_id="prj_a", name="p")
            await t.ok("thread.create", project_id="prj_a", thread_id=thread)
        print(f"engine from {source or REPO}, serve {' '.join(engine_args) or '(defaults)'}", flush=True)
        for name in only:
            if name == "waits":
                print(await waits(attacker, victim), flush=True)
            elif name == "flood":
                print(await flood(attacker, victim), flush=True)
            elif name == "sandboxes":
                print(await sandboxes(attacker, victim), flush=True)
            elif name == "archive":
                print(await archive(attacker, victim), flush=True)
            elif name == "cache":
                print(await cache(attacker, engine), flush=True)
    finally:
        for nc in conns:
            await nc.close()
        await engine.stop()
        await server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="run the engine from this checkout (default: this one)")
    parser.add_argument("--engine-arg", action="append", default=[], help="an option for `serve` (repeat it)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    asyncio.run(run(args.source, args.engine_arg, [s for s in args.only.split(",") if s]))


if __name__ == "__main__":
    cli()
