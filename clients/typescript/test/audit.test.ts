// `ledger.audit(...)`: an auditor reads its tenant's audit stream through a durable consumer that
// survives the connection: reading again by the same name goes on after what was acknowledged.
import assert from "node:assert/strict";
import { test } from "node:test";

import { type AuditEvent, PermissionDeniedError } from "../src/index.js";
import { auditor, fresh, member, started } from "./env.js";

test("an auditor's durable reads the history with positions and headers, and resumes after reconnecting", async () => {
  const ledger = await member();
  const durable = `audit_${fresh()}`;
  try {
    const { thread_id, session_id } = await started(ledger);
    const got: AuditEvent[] = [];
    const first = await auditor();
    try {
      for await (const item of first.audit({ durable })) { // the tenant's whole history, as it is sourced
        got.push(item);
        if (item.event.type === "session.started" && item.event.data.session_id === session_id) {
          item.ack();
          break;
        }
      }
    } finally {
      await first.close();
    }
    const mine = got.filter((item) => item.event.boundary.includes(`.thr.${thread_id}.`));
    const page = await ledger.events.read({ thread_id });
    assert.deepEqual(mine.map((item) => [item.event.event_id, item.position, item.event.position]),
                     page.events.map((e) => [e.event_id, e.position, e.position])); // the engine's positions
    assert.ok(got.every((item) => item.event.tenant_id === ledger.tenant));
    assert.ok(got.every((item, i) => i === 0 || item.auditSequence > (got[i - 1]?.auditSequence ?? 0)));
    for (const item of mine) {
      assert.ok(item.headers["Nats-Stream-Source"]?.[0]?.includes(` ${item.position} `), JSON.stringify(item.headers));
      assert.equal(item.subject.startsWith(`${ledger.prefix}.evt.${ledger.tenant}.thr.${thread_id}.`), true);
    }

    // appended while no auditor is connected
    await ledger.session.requestInput({ session_id, prompt: "while away" });
    await ledger.session.provideInput({ session_id });

    const second = await auditor();
    try {
      for await (const item of second.audit({ durable })) { // goes on after the acknowledged session.started
        assert.equal(item.event.type, "session.input_requested");
        break; // not acknowledged: it comes again
      }
    } finally {
      await second.close();
    }
    const third = await auditor();
    const resumed: string[] = [];
    try {
      for await (const item of third.audit({ durable })) {
        resumed.push(item.event.type);
        if (resumed.length === 2) {
          item.ack();
          break;
        }
      }
      assert.deepEqual(resumed, ["session.input_requested", "session.input_provided"]);
      // a new durable from a position, to the end of what is there
      const start = mine.at(-1)?.position ?? 0;
      const rest: string[] = [];
      for await (const item of third.audit({ durable: `${durable}_from`, after: start, follow: false })) {
        rest.push(item.event.type);
      }
      assert.deepEqual(rest, ["session.input_requested", "session.input_provided"]);
    } finally {
      await third.close();
    }
  } finally {
    await ledger.close();
  }
});

test("the audit stream is for auditors: a member is denied at once", async () => {
  const ledger = await member();
  try {
    await assert.rejects(async () => {
      for await (const item of ledger.audit({ durable: `audit_${fresh()}` })) assert.fail(`read ${item.event.type}`);
    }, (e: unknown) => e instanceof PermissionDeniedError && !e.retryable && e.details.operation === "publish");
  } finally {
    await ledger.close();
  }
});
