// Connecting: credentials found in the documented order, and each way of failing told apart, at once.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import {
  ConnectionRefusedError,
  CredsFileMissingError,
  findCredentials,
  Ledger,
  NoCredentialsError,
  NotAuthorisedError,
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

test("credentials: argument, then NATS_CREDS, then the data directory upwards, then the config directory", () => {
  const p = places();
  const dataDir = p.dataDir();
  const config = p.config();
  const env = { NATS_CREDS: p.env };
  assert.deepEqual(findCredentials(p.explicit, { env, cwd: p.cwd, home: p.home }), { path: p.explicit, source: "argument" });
  assert.deepEqual(findCredentials(undefined, { env, cwd: p.cwd, home: p.home }), { path: p.env, source: "NATS_CREDS" });
  assert.deepEqual(findCredentials(undefined, { env: {}, cwd: p.cwd, home: p.home }), { path: dataDir, source: "data directory" });
  assert.deepEqual(findCredentials(undefined, { env: {}, cwd: p.root, home: p.home }), { path: config, source: "config directory" });
  const xdg = join(p.root, "xdg");
  mkdirSync(join(xdg, "agentledger"), { recursive: true });
  writeFileSync(join(xdg, "agentledger", "credentials.creds"), "creds");
  assert.deepEqual(findCredentials(undefined, { env: { XDG_CONFIG_HOME: xdg }, cwd: p.root, home: p.home }),
                   { path: join(xdg, "agentledger", "credentials.creds"), source: "config directory" });
  // a relative name is taken from the working directory
  assert.deepEqual(findCredentials("../../../../explicit.creds", { env, cwd: p.cwd }), { path: p.explicit, source: "argument" });
});

test("credentials: a named file that is missing, and nothing found anywhere, are their own errors", () => {
  const p = places();
  assert.throws(() => findCredentials(join(p.root, "nope.creds"), { env: { NATS_CREDS: p.env }, cwd: p.cwd }),
                (e: unknown) => e instanceof CredsFileMissingError && e.details.source === "the creds argument" && !e.retryable);
  assert.throws(() => findCredentials(undefined, { env: { NATS_CREDS: join(p.root, "gone.creds") }, cwd: p.cwd }),
                (e: unknown) => e instanceof CredsFileMissingError && e.details.path.endsWith("gone.creds"));
  assert.throws(() => findCredentials(undefined, { env: {}, cwd: p.cwd, home: p.home }), (e: unknown) => {
    assert.ok(e instanceof NoCredentialsError);
    assert.equal(e.retryable, false);
    assert.equal(e.details.looked.length, 4);
    assert.match(e.message, /NATS_CREDS/);
    assert.ok(e.message.includes(join(p.home, ".config", "agentledger", "credentials.creds")));
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
    assert.deepEqual(ledger.creds, { path: rig.memberCreds, source: "NATS_CREDS" });
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
  assert.equal(ledger.creds?.source, "data directory");
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
  assert.equal(outcome.details.url, rig.refusedUrl);
});
