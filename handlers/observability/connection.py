"""NATS connection callbacks: one log line per change of state (not a traceback per reconnect
attempt), reconnect metrics, messages dropped as unreadable, and the news that a connection is
closed for good or has stopped reading.

nats-py gives up after `max_reconnect_attempts`; a subscriber on a closed connection never
hears anything again, nor does one whose read loop ended. Rather than stay alive and deaf, the
process is told (`on_lost`) and exits non-zero, so its supervisor restarts it and a fresh start
rebuilds everything."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from agentledger.handlers.natsfix import MalformedMessage
from agentledger.handlers.observability.liveness import ReadCheck
from agentledger.handlers.observability.metrics import EngineMetrics

log = logging.getLogger("agentledger.nats")


@dataclass(frozen=True)
class Reconnect:
    """How long a connection keeps trying after NATS went away (a negative budget: forever), and
    how long a connected one may echo nothing before it counts as lost (its reader stopped)."""

    wait: float = 2.0
    budget: float = 120.0
    stall: float = 10.0

    @property
    def attempts(self) -> int:
        return -1 if self.budget < 0 else max(1, math.ceil(self.budget / self.wait))


class ConnectionWatch:
    def __init__(self, name: str, on_lost: Callable[[str], None], metrics: EngineMetrics | None = None,
                 on_back: Callable[[], None] | None = None) -> None:
        self.name, self.on_lost, self.metrics, self.on_back = name, on_lost, metrics, on_back
        self.closing = False  # set before a deliberate close: then closing is not a failure
        self._down_since: float | None = None
        self._errors: dict[str, int] = {}
        self.malformed = 0  # messages dropped because they could not be read
        self._reading: ReadCheck | None = None
        self._close: asyncio.Task[None] | None = None

    def options(self, reconnect: Reconnect) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`."""
        return {"max_reconnect_attempts": reconnect.attempts, "reconnect_time_wait": reconnect.wait,
                "error_cb": self._error, "disconnected_cb": self._disconnected,
                "reconnected_cb": self._reconnected, "closed_cb": self._closed}

    async def check_reading(self, nc: Client, reconnect: Reconnect) -> None:
        """From now on, notice if `nc` stops reading while connected (see `liveness`)."""
        self._reading = ReadCheck(self.name, lambda reason: self._stopped_reading(nc, reason), reconnect.stall)
        await self._reading.start(nc)

    def _stopped_reading(self, nc: Client, reason: str) -> None:
        if self.closing:
            return
        log.error("%s", reason)
        self.on_lost(reason)
        # Closed at once, so the stop that follows does not wait on a connection that reads nothing.
        self.closing = True
        self._close = asyncio.create_task(nc.close())

    async def _error(self, error: Exception) -> None:
        if isinstance(error, MalformedMessage):
            self.malformed += 1
            if self.metrics is not None:
                self.metrics.nats_malformed.labels(self.name).inc()
            if self.malformed in (1, 10, 100) or self.malformed % 1000 == 0:  # counted always, logged now and then
                log.warning("nats %s connection: %s (%d so far)", self.name, error, self.malformed)
            return
        text = f"{type(error).__name__}: {error}"
        seen = self._errors.get(text, 0)
        self._errors[text] = seen + 1
        if not seen:  # the same error again during one outage says nothing new
            log.warning("nats %s connection error: %s", self.name, text)

    async def _disconnected(self) -> None:
        if self.closing or self._down_since is not None:
            return
        self._down_since = time.monotonic()
        if self.metrics is not None:
            self.metrics.nats_disconnects.labels(self.name).inc()
        log.warning("nats %s connection lost; reconnecting", self.name)

    async def _reconnected(self) -> None:
        down = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        errors = sum(self._errors.values())
        self._down_since, self._errors = None, {}
        if self.metrics is not None:
            self.metrics.nats_reconnects.labels(self.name).inc()
        log.info("nats %s connection back after %.1fs (%d failed attempts)", self.name, down, errors)
        if self.on_back is not None and not self.closing:
            self.on_back()

    async def _closed(self) -> None:
        if self._reading is not None:
            self._reading.stop()
        if self.closing:
            return
        reason = f"nats {self.name} connection closed: NATS unreachable for longer than the reconnect budget"
        log.error("%s", reason)
        self.on_lost(reason)
