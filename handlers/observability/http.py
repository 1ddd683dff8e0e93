"""The operator's HTTP port: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz`
(connected and caught up). aiohttp's embedded runner shares the engine's event loop, so the
probes see the engine as it is, with no thread in between."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentledger.handlers.observability.metrics import EngineMetrics


class Probe(Protocol):
    def failure(self) -> str | None:
        """Why this process is no longer alive (it is about to exit), or None."""

    async def not_ready(self) -> str | None:
        """Why this process should not get traffic now, or None when it should."""

    async def refresh(self) -> None:
        """Bring the gauges read at scrape time (lag, positions) up to date."""


class OpsServer:
    def __init__(self, probe: Probe, metrics: EngineMetrics, host: str, port: int) -> None:
        self.probe, self.metrics, self.host, self.port = probe, metrics, host, port
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.probe.refresh()
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        reason = self.probe.failure()
        if reason is not None:
            return web.json_response({"status": "failed", "reason": reason}, status=503)
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = await self.probe.not_ready()
        self.metrics.ready.set(reason is None)
        if reason is not None:
            return web.json_response({"status": "not_ready", "reason": reason}, status=503)
        return web.json_response({"status": "ready"})
