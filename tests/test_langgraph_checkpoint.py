"""The LangGraph checkpointer on the tenant's JetStream bucket, against the real server with
authentication on: LangGraph's own conformance suite with a member's credentials, tenant isolation,
an auditor reading, garbage in the bucket skipped and counted, and a real graph interrupted here and
resumed from a second process. Each test has a tenant (and so a bucket) of its own."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import nats
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES, EXTENDED_CAPABILITIES
from nats.aio.client import Client

from agentledger.adapters.langgraph import CheckpointStoreError, JetStreamSaver, checkpoint_link, keys, linked_checkpoint
from agentledger.adapters.langgraph.records import CheckpointRecord, Typed, WriteRecord, encode
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.schemas.accounts import CHECKPOINT_BUCKET
from tests.conftest import Tenants, connect, stream_messages
from tests.langgraph_graph import build

if TYPE_CHECKING:  # the fixture's type only (the module moves between layers)
    from agentledger.handlers.nats_server import EmbeddedNats

ROOT = Path(__file__).resolve().parent.parent


def _tenant() -> str:
    return f"tnt_lg{uuid.uuid4().hex[:8]}"


def _config(thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> dict[str, dict[str, str]]:
    conf = {"thread_id": thread_id, "checkpoint_ns": ns}
    return {"configurable": conf if checkpoint_id is None else {**conf, "checkpoint_id": checkpoint_id}}


async def _put(saver: JetStreamSaver, thread_id: str, ns: str = "", parent: str | None = None, step: int = 0,
               values: dict[str, str] | None = None) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = dict(values or {})
    checkpoint["channel_versions"] = dict.fromkeys(values or {}, saver.get_next_version(None, None))
    config = _config(thread_id, ns, parent)
    stored = await saver.aput(config, checkpoint, {"source": "loop", "step": step, "parents": {}},  # type: ignore[arg-type]
                              checkpoint["channel_versions"])
    return str(stored["configurable"]["checkpoint_id"])


async def test_the_conformance_suite_passes_with_a_members_credentials(tenants: Tenants) -> None:
    nc = await tenants.conn(_tenant(), "member")

    @checkpointer_test(name="JetStreamSaver")
    async def factory() -> AsyncIterator[JetStreamSaver]:
        yield await JetStreamSaver.open(nc)

    report = await validate(factory)
    outcome = {name: (r.passed, r.tests_passed, r.tests_failed, r.failures) for name, r in report.results.items()}
    assert report.passed_all_base(), outcome
    assert {c.value for c in BASE_CAPABILITIES} <= outcome.keys()
    for capability in EXTENDED_CAPABILITIES:  # copy_thread, delete_for_runs, prune: implemented, and they pass
        assert outcome[capability.value][0] is True, outcome[capability.value]
    assert report.passed_all()
    assert sum(r.tests_passed for r in report.results.values()) >= 80, outcome


async def test_a_tenant_never_sees_another_tenants_checkpoints(tenants: Tenants, nats_server: EmbeddedNats,
                                                                 deployment: Deployment) -> None:
    """Same bucket name, same thread id, two accounts: two buckets that share nothing. The engine's
    account has no checkpoint bucket at all."""
    a = await JetStreamSaver.open(await tenants.conn(_tenant(), "member"))
    b = await JetStreamSaver.open(await tenants.conn(_tenant(), "member"))
    thread = f"thd_{uuid.uuid4().hex[:8]}"
    first = await _put(a, thread, values={"note": "a's secret"})
    assert await b.aget_tuple(_config(thread)) is None
    assert [t async for t in b.alist(None)] == []
    assert await b.locate(thread, first) is None
    await _put(b, thread, values={"note": "b's own"})
    await b.adelete_thread(thread)
    tup = await a.aget_tuple(_config(thread))
    assert tup is not None and tup.checkpoint["channel_values"] == {"note": "a's secret"}

    admin = await connect(deployment, nats_server.url, role="admin")
    try:
        with pytest.raises(CheckpointStoreError, match="no checkpoint bucket"):
            await JetStreamSaver.open(admin)
    finally:
        await admin.close()


async def test_an_auditor_reads_the_tenants_checkpoints(tenants: Tenants) -> None:
    tenant = _tenant()
    member = await JetStreamSaver.open(await tenants.conn(tenant, "member"))
    auditor = await JetStreamSaver.open(await tenants.conn(tenant, "auditor"))
    thread = f"thd_{uuid.uuid4().hex[:8]}"
    first = await _put(member, thread, values={"k": "v1"})
    second = await _put(member, thread, parent=first, step=1, values={"k": "v2"})
    listed = [t.config["configurable"]["checkpoint_id"] async for t in auditor.alist(_config(thread))]
    assert listed == [second, first]
    tup = await auditor.aget_tuple(_config(thread))
    assert tup is not None and tup.checkpoint["channel_values"] == {"k": "v2"}


async def test_garbage_in_the_bucket_is_skipped_and_counted_never_raised(tenants: Tenants) -> None:
    """Anyone with a member's credentials can write the bucket: values and keys the saver did not
    write are skipped (and counted) by list and get_tuple, and a deleted key is simply absent."""
    nc = await tenants.conn(_tenant(), "member")
    saver = await JetStreamSaver.open(nc)
    kv = await nc.jetstream().key_value(CHECKPOINT_BUCKET)
    thread = f"thd_{uuid.uuid4().hex[:8]}"
    good = await _put(saver, thread, values={"k": "good"})
    newer = await _put(saver, thread, parent=good, step=1, values={"k": "newer"})
    await saver.aput_writes(_config(thread, "", good), [("k", "pending"), ("other", "also")], "task-1")

    # a head newer than both that is not MessagePack at all
    await kv.put(keys.checkpoint_key(thread, "", newer + "z"), b"\x00garbage")
    # a record of the right shape whose serde bytes are garbage
    bad = CheckpointRecord(Typed("msgpack", b"\xc1\xc1"), Typed("json", b"{"), None)
    await kv.put(keys.checkpoint_key(thread, "", newer + "y"), encode(bad))
    # a good checkpoint replayed under another checkpoint's key
    good_record = (await kv.get(keys.checkpoint_key(thread, "", good))).value or b""
    await kv.put(keys.checkpoint_key(thread, "", newer + "x"), good_record)
    # a well-formed record whose channel value is garbage: the checkpoint cannot be used
    await kv.put(keys.blob_key(thread, "", "k", "7"), b"not a blob")
    rotten = await _put(saver, thread, parent=newer, step=2)
    checkpoint = (await saver.aget_tuple(_config(thread, "", rotten))).checkpoint  # type: ignore[union-attr]
    record = CheckpointRecord(Typed(*saver.serde.dumps_typed({**checkpoint, "channel_versions": {"k": "7"}})),
                              Typed(*saver.serde.dumps_typed({"source": "loop", "step": 2})), newer)
    await kv.put(keys.checkpoint_key(thread, "", rotten), encode(record))
    # a pending write that is not one, and keys that no saver writes
    await kv.put(keys.write_key(thread, "", good, "task-2", 0), msgspec.msgpack.encode({"task_id": 5}))
    await kv.put(keys.write_key(thread, "", good, "task-3", 0),
                 encode(WriteRecord("task-3", "k", Typed("msgpack", b"\xc1"))))
    await kv.put(f"c.{keys.token(thread)}.x", b"too few tokens")
    await kv.put(f"c.{keys.token(thread)}.=.=YQ", b"a non-canonical token")
    # a deleted checkpoint is absent, not garbage
    gone = await _put(saver, thread, parent=newer, step=3)
    await kv.delete(keys.checkpoint_key(thread, "", gone))

    listed = [t async for t in saver.alist(_config(thread))]
    assert [t.checkpoint["id"] for t in listed] == [newer, good]
    assert sorted(w[1:] for w in listed[1].pending_writes or []) == [("k", "pending"), ("other", "also")]
    assert saver.skipped == {"checkpoint": 3, "blob": 1, "write": 2, "key": 1}
    head = await saver.aget_tuple(_config(thread))
    assert head is not None and head.checkpoint["id"] == newer  # the garbage heads are passed over
    assert await saver.aget_tuple(_config(thread, "", rotten)) is None
    assert [t.checkpoint["id"] async for t in saver.alist(None)] == [newer, good]

    # copying and pruning read the same bucket: garbage neither stops them nor survives as a head
    copy = f"thd_{uuid.uuid4().hex[:8]}"
    await saver.acopy_thread(thread, copy)
    assert [t.checkpoint["id"] async for t in saver.alist(_config(copy))] == [newer, good]
    await saver.aprune([copy])
    assert [t.checkpoint["channel_values"] async for t in saver.alist(_config(copy))] == [{"k": "newer"}]
    await saver.adelete_for_runs(["run-that-never-was"])
    assert [t.checkpoint["id"] async for t in saver.alist(_config(thread))] == [newer, good]


async def test_links_from_the_ledger_resolve_to_the_checkpoint_in_any_namespace(tenants: Tenants) -> None:
    saver = await JetStreamSaver.open(await tenants.conn(_tenant(), "member"))
    thread = f"thd_{uuid.uuid4().hex[:8]}"
    root = await _put(saver, thread, values={"k": "root"})
    child = await _put(saver, thread, ns="tools:4f1c|child:9a2e", values={"k": "child"})
    for checkpoint_id, ns in ((root, ""), (child, "tools:4f1c|child:9a2e")):
        link = checkpoint_link(_config(thread, ns, checkpoint_id))  # type: ignore[arg-type]
        assert len(link) <= 128 and link.startswith("lgcp:")
        found = await saver.locate(thread, linked_checkpoint(link) or "")
        assert found == _config(thread, ns, checkpoint_id)
        tup = await saver.aget_tuple(found)
        assert tup is not None and tup.checkpoint["id"] == checkpoint_id
    assert linked_checkpoint("0f3a" * 8) is None  # an event id as causation: no checkpoint


async def test_sync_methods_work_from_another_thread_and_refuse_the_event_loop(tenants: Tenants) -> None:
    saver = await JetStreamSaver.open(await tenants.conn(_tenant(), "member"))
    thread = f"thd_{uuid.uuid4().hex[:8]}"
    first = await _put(saver, thread, values={"k": "v"})
    tup = await asyncio.to_thread(saver.get_tuple, _config(thread))
    assert tup is not None and tup.checkpoint["id"] == first
    assert [t.checkpoint["id"] for t in await asyncio.to_thread(lambda: list(saver.list(_config(thread))))] == [first]
    with pytest.raises(asyncio.InvalidStateError, match="another thread"):
        saver.get_tuple(_config(thread))


async def test_a_graph_interrupted_here_resumes_in_a_second_process(
        tenants: Tenants, nats_server: EmbeddedNats, deployment: Deployment, engine: Engine, nc: Client,
        tmp_path: Path) -> None:
    """A real StateGraph stops at `interrupt()`; another process, with a new connection and a new
    saver, resumes it with `Command(resume=...)`; the engine's stream took nothing of it."""
    tenant = _tenant()
    member = await tenants.conn(tenant, "member")
    creds = tmp_path / "member.creds"
    Deployment.write(deployment.tenant_creds(tenant, "usr_graph", "member"), creds)
    before = await stream_messages(nc, engine.config.stream)

    saver = await JetStreamSaver.open(member)
    graph = build(saver)
    config = {"configurable": {"thread_id": "thd_review"}}
    paused = await graph.ainvoke({"request": "merge the fix"}, config)  # type: ignore[arg-type]
    assert [i.value for i in paused["__interrupt__"]] == [{"question": "may I merge the fix?"}]
    state = await graph.aget_state(config)  # type: ignore[arg-type]
    assert state.next == ("ask",)

    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tests.langgraph_graph", nats_server.url,
                                                    str(creds), "thd_review", "yes"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "request": "merge the fix", "answer": "yes", "done": "merge the fix: yes"}

    state = await graph.aget_state(config)  # type: ignore[arg-type]
    assert state.next == () and state.values["done"] == "merge the fix: yes"
    history = [s.metadata["step"] async for s in graph.aget_state_history(config)]  # type: ignore[arg-type,index]
    assert history == sorted(history, reverse=True) and len(history) >= 4
    assert saver.skipped == {}
    assert await stream_messages(nc, engine.config.stream) == before


def test_the_engine_never_imports_langgraph() -> None:
    probe = ("import sys, agentledger.handlers.app, agentledger.cli.main, agentledger.handlers.auth.tenants\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('langgraph', 'langchain_core')"
             " or m.startswith('agentledger.adapters')))\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


async def test_the_bucket_is_made_by_tenant_add_and_kept_by_a_refresh(tenants: Tenants, nats_server: EmbeddedNats,
                                                                         deployment: Deployment) -> None:
    from agentledger.handlers.auth.tenants import add_tenant

    tenant = _tenant()
    saver = await JetStreamSaver.open(await tenants.conn(tenant, "member"))
    thread = f"thd_{uuid.uuid4().hex[:8]}"
    first = await _put(saver, thread, values={"k": "kept"})
    await add_tenant(nats_server.url, deployment, tenant)  # `tenant add` again: idempotent
    provisioner = await nats.connect(servers=[nats_server.url], user_credentials=deployment.provisioner_creds(tenant).raw())
    try:
        info = await provisioner.jetstream().stream_info(f"KV_{CHECKPOINT_BUCKET}")
    finally:
        await provisioner.close()
    assert info.config.max_msgs_per_subject == 1 and info.config.allow_direct and info.config.deny_delete
    tup = await saver.aget_tuple(_config(thread))
    assert tup is not None and tup.checkpoint["id"] == first


async def test_the_integrations_example_runs_as_written(tenants: Tenants, nats_server: EmbeddedNats,
                                                        deployment: Deployment, tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "integrations.md").read_text()
    section = doc[doc.index("## LangGraph checkpointer"):]
    code = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    assert code is not None and ".venv/bin/python graph.py" in section
    tenant = _tenant()
    await tenants.add(tenant)
    Deployment.write(deployment.tenant_creds(tenant, "usr_alice", "member"), tmp_path / "alice.creds")
    (tmp_path / "graph.py").write_text(code.group(1))
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "graph.py"], cwd=tmp_path, capture_output=True,
                                   text=True, timeout=120, env={**os.environ, "NATS_URL": nats_server.url})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["may I merge the fix?", "{'request': 'merge the fix', 'answer': 'yes'}"]
