// A client written against the types generated from docs/schema.json. It compiles under
// `tsc --strict` only while replies are discriminated on `ok`, events on `type`, query results
// are typed and objects are closed; each `@ts-expect-error` must meet an error, or tsc fails.
import type { AgentLedgerContract, CommandReply, Commands, StoredEvent, ThreadGetReply } from "./agentledger";

export function positionOf(reply: CommandReply): number {
  if (reply.ok) {
    return reply.position + reply.events.length; // CommandAccepted: position and events are there
  }
  // @ts-expect-error a refused command has no position
  reply.position;
  return reply.error.retryable ? -1 : -2; // CommandRefused: the error is there
}

export function refusal(reply: CommandReply): string {
  if (reply.ok) return "ok";
  switch (reply.error.code) {
    case "thread_not_empty":
      return reply.error.details.blocking_sessions.map((s) => `${s.session_id}=${s.status}`).join(" ");
    case "capacity_exceeded":
      return `${reply.error.details.dimension} ${reply.error.details.current}/${reply.error.details.limit}`;
    default:
      return reply.error.message;
  }
}

export function describe(ev: StoredEvent): string {
  switch (ev.type) {
    case "session.spawned":
      return `${ev.data.parent_session_id} -> ${ev.data.session_id} at depth ${ev.data.depth}`;
    case "handoff.broadcast":
      return ev.data.recipients.map((r) => r.session_id).join(", ");
    case "session.completed":
      return `${ev.data.summary.outcome}: ${ev.data.summary.text}`;
    case "thread.created":
      // @ts-expect-error a thread.created event's data has no session_id
      return ev.data.session_id;
    default:
      // @ts-expect-error events are closed: no field that is not in the schema
      return `${ev.position} ${ev.type} ${ev.unknown_field}`;
  }
}

export function title(reply: ThreadGetReply): string {
  return reply.ok ? `${reply.result.thread.title} (${reply.result.thread.status})` : reply.error.message;
}

// Requests and replies by name, as a client library would type its `request` function.
type QueryName = keyof AgentLedgerContract["queries"];
export type ReplyTo<Q extends QueryName> = AgentLedgerContract["query_replies"][Q];
export function tree(reply: ReplyTo<"session.tree">): string[] {
  if (!reply.ok) return [];
  return reply.result.tree.children.map((c) => `${c.session_id} ${c.status} ${c.edge_kind ?? "-"}`);
}

export const spawn: Commands["session.spawn"] = {
  actor: { kind: "user", id: "usr_me" },
  parent_session_id: "ses_lead",
  agent: { kind: "agent", id: "agt_coder" },
  failure_mode: "fail_fast",
};
