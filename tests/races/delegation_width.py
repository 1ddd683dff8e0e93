"""The delegation-width race: five spawns under one parent at once, from two engines, against a
width of three; the log is replayed afterwards to check what the replies claimed. Run on one
server (tests/test_delegation_race.py) and on a replicated stream (tests/test_cluster.py)."""

from __future__ import annotations

from collections import Counter

from tests.replicas import Replicas, code, replay

AGENT = {"kind": "agent", "id": "agt_p"}


async def thread_with_active_root(r: Replicas, project: str, n: int) -> tuple[str, str]:
    thread, root = f"thd_{project}{n}", f"ses_{project}{n}"
    await r.ok("thread.create", project_id=f"prj_{project}", thread_id=thread)
    await r.ok("session.create", thread_id=thread, session_id=root, owner=AGENT)
    await r.ok("session.start", session_id=root)
    return thread, root


async def run_width_race(r: Replicas, trials: int) -> None:
    """Shared with the 3-node cluster test."""
    width, n = 3, 5
    await r.ok("project.create", project_id="prj_w", name="w", config={"max_delegation_width": width})
    for trial in range(trials):
        _, root = await thread_with_active_root(r, "w", trial)
        replies = await r.race(*[("session.spawn", {"parent_session_id": root, "agent": AGENT})] * n)
        codes = Counter(code(x) for x in replies)
        assert codes == {"ok": min(n, width), "capacity_exceeded": n - width}, codes
    a = r.engines[0]
    assert a.store
    models = await replay(a.store, a.config)
    for trial in range(trials):
        root = models.thread(r.tenant, f"thd_w{trial}").sessions[f"ses_w{trial}"]
        assert root.open_children == width == len(root.children)
    assert r.conflicts > 0
