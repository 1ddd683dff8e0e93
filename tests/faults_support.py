"""Load for fault injection, and the checks that follow it.

Several clients each run rounds of create / start / spawn / complete / complete, with an
archive and unarchive of a shared thread now and then, every command with its own command_id.
A client retries a command (same id, same body) when it gets no answer or a retryable error,
as a real client would, until it has a definitive answer. Afterwards the log must agree with
the answers: acknowledged <=> in the log exactly once, at the position the answer named; and a
replay through tests/reference_rules.py must find no rule broken."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client

from agentledger.engine.store import EventStore
from agentledger.handlers.config import EngineConfig
from tests.conftest import AGENT, USER
from tests.reference_rules import Rules, replay

DONE = {"outcome": "succeeded", "text": "ok"}
AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")
MAX_ATTEMPTS = 200


async def serve_process(config: EngineConfig, stderr: Path, *options: str,
                        env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """`agentledger serve` as its own process (so it can be killed), returned once it says ready;
    `env` adds to its environment (say, AGENTLEDGER_LOG_FORMAT)."""
    env = {**os.environ, "NATS_URL": config.nats_url, "NATS_CREDS": str(config.creds), **(env or {})}
    with open(stderr, "ab") as errors:
        proc = await asyncio.create_subprocess_exec(
            AGENTLEDGER, "serve", "--prefix", config.prefix, "--stream", config.stream, "--no-effects", *options,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=errors)
    assert proc.stdout is not None
    assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 60), stderr.read_text()[-2000:]
    return proc


class Load:
    def __init__(self, nc: Client, config: EngineConfig, tenant: str, threads: list[str], tag: str) -> None:
        self.nc, self.config, self.tenant, self.threads, self.tag = nc, config, tenant, threads, tag
        self.answers: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, tuple[str, bytes]] = {}  # command_id -> (subject, body), for the resend check
        self.retries: Counter[str] = Counter()  # why a command was sent again
        self.progress = 0

    async def send(self, command_id: str, command: str, **fields: Any) -> dict[str, Any]:
        subject = self.config.subjects.command(self.tenant, command)
        body = msgspec.json.encode({"actor": USER, "command_id": command_id, **fields})
        self.sent[command_id] = (subject, body)
        for _ in range(MAX_ATTEMPTS):
            try:
                msg = await self.nc.request(subject, body, timeout=2.0)
            except nats.errors.NoRespondersError:
                self.retries["no responders"] += 1  # no engine subscribed (all down, or starting)
                await asyncio.sleep(0.25)
                continue
            except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                    nats.errors.StaleConnectionError, nats.errors.OutboundBufferLimitError):
                self.retries["no answer"] += 1
                continue
            reply: dict[str, Any] = msgspec.json.decode(msg.data)
            if not reply["ok"] and reply["error"]["retryable"]:
                self.retries[reply["error"]["code"]] += 1
                await asyncio.sleep(0.05)
                continue
            self.answers[command_id] = reply
            self.progress += 1
            return reply
        raise AssertionError(f"{command_id} never got a definitive answer; retries {self.retries}")

    async def client(self, c: int, rounds: int) -> None:
        for i in range(rounds):
            thread = self.threads[(c + i) % len(self.threads)]
            parent, child, cid = f"ses_{self.tag}{c}x{i}", f"ses_{self.tag}{c}x{i}k", f"{self.tag}-{c}-{i}"
            await self.send(f"{cid}-create", "session.create", thread_id=thread, session_id=parent, owner=AGENT)
            await self.send(f"{cid}-start", "session.start", session_id=parent)
            await self.send(f"{cid}-spawn", "session.spawn", parent_session_id=parent, session_id=child, agent=AGENT)
            await self.send(f"{cid}-done-child", "session.complete", session_id=child, summary=DONE)
            await self.send(f"{cid}-done", "session.complete", session_id=parent, summary=DONE)
            if i % 4 == 3:
                await self.send(f"{cid}-archive", "thread.archive", thread_id=thread)
                await self.send(f"{cid}-unarchive", "thread.unarchive", thread_id=thread)

    async def run(self, clients: int, rounds: int) -> None:
        await asyncio.gather(*(self.client(c, rounds) for c in range(clients)))

    async def reached(self, answers: int) -> None:
        """Wait until the load has had this many definitive answers (progress, not time)."""
        for _ in range(6000):
            if self.progress >= answers:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"load stalled at {self.progress} answers; retries {self.retries}")


async def check_log(nc: Client, config: EngineConfig, loads: list[Load]) -> dict[str, int]:
    """Acknowledged <=> in the log exactly once; a resend of every command gets the same answer;
    and an independent replay of the whole log finds no rule broken."""
    store = EventStore(nc, config.stream)
    raws = await store.read_latest(config.subjects.events_all)
    logged: dict[str, list[int]] = {}
    for raw in raws:
        logged.setdefault(msgspec.json.decode(raw.data)["command_id"], []).append(raw.position)
    answers = {cid: a for load in loads for cid, a in load.answers.items()}
    appended = 0
    for cid, answer in answers.items():
        if answer["ok"] and answer["events"]:
            assert logged.get(cid) == [answer["position"]], (cid, answer, logged.get(cid))
            appended += 1
        else:  # refused, or a no-op (archiving an archived thread): nothing recorded
            assert cid not in logged, (cid, answer, logged[cid])
    ours = {cid for cid in logged if cid in answers or any(cid.startswith(f"{load.tag}-") for load in loads)}
    assert all(len(logged[cid]) == 1 and cid in answers for cid in ours), [c for c in ours if c not in answers][:5]
    violations = replay(Rules(), [raw.data for raw in raws])
    assert violations == [], violations[:10]
    # every acknowledged command sent again, with the same id, answers as it did and appends nothing
    for load in loads:
        for cid, (subject, body) in load.sent.items():
            first = answers[cid]
            if first["ok"] and first["events"]:
                again = msgspec.json.decode((await nc.request(subject, body, timeout=10)).data)
                assert again["ok"] and again["position"] == first["position"], (cid, first, again)
    assert len(await store.read_latest(config.subjects.events_all)) == len(raws)
    return {"commands": len(answers), "appended": appended, "events_replayed": len(raws)}
