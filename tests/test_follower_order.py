"""A replica never decides on a model with a hole in it.

On a replicated stream a replica's live follower can deliver an event before the replica holds
that boundary, while the replica's load of it is answered by a stream replica that does not have
the event yet (docs/architecture.md, "Live events apply in order"). The events the follower
delivers next must then not be applied on top of the load: the model would miss the one in
between, and its next append, expecting the model's position, would be accepted on that hole
(the 3-node races found a spawn past the width cap, and a `session.start` answered `not_found`).

Here the follower of replica B misses one event on purpose, which is what that lag amounts to,
and the events after it must not be applied until B reads the boundary again in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentledger.engine.store import RawEvent
from agentledger.handlers.app import Engine, EngineConfig
from agentledger.schemas.replies import CommandReply
from tests.conftest import AGENT
from tests.replicas import body, code, started_pair

TENANT = "tnt_order"


@pytest.fixture
async def pair(engine_config: EngineConfig) -> AsyncIterator[tuple[Engine, Engine]]:
    async with started_pair(engine_config) as engines:
        yield engines


async def ok(engine: Engine, command: str, **fields: Any) -> CommandReply:
    assert engine.commands
    reply = await engine.commands.execute(TENANT, command, body(**fields))
    assert reply.ok, reply
    return reply


async def follower_missing(engine: Engine, event_type: str) -> list[int]:
    """Follow again, except that the next `event_type` event never reaches the engine's models
    (as when it arrived before the engine held the boundary and its load came from a replica
    without it). Returns where the missed event was, once it was."""
    missed: list[int] = []

    def follow(raw: RawEvent) -> None:
        if not missed and raw.subject.endswith(f".{event_type}"):
            missed.append(raw.position)
            return
        engine.models.follow(raw)

    await engine.follow_again(follow)
    return missed


async def test_an_archive_after_a_missed_session_is_not_applied_over_the_hole(pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    await ok(a, "project.create", project_id="prj_o", name="order")
    await ok(a, "thread.create", project_id="prj_o", thread_id="thd_o")
    assert b.store
    thread = await b.models.loaded(b.store, b.models.thread(TENANT, "thd_o"))  # B holds the thread
    missed = await follower_missing(b, "session.created")
    created = await ok(a, "session.create", thread_id="thd_o", session_id="ses_o", owner=AGENT)
    archived = await ok(a, "thread.archive", thread_id="thd_o")
    assert archived.position and await b.models.wait_for(archived.position, 5)
    assert missed == [created.position]

    started = await b.commands.execute(TENANT, "session.start", body(session_id="ses_o"))
    assert code(started) == "thread_closed", started  # not `not_found`: B read the session it missed
    assert thread.status == "archived" and "ses_o" in thread.sessions and thread.position == archived.position


async def test_spawns_after_a_missed_spawn_keep_the_width_cap(pair: tuple[Engine, Engine]) -> None:
    a, b = pair
    await ok(a, "project.create", project_id="prj_w", name="w", config={"max_delegation_width": 3})
    await ok(a, "thread.create", project_id="prj_w", thread_id="thd_w")
    await ok(a, "session.create", thread_id="thd_w", session_id="ses_root", owner=AGENT)
    await ok(a, "session.start", session_id="ses_root")
    assert b.store
    thread = await b.models.loaded(b.store, b.models.thread(TENANT, "thd_w"))
    missed = await follower_missing(b, "session.spawned")
    first = await ok(a, "session.spawn", parent_session_id="ses_root", agent=AGENT)
    second = await ok(a, "session.spawn", parent_session_id="ses_root", agent=AGENT)
    assert second.position and await b.models.wait_for(second.position, 5)
    assert missed == [first.position]

    replies = [await b.commands.execute(TENANT, "session.spawn", body(parent_session_id="ses_root", agent=AGENT))
               for _ in range(2)]
    assert [code(r) for r in replies] == ["ok", "capacity_exceeded"], replies
    assert thread.sessions["ses_root"].open_children == 3
