// Every command and query through the client, each answered with its own result type: the fields
// read here are typed by the contract (no casts), and the engine's log shows what was sent.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { COMMANDS, ForbiddenError, type Ledger, NotHolderError, QUERIES, ThreadNotEmptyError } from "../src/index.js";
import { fresh, member } from "./env.js";

let ledger: Ledger;
const sent = new Set<string>();
before(async () => {
  ledger = await member({ actor: "usr_alice" });
});
after(async () => {
  await ledger.close();
});

test("projects, threads and forks", async () => {
  const s = fresh();
  const project = await ledger.project.create({ project_id: `prj_${s}`, name: "demo", config: { max_delegation_width: 3 } });
  assert.equal(project.project_id, `prj_${s}`);
  const thread = await ledger.thread.create({ project_id: project.project_id, thread_id: `thd_${s}`, title: "main" });
  assert.equal(thread.thread_id, `thd_${s}`);
  const minted = await ledger.thread.create({ project_id: project.project_id });
  assert.match(minted.thread_id, /^thd_[0-9a-z]{12}$/);
  const fork = await ledger.thread.create({ project_id: project.project_id, mode: "fork", source_thread_id: thread.thread_id });
  const archived = await ledger.thread.archive({ thread_id: minted.thread_id });
  assert.equal(archived.status, "archived");
  const reopened = await ledger.thread.unarchive({ thread_id: minted.thread_id });
  assert.equal(reopened.status, "open");
  const deleted = await ledger.thread.delete({ thread_id: minted.thread_id });
  assert.equal(deleted.status, "deleted");

  const view = await ledger.thread.get({ thread_id: fork.thread_id });
  assert.deepEqual(view.thread.forked_from?.thread_id, thread.thread_id);
  assert.equal(view.thread.max_delegation_width, 3);
  const listed = await ledger.thread.list({ project_id: project.project_id });
  assert.deepEqual(listed.threads.map((t) => [t.thread_id, t.status]),
                   [[thread.thread_id, "open"], [minted.thread_id, "deleted"], [fork.thread_id, "open"]]);
  const rows: string[] = [];
  for await (const row of ledger.thread.listAll({ project_id: project.project_id, limit: 1 })) rows.push(row.thread_id);
  assert.deepEqual(rows, listed.threads.map((t) => t.thread_id)); // one page at a time, all of them
  for (const name of ["project.create", "thread.create", "thread.archive", "thread.unarchive", "thread.delete",
                      "thread.get", "thread.list"]) sent.add(name);
});

test("a session's life: start, input, spawn, complete, cancel, fail, archive, restore", async () => {
  const s = fresh();
  const { project_id } = await ledger.project.create({ name: "life" });
  const { thread_id } = await ledger.thread.create({ project_id });
  const lead = await ledger.session.create({ thread_id, session_id: `ses_${s}`, owner: { kind: "agent", id: "agt_lead" },
                                            budget: 1000, sandbox: { mode: "new", shutdown: "pause" } });
  assert.equal(lead.session_id, `ses_${s}`);
  assert.match(lead.sandbox_id ?? "", /^sbx_/);
  assert.equal((await ledger.session.start({ session_id: lead.session_id })).status, "active");
  assert.equal((await ledger.session.requestInput({ session_id: lead.session_id, prompt: "which branch?" })).status,
               "awaiting_hitl");
  assert.equal((await ledger.session.provideInput({ session_id: lead.session_id })).status, "active");

  const child = await ledger.session.spawn({ parent_session_id: lead.session_id, agent: { kind: "agent", id: "agt_coder" },
                                             failure_mode: "delegate", budget: 100 });
  assert.equal(child.depth, 1);
  assert.match(child.edge_id, /^sub_/);
  assert.equal(child.sandbox_id, null);
  const done = await ledger.session.complete({ session_id: child.session_id, usage: 40,
                                               summary: { outcome: "succeeded", text: "fixed", deliverables: ["patch"] } });
  assert.equal(done.status, "idle");
  assert.match(done.summary_id, /^sum_/);
  const second = await ledger.session.spawn({ parent_session_id: lead.session_id, agent: { kind: "agent", id: "agt_b" } });
  assert.equal((await ledger.session.cancel({ session_id: second.session_id, reason: "not needed" })).status, "idle");
  const third = await ledger.session.spawn({ parent_session_id: lead.session_id, agent: { kind: "agent", id: "agt_c" } });
  assert.equal((await ledger.session.fail({ session_id: third.session_id, reason: "crashed" })).status, "failed");
  assert.equal((await ledger.session.archive({ session_id: child.session_id })).status, "archived");
  assert.equal((await ledger.session.restore({ session_id: child.session_id })).status, "idle");

  const got = await ledger.session.get({ session_id: lead.session_id });
  assert.equal(got.session.status, "active");
  assert.equal(got.session.budget.limit, 1000);
  assert.equal(got.session.budget.used_by_children, 40);
  const tree = await ledger.session.tree({ session_id: lead.session_id });
  assert.deepEqual(tree.tree.children.map((c) => [c.session_id, c.status, c.edge_status]),
                   [[child.session_id, "idle", "completed"], [second.session_id, "idle", "cancelled"],
                    [third.session_id, "failed", "failed"]]);
  assert.equal(tree.tree.children[0]?.summary?.text, "fixed");

  // the archive gate: the running lead blocks it, and the refusal says who
  await assert.rejects(ledger.thread.archive({ thread_id }), (e: unknown) => {
    assert.ok(e instanceof ThreadNotEmptyError);
    assert.deepEqual(e.details.blocking_sessions, [{ session_id: lead.session_id, status: "active" }]);
    assert.equal(e.details.op, "archive");
    return true;
  });
  for (const name of ["session.create", "session.start", "session.request_input", "session.provide_input", "session.spawn",
                      "session.complete", "session.cancel", "session.fail", "session.archive", "session.restore",
                      "session.get", "session.tree"]) sent.add(name);
});

test("handoffs: single and broadcast", async () => {
  const { project_id } = await ledger.project.create({ name: "handoffs" });
  const { thread_id } = await ledger.thread.create({ project_id });
  const source = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_first" } });
  const { session } = await ledger.session.get({ session_id: source.session_id });
  const single = await ledger.handoff.single({ source_session_id: source.session_id, recipient: { kind: "agent", id: "agt_next" },
                                               expected_owner_version: session.owner_version });
  assert.match(single.handoff_id, /^hof_/);
  assert.equal(single.owner_version, session.owner_version + 1);
  const after = await ledger.session.get({ session_id: single.session_id });
  assert.deepEqual(after.session.owner, { kind: "agent", id: "agt_next" });

  const hub = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_hub" } });
  const broadcast = await ledger.handoff.broadcast({
    source_session_id: hub.session_id, expected_owner_version: 0,
    recipients: [{ kind: "agent", id: "agt_x" }, { kind: "agent", id: "agt_y" }],
  });
  assert.equal(broadcast.session_ids.length, 2);
  assert.equal((await ledger.session.get({ session_id: hub.session_id })).session.status, "awaiting_merge");
  sent.add("handoff.single");
  sent.add("handoff.broadcast");
});

test("sandboxes: create, pause, resume, fork, exec, destroy; outcomes and the live list are the deployment's", async () => {
  const created = await ledger.command("sandbox.create", { options: { command: ["sleep", "1"] } });
  const { sandbox_id } = created.result;
  assert.equal(created.result.status, "creating");
  assert.equal(created.events[0]?.type, "sandbox.create_requested");
  await assert.rejects(ledger.sandbox.reportOutcome({ sandbox_id, request_position: created.position, op: "create",
                                                      ok: true, location: "/nowhere" }), ForbiddenError);
  assert.equal((await ledger.sandbox.pause({ sandbox_id, reason: "lunch" })).status, "paused");
  assert.equal((await ledger.sandbox.resume({ sandbox_id })).status, "running");
  const fork = await ledger.sandbox.fork({ sandbox_id });
  assert.notEqual(fork.sandbox_id, sandbox_id);
  assert.equal(fork.status, "creating");
  assert.equal((await ledger.sandbox.destroy({ sandbox_id })).status, "destroyed");
  const view = await ledger.sandbox.get({ sandbox_id });
  assert.equal(view.sandbox.location, null); // no effect handler runs here: nothing was created
  assert.equal(view.sandbox.intent, "destroyed");
  await assert.rejects(ledger.sandbox.listLive({}), ForbiddenError);

  const { project_id } = await ledger.project.create({ name: "exec" });
  const { thread_id } = await ledger.thread.create({ project_id });
  const holder = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_runner" },
                                              sandbox: { mode: "new", shutdown: "destroy" } });
  await ledger.session.start({ session_id: holder.session_id });
  const held = holder.sandbox_id ?? "";
  const ran = await ledger.sandbox.exec({ sandbox_id: held, session_id: holder.session_id, argv: ["true"] });
  assert.equal(ran.status, "running"); // waits behind its sandbox's create, which no effect handler carries out here
  const other = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_other" } });
  await assert.rejects(ledger.sandbox.exec({ sandbox_id: held, session_id: other.session_id, argv: ["true"] }),
                       NotHolderError);
  for (const name of ["sandbox.create", "sandbox.report_outcome", "sandbox.pause", "sandbox.resume", "sandbox.fork",
                      "sandbox.destroy", "sandbox.get", "sandbox.list_live", "sandbox.exec"]) sent.add(name);
});

test("the whole reply when wanted, and the log's view of the commands", async () => {
  const { project_id } = await ledger.project.create({ name: "log" });
  const command_id = `create-${fresh()}`;
  const reply = await ledger.command("thread.create", { project_id, command_id });
  assert.equal(reply.command_id, command_id);
  const [event] = reply.events;
  assert.ok(event?.type === "thread.created");
  assert.equal(event.data.project_id, project_id); // narrowed on `type`: thread.created's own data
  assert.deepEqual(event.actor, { kind: "user", id: "usr_alice" }); // the connection's actor
  const repeat = await ledger.command("thread.create", { project_id, command_id });
  assert.equal(repeat.position, reply.position); // the same command id is answered with the first outcome

  const page = await ledger.events.read({ thread_id: reply.result.thread_id });
  assert.deepEqual(page.events.map((e) => e.position), [reply.position]);
  const answer = await ledger.query("events.read", { thread_id: reply.result.thread_id, min_position: reply.position });
  assert.ok(answer.position >= reply.position);
  const all: number[] = [];
  for await (const e of ledger.events.readAll({ limit: 2 })) all.push(e.position);
  assert.ok(all.length > 20 && all.every((p, i) => i === 0 || p > (all[i - 1] ?? 0)));
  const quarantined = await ledger.quarantine.list({});
  assert.equal(quarantined.count, 0);
  const entries: number[] = [];
  for await (const q of ledger.quarantine.listAll()) entries.push(q.position);
  assert.deepEqual(entries, []);
  for (const name of ["events.read", "quarantine.list"]) sent.add(name);
});

test("every command and query of the contract was sent above", () => {
  assert.deepEqual([...COMMANDS, ...QUERIES].filter((n) => !sent.has(n)), []);
});
