// `ledger.events(...)`: the history page by page, then new events as they are appended.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Ledger, StoredEvent } from "../src/index.js";
import { control, member, started } from "./env.js";

let ledger: Ledger;
before(async () => {
  ledger = await member();
});
after(async () => {
  await ledger.close();
});

test("history, then live: a thread's events in order, and one appended while following", async () => {
  const { thread_id, session_id } = await started(ledger);
  for (let i = 0; i < 3; i++) {
    await ledger.session.requestInput({ session_id, prompt: `question ${i}` });
    await ledger.session.provideInput({ session_id });
  }
  const seen: StoredEvent[] = [];
  let spawned = "";
  for await (const event of ledger.events({ thread_id, limit: 2 })) { // pages of two, so the history takes several
    seen.push(event);
    if (seen.length === 9) { // the whole history: created, session created, started, 3 × (requested, provided)
      ({ session_id: spawned } = await ledger.session.spawn({ parent_session_id: session_id,
                                                               agent: { kind: "agent", id: "agt_live" } }));
    }
    if (event.type === "session.spawned") {
      assert.equal(event.data.session_id, spawned); // narrowed on `type`: the spawn's own fields
      break;
    }
  }
  assert.deepEqual(seen.map((e) => e.type), [
    "thread.created", "session.created", "session.started",
    "session.input_requested", "session.input_provided", "session.input_requested", "session.input_provided",
    "session.input_requested", "session.input_provided", "session.spawned",
  ]);
  const positions = seen.map((e) => e.position);
  assert.deepEqual(positions, [...positions].sort((a, b) => a - b));
});

test("follow: false ends at the end of the log, and after skips what was seen", async () => {
  const { thread_id, session_id } = await started(ledger);
  const history: StoredEvent[] = [];
  for await (const event of ledger.events({ thread_id, follow: false })) history.push(event);
  assert.deepEqual(history.map((e) => e.type), ["thread.created", "session.created", "session.started"]);
  await ledger.session.fail({ session_id, reason: "stop" });
  const rest: string[] = [];
  for await (const event of ledger.events({ thread_id, follow: false, after: history.at(-1)?.position ?? 0 })) {
    rest.push(event.type);
  }
  assert.deepEqual(rest, ["session.failed"]);
});

test("a follower waits without error while nothing happens, and wakes for the next event", async () => {
  const { thread_id, session_id } = await started(ledger);
  const now = (await ledger.events.read({ thread_id })).next_after;
  const live = ledger.events({ thread_id, after: now });
  const waiting = live.next();
  await new Promise((resolve) => setTimeout(resolve, 6000)); // longer than an engine holds one long poll
  await ledger.session.cancel({ session_id });
  const { value } = await waiting;
  assert.equal(value?.type, "session.cancelled");
  await live.return();
});

test("a follower rides out an engine restart", async () => {
  const { thread_id, session_id } = await started(ledger);
  const now = (await ledger.events.read({ thread_id })).next_after;
  const live = ledger.events({ thread_id, after: now });
  const waiting = live.next();
  await control("stop");
  await new Promise((resolve) => setTimeout(resolve, 1000)); // the follower meets no engine meanwhile
  await control("start");
  await ledger.session.requestInput({ session_id, prompt: "still there?" });
  const { value } = await waiting;
  assert.equal(value?.type, "session.input_requested");
  await live.return();
});
