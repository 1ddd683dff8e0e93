// The NATS connection: opened with the credentials found, its failures told apart (refused, not
// authorised, no credentials, unreachable), and JSON request/reply with transport errors as LedgerErrors.
import { readFileSync } from "node:fs";

import {
  AuthorizationError,
  ClosedConnectionError,
  connect,
  credsAuthenticator,
  type NatsConnection,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";

import type { FoundCredentials } from "./credentials.js";
import { BadReplyError, NoCredentialsError, NotAuthorisedError } from "./ledger-error.js";
import { ConnectionClosedError, ConnectionRefusedError, NoReplyError, NoRespondersError, UnreachableError } from "./unavailable.js";

export class Link {
  private constructor(readonly nc: NatsConnection) {}

  /** Connect to `url` (servers comma-separated) with the `.creds` file found, or without credentials. */
  static async open(url: string, creds: FoundCredentials, timeout: number, name: string): Promise<Link> {
    const servers = url.split(",").map((s) => s.trim()).filter(Boolean);
    const authenticator = creds.path === null ? undefined : credsAuthenticator(new Uint8Array(readFileSync(creds.path)));
    try {
      // Reconnect for as long as it takes once connected (requests retry meanwhile); the first
      // connect is tried once per server, so a refused connection is reported at once.
      const nc = await connect({ servers, authenticator, timeout, name, maxReconnectAttempts: -1,
                                 reconnectTimeWait: 250, waitOnFirstConnect: false });
      return new Link(nc);
    } catch (error) {
      throw connectError(error, url, creds);
    }
  }

  /** Send `body` as JSON and return the reply's JSON as the engine sent it (the caller types it from the contract). */
  async request(subject: string, body: unknown, timeout: number, commandId: string | null): Promise<any> {
    let reply;
    try {
      reply = await this.nc.request(subject, JSON.stringify(body), { timeout });
    } catch (error) {
      throw requestError(error, subject, timeout, commandId);
    }
    const text = reply.string();
    let decoded;
    try {
      decoded = JSON.parse(text);
    } catch (error) {
      throw new BadReplyError(subject, text, `not JSON (${error instanceof Error ? error.message : String(error)})`);
    }
    if (typeof decoded !== "object" || decoded === null || typeof decoded.ok !== "boolean") {
      throw new BadReplyError(subject, text, "no `ok`: not an engine's reply");
    }
    return decoded;
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.nc.drain();
  }
}

function connectError(error: unknown, url: string, creds: FoundCredentials): Error {
  if (error instanceof AuthorizationError) {
    return creds.path === null ? new NoCredentialsError(url, creds.looked, error) : new NotAuthorisedError(url, creds.path, error);
  }
  const cause = error instanceof Error ? error.cause : undefined;
  const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined;
  if (code === "ECONNREFUSED") return new ConnectionRefusedError(url, error);
  return new UnreachableError(url, error);
}

function requestError(error: unknown, subject: string, timeout: number, commandId: string | null): unknown {
  if (error instanceof TimeoutError) return new NoReplyError(subject, timeout, commandId, error);
  if (error instanceof RequestError && error.isNoResponders()) return new NoRespondersError(subject, commandId, error);
  if (error instanceof ClosedConnectionError) return new ConnectionClosedError(error);
  return error;
}
