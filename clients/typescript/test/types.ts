// Compiled, never run: what the types promise a user. Each `@ts-expect-error` must meet an error,
// or `tsc --strict` fails the build; everything else must compile without a cast.
import {
  CapacityExceededError,
  type CommandResult,
  type Ledger,
  LedgerError,
  type SessionSpawnResult,
  type StoredEvent,
  ThreadNotEmptyError,
} from "../src/index.js";

export async function promises(ledger: Ledger): Promise<string[]> {
  const out: string[] = [];
  const spawned: SessionSpawnResult = await ledger.session.spawn({ parent_session_id: "ses_a", agent: { kind: "agent", id: "agt_b" } });
  out.push(spawned.edge_id, String(spawned.depth), spawned.sandbox_id ?? "no sandbox");
  // @ts-expect-error a spawn's result has no status
  out.push(spawned.status);
  const started: CommandResult<"session.start"> = await ledger.session.start({ session_id: "ses_a" });
  // @ts-expect-error a session's status is one of its statuses
  const running: typeof started.status = "running";
  out.push(running);
  // @ts-expect-error a command's own required fields are required
  await ledger.session.start({});
  // @ts-expect-error objects are closed: no field the command does not have
  await ledger.thread.archive({ thread_id: "thd_a", colour: "red" });
  // @ts-expect-error no such command
  await ledger.session.teleport({ session_id: "ses_a" });
  // @ts-expect-error the actor's kind is one of agent, system, user
  await ledger.thread.create({ project_id: "prj_a", actor: { kind: "robot", id: "rbt_a" } });

  const reply = await ledger.command("session.spawn", { parent_session_id: "ses_a", agent: { kind: "agent", id: "agt_b" } });
  out.push(reply.result.edge_id, String(reply.position));
  const view = await ledger.thread.get({ thread_id: "thd_a" });
  out.push(view.thread.status === "archived" ? "archived" : view.thread.title);

  for await (const event of ledger.events({ thread_id: "thd_a", follow: false })) out.push(describe(event));
  for await (const row of ledger.thread.listAll({ project_id: "prj_a" })) out.push(row.thread_id);
  for await (const item of ledger.audit({ durable: "d" })) out.push(item.event?.type ?? item.error ?? "", String(item.expectedPosition));
  for await (const item of ledger.audit({ durable: "d" })) {
    // @ts-expect-error a message of the audit stream may hold no event
    out.push(item.event.type);
  }

  try {
    await ledger.thread.archive({ thread_id: "thd_a" });
  } catch (error) {
    if (error instanceof ThreadNotEmptyError) out.push(...error.details.blocking_sessions.map((s) => s.status));
    else if (error instanceof CapacityExceededError) out.push(error.details.dimension);
    else if (error instanceof LedgerError && error.retryable) out.push(error.code);
    else throw error;
  }
  return out;
}

function describe(event: StoredEvent): string {
  switch (event.type) {
    case "session.spawned":
      return `${event.data.parent_session_id} -> ${event.data.session_id}`;
    case "thread.created":
      // @ts-expect-error a thread.created event has no session
      return event.data.session_id;
    default:
      return event.type;
  }
}
