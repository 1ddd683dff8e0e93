"""One trace from a client's request to the provider call: the `traceparent` of a spawn is in
the appended event's headers, the process manager and the effect handler continue it from the
log, across a NATS hop when the effect handler runs on its own, and a request without one
starts a trace."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentledger.engine import codec
from agentledger.handlers.app import EffectsProcess, Engine
from agentledger.handlers.config import EngineConfig
from agentledger.handlers.observability import tracing
from tests.conftest import AGENT, USER, Client_
from tests.sandbox_support import destroy_all, sandbox_engine, settled

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # stops keeping spans; the processor stays but stores nothing more


async def events_with_trace(nc: Client, config: EngineConfig) -> list[tuple[str, str | None]]:
    """(event type, trace id of its `traceparent` header) for every event in the log."""
    js = nc.jetstream()
    last = (await js.stream_info(config.stream)).state.last_seq
    out = []
    for seq in range(1, last + 1):
        msg = await js.get_msg(config.stream, seq)
        if not msg.subject.startswith(f"{config.prefix}.evt."):
            continue  # a session claim, not an event
        parent = (msg.headers or {}).get("traceparent")
        out.append((codec.decode(msg.data).type, parent.split("-")[1] if parent else None))
    return out


async def spawn_with_sandbox(nc: Client, client: Client_, headers: dict[str, str] | None) -> str:
    body = {"actor": USER, "parent_session_id": "ses_parent", "session_id": "ses_child", "agent": AGENT,
            "sandbox": {"mode": "new", "options": {"command": ["sleep", "300"]}}}
    msg = await nc.request(f"{client.config.prefix}.cmd.{client.tenant}.session.spawn", msgspec.json.encode(body),
                           timeout=5, headers=headers)
    reply = msgspec.json.decode(msg.data)
    assert reply["ok"], reply
    sandbox_id: str = reply["result"]["sandbox_id"]
    await settled(client, sandbox_id, "running")
    return sandbox_id


def in_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]


def chain_to_root(spans: list[ReadableSpan], leaf: ReadableSpan) -> list[str]:
    by_id = {s.context.span_id: s for s in spans}
    names, span = [], leaf
    while span is not None:
        names.append(span.name)
        span = by_id.get(span.parent.span_id) if span.parent is not None else None
    return names[::-1]


@pytest.fixture
async def traced_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes", ("sleep",)) as engine:
        yield engine


async def setup(nc: Client, config: EngineConfig) -> Client_:
    client = Client_(nc, config)
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_parent", owner=AGENT)
    await client.ok("session.start", session_id="ses_parent")
    return client


async def test_spawn_to_provider_call_is_one_trace(traced_engine: Engine, nc: Client,
                                                   spans: InMemorySpanExporter) -> None:
    client = await setup(nc, traced_engine.config)
    await spawn_with_sandbox(nc, client, {"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"})

    logged = await events_with_trace(nc, traced_engine.config)
    caused = [t for t, trace_id in logged if trace_id == TRACE]
    assert caused == ["session.spawned", "sandbox.create_requested", "sandbox.created"], logged
    # every other event carries a trace of its own, started by the engine
    assert all(trace_id not in (None, TRACE) for t, trace_id in logged if t not in caused)

    ours = in_trace(spans, TRACE)
    provider = [s for s in ours if s.name == "provider create"]
    assert len(provider) == 1
    assert chain_to_root(ours, provider[0]) == [
        "command session.spawn", "handle session.spawned", "send sandbox.create",
        "handle sandbox.create_requested", "provider create"]
    root = next(s for s in ours if s.name == "command session.spawn")
    assert root.parent is not None and f"{root.parent.span_id:016x}" == CLIENT_SPAN


async def test_trace_crosses_to_an_effect_handler_running_on_its_own(engine: Engine, nc: Client,
                                                                    spans: InMemorySpanExporter,
                                                                    tmp_path: Path) -> None:
    config = engine.config
    effects = EffectsProcess(EngineConfig(nats_url=config.nats_url, prefix=config.prefix, stream=config.stream,
                                          sandbox_dir=tmp_path / "fx", creds=config.creds,
                                          sandbox_commands=("sleep",)))
    await effects.start()
    try:
        client = await setup(nc, config)
        await spawn_with_sandbox(nc, client, {"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"})
        ours = in_trace(spans, TRACE)
        outcome = next(s for s in ours if s.name == "command sandbox.report_outcome")  # the request reached the engine
        assert chain_to_root(ours, outcome)[-3:] == [
            "handle sandbox.create_requested", "send sandbox.report_outcome", "command sandbox.report_outcome"]
        assert (await events_with_trace(nc, config))[-1] == ("sandbox.created", TRACE)
    finally:
        await effects.stop()
        await destroy_all(tmp_path / "fx")
