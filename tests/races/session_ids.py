"""The session-id race: one client-chosen session id first used at once in three threads (two
creates and a spawn) from two engines; exactly one use is accepted, and the log holds it once.
Run on one server (tests/test_session_id_race.py) and on a replicated stream (tests/test_cluster.py)."""

from __future__ import annotations

from collections import Counter, defaultdict

from agentledger.engine.repository import Repository, introduced_sessions
from agentledger.schemas.events import Envelope
from tests.replicas import Replicas, code, replay

AGENT = {"kind": "agent", "id": "agt_s"}


async def run_session_id_race(r: Replicas, trials: int) -> None:
    """Shared with the 3-node cluster test."""
    await r.ok("project.create", project_id="prj_s", name="s")
    winners: dict[str, str] = {}
    for trial in range(trials):
        threads = [f"thd_s{trial}{x}" for x in "abc"]
        for thread in threads:
            await r.ok("thread.create", project_id="prj_s", thread_id=thread)
        root = f"ses_root{trial}"
        await r.ok("session.create", thread_id=threads[2], session_id=root, owner=AGENT)
        await r.ok("session.start", session_id=root)
        sid = f"ses_x{trial}"
        replies = await r.race(
            ("session.create", {"thread_id": threads[0], "session_id": sid, "owner": AGENT}),
            ("session.create", {"thread_id": threads[1], "session_id": sid, "owner": AGENT}),
            ("session.spawn", {"parent_session_id": root, "session_id": sid, "agent": AGENT}),
        )
        codes = Counter(code(x) for x in replies)
        assert codes == {"ok": 1, "already_exists": 2}, (trial, codes, replies)
        winners[sid] = threads[[x.ok for x in replies].index(True)]
        # whichever replica is asked, the session is where the accepted command put it
        for engine in r.engines:
            assert engine.store
            assert await engine.models.resolve_session(engine.store, r.tenant, sid) == winners[sid]

    a = r.engines[0]
    assert a.store
    introduced: dict[str, list[str]] = defaultdict(list)

    def record(models: Repository, envelope: Envelope) -> None:
        for sid in introduced_sessions(envelope.data):
            introduced[sid].append(envelope.boundary.split(".")[-2])

    await replay(a.store, a.config, record)
    for sid, thread in winners.items():
        assert introduced[sid] == [thread], (sid, introduced[sid], thread)
        claims = await a.store.read(a.config.subjects.session_claim_filter(r.tenant, sid))
        assert [a.config.subjects.entity_of(c.subject) for c in claims] == [thread]
    assert all(len(threads) == 1 for threads in introduced.values())
