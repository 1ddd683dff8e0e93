"""A pytest plugin for the soak (`tests/soak.py`): the log each test wrote is saved before its
engines stop (and when a fault test checks it), so the soak can replay it through
tests/reference_rules.py whatever the test itself checked, a failing test's log included.

Active only with AGENTLEDGER_SOAK_LOGS set to a directory; load it with `-p tests.soak_logs`."""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agentledger.engine.store import EventStore
from agentledger.handlers.app import Engine, EngineConfig

DIRECTORY = "AGENTLEDGER_SOAK_LOGS"


class Saved(msgspec.Struct):
    """One message of a saved log, as the stream holds it."""

    position: int
    subject: str
    data: str


async def save(store: EventStore, config: EngineConfig) -> None:
    """Write the stream's events to <dir>/<stream>.jsonl (a longer read of the same stream wins)."""
    raws = await store.read_latest(config.subjects.events_all)
    path = Path(os.environ[DIRECTORY]) / f"{config.stream}.jsonl"
    if path.exists() and len(path.read_bytes().splitlines()) >= len(raws):
        return
    lines = [msgspec.json.encode(Saved(raw.position, raw.subject, raw.data.decode("utf-8", "replace"))) for raw in raws]
    path.write_bytes(b"\n".join(lines) + b"\n" if lines else b"")


async def _save_quietly(store: EventStore | None, config: EngineConfig) -> None:
    if store is None:
        return
    try:
        await asyncio.wait_for(save(store, config), 30)
    except Exception as e:  # the server may already be gone (a fault test killed it): the test decides
        warnings.warn(f"soak: log of {config.stream} not saved: {type(e).__name__}: {e}", stacklevel=1)


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(DIRECTORY):
        return
    Path(os.environ[DIRECTORY]).mkdir(parents=True, exist_ok=True)
    from tests import faults_support  # imported here: the fault tests import `check_log` after this runs

    stop, check_log = Engine.stop, faults_support.check_log

    async def saving_stop(self: Engine) -> None:
        await _save_quietly(self.store, self.config)
        await stop(self)

    async def saving_check_log(nc: Any, config: EngineConfig, loads: Any) -> dict[str, int]:
        await _save_quietly(EventStore(nc, config.stream), config)
        return await check_log(nc, config, loads)

    Engine.stop = saving_stop  # type: ignore[method-assign]
    faults_support.check_log = saving_check_log
