"""Hostile request bodies: oversized, overlong lists, ids with a trailing newline, integers past
what JSON readers hold exactly. Each gets `invalid_command` at once, nothing is appended, and the
engine keeps answering; `events.read` over big events pages by bytes."""

from __future__ import annotations

import msgspec
import pytest
from nats.aio.client import Client

from agentledger.engine.codec import MAX_REPLY_BYTES
from agentledger.handlers.app import Engine
from agentledger.schemas.commands import MAX_REQUEST_BYTES
from tests.conftest import AGENT, USER, Client_, stream_messages


@pytest.fixture
async def running(client: Client_) -> Client_:
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    await client.ok("session.start", session_id="ses_a")
    return client


async def refused(client: Client_, nc: Client, command: str, path: str | None = None, **fields: object) -> None:
    before = await stream_messages(nc, client.config.stream)
    reply = await client.cmd(command, **fields)
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_command", reply
    if path is not None:
        assert [e["path"] for e in reply["error"]["details"]["errors"]] == [path], reply
    assert await stream_messages(nc, client.config.stream) == before


async def still_serving(client: Client_) -> None:
    assert (await client.qry("session.get", session_id="ses_a"))["result"]["session"]["status"] == "active"
    await client.ok("session.request_input", session_id="ses_a")


async def test_a_megabyte_command_is_refused_at_once(running: Client_, nc: Client) -> None:
    many = ["x" * 1900] * 520  # about 1 MB, still below the server's max_payload
    body = {"actor": USER, "session_id": "ses_a", "summary": {"outcome": "succeeded", "text": "t", "deliverables": many}}
    assert MAX_REQUEST_BYTES < len(msgspec.json.encode(body)) < nc.max_payload
    await refused(running, nc, "session.complete", "$", session_id="ses_a",
                  summary={"outcome": "succeeded", "text": "t", "deliverables": many})
    # just above the limit, and a query that large, are refused the same way
    over = {"actor": USER, "session_id": "ses_a", "reason": "r" * (MAX_REQUEST_BYTES + 1)}
    before = await stream_messages(nc, running.config.stream)
    reply = await running.raw(f"{running.config.prefix}.cmd.tnt_acme.session.cancel", msgspec.json.encode(over))
    assert reply["error"]["code"] == "invalid_command" and "above the limit" in reply["error"]["message"]
    query = await running.raw(f"{running.config.prefix}.qry.tnt_acme.session.get",
                              msgspec.json.encode({"session_id": "ses_a", "pad": "p" * MAX_REQUEST_BYTES}))
    assert query["error"]["code"] == "invalid_command"
    assert await stream_messages(nc, running.config.stream) == before
    # a list past its bound, in a small body
    await refused(running, nc, "session.complete", "$.summary.deliverables", session_id="ses_a",
                  summary={"outcome": "succeeded", "text": "t", "deliverables": ["d"] * 101})
    await still_serving(running)


async def test_ids_with_a_trailing_newline_are_refused(running: Client_, nc: Client) -> None:
    await refused(running, nc, "session.start", "$.session_id", session_id="ses_a\n")
    await refused(running, nc, "thread.create", "$.thread_id", project_id="prj_p1", thread_id="thd_x\n")
    await refused(running, nc, "session.create", "$.session_id", thread_id="thd_t1", session_id="ses_x\n", owner=AGENT)
    await refused(running, nc, "session.create", "$.owner", thread_id="thd_t1", owner={"kind": "agent", "id": "agt_x\n"})
    await refused(running, nc, "thread.archive", "$.command_id", thread_id="thd_t1", command_id="c1\n")
    await refused(running, nc, "sandbox.create", "$.provider", sandbox_id="sbx_a", provider="local\n")
    await still_serving(running)


@pytest.mark.parametrize("budget", [2**64, 10**30, 1e30, 2**53])
async def test_integers_beyond_two_to_the_53_are_refused(running: Client_, nc: Client, budget: float) -> None:
    await refused(running, nc, "session.create", "$.budget", thread_id="thd_t1", owner=AGENT, budget=budget)
    await refused(running, nc, "session.complete", "$.usage", session_id="ses_a", usage=budget,
                  summary={"outcome": "succeeded", "text": "t"})
    await running.ok("session.create", thread_id="thd_t1", owner=AGENT, budget=2**53 - 1)
    await still_serving(running)


async def test_events_read_over_big_events_pages_by_bytes(client: Client_, engine: Engine) -> None:
    await client.setup_thread()
    summary = {"outcome": "succeeded", "text": "s" * 4000, "deliverables": ["d" * 1900] * 30}  # ~60 KB per event
    sizes = []
    for i in range(14):
        sid = f"ses_{i}"
        await client.ok("session.create", thread_id="thd_t1", session_id=sid, owner=AGENT)
        await client.ok("session.start", session_id=sid)
        done = await client.ok("session.complete", session_id=sid, summary=summary)
        sizes.append(len(msgspec.json.encode(done)))
    assert max(sizes) < MAX_REPLY_BYTES < sum(sizes)
    for fields, count in (({"thread_id": "thd_t1"}, 1 + 14 * 3), ({}, 2 + 14 * 3)):
        seen: list[int] = []
        after, pages = 0, 0
        while True:
            reply = await client.qry("events.read", after=after, limit=1000, **fields)
            page = reply["result"]
            assert reply["ok"] and len(msgspec.json.encode(reply)) <= MAX_REPLY_BYTES
            seen += [e["position"] for e in page["events"]]
            after, pages = page["next_after"], pages + 1
            if not page["more"]:
                break
        assert pages > 1 and seen == sorted(set(seen)) and len(seen) == count


async def test_headers_count_toward_the_request_limit(running: Client_, nc: Client) -> None:
    """900 KiB of headers on a small command are refused like a 900 KiB body; the headers the broker
    adds itself (`Nats-Request-Info`) do not count against the sender."""
    conn = await running.conn()
    before = await stream_messages(nc, running.config.stream)
    cancel = running.config.subjects.command("tnt_acme", "session.cancel")
    body = msgspec.json.encode({"actor": USER, "session_id": "ses_a", "reason": "r"})
    padding = {f"X-Pad-{i}": "p" * 1000 for i in range(900)}
    reply = msgspec.json.decode((await conn.request(cancel, body, headers=padding, timeout=60)).data)
    assert reply["error"]["code"] == "invalid_command", reply
    assert "with its headers" in reply["error"]["message"] and "above the limit" in reply["error"]["message"]
    assert [e["path"] for e in reply["error"]["details"]["errors"]] == ["$"]
    # to the byte: body + `NATS/1.0\r\n` + `X-Pad: …\r\n` + `\r\n` at the limit is read, one more is not
    get = running.config.subjects.query("tnt_acme", "session.get")
    query = msgspec.json.encode({"session_id": "ses_a"})
    fits = MAX_REQUEST_BYTES - len(query) - len(b"NATS/1.0\r\n\r\n") - len(b"X-Pad: \r\n")
    for pad, ok in ((fits, True), (fits + 1, False)):
        answer = msgspec.json.decode((await conn.request(get, query, headers={"X-Pad": "p" * pad}, timeout=60)).data)
        assert answer["ok"] is ok, (pad, answer)
    assert await stream_messages(nc, running.config.stream) == before
    await still_serving(running)
