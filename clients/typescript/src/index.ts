// @agentledger/client: a typed client for Agent Ledger on nats.js.
export * from "./api.js";
export type { AuditEvent, AuditOptions } from "./audit.js";
export type {
  CallOptions,
  CommandAccepted,
  CommandArgs,
  CommandName,
  CommandResult,
  QueryAnswer,
  QueryArgs,
  QueryName,
  QueryResult,
  RetryInfo,
} from "./call.js";
export type * from "./contract.js";
export { DATA_DIR_CREDS, type FoundCredentials, findCredentials, type LookupContext } from "./credentials.js";
export * from "./errors.js";
export type { EventsOptions } from "./events.js";
export { actorOf, Ledger, type LedgerOptions } from "./ledger.js";
export * from "./ledger-error.js";
export * from "./unavailable.js";
