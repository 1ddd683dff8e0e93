"""NATS connection callbacks: one log line per change of state (not a traceback per reconnect
attempt), reconnect metrics, and the news that a connection is closed for good.

nats-py gives up after `max_reconnect_attempts`; a subscriber on a closed connection never
hears anything again. Rather than stay alive and deaf, the process is told (`on_lost`) and
exits non-zero, so its supervisor restarts it and a fresh start rebuilds everything."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentledger.handlers.observability.metrics import EngineMetrics

log = logging.getLogger("agentledger.nats")


@dataclass(frozen=True)
class Reconnect:
    """How long a connection keeps trying after NATS went away. A negative budget: forever."""

    wait: float = 2.0
    budget: float = 120.0

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

    def options(self, reconnect: Reconnect) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`."""
        return {"max_reconnect_attempts": reconnect.attempts, "reconnect_time_wait": reconnect.wait,
                "error_cb": self._error, "disconnected_cb": self._disconnected,
                "reconnected_cb": self._reconnected, "closed_cb": self._closed}

    async def _error(self, error: Exception) -> None:
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
        if self.closing:
            return
        reason = f"nats {self.name} connection closed: NATS unreachable for longer than the reconnect budget"
        log.error("%s", reason)
        self.on_lost(reason)
