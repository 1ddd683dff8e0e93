// The base of every error the client raises, and the client's own errors (credentials, permissions,
// unreadable replies); the engine's error codes are in errors.ts (generated), and a transport failure
// is an `UnavailableError` of its own kind (unavailable.ts).
import type { ErrorCode } from "./errors.js";

/** What the client itself reports, beside the engine's codes. */
export type ClientErrorCode = "no_credentials" | "creds_file_missing" | "not_authorised" | "permission_denied" | "bad_reply";

/**
 * Every error of this client: an engine's refusal (one subclass per code, in errors.ts) or a
 * failure on the way there. `retryable` says whether sending the same request again (with the same
 * command id) may succeed; the client has already retried those until its deadline.
 */
export class LedgerError extends Error {
  readonly code: ErrorCode | ClientErrorCode;
  readonly retryable: boolean;
  readonly details: unknown;
  /** The command id the request was sent with (absent for queries and local failures). */
  readonly commandId: string | null;

  constructor(code: ErrorCode | ClientErrorCode, message: string, retryable: boolean, details: unknown,
              commandId?: string | null, options?: ErrorOptions) {
    super(message, options);
    this.name = "LedgerError";
    this.code = code;
    this.retryable = retryable;
    this.details = details;
    this.commandId = commandId ?? null;
  }
}

/** The server wants credentials and none were given or found (`details.looked` lists where the lookup went). */
export class NoCredentialsError extends LedgerError {
  declare readonly code: "no_credentials";
  declare readonly details: { url: string; looked: string[] };
  constructor(url: string, looked: string[], cause: unknown) {
    super("no_credentials", `no credentials found for NATS at ${url}; looked at: ${looked.join("; ")}`, false,
          { url, looked }, null, { cause });
    this.name = "NoCredentialsError";
  }
}

/** A credentials file that was named (argument or NATS_CREDS) does not exist. */
export class CredsFileMissingError extends LedgerError {
  declare readonly code: "creds_file_missing";
  declare readonly details: { path: string; source: string };
  constructor(path: string, source: string) {
    super("creds_file_missing", `creds file missing: ${path} (from ${source})`, false, { path, source });
    this.name = "CredsFileMissingError";
  }
}

/** The server refused the credentials (unknown, revoked or expired user). */
export class NotAuthorisedError extends LedgerError {
  declare readonly code: "not_authorised";
  declare readonly details: { url: string; creds: string };
  constructor(url: string, creds: string, cause: unknown) {
    super("not_authorised", `NATS at ${url} refused the credentials in ${creds}`, false, { url, creds }, null, { cause });
    this.name = "NotAuthorisedError";
  }
}

/** A reply this client cannot read: from a newer engine, or from something that is not one. Never retried. */
export class BadReplyError extends LedgerError {
  declare readonly code: "bad_reply";
  declare readonly details: { subject: string; reply: string };
  constructor(subject: string, reply: string, reason: string) {
    super("bad_reply", `cannot read the reply on ${subject}: ${reason}`, false, { subject, reply });
    this.name = "BadReplyError";
  }
}

/** The server does not let these credentials do that (a member reading the audit stream, say). */
export class PermissionDeniedError extends LedgerError {
  declare readonly code: "permission_denied";
  declare readonly details: { operation: string; subject: string };
  constructor(operation: string, subject: string, hint: string, cause: unknown) {
    super("permission_denied", `permission denied: ${operation} ${subject}; ${hint}`, false, { operation, subject }, null,
          { cause });
    this.name = "PermissionDeniedError";
  }
}
