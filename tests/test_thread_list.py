"""`thread.list` on a project with more threads than one `multi_last` direct get answers (the
server answers at most 1,024 subjects that way, and nothing at all past that): every thread, in
creation order, a page at a time."""

from __future__ import annotations

import asyncio

from tests.conftest import Client_

THREADS = 1_030


async def test_thread_list_pages_through_more_threads_than_one_multi_get_answers(client: Client_) -> None:
    await client.ok("project.create", project_id="prj_big", name="big")
    await client.ok("project.create", project_id="prj_small", name="small")
    created: dict[str, int] = {}
    lanes = asyncio.Semaphore(16)

    async def create(i: int) -> None:
        thread_id = f"thd_n{i:04d}"
        async with lanes:
            created[thread_id] = (await client.ok("thread.create", project_id="prj_big", thread_id=thread_id))["position"]

    await asyncio.gather(*(create(i) for i in range(THREADS)))
    await client.ok("thread.create", project_id="prj_small", thread_id="thd_elsewhere")
    await client.ok("thread.archive", thread_id="thd_n0500")
    in_order = sorted(created, key=created.__getitem__)

    listed, pages, after = [], [], 0
    while True:
        page = (await client.qry("thread.list", project_id="prj_big", after=after, limit=400))["result"]
        pages.append((len(page["threads"]), page["more"]))
        listed += [row["thread_id"] for row in page["threads"]]
        if not page["more"]:
            break
        assert page["next_after"] > after
        after = page["next_after"]
    assert listed == in_order
    assert pages == [(400, True), (400, True), (230, False)]

    archived, after, more = [], 0, True
    while more:
        page = (await client.qry("thread.list", project_id="prj_big", status="archived", after=after,
                                 limit=400))["result"]
        archived += [row["thread_id"] for row in page["threads"]]
        after, more = page["next_after"], page["more"]
    assert archived == ["thd_n0500"]

    first = (await client.qry("thread.list", limit=2))["result"]  # every project of the tenant
    assert [row["thread_id"] for row in first["threads"]] == in_order[:2] and first["more"]
    too_many = await client.qry("thread.list", project_id="prj_big", limit=1001)
    assert not too_many["ok"] and too_many["error"]["code"] == "invalid_command"
