// Retryable failures are retried with the same command id until the deadline, against a real
// engine that is held up (`unavailable`) or stopped (no responders) by the test rig.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { type Ledger, NoReplyError, NoRespondersError, RateLimitedError, type RetryInfo, UnavailableError } from "../src/index.js";
import { control, fresh, member } from "./env.js";

let ledger: Ledger;
before(async () => {
  ledger = await member();
});
after(async () => {
  await ledger.close();
});

test("each call gets its own command id, unless it names one", async () => {
  const { project_id } = await ledger.project.create({ name: "ids" });
  const one = await ledger.command("thread.create", { project_id });
  const two = await ledger.command("thread.create", { project_id });
  assert.notEqual(one.command_id, two.command_id);
  assert.notEqual(one.result.thread_id, two.result.thread_id);
  const command_id = `mine-${fresh()}`;
  const named = await ledger.command("thread.create", { project_id, command_id });
  assert.equal(named.command_id, command_id);
});

test("unavailable (not decided in time) is retried with the same command id and then decided", async () => {
  const { project_id } = await ledger.project.create({ name: "held" });
  const { thread_id } = await ledger.thread.create({ project_id });
  const { session_id } = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_a" } });
  // the engine holds the thread for 3 s and decides only within 0.3 s of a command's arrival
  await control("hold", { thread_id, seconds: 3.0, decide_within: 0.3 });
  const retries: RetryInfo[] = [];
  const reply = await ledger.command("session.start", { session_id }, { onRetry: (r) => retries.push(r) });
  assert.ok(retries.length >= 1, "the first attempt was refused");
  assert.ok(retries[0]?.error instanceof UnavailableError);
  assert.equal(retries[0]?.error.retryable, true);
  assert.deepEqual(retries.map((r) => r.commandId), retries.map(() => reply.command_id)); // one id for every attempt
  assert.equal(reply.events[0]?.command_id, reply.command_id);
  const page = await ledger.events.read({ thread_id });
  assert.equal(page.events.filter((e) => e.type === "session.started").length, 1);
});

test("no reply in time: retried with the same command id once the engine must have decided, and decided once", async () => {
  const { project_id } = await ledger.project.create({ name: "slow" });
  const { thread_id } = await ledger.thread.create({ project_id });
  const { session_id } = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_a" } });
  await control("hold", { thread_id, seconds: 3.0, decide_within: 2.0 }); // the thread is busy for 3 s
  const retries: { info: RetryInfo; at: number }[] = [];
  const first = Date.now();
  const reply = await ledger.command("session.start", { session_id }, {
    timeout: 500, retryFor: 60_000, onRetry: (info) => retries.push({ info, at: Date.now() }),
  });
  assert.ok(retries[0]?.info.error instanceof NoReplyError);
  for (const { info, at } of retries) {
    assert.equal(info.commandId, reply.command_id);
    if (info.error instanceof NoReplyError) assert.ok(at + info.delayMs >= first + 2000); // never before the engine's bound
  }
  const page = await ledger.events.read({ thread_id });
  assert.equal(page.events.filter((e) => e.type === "session.started").length, 1);
  assert.equal(page.events.find((e) => e.type === "session.started")?.command_id, reply.command_id);
});

test("no engine: retried until one answers, with the same command id", async () => {
  await control("stop");
  const retries: RetryInfo[] = [];
  let restart: Promise<void> | undefined;
  try {
    const reply = await ledger.command("project.create", { name: "later" }, {
      retryFor: 120_000,
      onRetry: (r) => {
        retries.push(r);
        restart ??= control("start"); // the engine comes back after the first refusal
      },
    });
    assert.ok(retries[0]?.error instanceof NoRespondersError);
    assert.ok(retries.every((r) => r.commandId === reply.command_id));
    assert.match(reply.result.project_id, /^prj_/);
  } finally {
    await (restart ?? control("start"));
  }
});

test("past the deadline the last error is raised", async () => {
  await control("stop");
  try {
    const retries: RetryInfo[] = [];
    const command_id = `never-${fresh()}`;
    await assert.rejects(ledger.project.create({ name: "never", command_id }, { retryFor: 1000, onRetry: (r) => retries.push(r) }),
                         (e: unknown) => e instanceof NoRespondersError && e.retryable && e.commandId === command_id);
    assert.ok(retries.every((r) => r.commandId === command_id && r.error instanceof NoRespondersError));
    const once: RetryInfo[] = [];
    await assert.rejects(ledger.project.create({ name: "never" }, { retryFor: 0, onRetry: (r) => once.push(r) }),
                         NoRespondersError);
    assert.deepEqual(once, []); // no retry at all
  } finally {
    await control("start");
  }
});

test("rate_limited: retried no sooner than its retry_after, and then taken", async () => {
  await control("quota", { commands_per_second: 1 }); // the tenant may send one command a second
  try {
    const { project_id } = await ledger.project.create({ name: "rate" });
    const retries: RetryInfo[] = [];
    const reply = await ledger.command("thread.create", { project_id }, { onRetry: (r) => retries.push(r) });
    const limited = retries.filter((r) => r.error instanceof RateLimitedError);
    assert.ok(limited.length >= 1, "the second command within the second was refused");
    for (const { error, delayMs, commandId } of limited) {
      assert.ok(error instanceof RateLimitedError && error.details.limit === "commands_per_second");
      assert.ok(delayMs >= error.details.retry_after * 1000, `waited ${delayMs} ms, retry_after ${error.details.retry_after} s`);
      assert.equal(commandId, reply.command_id);
    }
    assert.equal(retries.length, 1); // the retry after retry_after was taken
    const page = await ledger.events.read({ thread_id: reply.result.thread_id });
    assert.equal(page.events.filter((e) => e.type === "thread.created").length, 1);
  } finally {
    await control("quota", { commands_per_second: null });
  }
});
