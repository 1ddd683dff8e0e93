// Each refusal arrives as its code's own class with that code's typed details, a LedgerError with
// `code`, `message`, `retryable` and the command id; malformed ids are refused before sending.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  AlreadyExistsError,
  BadReplyError,
  CapacityExceededError,
  CrossProjectError,
  CrossThreadError,
  ForbiddenError,
  HandoffRejectedError,
  IllegalTransitionError,
  InvalidCommandError,
  type Ledger,
  LedgerError,
  NotFoundError,
  type RetryInfo,
  ThreadClosedError,
  ThreadNotEmptyError,
  VersionConflictError,
} from "../src/index.js";
import { auditor, control, fresh, member, started } from "./env.js";

let ledger: Ledger;
before(async () => {
  ledger = await member();
});
after(async () => {
  await ledger.close();
});

/** The error `promise` rejects with, which must be an instance of `type`. */
async function refused<E extends LedgerError>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof type) return error;
    throw error;
  }
  assert.fail(`expected ${type.name}`);
}

test("not_found and already_exists, with the entity's kind and id", async () => {
  const missing = await refused(ledger.session.start({ session_id: "ses_nobody" }), NotFoundError);
  assert.deepEqual(missing.details, { kind: "session", id: "ses_nobody" });
  assert.equal(missing.code, "not_found");
  assert.equal(missing.retryable, false);
  assert.match(missing.commandId ?? "", /^cmd-[0-9a-f]{32}$/); // made by the client for this call
  assert.ok(missing instanceof LedgerError);
  const s = fresh();
  await ledger.project.create({ project_id: `prj_${s}`, name: "one" });
  const taken = await refused(ledger.project.create({ project_id: `prj_${s}`, name: "two" }), AlreadyExistsError);
  assert.deepEqual(taken.details, { kind: "project", id: `prj_${s}` });
});

test("thread_closed and thread_not_empty", async () => {
  const { thread_id, session_id } = await started(ledger);
  const blocked = await refused(ledger.thread.archive({ thread_id }), ThreadNotEmptyError);
  assert.equal(blocked.details.total_blocking_sessions, 1);
  assert.equal(blocked.details.blocking_sessions[0]?.status, "active");
  await ledger.session.complete({ session_id, summary: { outcome: "partial", text: "half" } });
  await ledger.thread.archive({ thread_id });
  const closed = await refused(ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_late" } }),
                               ThreadClosedError);
  assert.deepEqual(closed.details, { thread_id, op: "session.create" });
  const notEmpty = await refused(ledger.thread.delete({ thread_id }), ThreadNotEmptyError);
  assert.equal(notEmpty.details.op, "delete");
});

test("illegal_transition, capacity_exceeded, version_conflict, handoff_rejected", async () => {
  const { thread_id, session_id } = await started(ledger, { max_delegation_width: 1 });
  const illegal = await refused(ledger.session.provideInput({ session_id }), IllegalTransitionError);
  assert.deepEqual(illegal.details, { kind: "session", id: session_id, from: "active", command: "session.provide_input" });
  await ledger.session.spawn({ parent_session_id: session_id, agent: { kind: "agent", id: "agt_one" } });
  const full = await refused(ledger.session.spawn({ parent_session_id: session_id, agent: { kind: "agent", id: "agt_two" } }),
                             CapacityExceededError);
  assert.deepEqual(full.details, { dimension: "width", current: 1, limit: 1, session_id });
  const budgeted = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_b" }, budget: 10 });
  await ledger.session.start({ session_id: budgeted.session_id });
  const over = await refused(ledger.session.spawn({ parent_session_id: budgeted.session_id, budget: 11,
                                                    agent: { kind: "agent", id: "agt_c" } }), CapacityExceededError);
  assert.equal(over.details.dimension, "budget");

  const idle = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_idle" } });
  const stale = await refused(ledger.handoff.single({ source_session_id: idle.session_id, expected_owner_version: 7,
                                                     recipient: { kind: "agent", id: "agt_x" } }), VersionConflictError);
  assert.deepEqual(stale.details, { session_id: idle.session_id, expected: 7, actual: 0 });
  const busy = await refused(ledger.handoff.single({ source_session_id: session_id, expected_owner_version: 0,
                                                     recipient: { kind: "agent", id: "agt_x" } }), HandoffRejectedError);
  assert.equal(busy.details.reason, "active_run");
});

test("cross_thread and cross_project", async () => {
  const { project_id, session_id } = await started(ledger);
  const { thread_id: side } = await ledger.thread.create({ project_id });
  const crossThread = await refused(ledger.session.spawn({ parent_session_id: session_id, thread_id: side,
                                                           agent: { kind: "agent", id: "agt_x" } }), CrossThreadError);
  assert.equal(crossThread.details.parent_session_id, session_id);
  assert.equal(crossThread.details.thread_id, side);
  const elsewhere = await started(ledger);
  const crossProject = await refused(ledger.session.spawn({ parent_session_id: session_id, thread_id: elsewhere.thread_id,
                                                            agent: { kind: "agent", id: "agt_x" } }), CrossProjectError);
  assert.equal(crossProject.details.thread_id, elsewhere.thread_id);
});

test("invalid_command from the engine, and malformed ids refused before sending", async () => {
  const { project_id } = await ledger.project.create({ name: "invalid" });
  const fork = await refused(ledger.thread.create({ project_id, mode: "fork" }), InvalidCommandError);
  assert.ok(fork.details.errors.length > 0);
  const local = await refused(ledger.session.start({ session_id: "session-1" }), InvalidCommandError);
  assert.deepEqual(local.details.errors, [{
    path: "$.session_id",
    message: 'session id must start with ses_ followed by 1-64 letters, digits, _ or - (got "session-1")',
  }]);
  assert.doesNotMatch(local.message, /\[A-Za-z/); // a message for people, not the pattern
  const nested = await refused(ledger.handoff.single({ source_session_id: "ses_a\n", expected_owner_version: 0,
                                                       recipient: { kind: "agent", id: "agt_x" } }), InvalidCommandError);
  assert.equal(nested.details.errors[0]?.path, "$.source_session_id");
  const badCommandId = await refused(ledger.project.create({ name: "x", command_id: "has space" }), InvalidCommandError);
  assert.equal(badCommandId.details.errors[0]?.path, "$.command_id");
});

test("forbidden: an auditor may query but not command", async () => {
  const { thread_id } = await started(ledger);
  const reader = await auditor();
  try {
    assert.equal((await reader.thread.get({ thread_id })).thread.thread_id, thread_id);
    const forbidden = await refused(reader.thread.archive({ thread_id }), ForbiddenError);
    assert.equal(forbidden.details.role, "auditor");
    assert.equal(forbidden.retryable, false);
  } finally {
    await reader.close();
  }
});

test("a reply that is no engine's is a bad reply, never retried", async () => {
  const prefix = `impostor${fresh()}`;
  await control("impostor", { prefix, replies: ["<html>", '{"answer": 42}', '{"ok": false, "error": {"code": "teapot"}}'] });
  const other = await member({ prefix });
  try {
    const retries: RetryInfo[] = [];
    const onRetry = (r: RetryInfo) => retries.push(r);
    for (const why of [/not JSON/, /no `ok`/, /no known code/]) {
      await assert.rejects(other.thread.get({ thread_id: "thd_a" }, { onRetry }), (e: unknown) =>
        e instanceof BadReplyError && e.code === "bad_reply" && !e.retryable && why.test(e.message));
    }
    assert.deepEqual(retries, []);
  } finally {
    await other.close();
  }
});
