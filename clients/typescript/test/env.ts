// What the package's tests run against: a real engine on a real nats-server with authentication
// on, started by tests/test_typescript_client.py, which passes where it is in AGENTLEDGER_TEST_*.
import { randomBytes } from "node:crypto";

import { Ledger, type LedgerOptions } from "../src/index.js";

function required(name: string): string {
  const value = process.env[`AGENTLEDGER_TEST_${name}`];
  if (!value) throw new Error(`AGENTLEDGER_TEST_${name} is not set: run these tests through tests/test_typescript_client.py`);
  return value;
}

export const rig = {
  natsUrl: required("NATS_URL"),
  prefix: required("PREFIX"),
  stream: required("STREAM"),
  tenant: required("TENANT"),
  memberCreds: required("MEMBER_CREDS"),
  auditorCreds: required("AUDITOR_CREDS"),
  /** Credentials of a deployment this server does not trust. */
  foreignCreds: required("FOREIGN_CREDS"),
  /** An address where nothing listens. */
  refusedUrl: required("REFUSED_URL"),
  control: required("CONTROL"),
};

/** A connection as the tenant's member (or whatever `options` say). */
export function member(options: LedgerOptions = {}): Promise<Ledger> {
  return Ledger.connect({ natsUrl: rig.natsUrl, prefix: rig.prefix, stream: rig.stream, tenant: rig.tenant,
                          creds: rig.memberCreds, ...options });
}

export function auditor(options: LedgerOptions = {}): Promise<Ledger> {
  return member({ creds: rig.auditorCreds, ...options });
}

/** A fresh suffix, so each test's ids are its own in the shared stream. */
export function fresh(): string {
  return randomBytes(5).toString("hex");
}

/** Ask the test rig to act on the engine: stop it, start it, hold a thread past the decide-within limit. */
export async function control(action: string, body: Record<string, unknown> = {}): Promise<void> {
  const response = await fetch(`${rig.control}/${action}`, { method: "POST", body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`control ${action}: ${response.status} ${await response.text()}`);
}

/** A project, a thread in it, and a started session, with fresh ids. */
export async function started(ledger: Ledger, config?: { max_delegation_width?: number; max_delegation_depth?: number }) {
  const { project_id } = await ledger.project.create({ name: "tests", config });
  const { thread_id } = await ledger.thread.create({ project_id });
  const { session_id } = await ledger.session.create({ thread_id, owner: { kind: "agent", id: "agt_lead" } });
  await ledger.session.start({ session_id });
  return { project_id, thread_id, session_id };
}
