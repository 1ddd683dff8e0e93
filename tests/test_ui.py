"""The web timeline in a real browser (headless Chromium) against a real engine and a recorded
run with sandboxes: threads as links, the timeline with the sandboxes' requests and outcomes,
dates and prompts, the session tree with its delegation edges, the sandboxes as of any position,
forks, time travel, a diff that follows the position, links to a thread at a position, filters,
search, export, and a live event arriving. Screenshots go to tests/artifacts/ (not in git)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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
TITLE = 'Release review <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
PROMPT = "ok to <b>ship</b> the build?"
SANDBOX_TYPES = ["sandbox.create_requested", "sandbox.created", "sandbox.pause_requested", "sandbox.paused"]


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
    """Positions of the run the test records, to check the page against."""

    root_created = 0
    spawned = 0
    handed_off = 0
    sandbox_id = ""
    recipient = ""
    worker_spawned = 0  # ses_worker, with a sandbox paused when it completes
    worker_sandbox = ""
    worker_sandbox_events: list[int] = []  # create requested, created, pause requested, paused
    asked = 0
    answered = 0
    worker_completed = 0


async def build_thread(c: Client_) -> Story:
    s = Story()
    await c.ok("project.create", project_id="prj_p1", name="proj")
    await c.ok("thread.create", project_id="prj_p1", thread_id="thd_main", title=TITLE)
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
    worker = await c.ok("session.spawn", parent_session_id="ses_root", session_id="ses_worker",
                        agent={"kind": "agent", "id": "agt_builder"}, sandbox={"mode": "new", "shutdown": "pause"},
                        correlation_id="corr-build")
    s.worker_spawned, s.worker_sandbox = worker["position"], worker["result"]["sandbox_id"]
    await settled(c, s.worker_sandbox, "running")
    s.asked = (await c.ok("session.request_input", session_id="ses_worker", prompt=PROMPT))["position"]
    s.answered = (await c.ok("session.provide_input", session_id="ses_worker"))["position"]
    s.worker_completed = (await c.ok("session.complete", session_id="ses_worker",
                                     summary={"outcome": "succeeded", "text": "built"}))["position"]
    await settled(c, s.worker_sandbox, "paused")
    events = (await c.qry("events.read", sandbox_id=s.worker_sandbox))["result"]["events"]
    assert [e["type"] for e in events] == SANDBOX_TYPES
    s.worker_sandbox_events = [e["position"] for e in events]
    await c.ok("thread.create", project_id="prj_p1", thread_id="thd_fork", mode="fork", source_thread_id="thd_main",
               at_position=s.spawned, title="What if")
    await c.ok("session.create", thread_id="thd_fork", session_id="ses_alt", owner=AGENT)
    return s


async def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


@asynccontextmanager
async def browser_page(url: str) -> AsyncIterator[Any]:
    """A page of Debian's Chromium (Playwright's own browsers are never downloaded), at `url`, ready."""
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1400, "height": 1000},
                                            permissions=["clipboard-read", "clipboard-write"])
        page = await context.new_page()
        expect.set_options(timeout=15_000)
        await page.goto(url)
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        try:
            yield page
        finally:
            await browser.close()


async def go_to(page: Any, position: int) -> None:
    """Type a position into the number field, as a user does."""
    from playwright.async_api import expect

    await page.fill("#position-input", str(position))
    await page.press("#position-input", "Enter")
    await expect(page.locator("#position-label")).to_contain_text(f"as of position {position}")


async def slide_to(page: Any, position: int) -> None:
    """Move the slider, as dragging it does (input events)."""
    await page.eval_on_selector("#position", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
                                str(position))


async def shown(page: Any) -> list[int]:
    return [int(p) for p in await page.locator("#timeline tr.event").evaluate_all("rows => rows.map(r => r.dataset.position)")]


async def test_timeline_in_a_browser(nc: Client, ui_engine: Engine, deployment: Deployment, tenants: Tenants,
                                     tmp_path: Path) -> None:
    """As an auditor of the tenant (read-only credentials); a member records the run."""
    from playwright.async_api import expect

    c = Client_(nc, ui_engine.config, tenants=tenants)
    story = await build_thread(c)
    url, server, qc = await start_ui(ui_engine.config, await auditor_creds(deployment, tenants, TENANT, tmp_path))
    try:
        async with browser_page(url + "#thd_main") as page:
            # the tenant's threads as links, the fork with its source and fork point
            threads = page.locator("#threads li.thread")
            await expect(threads).to_have_count(2)
            await expect(page.locator('#threads li[data-thread-id="thd_fork"] a.thread-link')).to_have_attribute(
                "href", "#thd_fork")
            await expect(page.locator('#threads li[data-thread-id="thd_fork"] .fork')).to_have_text(
                f"fork of thd_main @ {story.spawned}")

            # the latest state: session tree with statuses and delegation edges, the sandboxes then
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
            await expect(held.locator(".status")).to_have_text("running")
            worker_box = page.locator(f'#sandboxes li[data-sandbox-id="{story.worker_sandbox}"]')
            await expect(worker_box.locator(".status")).to_have_text("paused")
            await expect(worker_box).to_contain_text("bound by ses_worker (new, pause)")
            await expect(page.locator("#thread-title")).to_contain_text("Release review")

            # the timeline: each event with type, actor, command, correlation, causation, position
            spawn_row = page.locator(f'#timeline tr[data-position="{story.spawned}"]')
            await expect(spawn_row.locator("td.type")).to_have_text("session.spawned")
            await expect(spawn_row).to_contain_text("usr_tester")
            await expect(spawn_row.locator(".principal")).to_have_text("usr_tester (member)")
            await expect(spawn_row).to_contain_text("session.spawn")
            await expect(spawn_row).to_contain_text("corr-run-1")
            rows = page.locator("#timeline tr.event")
            await expect(spawn_row.locator(".causation")).to_have_text("req-42")
            await shot(page, "timeline-latest")

            # time travel: the thread exactly as it was when ses_root had just been created
            await go_to(page, story.root_created)
            await expect(tree.locator("li.node")).to_have_count(1)
            await expect(root.locator(":scope > .status")).to_have_text("idle")
            await expect(page.locator("#sandboxes li")).to_have_text("none at this position")
            await expect(page.locator(f'#timeline tr.selected[data-position="{story.root_created}"]')).to_have_count(1)
            await expect(spawn_row).to_have_class(re.compile(r"\bfuture\b"))
            await expect(page).to_have_url(url + f"#thd_main@{story.root_created}")
            await shot(page, "timeline-earlier")

            # a diff between two chosen positions
            await page.fill("#diff-from", str(story.root_created))
            await page.fill("#diff-to", str(story.handed_off))
            await page.click("#diff-btn")
            diff = page.locator("#diff-list")
            await expect(diff.locator('li.added[data-session-id="ses_child"]')).to_have_count(1)
            await expect(diff.locator(f'li.added[data-session-id="{story.recipient}"]')).to_have_count(1)
            await expect(diff.locator('li.changed[data-session-id="ses_root"][data-field="status"]')).to_contain_text(
                "idle → active")
            await expect(diff.locator(f'li.added[data-sandbox-id="{story.sandbox_id}"]')).to_have_count(1)

            # the diff follows the slider: its "to" is the position shown, and it is computed again
            await slide_to(page, story.spawned)
            await expect(page.locator("#diff-to")).to_have_value(str(story.spawned))
            await expect(page.locator("#diff-summary")).to_contain_text(f"to {story.spawned}:")
            await expect(diff.locator('li.added[data-session-id="ses_child"]')).to_have_count(1)
            await expect(diff.locator(f'li.added[data-session-id="{story.recipient}"]')).to_have_count(0)
            await slide_to(page, story.worker_spawned)
            await expect(page.locator("#diff-to")).to_have_value(str(story.worker_spawned))
            await expect(diff.locator('li.added[data-session-id="ses_worker"]')).to_have_count(1)
            await expect(diff.locator(f'li.added[data-session-id="{story.recipient}"]')).to_have_count(1)
            await expect(page.locator("#position-label")).to_contain_text(f"as of position {story.worker_spawned}")

            # a link to the thread at this position: copied, and opened elsewhere it shows the same
            await page.click("#copy-link")
            link = url + f"#thd_main@{story.worker_spawned}"
            await expect(page.locator("#share-link")).to_have_value(link)
            await expect(page.locator("#copy-status")).to_have_text("copied")
            assert await page.evaluate("navigator.clipboard.readText()") == link
            other = await page.context.new_page()
            await other.goto(link)
            await expect(other.locator("#thread-id")).to_have_text("thd_main")
            await expect(other.locator("#position-input")).to_have_value(str(story.worker_spawned))
            await expect(other.locator("#position-label")).to_contain_text(f"as of position {story.worker_spawned}")
            await expect(other.locator('#tree li[data-session-id="ses_worker"] > .status')).to_have_text("active")
            await other.close()

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
            await page.click("#diff-btn")
            await expect(diff.locator('li.changed[data-session-id="ses_child"][data-field="status"]')).to_contain_text(
                "active → awaiting_hitl")
            await shot(page, "timeline-live")

            # a thread's link opens it: the fork, its source and fork point, the source's events before its own
            await page.click('#threads li[data-thread-id="thd_fork"] a.thread-link')
            await expect(page.locator("#thread-id")).to_have_text("thd_fork")
            await expect(page.locator("#fork-info")).to_be_visible()
            await expect(page.locator("#fork-source")).to_have_text("thd_main")
            await expect(page.locator("#fork-source")).to_have_attribute("href", f"#thd_main@{story.spawned}")
            await expect(page.locator("#fork-position")).to_have_text(str(story.spawned))
            await expect(page.locator("#timeline tr.fork-point")).to_contain_text(f"thd_main at position {story.spawned}")
            await expect(page.locator("#timeline tr.lineage")).to_have_count(4)  # created, session created, started, spawned
            await expect(tree.locator("li.node")).to_have_count(1)
            await expect(tree.locator('li[data-session-id="ses_alt"]')).to_have_count(1)
            await shot(page, "timeline-fork")

            # before its own creation the fork did not exist; a source event opens the source there
            await go_to(page, story.root_created)
            await expect(page.locator("#position-label")).to_contain_text("thd_fork did not exist yet")
            await expect(tree.locator("li.node")).to_have_count(0)
            await page.click(f'#timeline tr.lineage[data-position="{story.root_created}"]')
            await expect(page.locator("#thread-id")).to_have_text("thd_main")
            await expect(page.locator("#position-label")).to_contain_text(f"as of position {story.root_created}")
            await expect(tree.locator("li.node")).to_have_count(1)
            await page.go_back()  # links are history entries: back is the fork again
            await expect(page.locator("#thread-id")).to_have_text("thd_fork")
            await expect(page.locator("#error")).to_be_hidden()

            # a link to a thread that is not there says so, and shows the first thread instead
            stray = await page.context.new_page()
            await stray.goto(url + "#thd_nothere@3")
            await expect(stray.locator("body")).to_have_attribute("data-ready", "true")
            await expect(stray.locator("#notice")).to_contain_text("thd_nothere: not_found")
            await expect(stray.locator("#thread-id")).to_have_text("thd_main")
    finally:
        await stop_ui(server, qc)


async def test_a_recorded_run_with_its_sandboxes(nc: Client, ui_engine: Engine, deployment: Deployment,
                                                 tenants: Tenants, tmp_path: Path) -> None:
    """What a person debugging the run looks for: the sandboxes' requests and outcomes among the
    thread's events and as they were at any position, dates, the prompt, filters and search that
    narrow the list to what matters, and an export of what is shown; text from the log is only text."""
    from playwright.async_api import expect

    c = Client_(nc, ui_engine.config, tenants=tenants)
    story = await build_thread(c)
    history = (await c.qry("events.read", thread_id="thd_main", sandboxes=True, limit=1000))["result"]["events"]
    by_position = {e["position"]: e for e in history}
    url, server, qc = await start_ui(ui_engine.config, await auditor_creds(deployment, tenants, TENANT, tmp_path))
    try:
        async with browser_page(url + "#thd_main") as page:
            rows = page.locator("#timeline tr.event")
            await expect(rows).to_have_count(len(history))
            assert await shown(page) == sorted(by_position, reverse=True)  # newest first, sandboxes' events among them

            # the sandbox's requests and outcomes, each a row of its own with its fields
            for position, kind in zip(story.worker_sandbox_events, SANDBOX_TYPES, strict=True):
                row = page.locator(f'#timeline tr[data-position="{position}"]')
                await expect(row.locator("td.type")).to_have_text(kind)
                await expect(row.locator("td.type")).to_have_attribute("data-kind", "sandbox")
                await expect(row.locator("td.about")).to_contain_text(f"sandbox={story.worker_sandbox}")
            requested = page.locator(f'#timeline tr[data-position="{story.worker_sandbox_events[0]}"]')
            await expect(requested.locator("td.about")).to_contain_text("owner_session=ses_worker")
            await expect(requested.locator(".actor")).to_have_text("sys_process_manager")
            paused = page.locator(f'#timeline tr[data-position="{story.worker_sandbox_events[2]}"] td.about')
            await expect(paused).to_contain_text("reason: pause (ses_worker)")

            # dates: every time is a full UTC date and time
            for position in (story.spawned, story.worker_sandbox_events[1]):
                at = by_position[position]["at"]
                await expect(page.locator(f'#timeline tr[data-position="{position}"] td.time')).to_have_text(
                    at[:23].replace("T", " "))
            times = await page.locator("#timeline td.time").all_inner_texts()
            assert times and all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}", t) for t in times), times

            # the prompt a session asked, and which one an input answered
            await expect(page.locator(f'#timeline tr[data-position="{story.asked}"] .prompt')).to_have_text(
                f"prompt “{PROMPT}”")
            await expect(page.locator(f'#timeline tr[data-position="{story.answered}"] .prompt')).to_contain_text(
                f"answers “{PROMPT}” ({story.asked})")

            # text from the log is text: a title and a prompt holding markup run nothing and show as written
            await expect(page.locator("#thread-title")).to_have_text(f"“{TITLE}”")
            await expect(page.locator('#threads li[data-thread-id="thd_main"] .meta')).to_contain_text(TITLE)
            thread_created = history[0]["position"]
            created = page.locator(f'#timeline tr[data-position="{thread_created}"] td.about')
            await expect(created).to_contain_text(f"title={TITLE}")
            assert await page.evaluate("window.__pwned") is None
            assert await page.locator("#timeline b, #timeline img, #threads img, header img").count() == 0
            await shot(page, "timeline-sandboxes")

            # the sandboxes as they were: before the request, requested, created, then paused
            worker_box = page.locator(f'#sandboxes li[data-sandbox-id="{story.worker_sandbox}"]')
            expected = [(story.worker_spawned, "not requested yet"), (story.worker_sandbox_events[0], "creating"),
                        (story.worker_sandbox_events[1], "running"), (story.asked, "running"),
                        (story.worker_sandbox_events[2], "running"), (story.worker_sandbox_events[3], "paused")]
            for position, then in expected:
                await go_to(page, position)
                await expect(worker_box.locator(".status, .status-none")).to_have_text(then)
            await go_to(page, story.worker_sandbox_events[0])
            await expect(worker_box).to_contain_text("pending: create")
            await go_to(page, story.worker_sandbox_events[2])
            await expect(worker_box).to_contain_text("→ paused requested")
            await expect(worker_box).to_contain_text("pending: pause")
            await shot(page, "timeline-sandbox-earlier")

            # each filter and the search narrow the list to exactly the events they name
            await page.click("#latest-btn")
            worker_events = {story.worker_spawned, story.asked, story.answered, story.worker_completed,
                             *story.worker_sandbox_events}
            cases: list[tuple[str, str, set[int]]] = [
                ("#filter-session", "ses_worker", worker_events),
                ("#filter-type", "sandbox", {p for p, e in by_position.items() if e["type"].startswith("sandbox.")}),
                ("#filter-type", "session.spawned", {story.spawned, story.worker_spawned}),
                ("#filter-actor", "sys_process_manager", {p for p, e in by_position.items() if e["type"].endswith("_requested")
                                                          and e["type"].startswith("sandbox.")}),
                ("#filter-correlation", "corr-build", {p for p, e in by_position.items() if e["correlation_id"] == "corr-build"}),
                ("#filter-q", "To <B>SHIP", {story.asked}),
            ]
            for selector, value, positions in cases:
                assert 0 < len(positions) < len(history), (selector, value)
                await page.fill(selector, value)
                await expect(rows).to_have_count(len(positions))
                assert set(await shown(page)) == positions, (selector, value)
                await expect(page.locator("#page-info")).to_contain_text(f"{len(positions)} matching event(s)")
                await page.click("#filter-clear")
                await expect(rows).to_have_count(len(history))
            assert len(by_position) > len({p for p, e in by_position.items() if e["correlation_id"] == "corr-build"}) >= 2

            # filters together: the worker's sandbox outcomes only
            await page.fill("#filter-session", "ses_worker")
            await page.fill("#filter-type", "sandbox")
            await page.fill("#filter-actor", "sys_sandbox_effects")
            outcomes = {story.worker_sandbox_events[1], story.worker_sandbox_events[3]}
            await expect(rows).to_have_count(2)
            assert set(await shown(page)) == outcomes
            await shot(page, "timeline-filtered")

            # export: what is shown, as JSON lines, each the stored event the engine returns
            async with page.expect_download() as info:
                await page.click("#export")
            download = await info.value
            lines = Path(await download.path()).read_text().splitlines()
            exported = [json.loads(line) for line in lines]
            assert [e["position"] for e in exported] == sorted(outcomes)
            assert exported == [by_position[p] for p in sorted(outcomes)]
            assert download.suggested_filename.endswith("-filtered.jsonl")
            await page.click("#filter-clear")
            await expect(rows).to_have_count(len(history))
            async with page.expect_download() as info:
                await page.click("#export")
            everything = [json.loads(line) for line in Path(await (await info.value).path()).read_text().splitlines()]
            assert everything == [by_position[p] for p in sorted(by_position)]
            await expect(page.locator("#error")).to_be_hidden()
    finally:
        await stop_ui(server, qc)


async def test_filtered_pages_scan_the_history_and_go_on_where_they_stopped(client: Client_, engine: Engine,
                                                                             deployment: Deployment, tenants: Tenants,
                                                                             tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A filtered page scans a few events per read and stops after a bounded number; paging on from
    where each page stopped, forwards or backwards, finds every match once and nothing else."""
    import aiohttp

    from agentledger.cli.ui import pages

    monkeypatch.setattr(pages, "SCAN_READ", 3)
    monkeypatch.setattr(pages, "SCAN_LIMIT", 7)
    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    await client.ok("session.start", session_id="ses_a")
    needles = []
    for i in range(12):
        prompt = f"question {i}" + (" NEEDLE" if i % 4 == 0 else "")
        asked = await client.ok("session.request_input", session_id="ses_a", prompt=prompt)
        if i % 4 == 0:
            needles.append(asked["position"])
        await client.ok("session.provide_input", session_id="ses_a")
    url, server, qc = await start_ui(engine.config, await auditor_creds(deployment, tenants, TENANT, tmp_path))
    try:
        async with aiohttp.ClientSession() as http:
            async def page(**params: Any) -> dict[str, Any]:
                async with http.get(url + "api/threads/thd_t1/events", params={"q": "needle", "limit": 2, **params}) as r:
                    assert r.status == 200
                    return await r.json()  # type: ignore[no-any-return]

            found, after, pages_read, short = [], 0, 0, 0
            while True:
                body = await page(after=after)
                assert body["examined"] <= 7 + 3 and body["scanned_from"] == after + 1
                found += [e["position"] for e in body["events"]]
                pages_read += 1
                short += len(body["events"]) < 2 and not body["end"]
                if body["end"]:
                    break
                after = body["scanned_to"]
            assert found == needles and short > 0 and pages_read > 2

            found, before = [], 10_000
            while True:
                body = await page(before=before)
                assert body["scanned_to"] == before - 1
                found = [e["position"] for e in body["events"]] + found
                if body["start"]:
                    break
                before = body["scanned_from"]
            assert found == needles
    finally:
        await stop_ui(server, qc)


async def test_a_page_is_whole_past_the_reply_byte_limit(client: Client_, engine: Engine, deployment: Deployment,
                                                          tenants: Tenants, tmp_path: Path) -> None:
    """Long prompts take a page of `events.read` past its byte limit: the timeline's page still
    holds the last `limit` events before a position, none left out in the middle."""
    import aiohttp

    await client.setup_thread()
    await client.ok("session.create", thread_id="thd_t1", session_id="ses_a", owner=AGENT)
    await client.ok("session.start", session_id="ses_a")
    for i in range(140):  # 140 prompts of 4 KB: over the 512 KiB a reply may hold
        await client.ok("session.request_input", session_id="ses_a", prompt=f"{i} " + "x" * 3990)
        await client.ok("session.provide_input", session_id="ses_a")
    everything = []
    after = 0
    while page := (await client.qry("events.read", thread_id="thd_t1", after=after, limit=1000))["result"]:
        everything += [e["position"] for e in page["events"]]
        if not page["events"]:
            break
        after = page["next_after"]
    capped = await client.qry("events.read", thread_id="thd_t1", before=everything[-1] + 1, limit=300)
    assert capped["result"]["more"] and len(capped["result"]["events"]) < len(everything)  # one query stops short
    url, server, qc = await start_ui(engine.config, await auditor_creds(deployment, tenants, TENANT, tmp_path))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "api/threads/thd_t1/events", params={"before": everything[-1], "limit": 300}) as r:
                body = await r.json()
            assert [e["position"] for e in body["events"]] == everything[:-1]
            async with http.get(url + "api/threads/thd_t1/events", params={"after": everything[0], "limit": 300}) as r:
                body = await r.json()
            assert [e["position"] for e in body["events"]] == everything[1:]
    finally:
        await stop_ui(server, qc)


async def test_requests_for_one_position_at_once_share_one_fold(client: Client_, engine: Engine,
                                                                 engine_config: EngineConfig) -> None:
    """The page asks for a position's state and its sandboxes at once (both need the replay): one
    pass over the history serves every request for that position that arrives meanwhile."""
    from agentledger.cli.ui.replays import Replays
    from agentledger.schemas.queries import EventsRead

    await client.setup_thread()
    positions = [(await client.ok("session.create", thread_id="thd_t1", session_id=f"ses_{i}", owner=AGENT))["position"]
                 for i in range(12)]
    target = Target(engine_config.nats_url, engine_config.prefix, TENANT, 5.0, str(engine_config.creds))
    async with QueryClient(target) as qc:
        reads = 0
        ask = qc.ask

        async def counted(query: Any, result: Any) -> Any:
            nonlocal reads
            reads += isinstance(query, EventsRead)
            return await ask(query, result)

        qc.ask = counted  # type: ignore[method-assign]
        await Replays(qc).at("thd_t1", positions[0])
        one = reads
        for at in positions[1:-1]:
            kept, reads = Replays(qc), 0
            answers = await asyncio.gather(*(kept.at("thd_t1", at) for _ in range(6)),
                                           *(kept.sandboxes("thd_t1", at) for _ in range(6)))
            assert reads == one, (at, reads, one)
            assert {len(view.sessions) for view in answers[:6]} == {positions.index(at) + 1}
            assert all(s.sandboxes == [] for s in answers[6:])


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


async def _status(http: object, url: str, **headers: str) -> int:
    async with http.get(url, headers=headers) as r:  # type: ignore[attr-defined]
        return int(r.status)


async def test_other_hosts_and_origins_are_refused(client: Client_, engine: Engine, deployment: Deployment,
                                                   tenants: Tenants, tmp_path: Path) -> None:
    """DNS rebinding: a web page whose own name resolves to 127.0.0.1 reads the port as same-origin,
    with its name in `Host`; another page's cross-origin reads carry its `Origin`. Both get 403."""
    import aiohttp

    await client.setup_thread()
    url, server, qc = await start_ui(engine.config, await auditor_creds(deployment, tenants, TENANT, tmp_path))
    port = url.rsplit(":", 1)[1].strip("/")
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("", "api/threads", "api/threads/thd_t1", "api/threads/thd_t1/live", "static/app.js"):
                assert await _status(http, url + path, Host=f"evil.example:{port}") == 403, path
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}", "127.0.0.2"):
                assert await _status(http, url + "api/threads", Host=host) == 200, host
            for host in ("evil.example", f"127.0.0.1.evil.example:{port}", f"localhost.evil.example:{port}",
                         f"evil@127.0.0.1:{port}", f"127.0.0.1:{port}:1", "0.0.0.0", "[::]"):
                assert await _status(http, url + "api/threads", Host=host) == 403, host
            assert await _status(http, url + "api/threads", Origin=f"http://127.0.0.1:{port}") == 200
            for origin in ("http://evil.example", f"http://localhost:{int(port) + 1}", f"https://127.0.0.1:{port}",
                           "null"):
                assert await _status(http, url + "api/threads", Origin=origin) == 403, origin
            async with http.get(url + "api/threads", headers={"Host": "evil.example"}) as r:
                assert "--allow-host evil.example" in await r.text() and "thd_t1" not in await r.text()
    finally:
        await stop_ui(server, qc)


async def test_allow_host_lets_the_page_be_reached_by_another_name(client: Client_, engine: Engine,
                                                                   deployment: Deployment, tenants: Tenants,
                                                                   tmp_path: Path) -> None:
    """`agentledger ui --allow-host NAME`, the command itself: that name is answered, others still are not."""
    import sys

    import aiohttp

    await client.setup_thread()
    creds = await auditor_creds(deployment, tenants, TENANT, tmp_path)
    agentledger = str(Path(sys.executable).parent / "agentledger")
    proc = await asyncio.create_subprocess_exec(
        agentledger, "ui", "--port", "0", "--allow-host", "ledger.internal", "--tenant", TENANT, "--creds", creds,
        "--nats-url", engine.config.nats_url, "--prefix", engine.config.prefix, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        port = line.rsplit(":", 1)[1].split("/")[0]
        url = f"http://127.0.0.1:{port}/api/threads"
        async with aiohttp.ClientSession() as http:
            assert await _status(http, url, Host=f"ledger.internal:{port}") == 200
            assert await _status(http, url, Host=f"ledger.internal:{port}", Origin=f"http://ledger.internal:{port}") == 200
            assert await _status(http, url, Host=f"other.internal:{port}") == 403
            assert await _status(http, url, Host=f"ledger.internal:{port}", Origin="http://other.internal") == 403
    finally:
        proc.terminate()
        await proc.wait()
