// Connecting: credentials found in the documented order, and each way of failing told apart, at once.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import {
  actorOf,
  ConnectionRefusedError,
  CredsFileMissingError,
  findCredentials,
  InvalidCommandError,
  Ledger,
  type LookupContext,
  NoCredentialsError,
  NotAuthorisedError,
  UnavailableError,
  UnreachableError,
} from "../src/index.js";
import { member, rig } from "./env.js";

/** A home with a config directory, a project tree with a data directory, and a file for each source. */
function places() {
  const root = mkdtempSync(join(tmpdir(), "creds-"));
  const file = (path: string) => {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, "creds");
    return path;
  };
  const home = join(root, "home");
  const project = join(root, "work", "project");
  const cwd = join(project, "src", "deep");
  mkdirSync(cwd, { recursive: true });
  return {
    root, home, project, cwd,
    explicit: file(join(root, "explicit.creds")),
    env: file(join(root, "env.creds")),
    dataDir: () => file(join(project, ".agentledger", "auth", "admin.creds")),
    config: () => file(join(home, ".config", "agentledger", "credentials.creds")),
  };
}

/** What the lookup chose, and why. */
function chosen(context: LookupContext, creds?: string) {
  const { path, source } = findCredentials(creds, context);
  return { path, source };
}

test("credentials: argument, then NATS_CREDS, then the data directory upwards, then the config directory", () => {
  const p = places();
  const dataDir = p.dataDir();
  const config = p.config();
  const env = { NATS_CREDS: p.env };
  assert.deepEqual(chosen({ env, cwd: p.cwd, home: p.home }, p.explicit), { path: p.explicit, source: "argument" });
  assert.deepEqual(chosen({ env, cwd: p.cwd, home: p.home }), { path: p.env, source: "NATS_CREDS" });
  assert.deepEqual(chosen({ env: {}, cwd: p.cwd, home: p.home }), { path: dataDir, source: "data directory" });
  assert.deepEqual(chosen({ env: {}, cwd: p.root, home: p.home }), { path: config, source: "config directory" });
  const xdg = join(p.root, "xdg");
  mkdirSync(join(xdg, "agentledger"), { recursive: true });
  writeFileSync(join(xdg, "agentledger", "credentials.creds"), "creds");
  assert.deepEqual(chosen({ env: { XDG_CONFIG_HOME: xdg }, cwd: p.root, home: p.home }),
                   { path: join(xdg, "agentledger", "credentials.creds"), source: "config directory" });
  // a relative name is taken from the working directory
  assert.deepEqual(chosen({ env, cwd: p.cwd }, "../../../../explicit.creds"), { path: p.explicit, source: "argument" });
});

test("credentials: a named file that is missing is an error; none anywhere says where it looked", () => {
  const p = places();
  assert.throws(() => findCredentials(join(p.root, "nope.creds"), { env: { NATS_CREDS: p.env }, cwd: p.cwd }),
                (e: unknown) => e instanceof CredsFileMissingError && e.details.source === "the creds argument" && !e.retryable);
  assert.throws(() => findCredentials(undefined, { env: { NATS_CREDS: join(p.root, "gone.creds") }, cwd: p.cwd }),
                (e: unknown) => e instanceof CredsFileMissingError && e.details.path.endsWith("gone.creds"));
  const none = findCredentials(undefined, { env: {}, cwd: p.cwd, home: p.home });
  assert.equal(none.path, null);
  assert.equal(none.looked.length, 4);
  assert.ok(none.looked.includes(join(p.home, ".config", "agentledger", "credentials.creds")));
});

test("no credentials anywhere, and a server that wants some: NoCredentialsError with where it looked", async (t) => {
  const p = places();
  const cwd = process.cwd();
  const saved = { NATS_CREDS: process.env.NATS_CREDS, XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME };
  delete process.env.NATS_CREDS;
  process.env.XDG_CONFIG_HOME = join(p.root, "empty");
  process.chdir(p.cwd);
  t.after(() => {
    process.chdir(cwd);
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  await assert.rejects(Ledger.connect({ natsUrl: rig.natsUrl }), (e: unknown) => {
    assert.ok(e instanceof NoCredentialsError, String(e));
    assert.equal(e.retryable, false);
    assert.ok(e.details.looked.some((place) => place.includes("NATS_CREDS")));
    assert.ok(e.message.includes(join(p.root, "empty", "agentledger", "credentials.creds")));
    return true;
  });
});

test("connect finds NATS_CREDS when no creds are given", async (t) => {
  const saved = process.env.NATS_CREDS;
  process.env.NATS_CREDS = rig.memberCreds;
  t.after(() => {
    if (saved === undefined) delete process.env.NATS_CREDS;
    else process.env.NATS_CREDS = saved;
  });
  const ledger = await Ledger.connect({ natsUrl: rig.natsUrl, prefix: rig.prefix, tenant: rig.tenant });
  try {
    assert.equal(ledger.creds.path, rig.memberCreds);
    assert.equal(ledger.creds.source, "NATS_CREDS");
    assert.equal((await ledger.thread.list({ limit: 1 })).threads.length <= 1, true);
  } finally {
    await ledger.close();
  }
});

test("connect finds the data directory's credentials from a subdirectory", async (t) => {
  const p = places();
  mkdirSync(join(p.project, ".agentledger", "auth"), { recursive: true });
  copyFileSync(rig.memberCreds, join(p.project, ".agentledger", "auth", "admin.creds"));
  const cwd = process.cwd();
  const saved = process.env.NATS_CREDS;
  delete process.env.NATS_CREDS;
  process.chdir(p.cwd);
  t.after(() => {
    process.chdir(cwd);
    if (saved !== undefined) process.env.NATS_CREDS = saved;
  });
  const ledger = await Ledger.connect({ natsUrl: rig.natsUrl, prefix: rig.prefix, tenant: rig.tenant });
  assert.equal(ledger.creds.source, "data directory");
  await ledger.close();
});

test("a creds file that does not exist fails before connecting", async () => {
  await assert.rejects(member({ creds: "/nonexistent/alice.creds" }), CredsFileMissingError);
});

test("credentials the server refuses: not authorised, not retryable", async () => {
  await assert.rejects(member({ creds: rig.foreignCreds }), (e: unknown) => {
    assert.ok(e instanceof NotAuthorisedError, String(e));
    assert.equal(e.retryable, false);
    assert.equal(e.details.creds, rig.foreignCreds);
    return true;
  });
});

test("nothing listening: refused at once, not after the connect timeout", async () => {
  const started = Date.now();
  const timeout = 600_000;
  const failed = member({ natsUrl: rig.refusedUrl, timeout });
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<"hung">((resolve) => { timer = setTimeout(() => resolve("hung"), 60_000); });
  const outcome = await Promise.race([failed.then(() => "connected", (e: unknown) => e), hung]);
  clearTimeout(timer);
  assert.ok(outcome instanceof ConnectionRefusedError, `${String(outcome)} after ${Date.now() - started} ms`);
  assert.equal(outcome.url, rig.refusedUrl);
  assert.equal(outcome.code, "unavailable"); // a kind of unavailable: the server may be starting
  assert.equal(outcome.retryable, true);
});

test("a tenant id or an actor that is malformed is refused before connecting, with a message for people", async () => {
  await assert.rejects(member({ tenant: "acme" }), (e: unknown) =>
    e instanceof InvalidCommandError && e.details.errors[0]?.path === "$.tenant"
    && e.message.includes("tenant id must start with tnt_ followed by 1-64 letters, digits, _ or -"));

  assert.deepEqual(actorOf("agt_planner"), { kind: "agent", id: "agt_planner" });
  assert.deepEqual(actorOf("sys_cron"), { kind: "system", id: "sys_cron" });
  await assert.rejects(member({ actor: "alice" }), (e: unknown) =>
    e instanceof InvalidCommandError && e.details.errors[0]?.message === 'actor id must start with usr_, agt_ or sys_ (got "alice")');
  const ledger = await member({ actor: { kind: "agent", id: "agt_self" } });
  try {
    const { project_id } = await ledger.project.create({ name: "mine" });
    const reply = await ledger.command("thread.create", { project_id });
    assert.deepEqual(reply.events[0]?.actor, { kind: "agent", id: "agt_self" });
    const other = await ledger.command("thread.create", { project_id, actor: { kind: "user", id: "usr_else" } });
    assert.deepEqual(other.events[0]?.actor, { kind: "user", id: "usr_else" }); // a call may name its own
  } finally {
    await ledger.close();
  }
});

test("a server that accepts and never answers: unreachable after the timeout", async (t) => {
  const sockets: Socket[] = [];
  const silent = createServer((socket) => sockets.push(socket)); // takes the connection, says nothing
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const address = silent.address();
  assert.ok(address !== null && typeof address === "object");
  const url = `nats://127.0.0.1:${address.port}`;
  await assert.rejects(member({ natsUrl: url, timeout: 1000 }), (e: unknown) =>
    e instanceof UnreachableError && e.url === url && e.retryable && e instanceof UnavailableError);
});
