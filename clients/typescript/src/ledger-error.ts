// The base of every error the client raises, and the errors that happen before or around a request
// (credentials, connection, transport); the engine's own error codes are in errors.ts (generated).
import type { ErrorCode } from "./errors.js";

/** What the client itself reports, beside the engine's codes. */
export type ClientErrorCode =
  | "no_credentials"
  | "creds_file_missing"
  | "not_authorised"
  | "connection_refused"
  | "unreachable"
  | "timeout"
  | "no_responders"
  | "closed"
  | "permission_denied";

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

/** No credentials were given and none were found where the client looks (listed in `details.looked`). */
export class NoCredentialsError extends LedgerError {
  declare readonly code: "no_credentials";
  declare readonly details: { looked: string[] };
  constructor(looked: string[]) {
    super("no_credentials", `no credentials found; looked at: ${looked.join("; ")}`, false, { looked });
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
  declare readonly details: { url: string; creds: string | null };
  constructor(url: string, creds: string | null, cause: unknown) {
    super("not_authorised", `not authorised by ${url}${creds ? ` with ${creds}` : " without credentials"}`, false,
          { url, creds }, null, { cause });
    this.name = "NotAuthorisedError";
  }
}

/** Nothing listens at the address: reported at once, not after the connect timeout. */
export class ConnectionRefusedError extends LedgerError {
  declare readonly code: "connection_refused";
  declare readonly details: { url: string };
  constructor(url: string, cause: unknown) {
    super("connection_refused", `connection refused: nothing listens at ${url}`, true, { url }, null, { cause });
    this.name = "ConnectionRefusedError";
  }
}

/** The server could not be reached otherwise (no answer within the timeout, a name that does not resolve). */
export class UnreachableError extends LedgerError {
  declare readonly code: "unreachable";
  declare readonly details: { url: string };
  constructor(url: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super("unreachable", `cannot reach NATS at ${url}: ${why}`, true, { url }, null, { cause });
    this.name = "UnreachableError";
  }
}

/** No reply within the request timeout (the engine may still have decided the command: retry with its id). */
export class RequestTimeoutError extends LedgerError {
  declare readonly code: "timeout";
  declare readonly details: { subject: string; timeoutMs: number };
  constructor(subject: string, timeoutMs: number, commandId: string | null, cause: unknown) {
    super("timeout", `no reply to ${subject} within ${timeoutMs} ms`, true, { subject, timeoutMs }, commandId, { cause });
    this.name = "RequestTimeoutError";
  }
}

/** No engine listens on the subject right now (none running, or all restarting). */
export class NoRespondersError extends LedgerError {
  declare readonly code: "no_responders";
  declare readonly details: { subject: string };
  constructor(subject: string, commandId: string | null, cause: unknown) {
    super("no_responders", `no engine answers ${subject}`, true, { subject }, commandId, { cause });
    this.name = "NoRespondersError";
  }
}

/** The connection was closed (by `close()`, or the server cut this user off). */
export class ConnectionClosedError extends LedgerError {
  declare readonly code: "closed";
  declare readonly details: Record<string, never>;
  constructor(cause: unknown) {
    super("closed", "the connection is closed", false, {}, null, { cause });
    this.name = "ConnectionClosedError";
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
