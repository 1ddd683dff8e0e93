// `ledger.audit(...)`: an auditor reads its tenant's audit stream through a durable consumer that
// survives the connection: reading again by the same name goes on after what was acknowledged.
import assert from "node:assert/strict";
import { test } from "node:test";

import { PermissionDeniedError, type StoredEvent } from "../src/index.js";
import { auditor, fresh, member, started } from "./env.js";

test("an auditor's durable reads the history with positions and headers, and resumes after reconnecting", async () => {
  const ledger = await member();
  const durable = `audit_${fresh()}`;
  try {
    const { thread_id, session_id } = await started(ledger);
    const got: StoredEvent[] = [];
    const first = await auditor();
    try {
      for await (const item of first.audit({ durable })) { // the tenant's whole history, as it is sourced
        assert.ok(item.event, item.error ?? "no event");
        assert.equal(item.position, item.event.position);
        assert.ok(item.headers["Nats-Stream-Source"]?.[0]?.includes(` ${item.position} `), JSON.stringify(item.headers));
        assert.equal(item.subject.startsWith(`${ledger.prefix}.evt.${ledger.tenant}.`), true);
        assert.ok(got.length === 0 || item.event.position > (got.at(-1)?.position ?? 0)); // in log order
        got.push(item.event);
        // the decision's base: the boundary's event before this one, as the engine expected it
        const before = got.filter((e) => e.boundary === item.event?.boundary).at(-2);
        assert.equal(item.expectedPosition, before?.position ?? 0);
        assert.equal(item.boundary, item.event.boundary);
        if (item.event.type === "session.started" && item.event.data.session_id === session_id) {
          item.ack();
          break;
        }
      }
    } finally {
      await first.close();
    }
    assert.ok(got.every((e) => e.tenant_id === ledger.tenant));
    const page = await ledger.events.read({ thread_id });
    assert.deepEqual(got.filter((e) => e.boundary.includes(`.thr.${thread_id}.`)).map((e) => [e.event_id, e.position]),
                     page.events.map((e) => [e.event_id, e.position])); // the engine's positions

    // appended while no auditor is connected
    await ledger.session.requestInput({ session_id, prompt: "while away" });
    await ledger.session.provideInput({ session_id });

    const second = await auditor();
    try {
      for await (const item of second.audit({ durable })) { // goes on after the acknowledged session.started
        assert.equal(item.event?.type, "session.input_requested");
        break; // not acknowledged: it comes again
      }
    } finally {
      await second.close();
    }
    const third = await auditor();
    const resumed: string[] = [];
    try {
      for await (const item of third.audit({ durable })) {
        resumed.push(item.event?.type ?? "no event");
        if (resumed.length === 2) {
          item.ack();
          break;
        }
      }
      assert.deepEqual(resumed, ["session.input_requested", "session.input_provided"]);
      // a new durable from a position, to the end of what is there
      const rest: string[] = [];
      for await (const item of third.audit({ durable: `${durable}_from`, after: got.at(-1)?.position ?? 0, follow: false })) {
        rest.push(item.event?.type ?? "no event");
      }
      assert.deepEqual(rest, ["session.input_requested", "session.input_provided"]);
      // one thread's events only
      const threads = new Set<string>();
      for await (const item of third.audit({ durable: `${durable}_thread`, thread_id, follow: false })) {
        threads.add(item.event?.boundary ?? "no event");
      }
      assert.deepEqual([...threads], [`${ledger.prefix}.evt.${ledger.tenant}.thr.${thread_id}.>`]);
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
      for await (const item of ledger.audit({ durable: `audit_${fresh()}` })) assert.fail(`read ${item.subject}`);
    }, (e: unknown) => e instanceof PermissionDeniedError && !e.retryable && e.details.operation === "publish");
  } finally {
    await ledger.close();
  }
});
