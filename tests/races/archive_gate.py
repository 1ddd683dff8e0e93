"""The archive-gate race: `thread.archive` against `session.start` / `session.create` on one
thread, from two engines at once, then the whole log replayed to check every reply against it.
Run on one server (tests/test_race.py) and on a replicated stream (tests/test_cluster.py)."""

from __future__ import annotations

import asyncio
import random

from agentledger.handlers.app import Engine
from agentledger.schemas.common import BLOCKING_STATUSES
from agentledger.schemas.replies import CommandReply
from tests.conftest import AGENT
from tests.replicas import body, race_seed, replay

TENANT = "tnt_race"


async def run_gate_race(a: Engine, b: Engine, trials: int) -> None:
    """Shared with the 3-node cluster test: the same race on a replicated stream."""
    assert a.commands and b.commands and a.store
    rng = random.Random(race_seed(20261125))
    await a.commands.execute(TENANT, "project.create", body(project_id="prj_r", name="race"))
    outcomes: list[tuple[str, str, CommandReply, CommandReply]] = []
    for trial in range(trials):
        thread = f"thd_{trial}"
        session = f"ses_{trial}"
        setup = [("thread.create", body(project_id="prj_r", thread_id=thread))]
        racer_is_start = trial % 2 == 0
        if racer_is_start:
            setup.append(("session.create", body(thread_id=thread, session_id=session, owner=AGENT)))
        for name, payload in setup:
            assert (await a.commands.execute(TENANT, name, payload)).ok
        archiver, starter = (a, b) if rng.random() < 0.5 else (b, a)
        racer = (("session.start", body(session_id=session)) if racer_is_start
                 else ("session.create", body(thread_id=thread, session_id=session, owner=AGENT)))

        async def jittered(engine: Engine, name: str, payload: bytes) -> CommandReply:
            await asyncio.sleep(rng.random() * 0.002)
            assert engine.commands
            return await engine.commands.execute(TENANT, name, payload)

        archive_reply, racer_reply = await asyncio.gather(
            jittered(archiver, "thread.archive", body(thread_id=thread)), jittered(starter, *racer))
        outcomes.append((thread, racer[0], archive_reply, racer_reply))

    models = await replay(a.store, a.config)
    won = {"archive": 0, "racer": 0}
    for thread_id, racer_name, archive_reply, racer_reply in outcomes:
        state = models.thread(TENANT, thread_id)
        if state.status == "archived":
            assert not state.blocking, f"{thread_id} archived with {state.blocking}"
        session = state.sessions.get(f"ses_{thread_id[4:]}")
        # the replies agree with the log
        assert archive_reply.ok == (state.status == "archived"), (thread_id, archive_reply)
        if archive_reply.ok:
            won["archive"] += 1
            assert archive_reply.position == state.commands[archive_reply.command_id].position
        else:
            assert archive_reply.error is not None
            assert type(archive_reply.error).__struct_config__.tag == "thread_not_empty", archive_reply.error
        if racer_name == "session.start":
            assert session is not None
            assert racer_reply.ok == (session.status == "active")
        else:
            assert racer_reply.ok == (session is not None)
        if racer_reply.ok:
            won["racer"] += 1
            assert state.commands[racer_reply.command_id].position == racer_reply.position
        else:
            assert racer_reply.error is not None
            assert type(racer_reply.error).__struct_config__.tag == "thread_closed", (racer_name, racer_reply.error)
        if racer_name == "session.start":
            # an active session blocks archive, an archived thread refuses the start: exactly one wins
            assert archive_reply.ok != racer_reply.ok, (thread_id, archive_reply, racer_reply)
        elif archive_reply.ok and racer_reply.ok:
            # an idle session does not block archive, but it must have been created before it
            assert racer_reply.position is not None and archive_reply.position is not None
            assert racer_reply.position < archive_reply.position
        # a blocking status exists only in an open thread
        assert not any(s.status in BLOCKING_STATUSES for s in state.sessions.values()) or state.status == "open"
    # both orders happened, and the log refused stale appends: the race was real
    assert won["archive"] > 0 and won["racer"] > 0, won
    assert a.commands.conflicts + b.commands.conflicts > 0
    print(f"race: {trials} trials, wins {won}, stale appends refused by the log: "
          f"{a.commands.conflicts + b.commands.conflicts}")
