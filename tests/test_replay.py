"""Replay, diff and export through the engine's queries: the CLI commands, backwards paging of
`events.read`, the tenant's thread list, and the timeline's kept replays agreeing with a replay
from the start at every position."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec

from agentledger.cli import transport
from agentledger.cli.query_client import QueryClient
from agentledger.cli.ui import replays as replays_module
from agentledger.cli.ui.replays import Replays
from agentledger.handlers.app import Engine
from agentledger.handlers.config import EngineConfig
from agentledger.projections.history import PageReader, replay_at
from agentledger.schemas.events import StoredEvent
from agentledger.schemas.queries import EventsPage
from tests.cli_support import Cli
from tests.conftest import AGENT, Client_

KID = {"kind": "agent", "id": "agt_kid"}


async def busy_thread(client: Client_) -> dict[str, int]:
    await client.setup_thread()
    at = {"created": (await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT))["position"]}
    at["started"] = (await client.ok("session.start", session_id="ses_a"))["position"]
    at["spawned"] = (await client.ok("session.spawn", parent_session_id="ses_a", session_id="ses_b", agent=KID))["position"]
    done = await client.ok("session.complete", session_id="ses_b", summary={"outcome": "partial", "text": "half"})
    at["done"] = done["position"]
    return at


async def test_replay_diff_and_the_end_of_the_log(cli: Cli, client: Client_) -> None:
    at = await busy_thread(client)
    r = await cli("replay", "--thread-id", "thd_t1", "--at", str(at["created"]), "--diff", str(at["done"]), "--json")
    assert r.code == 0, r
    d = msgspec.json.decode(r.out)
    assert (d["from_position"], d["to_position"], d["events_between"]) == (at["created"], at["done"], 3)
    assert [s["session_id"] for s in d["sessions_added"]] == ["ses_b"] and d["sessions_added"][0]["status"] == "idle"
    changes = {c["field"]: (c["before"], c["after"]) for sc in d["session_changes"] for c in sc["changes"]}
    assert changes["status"] == ("idle", "active") and "open_children" not in changes  # 0, then 1, then 0 again

    # the order of the two positions does not matter; the human view lists the same change
    r = await cli("replay", "--thread-id", "thd_t1", "--at", str(at["done"]), "--diff", str(at["created"]))
    assert r.code == 0 and "+ ses_b idle  agt_kid  depth 1  parent ses_a" in r.out, r
    assert "~ ses_a status: idle -> active" in r.out, r

    r = await cli("replay", "--thread-id", "thd_t1", "--at", "99999", "--json")
    assert r.code == 0, r
    assert f"the log ends at position {at['done']}, before 99999" in r.err, r
    view = msgspec.json.decode(r.out)
    assert view["log_end"] == at["done"] and view["thread"]["position"] == at["done"]
    assert view["history_events"] == 5  # thread.created, session.created, .started, .spawned, .completed

    r = await cli("replay", "--thread-id", "thd_none")
    assert r.code == 1 and "error not_found:" in r.err, r


async def test_export_jsonl(cli: Cli, client: Client_, tmp_path: Path) -> None:
    at = await busy_thread(client)
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_t2")
    r = await cli("events", "export", "--thread-id", "thd_t1", "--format", "jsonl")
    assert r.code == 0, r
    events = [msgspec.json.decode(line, type=StoredEvent) for line in r.out.splitlines()]
    assert [e.position for e in events][1:] == [at["created"], at["started"], at["spawned"], at["done"]]
    assert events[0].type == "thread.created" and all(e.boundary.split(".")[-2] == "thd_t1" for e in events)

    out = tmp_path / "tenant.jsonl"
    r = await cli("events", "export", "--since", str(at["spawned"]), "--output", str(out))
    assert r.code == 0 and "2 events written" in r.err, r
    assert [msgspec.json.decode(line)["type"] for line in out.read_bytes().splitlines()] == [
        "session.completed", "thread.created"]

    r = await cli("events", "export", "--tenant", "tnt_other")
    assert r.code == 0 and r.out == "", r  # another tenant sees none of these


async def test_events_read_pages_backwards_and_thread_list_covers_the_tenant(client: Client_) -> None:
    await client.setup_thread()
    positions = [2]
    for i in range(12):
        sid = f"ses_{i:02d}"
        positions.append((await client.ok("session.create", thread_id="thd_t1", session_id=sid, owner=AGENT))["position"])
        await client.ok("thread.create", project_id="prj_p1", thread_id=f"thd_x{i:02d}")  # interleaved, not in thd_t1
    for before, limit in [(None, 5), (positions[-1], 5), (positions[3], 100), (3, 10), (positions[7] + 1, 4)]:
        fields = {"limit": limit} | ({"before": before} if before else {"before": 10_000})
        page = (await client.qry("events.read", thread_id="thd_t1", **fields))["result"]
        upper = before if before else 10_000
        expected = [p for p in positions if p < upper][-limit:]
        assert [e["position"] for e in page["events"]] == expected, (before, limit)
        assert page["next_after"] == (expected[-1] if expected else 0)
    page = (await client.qry("events.read", thread_id="thd_t1", after=positions[2], before=positions[6], limit=100))
    assert [e["position"] for e in page["result"]["events"]] == positions[3:6]

    await client.ok("project.create", project_id="prj_p2", name="other")
    await client.ok("thread.create", project_id="prj_p2", thread_id="thd_y1")
    await client.cmd("project.create", tenant="tnt_other", project_id="prj_p1", name="theirs", actor=AGENT)
    rows = (await client.qry("thread.list"))["result"]["threads"]
    assert {r["thread_id"] for r in rows} == {"thd_t1", "thd_y1"} | {f"thd_x{i:02d}" for i in range(12)}
    assert {r["project_id"] for r in rows} == {"prj_p1", "prj_p2"}
    assert (await client.qry("thread.list", tenant="tnt_other"))["result"]["threads"] == []


async def test_kept_replays_agree_with_a_replay_from_the_start(client: Client_, engine: Engine,
                                                              engine_config: EngineConfig, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Checkpoints every few events and the LRU must give exactly what one pass from the start gives,
    at every position, in any order, on a fork too."""
    monkeypatch.setattr(replays_module, "CHECKPOINT_EVENTS", 3)
    monkeypatch.setattr("agentledger.projections.history.REPLAY_PAGE", 2)  # many pages, so checkpoints are taken
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    await client.ok("session.start", session_id="ses_a")
    for i in range(6):
        await client.ok("session.spawn", parent_session_id="ses_a", session_id=f"ses_k{i}", agent=KID, budget=None)
        if i % 2:
            await client.ok("session.complete", session_id=f"ses_k{i}", summary={"outcome": "succeeded", "text": str(i)})
    fork_at = (await client.ok("session.request_input", session_id="ses_k0"))["position"]
    await client.ok("session.provide_input", session_id="ses_k0")
    await client.ok("thread.create", project_id="prj_p1", thread_id="thd_f", mode="fork", source_thread_id="thd_t1",
                    at_position=fork_at)
    await client.ok("session.create", thread_id="thd_f", session_id="ses_f", owner=AGENT)
    target = transport.Target(engine_config.nats_url, engine_config.prefix, "tnt_acme", 5.0, str(engine_config.creds))
    async with QueryClient(target) as qc:
        await qc.history("thd_f")(0, 1)
        end = qc.log_end
        read_from: list[int] = []  # where each page the kept replays read starts
        history = qc.history

        def recorded(thread_id: str | None) -> PageReader:
            read = history(thread_id)

            async def page(after: int, limit: int) -> EventsPage:
                read_from.append(after)
                return await read(after, limit)

            return page

        monkeypatch.setattr(qc, "history", recorded)
        kept = Replays(qc)
        order = list(range(2, end + 1)) * 2
        random.Random(7).shuffle(order)
        from_checkpoint = 0
        for thread in ("thd_t1", "thd_f"):
            last_fold = 0  # the position the thread's last replay folded up to
            for p in order:
                fresh = (await replay_at(history(thread), thread, [p]))[0]
                if fresh is None:
                    continue
                read_from.clear()
                got = await kept.at(thread, p)
                assert msgspec.structs.replace(got, log_end=None) == fresh, (thread, p)
                if read_from:  # not kept whole: folded from the start, the last fold or a checkpoint
                    if last_fold > p and read_from[0] > 0:
                        from_checkpoint += 1  # below the last fold, yet not from the start
                    last_fold = got.thread.position
        assert from_checkpoint >= 3, from_checkpoint  # the comparison above covered resumes from checkpoints
