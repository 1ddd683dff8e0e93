// A member's view of the log: the history through `events.read` pages, then live by long-polling
// `events.read` with `min_position` (members have no JetStream access to the engine's stream).
import type { Caller } from "./call.js";
import { backoff } from "./call.js";
import type * as C from "./contract.js";
import { LedgerError } from "./ledger-error.js";

/** How long an engine holds a `min_position` query before answering `unavailable` (docs/protocol.md). */
const ENGINE_WAIT_MS = 5000;

export interface EventsOptions {
  /** One thread's events (a fork's include its source's up to the fork); absent: the tenant's. */
  thread_id?: string;
  /** Start after this position (0: from the beginning). */
  after?: number;
  /** Keep waiting for new events once the history is read (default true); false ends at the log's end. */
  follow?: boolean;
  /** Events per page (1-1000, default 100). */
  limit?: number;
}

export async function* followEvents(caller: Caller, options: EventsOptions = {}): AsyncGenerator<C.StoredEvent, void, undefined> {
  const { thread_id, follow = true, limit = 100 } = options;
  let cursor = options.after ?? 0;
  let waitFor: number | null = null; // the position the next read waits for: past everything read so far
  for (let failures = 0; ;) {
    let answer;
    const sent = Date.now();
    try {
      const timeout: number = caller.settings.timeout + (waitFor === null ? 0 : ENGINE_WAIT_MS);
      answer = await caller.queryAnswer("events.read", { thread_id, after: cursor, limit, min_position: waitFor },
                                        { timeout, retryFor: waitFor === null ? undefined : 0 });
    } catch (error) {
      // While following, nothing new within the engine's wait is no error, and a blip (an engine
      // restarting, the log unreachable) is waited out with backoff.
      if (waitFor === null || !(error instanceof LedgerError) || !error.retryable) throw error;
      if (Date.now() - sent < ENGINE_WAIT_MS) await new Promise((r) => setTimeout(r, backoff(++failures)));
      continue;
    }
    failures = 0;
    const page = answer.result;
    yield* page.events;
    if (page.next_after > cursor) { // the page covered something: read on at once (the end is a page that covers nothing)
      cursor = page.next_after;
      waitFor = null;
      continue;
    }
    if (!follow) return;
    waitFor = Math.max(answer.position, cursor) + 1;
  }
}
