// An auditor's view of the log: the tenant's own audit stream `AUDIT_<stream>` in its own account
// (a source of its events in the engine's stream), read with a durable pull consumer, resumable by name.
// JetStream drops the `Nats-Expected-Last-Subject-Sequence(-Subject)` headers when it sources a
// message, so the engine also writes what each decision was based on in headers of its own, which
// survive: `Ledger-Expected-Position` and `Ledger-Boundary`, beside `traceparent`; the ledger
// position is the engine stream's sequence, in `Nats-Stream-Source`.
import { AckPolicy, DeliverPolicy, type JetStreamManager, jetstream, jetstreamManager, JetStreamApiError,
         type JsMsg } from "@nats-io/jetstream";
import { type NatsConnection, PermissionViolationError } from "@nats-io/transport-node";

import type * as C from "./contract.js";
import { PermissionDeniedError } from "./ledger-error.js";

/** The header each sourced message carries: `<stream>[:…] <position> <filter> > <subject> …`. */
export const STREAM_SOURCE = "Nats-Stream-Source";
export const EXPECTED_POSITION = "Ledger-Expected-Position";
export const BOUNDARY = "Ledger-Boundary";

export interface AuditOptions {
  /** The durable consumer's name: reading again with the same name goes on after the last acknowledged event. */
  durable: string;
  /** Skip the events up to this engine position (on a new durable: where to start; 0: from the beginning). */
  after?: number;
  /** Only this thread's events (the durable's filter; a durable keeps the filter it was made with). */
  thread_id?: string;
  /** Keep waiting for new events once caught up (default true); false ends when nothing is pending. */
  follow?: boolean;
  /** Messages asked for per pull (default 100). */
  batch?: number;
}

/** One message of the audit stream: the stored event, and what the audit stream keeps beside it. */
export interface AuditEvent {
  /** The event as the engine stored it, with its position; null (and `error` says why) for a message whose body is no event. */
  event: C.StoredEvent | null;
  /** The engine stream's position of the event (from the `Nats-Stream-Source` header). */
  position: number | null;
  /** The boundary's position the decision was based on (`Ledger-Expected-Position`; 0 for a boundary's first event). */
  expectedPosition: number | null;
  /** The boundary filter the append was checked against (`Ledger-Boundary`). */
  boundary: string | null;
  /** The W3C trace context of the command that appended it (`traceparent`). */
  traceparent: string | null;
  subject: string;
  /** The message's own sequence in `AUDIT_<stream>` (its numbers are its own). */
  auditSequence: number;
  /** Every header of the message, by name, each with all its values. */
  headers: Record<string, string[]>;
  /** Why `event` is null. */
  error: string | null;
  /** Acknowledge now; otherwise the event is acknowledged when the loop asks for the next one. */
  ack(): void;
}

export async function* readAudit(nc: NatsConnection, stream: string, filter: string,
                                 options: AuditOptions): AsyncGenerator<AuditEvent, void, undefined> {
  const { durable, after = 0, follow = true, batch = 100 } = options;
  let consumer;
  try {
    consumer = await jetstream(nc).consumers.get(stream, await durableConsumer(await jetstreamManager(nc), stream, durable, filter));
  } catch (error) {
    const denied = error instanceof Error && error.cause instanceof PermissionViolationError ? error.cause : null;
    if (denied) throw new PermissionDeniedError(denied.operation, denied.subject, "the audit stream is for auditors", error);
    throw error;
  }
  for (;;) {
    // Ask for what is there (such a pull is answered at once), or, caught up, for the next one to come:
    // so no pull is left open when the loop ends early.
    const { num_pending: pending, num_ack_pending: unacknowledged } = await consumer.info();
    if (!follow && pending === 0 && unacknowledged === 0) return;
    const max_messages = pending > 0 ? Math.min(batch, pending) : 1;
    const messages = (await consumer.fetch({ max_messages, expires: follow ? 5000 : 1000 }))[Symbol.asyncIterator]();
    let got = 0;
    let current: JsMsg | null = null;
    try {
      for (let next = await messages.next(); !next.done; next = await messages.next()) {
        current = next.value;
        got++;
        const item = auditEvent(current);
        if (item.position === null || item.position > after) yield item;
        item.ack();
        current = null;
      }
      if (!follow && got === 0) return; // what was unacknowledged is another reader's
    } finally {
      // Left early (break, throw): the event in hand and the rest of this pull come again at once on
      // the next read, instead of after the consumer's ack wait.
      if (current !== null) {
        current.nak(); // nothing if the loop acknowledged it already
        for (let next = await messages.next(); !next.done; next = await messages.next()) next.value.nak();
      }
    }
  }
}

/** The durable, made on first use (explicit acks, the tenant's events from the first one). */
async function durableConsumer(jsm: JetStreamManager, stream: string, durable: string, filter: string): Promise<string> {
  try {
    await jsm.consumers.info(stream, durable);
  } catch (error) {
    if (!(error instanceof JetStreamApiError) || error.status !== 404) throw error;
    await jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit,
                                      deliver_policy: DeliverPolicy.All, filter_subject: filter });
  }
  return durable;
}

function auditEvent(msg: JsMsg): AuditEvent {
  const headers: Record<string, string[]> = {};
  for (const [name, values] of msg.headers ?? []) headers[name] = values;
  const first = (name: string): string | null => msg.headers?.get(name) || null;
  const position = integer(first(STREAM_SOURCE)?.split(" ")[1]);
  let event: C.StoredEvent | null = null;
  let error: string | null = null;
  try {
    const envelope: C.Envelope = msg.json();
    if (typeof envelope !== "object" || envelope === null || typeof envelope.type !== "string") error = "not an event: no type";
    else if (position === null) error = "no source position (not sourced from the engine's stream)";
    else event = { ...envelope, position };
  } catch (e) {
    error = `not an event: ${e instanceof Error ? e.message : String(e)}`;
  }
  let acked = false;
  return {
    event,
    position,
    expectedPosition: integer(first(EXPECTED_POSITION)),
    boundary: first(BOUNDARY),
    traceparent: first("traceparent"),
    subject: msg.subject,
    auditSequence: msg.seq,
    headers,
    error,
    ack: () => {
      if (!acked) msg.ack();
      acked = true;
    },
  };
}

function integer(text: string | null | undefined): number | null {
  return text && /^\d+$/.test(text) ? Number(text) : null;
}
