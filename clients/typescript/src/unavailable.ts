// Failures on the way to the engine, each an `UnavailableError` (code `unavailable`) of its own
// kind, as the engine's own `unavailable`: retryable, except on a closed connection.
import { UnavailableError } from "./errors.js";

function unavailable(message: string, retryable = true) {
  return { code: "unavailable" as const, message, retryable, details: {} };
}

/** Nothing listens at the server's address: raised at once, not after the connect timeout. */
export class ConnectionRefusedError extends UnavailableError {
  readonly url: string;
  constructor(url: string, cause: unknown) {
    super(unavailable(`connection refused: nothing listens at ${url}`), null, { cause });
    this.name = "ConnectionRefusedError";
    this.url = url;
  }
}

/** The server did not answer within the timeout, or its name does not resolve. */
export class UnreachableError extends UnavailableError {
  readonly url: string;
  constructor(url: string, cause: unknown) {
    super(unavailable(`cannot reach NATS at ${url}: ${cause instanceof Error ? cause.message : String(cause)}`), null,
          { cause });
    this.name = "UnreachableError";
    this.url = url;
  }
}

/** Nothing answers on the request's subject: no engine runs (or the prefix is wrong). */
export class NoRespondersError extends UnavailableError {
  readonly subject: string;
  constructor(subject: string, commandId: string | null, cause: unknown) {
    super(unavailable(`no engine answers ${subject}`), commandId, { cause });
    this.name = "NoRespondersError";
    this.subject = subject;
  }
}

/** No reply in time: the engine may still decide the request (a retry waits out its decide-within bound). */
export class NoReplyError extends UnavailableError {
  readonly subject: string;
  constructor(subject: string, timeout: number, commandId: string | null, cause: unknown) {
    super(unavailable(`no reply to ${subject} within ${timeout} ms`), commandId, { cause });
    this.name = "NoReplyError";
    this.subject = subject;
  }
}

/** The connection was closed (by `close()`, or the server cut this user off): not retryable on it. */
export class ConnectionClosedError extends UnavailableError {
  constructor(cause: unknown) {
    super(unavailable("the connection is closed", false), null, { cause });
    this.name = "ConnectionClosedError";
  }
}
