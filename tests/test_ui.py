"""The web timeline in a real browser (headless Chromium) against a real engine and thread:
threads, the timeline, the session tree with its delegation edges, held sandboxes, forks, time
travel to an earlier position, a diff, and a live event arriving. Screenshots go to
tests/artifacts/ (not in git)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from agentledger.cli.query_client import QueryClient
from agentledger.cli.transport import Target
from agentledger.cli.ui.server import serve
from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.config import EngineConfig
from tests.conftest import AGENT, Client_, Tenants
from tests.sandbox_support import sandbox_engine, settled

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
TENANT = "tnt_acme"
KID = {"kind": "agent", "id": "agt_kid"}



@pytest.fixture
async def ui_engine(engine_config: EngineConfig, tmp_path: Path) -> AsyncIterator[Engine]:
    async with sandbox_engine(engine_config, tmp_path / "sandboxes") as eng:
        yield eng


async def auditor_creds(deployment: Deployment, tenants: Tenants, tenant: str, where: Path) -> str:
    """A tenant's read-only credentials, written as a standard .creds file (as `agentledger tenant creds` does)."""
    await tenants.add(tenant)
    path = where / f"{tenant}-auditor.creds"
    Deployment.write(deployment.tenant_creds(tenant, "usr_auditor", "auditor"), path)
    return str(path)


async def start_ui(config: EngineConfig, creds: str, tenant: str = TENANT) -> tuple[str, asyncio.Task[None], QueryClient]:
    client = QueryClient(Target(config.nats_url, config.prefix, tenant, 5.0, creds))
    await client.__aenter__()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(client, "127.0.0.1", 0, bound.set_result))
    return f"http://127.0.0.1:{await bound}/", task, client


async def stop_ui(task: asyncio.Task[None], client: QueryClient) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.__aexit__()


class Story:
    """Positions of the thread the test builds, to check the page against."""

    root_created = 0
    spawned = 0
    handed_off = 0
    sandbox_id = ""
    recipient = ""


async def build_thread(c: Client_) -> Story:
    s = Story()
    await c.ok("project.create", project_id="prj_p1", name="proj")
    await c.ok("thread.create", project_id="prj_p1", thread_id="thd_main", title="Release review")
    s.root_created = (await c.ok("session.create", thread_id="thd_main", session_id="ses_root", owner=AGENT))["position"]
    await c.ok("session.start", session_id="ses_root", correlation_id="corr-run-1")
    spawn = await c.ok("session.spawn", parent_session_id="ses_root", session_id="ses_child", agent=KID,
                       sandbox={"mode": "new", "shutdown": "keep"}, correlation_id="corr-run-1",
                       causation_id="req-42")
    s.spawned, s.sandbox_id = spawn["position"], spawn["result"]["sandbox_id"]
    await c.ok("session.create", thread_id="thd_main", session_id="ses_plan", owner={"kind": "agent", "id": "agt_planner"})
    plan = (await c.qry("session.get", session_id="ses_plan"))["result"]["session"]
    handoff = await c.ok("handoff.single", source_session_id="ses_plan", recipient={"kind": "agent", "id": "agt_reviewer"},
                         expected_owner_version=plan["owner_version"])
    s.handed_off, s.recipient = handoff["position"], handoff["result"]["session_id"]
    await settled(c, s.sandbox_id, "running")
    await c.ok("thread.create", project_id="prj_p1", thread_id="thd_fork", mode="fork", source_thread_id="thd_main",
               at_position=s.spawned, title="What if")
    await c.ok("session.create", thread_id="thd_fork", session_id="ses_alt", owner=AGENT)
    return s


async def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


async def test_timeline_in_a_browser(nc: Client, ui_engine: Engine, deployment: Deployment, tenants: Tenants,
                                     tmp_path: Path) -> None:
    """As an auditor of the tenant (read-only credentials); a member builds the thread. Chromium is
    Debian's package, installed by `make test` (Playwright's own browsers are never downloaded)."""
    from playwright.async_api import async_playwright, expect

    c = Client_(nc, ui_engine.config, tenants=tenants)
    story = await build_thread(c)
    url, server, qc = await start_ui(ui_engine.config, await auditor_creds(deployment, tenants, TENANT, tmp_path))
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            expect.set_options(timeout=15_000)
            await page.goto(url + "#thd_main")
            await expect(page.locator("body")).to_have_attribute("data-ready", "true")

            # the tenant's threads, the fork with its source and fork point
            threads = page.locator("#threads li.thread")
            await expect(threads).to_have_count(2)
            await expect(page.locator('#threads li[data-thread-id="thd_fork"] .fork')).to_have_text(
                f"fork of thd_main @ {story.spawned}")

            # the latest state: session tree with statuses and delegation edges, sandboxes held
            tree = page.locator("#tree")
            root = tree.locator('li[data-session-id="ses_root"]')
            await expect(root.locator(":scope > .status")).to_have_text("active")
            child = root.locator('li[data-session-id="ses_child"]')
            await expect(child.locator(":scope > .edge")).to_have_attribute("data-edge", "agent_spawn open")
            await expect(child.locator(":scope > .status")).to_have_text("active")
            recipient = tree.locator(f'li[data-session-id="ses_plan"] li[data-session-id="{story.recipient}"]')
            await expect(recipient.locator(":scope > .edge")).to_have_attribute("data-edge", "handoff open")
            await expect(tree.locator('li[data-session-id="ses_plan"] > .status')).to_have_text("idle")
            held = page.locator(f'#sandboxes li[data-sandbox-id="{story.sandbox_id}"]')
            await expect(held).to_contain_text("held by ses_child")
            await expect(held.locator(".now .status")).to_have_text("running")
            await expect(page.locator("#thread-title")).to_contain_text("Release review")

            # the timeline: each event with type, actor, command, correlation, causation, position
            spawn_row = page.locator(f'#timeline tr[data-position="{story.spawned}"]')
            await expect(spawn_row.locator("td.type")).to_have_text("session.spawned")
            await expect(spawn_row).to_contain_text("usr_tester")
            await expect(spawn_row.locator("td.principal")).to_have_text("usr_tester (member)")
            await expect(spawn_row).to_contain_text("session.spawn")
            await expect(spawn_row).to_contain_text("corr-run-1")
            rows = page.locator("#timeline tr.event")
            await expect(spawn_row.locator("td").nth(7)).to_have_text("req-42")
            await shot(page, "timeline-latest")

            # time travel: the thread exactly as it was when ses_root had just been created
            await page.fill("#position-input", str(story.root_created))
            await page.press("#position-input", "Enter")
            await expect(page.locator("#position-label")).to_contain_text(f"as of position {story.root_created}")
            await expect(tree.locator("li.node")).to_have_count(1)
            await expect(root.locator(":scope > .status")).to_have_text("idle")
            await expect(page.locator("#sandboxes li")).to_have_text("none at this position")
            await expect(page.locator(f'#timeline tr.selected[data-position="{story.root_created}"]')).to_have_count(1)
            await expect(spawn_row).to_have_class("event future")
            await shot(page, "timeline-earlier")

            # diff from there to the handoff
            await page.fill("#diff-from", str(story.root_created))
            await page.fill("#diff-to", str(story.handed_off))
            await page.click("#diff-btn")
            diff = page.locator("#diff-list")
            await expect(diff.locator('li.added[data-session-id="ses_child"]')).to_have_count(1)
            await expect(diff.locator(f'li.added[data-session-id="{story.recipient}"]')).to_have_count(1)
            await expect(diff.locator('li.changed[data-session-id="ses_root"][data-field="status"]')).to_contain_text(
                "idle → active")
            await expect(diff.locator(f'li.added[data-sandbox-id="{story.sandbox_id}"]')).to_have_count(1)

            # live: back to the latest; an event that lands appears without a reload
            await page.click("#latest-btn")
            await expect(child.locator(":scope > .status")).to_have_text("active")
            before = await rows.count()
            landed = (await c.ok("session.request_input", session_id="ses_child", prompt="ok to ship?"))["position"]
            await expect(page.locator(f'#timeline tr[data-position="{landed}"] td.type')).to_have_text(
                "session.input_requested")
            await expect(child.locator(":scope > .status")).to_have_text("awaiting_hitl")
            assert await rows.count() >= before
            await expect(page.locator("#live-status")).to_have_text("live")
            await page.fill("#diff-from", str(story.handed_off))
            await page.fill("#diff-to", str(landed))
            await page.click("#diff-btn")
            await expect(diff.locator('li.changed[data-session-id="ses_child"][data-field="status"]')).to_contain_text(
                "active → awaiting_hitl")
            await shot(page, "timeline-live")

            # the fork: its source and fork point, the source's events before its own
            await page.click('#threads li[data-thread-id="thd_fork"]')
            await expect(page.locator("#fork-info")).to_be_visible()
            await expect(page.locator("#fork-source")).to_have_text("thd_main")
            await expect(page.locator("#fork-position")).to_have_text(str(story.spawned))
            await expect(page.locator("#timeline tr.fork-point")).to_contain_text(f"thd_main at position {story.spawned}")
            await expect(page.locator("#timeline tr.lineage")).to_have_count(4)  # created, session created, started, spawned
            await expect(tree.locator("li.node")).to_have_count(1)
            await expect(tree.locator('li[data-session-id="ses_alt"]')).to_have_count(1)
            await shot(page, "timeline-fork")

            # before its own creation the fork did not exist; a source event opens the source there
            await page.fill("#position-input", str(story.root_created))
            await page.press("#position-input", "Enter")
            await expect(page.locator("#position-label")).to_contain_text("thd_fork did not exist yet")
            await expect(tree.locator("li.node")).to_have_count(0)
            await page.click(f'#timeline tr.lineage[data-position="{story.root_created}"]')
            await expect(page.locator("#thread-id")).to_have_text("thd_main")
            await expect(page.locator("#position-label")).to_contain_text(f"as of position {story.root_created}")
            await expect(tree.locator("li.node")).to_have_count(1)
            await expect(page.locator("#error")).to_be_hidden()
            await browser.close()
    finally:
        await stop_ui(server, qc)


async def test_an_auditor_sees_its_own_tenant_only(client: Client_, engine: Engine, deployment: Deployment,
                                                   tenants: Tenants, tmp_path: Path) -> None:
    """The timeline's API with one tenant's auditor credentials: that tenant's threads, nothing of another's."""
    import aiohttp

    await client.setup_thread()
    await client.as_(tenant="tnt_other").setup_thread(thread_id="thd_theirs")
    acme = await auditor_creds(deployment, tenants, TENANT, tmp_path)
    other = await auditor_creds(deployment, tenants, "tnt_other", tmp_path)
    for creds, tenant, mine in [(acme, TENANT, "thd_t1"), (other, "tnt_other", "thd_theirs")]:
        url, server, qc = await start_ui(engine.config, creds, tenant)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "api/threads") as r:
                    assert r.status == 200 and [t["thread_id"] for t in (await r.json())["threads"]] == [mine]
                theirs = "thd_theirs" if mine == "thd_t1" else "thd_t1"
                async with http.get(url + f"api/threads/{theirs}/state?at=1000") as r:
                    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        finally:
            await stop_ui(server, qc)

    # acme's auditor asking as tnt_other: the broker refuses the publish (at once, not after a timeout)
    url, server, qc = await start_ui(engine.config, acme, "tnt_other")
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "api/threads") as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    finally:
        await stop_ui(server, qc)


async def test_the_thread_list_comes_a_page_at_a_time(client: Client_, engine: Engine, deployment: Deployment,
                                                      tenants: Tenants, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The timeline asks for one page of threads at a time (`more threads` in the page asks for the next)."""
    import aiohttp

    from agentledger.cli.ui import server as ui_server

    monkeypatch.setattr(ui_server, "THREAD_PAGE", 2)
    await client.setup_thread()
    for thread_id in ("thd_t2", "thd_t3"):
        await client.ok("thread.create", project_id="prj_p1", thread_id=thread_id)
    url, server, qc = await start_ui(engine.config, await auditor_creds(deployment, tenants, TENANT, tmp_path))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "api/threads") as r:
                first = await r.json()
            async with http.get(url + f"api/threads?after={first['next_after']}") as r:
                second = await r.json()
    finally:
        await stop_ui(server, qc)
    assert [t["thread_id"] for t in first["threads"]] == ["thd_t1", "thd_t2"] and first["more"]
    assert [t["thread_id"] for t in second["threads"]] == ["thd_t3"] and not second["more"]
