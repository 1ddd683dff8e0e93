"""`agentledger serve` and `agentledger effects`: one process each, until a signal stops it
(exit 0) or it can no longer do its job (exit 1, so a supervisor restarts it).

A process that cannot reach NATS within its reconnect budget, or whose embedded nats-server
died, exits rather than stay alive and deaf. Being told to stop exits 0 whatever went first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agentledger.handlers.app import EffectsProcess, Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.nats_server import EmbeddedNats
from agentledger.handlers.observability import tracing
from agentledger.handlers.observability.health import EngineProbe, WorkerProbe
from agentledger.handlers.observability.http import OpsServer

log = logging.getLogger("agentledger.serve")
T = TypeVar("T")


@dataclass(frozen=True)
class HttpOptions:
    """Where `/metrics`, `/healthz` and `/readyz` are served (port None: not at all)."""

    port: int | None = None
    host: str = "127.0.0.1"


def run_process(main: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived process on uvloop where it is installed: the engine spends most of its CPU
    in the event loop and socket I/O (BENCHMARKS.md), which uvloop does in C."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_stopped(stop: asyncio.Event, failed: asyncio.Event, failure: Callable[[], str | None],
                         poll: float = 0.5) -> str | None:
    """Wait for a stop signal (None) or a failure (its reason), whichever comes first."""
    while not stop.is_set():
        if (reason := failure()) is not None:
            return reason
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(failed.wait()), poll)
    return None


async def _quietly(what: str, step: Awaitable[None]) -> None:
    """Stopping goes on whatever failed before: a stop must exit cleanly even after NATS went."""
    try:
        await step
    except Exception as e:
        log.warning("%s: %s: %s", what, type(e).__name__, e)


async def serve(config: EngineConfig, nats_url: str | None, data_dir: Path, port: int, auth_dir: Path,
                http: HttpOptions = HttpOptions()) -> int:
    stop = _stop_on_signals()
    embedded: EmbeddedNats | None = None
    engine = Engine(config)
    ops: OpsServer | None = None
    try:
        if nats_url is None:
            # Authentication on: the deployment's keys live in auth_dir (made on first run), the engine
            # connects as itself, and admin.creds there is what the CLI picks up by default.
            deployment = Deployment.open(auth_dir, config.prefix, config.stream)
            if (deployment.prefix, deployment.stream) != (config.prefix, config.stream):
                raise SystemExit(f"{auth_dir} was set up for prefix {deployment.prefix!r} and stream "
                                 f"{deployment.stream!r}; use those or another --auth-dir")
            config.creds = config.creds or deployment.creds_path("engine")
            deployment.creds_path("admin")
            embedded = deployment.embedded(data_dir, port=port)
            await embedded.start()  # refuses a port another server holds: we never serve on someone else's
            nats_url = embedded.url
        config.nats_url = nats_url

        def failure() -> str | None:
            return (embedded.failure() if embedded is not None else None) or engine.failure

        if http.port is not None:  # up before the engine, so /healthz answers and /readyz says why not yet
            ops = OpsServer(EngineProbe(engine, failure), engine.metrics, http.host, http.port)
            await ops.start()
        await engine.start()
        where = f"embedded NATS, data in {data_dir}" if embedded else "external NATS"
        metrics = f"; metrics and health on http://{http.host}:{http.port}" if http.port is not None else ""
        prefix = config.prefix
        print(f"agentledger ready: send commands to {prefix}.cmd.<tenant>.<command> and queries to "
              f"{prefix}.qry.<tenant>.<query> at {nats_url} ({where}; log position {engine.models.position}{metrics})",
              flush=True)
        reason = await _until_stopped(stop, engine.failed, failure)
    except Exception as e:  # one line, not a traceback: the reason is what an operator needs
        reason = None if stop.is_set() else f"{type(e).__name__}: {e}"
    finally:
        if stop.is_set():
            log.info("stopping: in-flight commands finish first")
        await _quietly("engine stop", engine.stop())
        if ops is not None:
            await _quietly("http stop", ops.stop())
        if embedded is not None:
            await _quietly("nats-server stop", embedded.stop())
        tracing.shutdown()  # spans still queued for export go out before the process ends
    if reason is not None:
        log.error("engine exits: %s", reason)
        return 1
    return 0


def _providers(process: EffectsProcess) -> str:
    """Which provider isolates how, for the ready line (the start log has the details)."""
    found = []
    for worker in process.workers:
        reconciler = getattr(worker, "reconciler", None)
        for name, provider in (reconciler.providers.items() if reconciler is not None else ()):
            info = provider.info()
            found.append(f"{name}: {info.kind}, pause by {info.freeze}, limits {'on' if info.limits else 'off'}")
    return "; ".join(found) or "no provider"


async def effects(config: EngineConfig, http: HttpOptions = HttpOptions()) -> int:
    stop = _stop_on_signals()
    process = EffectsProcess(config)
    ops: OpsServer | None = None
    reason: str | None
    try:
        if http.port is not None:
            probe = WorkerProbe(process.metrics, config.stream, lambda: process.failure, lambda: [process.nc],
                                lambda: process.workers, lambda: process.store.js if process.store else None)
            ops = OpsServer(probe, process.metrics, http.host, http.port)
            await ops.start()
        await process.start()
        print(f"agentledger effects ready: sandboxes in {config.sandbox_dir} ({_providers(process)}), "
              f"log {config.stream} at {config.nats_url}", flush=True)
        reason = await _until_stopped(stop, process.failed, lambda: process.failure)
    except Exception as e:
        reason = None if stop.is_set() else f"{type(e).__name__}: {e}"
    finally:
        await _quietly("effect handler stop", process.stop())
        if ops is not None:
            await _quietly("http stop", ops.stop())
        tracing.shutdown()
    if reason is not None:
        log.error("effect handler exits: %s", reason)
        return 1
    return 0
