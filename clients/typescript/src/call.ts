// How one command or query goes over the wire: the body (actor and command id filled in, ids
// checked), the request, the reply split on `ok`, and retries of retryable errors within a deadline.
import { randomUUID } from "node:crypto";

import { ID_CHECKS } from "./api.js";
import type * as C from "./contract.js";
import { InvalidCommandError, RateLimitedError, type RefusalError, refusal, type WireError } from "./errors.js";
import { BadReplyError, LedgerError } from "./ledger-error.js";
import type { Link } from "./link.js";
import { NoReplyError } from "./unavailable.js";

/**
 * The engine decides a command within this long of its arrival or answers `unavailable`
 * (`serve --decide-within`): after a request that got no reply, the retry waits at least this long
 * after it, so the first attempt can never be decided after the retry was answered.
 */
export const DECIDE_WITHIN_MS = 2000;

export type CommandName = keyof C.Commands;
export type QueryName = keyof C.Queries;
/** A command's accepted reply: `position`, the one appended `events`, and its own `result`. */
export type CommandAccepted<N extends CommandName> = Extract<C.CommandReplies[N], { ok: true }>;
export type CommandResult<N extends CommandName> = CommandAccepted<N>["result"];
/** A query's answer: the read model's `position` and the query's own `result`. */
export type QueryAnswer<N extends QueryName> = Extract<C.QueryReplies[N], { ok: true }>;
export type QueryResult<N extends QueryName> = QueryAnswer<N>["result"];

/** A command's fields; `actor` defaults to the client's, `command_id` to a new id per call. */
export type CommandArgs<T extends { actor: C.Actor }> = Omit<T, "actor"> & { actor?: C.Actor };
/** A query's fields. */
export type QueryArgs<T> = T;
/** A paged query's fields; `after` is where the first page starts. */
export type Paged<T> = T;

/** A field a request is checked for before it is sent (`*` stands for every item of a list). */
export interface IdCheck {
  path: readonly string[];
  pattern: RegExp;
  message: string;
}

/** Told before each retry: which attempt failed with what, and how long the client waits. */
export interface RetryInfo {
  name: string;
  attempt: number;
  commandId: string | null;
  error: LedgerError;
  delayMs: number;
}

/** Per-call settings; each defaults to the connection's. */
export interface CallOptions {
  /** How long one attempt waits for its reply, in milliseconds. */
  timeout?: number;
  /** How long retryable failures are retried, in milliseconds from the call (0: never retried). */
  retryFor?: number;
  /** Called before each retry. */
  onRetry?: (retry: RetryInfo) => void;
}

export interface CallSettings {
  prefix: string;
  tenant: string;
  actor: C.Actor;
  timeout: number;
  retryFor: number;
  onRetry?: (retry: RetryInfo) => void;
}

/** What the generated methods send through (src/api.ts). */
export interface Requester {
  command<N extends CommandName>(name: N, args: CommandArgs<C.Commands[N]>, options?: CallOptions): Promise<CommandResult<N>>;
  query<N extends QueryName>(name: N, args: QueryArgs<C.Queries[N]>, options?: CallOptions): Promise<QueryResult<N>>;
}

/** A new command id: one per call, reused by each of its retries. */
export function newCommandId(): string {
  return `cmd-${randomUUID().replaceAll("-", "")}`;
}

export class Caller implements Requester {
  /** The highest log position this client's accepted commands reached (0: none yet). */
  position = 0;

  constructor(private readonly link: Link, readonly settings: CallSettings) {}

  async command<N extends CommandName>(name: N, args: CommandArgs<C.Commands[N]>,
                                       options?: CallOptions): Promise<CommandResult<N>> {
    return (await this.commandReply(name, args, options)).result;
  }

  /** The whole accepted reply (`position` for read-your-writes, the appended `events`, `result`). */
  async commandReply<N extends CommandName>(name: N, args: CommandArgs<C.Commands[N]>,
                                            options?: CallOptions): Promise<CommandAccepted<N>> {
    const commandId = args.command_id ?? newCommandId();
    const body = { ...args, actor: args.actor ?? this.settings.actor, command_id: commandId };
    checkIds(name, body);
    const subject = `${this.settings.prefix}.cmd.${this.settings.tenant}.${name}`;
    return this.retrying(name, commandId, options, async (timeout) => {
      const reply = await this.link.request(subject, body, timeout, commandId);
      if (reply.ok !== true) throw refused(subject, reply.error, reply.command_id ?? commandId);
      const accepted: CommandAccepted<N> = reply; // the engine's reply to `name`, as the contract types it
      this.position = Math.max(this.position, accepted.position);
      return accepted;
    });
  }

  async query<N extends QueryName>(name: N, args: QueryArgs<C.Queries[N]>, options?: CallOptions): Promise<QueryResult<N>> {
    return (await this.queryAnswer(name, args, options)).result;
  }

  /** The whole answer (`position`: how far the answering engine's read models had read the log). */
  async queryAnswer<N extends QueryName>(name: N, args: QueryArgs<C.Queries[N]>,
                                         options?: CallOptions): Promise<QueryAnswer<N>> {
    checkIds(name, args);
    const subject = `${this.settings.prefix}.qry.${this.settings.tenant}.${name}`;
    return this.retrying(name, null, options, async (timeout) => {
      const reply = await this.link.request(subject, args, timeout, null);
      if (reply.ok !== true) throw refused(subject, reply.error, null);
      const answer: QueryAnswer<N> = reply; // the engine's answer to `name`, as the contract types it
      return answer;
    });
  }

  /** One attempt after another while the error is retryable and a retry can start before the deadline. */
  private async retrying<T>(name: string, commandId: string | null, options: CallOptions | undefined,
                            attempt: (timeout: number) => Promise<T>): Promise<T> {
    const timeout = options?.timeout ?? this.settings.timeout;
    const deadline = Date.now() + (options?.retryFor ?? this.settings.retryFor);
    const onRetry = options?.onRetry ?? this.settings.onRetry;
    for (let n = 1; ; n++) {
      const sent = Date.now();
      try {
        return await attempt(timeout);
      } catch (error) {
        if (!(error instanceof LedgerError) || !error.retryable) throw error;
        let delayMs = backoff(n);
        // no reply: the engine may still decide that attempt; never send the retry before it must have
        if (error instanceof NoReplyError) delayMs = Math.max(delayMs, sent + DECIDE_WITHIN_MS - Date.now());
        // over its share or rate: the engine says when a retry is likely to be taken
        else if (error instanceof RateLimitedError) delayMs = Math.max(delayMs, Math.ceil(error.details.retry_after * 1000));
        if (Date.now() + delayMs >= deadline) throw error;
        onRetry?.({ name, attempt: n, commandId, error, delayMs });
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }
}

/** 50 ms doubling to at most 1 s, each wait drawn at random below that (full jitter spreads retrying clients). */
export function backoff(attempt: number): number {
  return Math.round(Math.random() * Math.min(1000, 50 * 2 ** (attempt - 1)));
}

/** The error class of a refusal; an error this client cannot read is a bad reply. */
function refused(subject: string, error: WireError, commandId: string | null): RefusalError | BadReplyError {
  return refusal(error, commandId) ?? new BadReplyError(subject, JSON.stringify(error), "an error of no known code");
}

/** Refuse a malformed id here, with the message the contract's pattern stands for. */
export function checkIds(name: string, body: object, checks: readonly IdCheck[] = ID_CHECKS[name] ?? []): void {
  for (const check of checks) {
    for (const [path, value] of at(body, check.path, "$")) {
      if (typeof value === "string" && !check.pattern.test(value)) {
        const message = `invalid command: ${check.message} (got ${JSON.stringify(value)}) at \`${path}\``;
        throw new InvalidCommandError({ code: "invalid_command", message, retryable: false,
                                        details: { errors: [{ path, message: `${check.message} (got ${JSON.stringify(value)})` }] } });
      }
    }
  }
}

function* at(value: unknown, path: readonly string[], where: string): Generator<[string, unknown]> {
  if (path.length === 0) {
    yield [where, value];
    return;
  }
  const [head, ...rest] = path;
  if (head === "*") {
    if (Array.isArray(value)) for (const [i, item] of value.entries()) yield* at(item, rest, `${where}[${i}]`);
  } else if (typeof value === "object" && value !== null && head !== undefined) {
    yield* at(Object.entries(value).find(([k]) => k === head)?.[1], rest, `${where}.${head}`);
  }
}
