"""`python -m bench.audit_stream [EVENTS]`: what a tenant's audit stream costs (docs/security.md).

On an embedded server with authentication on: append EVENTS events for one tenant and as many for
another, then create the tenant's audit stream (sourcing its own events from the engine's stream)
and time how long it takes to hold the history; then append one event at a time and time how long
each takes to show up in the audit stream. Prints one line per measure.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats

from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_tenant
from agentledger.handlers.nats_server import free_port
from agentledger.schemas.accounts import audit_stream

PREFIX, STREAM, TENANT, OTHER = "ledger", "LEDGER", "tnt_a", "tnt_b"


async def main(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment.open(Path(tmp) / "auth", PREFIX, STREAM)
        server = deployment.embedded(Path(tmp) / "nats", port=free_port())
        await server.start()
        try:
            engine = await nats.connect(servers=[server.url], user_credentials=str(deployment.creds_path("engine")))
            js = engine.jetstream()
            await js.add_stream(name=STREAM, subjects=[f"{PREFIX}.evt.>"])
            payload = b"x" * 400  # about one envelope
            for i in range(events):
                await js.publish(f"{PREFIX}.evt.{TENANT}.thr.t{i % 50}.e", payload)
                await js.publish(f"{PREFIX}.evt.{OTHER}.thr.t{i % 50}.e", payload)
            await add_tenant(server.url, deployment, OTHER)
            start = time.perf_counter()
            await add_tenant(server.url, deployment, TENANT)  # its account, and its audit stream
            tenant = await nats.connect(servers=[server.url], user_credentials=deployment.provisioner_creds(TENANT).raw())
            tjs, name = tenant.jetstream(), audit_stream(STREAM)
            deadline = start + 120
            while (await tjs.stream_info(name)).state.messages < events and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            history = time.perf_counter() - start
            print(f"history: tenant add, then {events} of {2 * events} events sourced into {name}: {history * 1000:.0f} ms")
            lags = []
            sub = await tjs.pull_subscribe(f"{PREFIX}.evt.{TENANT}.>", durable="lag", stream=name)
            seen = 0
            while seen < events:
                for msg in await sub.fetch(min(events - seen, 1000), timeout=30):
                    await msg.ack()
                    seen += 1
            for i in range(200):
                sent = time.perf_counter()
                await js.publish(f"{PREFIX}.evt.{TENANT}.thr.live.e{i}", payload)
                (msg,) = await sub.fetch(1, timeout=30)
                lags.append(time.perf_counter() - sent)
                await msg.ack()
            q = statistics.quantiles(lags, n=100)
            print(f"live: append -> auditor's consumer, 200 events one at a time: "
                  f"median {statistics.median(lags) * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms")
            own = (await tjs.stream_info(name)).state.bytes
            total = (await js.stream_info(STREAM)).state.bytes
            print(f"storage: audit stream {own} bytes for the tenant's share of an engine stream of {total} bytes")
            await tenant.close()
            await engine.close()
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
