"""The TypeScript client (clients/typescript): its generated code is what docs/schema.json gives,
it builds under `tsc --strict`, and its own tests (node's test runner, on the compiled output) pass
against a real engine on the real nats-server with authentication on, as the tenant's member and
auditor. The rig lets them stop and start the engine, hold a thread past the engine's
decide-within limit and set the tenant's command rate, so retries meet real `no responders`,
`unavailable` and `rate_limited` answers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from aiohttp import web
from nats.aio.msg import Msg

from agentledger.handlers.app import Engine
from agentledger.handlers.auth.keys import Deployment
from agentledger.handlers.auth.tenants import add_audit_stream, set_quota
from agentledger.handlers.config import EngineConfig, connect_options
from agentledger.handlers.nats_server import EmbeddedNats, free_port
from agentledger.schemas.tenants import TenantQuota
from tests.conftest import Tenants
from tests.fresh_support import sh
from tests.node_tools import installed

pytestmark = pytest.mark.integration  # node, tsc and `agentledger serve` run as processes of their own
ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "clients" / "typescript"
TENANT = "tnt_tsclient"
RUN_FOR = 900  # seconds: the whole node run, far beyond what it takes (about a minute)


def build() -> Path:
    """`npm ci` when needed, then `tsc --strict` over the sources and the tests; returns the bin directory."""
    bin_ = installed(PKG)
    r = subprocess.run([str(bin_ / "tsc"), "-p", str(PKG / "tsconfig.json"), "--strict"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return bin_


def test_the_generated_code_is_what_the_schema_gives() -> None:
    installed(PKG)
    r = subprocess.run(["node", "scripts/generate.mjs", "--check"], cwd=PKG, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def typescript_section(docs: str) -> str:
    return docs.split("\n## TypeScript\n", 1)[1].split("\n## ", 1)[0]


def typescript_example(docs: str) -> str:
    """The complete example of docs/clients.md's TypeScript section (its first `ts` block)."""
    return re.findall(r"^```ts\n(.*?)^```", typescript_section(docs), re.M | re.S)[0]


CAST = re.compile(r"\bas\s+(?!const\b)[A-Za-z_{(\[]|<[A-Z]\w*>\s*[\w(]|\w[!]\.|\w!\)|\w!;|\bany\b")


def user_code() -> dict[str, str]:
    """What a user writes: the package's tests and the docs' example, without comments and strings."""
    files = {str(p.relative_to(ROOT)): p.read_text() for p in sorted((PKG / "test").glob("*.ts"))}
    docs = (ROOT / "docs" / "clients.md").read_text()
    files["docs/clients.md"] = typescript_example(docs)
    return files


def test_user_code_needs_no_casts() -> None:
    for name, text in user_code().items():
        for number, line in enumerate(text.splitlines(), 1):
            code = re.sub(r"//.*$|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`", "", line)
            if code.lstrip().startswith(("import ", "export {", "*", "/*")):
                continue
            assert not CAST.search(code), f"{name}:{number}: {line.strip()}"


class Rig:
    """The engine the node tests run against, and the HTTP control they steer it with."""

    def __init__(self, config: EngineConfig, deployment: Deployment, url: str) -> None:
        self.config, self.deployment, self.url = config, deployment, url
        self.engine: Engine | None = None
        self.holds: list[asyncio.Task[None]] = []
        self.impostors: list[nats.aio.client.Client] = []

    async def start(self) -> None:
        if self.engine is None:
            self.engine = Engine(self.config)
            await self.engine.start()

    async def stop(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await engine.stop()

    async def hold(self, thread_id: str, seconds: float, decide_within: float) -> None:
        """Hold the thread's boundary for `seconds` with a shorter decide-within limit, as a slow log would."""
        assert self.engine is not None and self.engine.commands is not None
        commands = self.engine.commands
        boundary = self.config.subjects.thread_filter(TENANT, thread_id)
        held = asyncio.Event()

        async def holding() -> None:
            previous = commands.decide_within
            commands.decide_within = decide_within
            try:
                async with commands.boundary_lock(boundary):
                    held.set()
                    await asyncio.sleep(seconds)
            finally:
                commands.decide_within = previous

        self.holds.append(asyncio.create_task(holding()))
        await held.wait()

    async def quota(self, commands_per_second: float | None) -> None:
        """Set the tenant's command rate as `tenant set` does, and return once the engine applies it."""
        assert self.engine is not None and self.engine.quotas is not None
        quota = TenantQuota(commands_per_second=commands_per_second)
        await set_quota(self.url, self.deployment, TENANT, quota)
        self.engine.quotas.refresh = 0.0  # re-read at each request, in the background
        for _ in range(200):
            if await self.engine.quotas.quota(TENANT) == quota:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the engine never read the tenant's new quota")

    async def impostor(self, prefix: str, replies: list[str]) -> None:
        """Something that is not an engine answering the tenant's requests under `prefix`, with `replies` in turn."""
        nc = await nats.connect(servers=self.config.servers, **connect_options(self.config))
        self.impostors.append(nc)
        answers = iter(replies)

        async def answer(msg: Msg) -> None:
            await msg.respond(next(answers, replies[-1]).encode())

        await nc.subscribe(f"{prefix}.qry.{TENANT}.>", cb=answer)
        await nc.subscribe(f"{prefix}.cmd.{TENANT}.>", cb=answer)
        await nc.flush()

    def app(self) -> web.Application:
        async def act(request: web.Request) -> web.Response:
            action = request.match_info["action"]
            body = json.loads(await request.text() or "{}")
            if action == "start":
                await self.start()
            elif action == "stop":
                await self.stop()
            elif action == "hold":
                await self.hold(body["thread_id"], float(body["seconds"]), float(body["decide_within"]))
            elif action == "quota":
                await self.quota(body["commands_per_second"])
            elif action == "impostor":
                await self.impostor(body["prefix"], list(body["replies"]))
            else:
                raise web.HTTPNotFound()
            return web.Response(text="done")

        app = web.Application()
        app.router.add_post("/{action}", act)
        return app


@pytest.fixture
async def rig(engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
              tenants: Tenants) -> AsyncIterator[tuple[Rig, str]]:
    await tenants.add(TENANT)
    rig = Rig(engine_config, deployment, nats_server.url)
    await rig.start()
    runner = web.AppRunner(rig.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield rig, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await asyncio.gather(*rig.holds, return_exceptions=True)
        for nc in rig.impostors:
            await nc.close()
        await rig.stop()


async def test_the_client_passes_its_own_tests_against_a_real_engine(
        rig: tuple[Rig, str], engine_config: EngineConfig, deployment: Deployment, nats_server: EmbeddedNats,
        tenants: Tenants, tmp_path: Path) -> None:
    await asyncio.to_thread(build)  # off the event loop, where the engine under test keeps answering
    _, control = rig
    await tenants.add(TENANT)
    creds = {}
    for role in ("member", "auditor"):
        creds[role] = tmp_path / f"{role}.creds"
        Deployment.write(deployment.tenant_creds(TENANT, f"usr_{role}", role), creds[role])
    await add_audit_stream(nats_server.url, deployment, TENANT, engine_config.prefix, engine_config.stream)
    stranger = Deployment.open(tmp_path / "elsewhere", prefix="*", stream="*")  # keys this server does not trust
    stranger.tenant_account(TENANT)
    creds["foreign"] = tmp_path / "foreign.creds"
    Deployment.write(stranger.tenant_creds(TENANT, "usr_stranger"), creds["foreign"])

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLEDGER_", "NATS_"))}
    env |= {"AGENTLEDGER_TEST_NATS_URL": nats_server.url, "AGENTLEDGER_TEST_PREFIX": engine_config.prefix,
            "AGENTLEDGER_TEST_STREAM": engine_config.stream, "AGENTLEDGER_TEST_TENANT": TENANT,
            "AGENTLEDGER_TEST_MEMBER_CREDS": str(creds["member"]), "AGENTLEDGER_TEST_AUDITOR_CREDS": str(creds["auditor"]),
            "AGENTLEDGER_TEST_FOREIGN_CREDS": str(creds["foreign"]),
            "AGENTLEDGER_TEST_REFUSED_URL": f"nats://127.0.0.1:{free_port()}", "AGENTLEDGER_TEST_CONTROL": control}
    files = sorted(str(p.relative_to(PKG)) for p in (PKG / "build" / "test").glob("*.test.js"))
    assert len(files) >= 6, files
    proc = await asyncio.create_subprocess_exec("node", "--test", "--test-concurrency=1", *files, cwd=PKG, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), RUN_FOR)
    report = out.decode()
    (tmp_path / "node-test.tap").write_text(report)
    counts = dict(re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", report, re.M))
    assert proc.returncode == 0 and counts.get("fail") == "0" and counts.get("cancelled") == "0", report[-20000:]
    assert int(counts["pass"]) >= 30, counts


async def test_the_docs_example_runs_as_written(fresh: tuple[Path, dict[str, str]]) -> None:
    """docs/clients.md's TypeScript example, saved and run as the section says, in a directory under
    the one `agentledger serve` runs in (as `make run` does), on a project with the package installed."""
    build()
    cwd, env = fresh
    section = typescript_section((ROOT / "docs" / "clients.md").read_text())
    name = re.search(r"save it as `(\w+\.ts)`", section)
    assert name, "the section says where to save the example"
    claimed = re.search(r"takes (\d+) lines", section)
    example = typescript_example((ROOT / "docs" / "clients.md").read_text())
    assert claimed and int(claimed.group(1)) == len([line for line in example.splitlines() if line.strip()])
    run = re.findall(r"^```sh\n(.*?)^```", section[section.index("```ts"):], re.M | re.S)[0]
    demo = cwd / "my-agent"
    modules = demo / "node_modules"
    (modules / "@types").mkdir(parents=True)
    (demo / "package.json").write_text('{"type": "module"}\n')  # what `npm init -y && npm pkg set type=module` leaves
    # what `npm install <the package> typescript @types/node` leaves, from the package's own install
    (modules / "@agentledger").mkdir()
    (modules / "@agentledger" / "client").symlink_to(PKG)
    (modules / "typescript").symlink_to(PKG / "node_modules" / "typescript")
    (modules / "@types" / "node").symlink_to(PKG / "node_modules" / "@types" / "node")
    (modules / ".bin").mkdir()
    (modules / ".bin" / "tsc").symlink_to(PKG / "node_modules" / "typescript" / "bin" / "tsc")
    (demo / name.group(1)).write_text(example)
    code, out, err = await sh(demo, env, run)
    assert code == 0, (out, err)
    lines = out.splitlines()
    assert re.fullmatch(r"ses_\w+ spawned at depth 1", lines[0]), out
    assert re.fullmatch(r"not archived: ses_\w+ \(active\), ses_\w+ \(active\) still running", lines[1]), out
    assert [line.split()[1] for line in lines[2:]] == ["thread.created", "session.created", "session.started",
                                                      "session.spawned"], out
