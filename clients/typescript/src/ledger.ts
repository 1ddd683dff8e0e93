// The client: a connection to one tenant of an Agent Ledger deployment, with one method per command
// and query (src/api.ts, generated from the contract), events, audit and paged queries.
import { bindApi, type EventsApi, type LedgerApi, TENANT_CHECK } from "./api.js";
import { type AuditEvent, type AuditOptions, readAudit } from "./audit.js";
import {
  type CallOptions,
  Caller,
  checkIds,
  type CommandAccepted,
  type CommandArgs,
  type CommandName,
  type QueryAnswer,
  type QueryArgs,
  type QueryName,
  type RetryInfo,
} from "./call.js";
import type * as C from "./contract.js";
import { type FoundCredentials, findCredentials } from "./credentials.js";
import { InvalidCommandError } from "./errors.js";
import { type EventsOptions, followEvents } from "./events.js";
import { Link } from "./link.js";

export interface LedgerOptions {
  /** The tenant (`tnt_…`); default `AGENTLEDGER_TENANT`, else `tnt_default`. */
  tenant?: string;
  /** NATS server(s), comma-separated; default `NATS_URL`, else `nats://127.0.0.1:4222`. */
  natsUrl?: string;
  /**
   * A `.creds` file. When absent: `NATS_CREDS`, then `.agentledger/auth/admin.creds` in the working
   * directory or a parent, then `$XDG_CONFIG_HOME/agentledger/credentials.creds`; none found:
   * connect without credentials (a server without authentication).
   */
  creds?: string;
  /** The subject prefix; default `AGENTLEDGER_PREFIX`, else `ledger`. */
  prefix?: string;
  /** The engine's stream name (auditors read `AUDIT_<stream>`); default `AGENTLEDGER_STREAM`, else `LEDGER`. */
  stream?: string;
  /** Milliseconds for connecting, and for each request attempt; default 5000. */
  timeout?: number;
  /** Milliseconds within which retryable failures are retried with the same command id; default 10000. */
  retryFor?: number;
  /** Who commands are sent as, unless a call names its own `actor`; default `AGENTLEDGER_ACTOR`, else `usr_client`. */
  actor?: C.Actor | string;
  /** Called before each retry (logging, metrics). */
  onRetry?: (retry: RetryInfo) => void;
}

const KINDS = { usr_: "user", agt_: "agent", sys_: "system" } as const;

/** The actor an id stands for, from its prefix: `usr_` a user, `agt_` an agent, `sys_` the system. */
export function actorOf(id: string): C.Actor {
  for (const [prefix, kind] of Object.entries(KINDS)) if (id.startsWith(prefix)) return { kind, id };
  const message = `actor id must start with usr_, agt_ or sys_ (got ${JSON.stringify(id)})`;
  throw new InvalidCommandError({ code: "invalid_command", message, retryable: false,
                                  details: { errors: [{ path: "$.actor.id", message }] } });
}

export interface Ledger extends Omit<LedgerApi, "events"> {}

/**
 * A connection to one tenant. Each command and query is a method of its group, named after the
 * second part of its name (`session.request_input` is `ledger.session.requestInput({...})`), taking
 * the command's fields and returning its own result type; a refusal is thrown as the error class of
 * its code (`ThreadNotEmptyError`, …, all `LedgerError`s).
 */
export class Ledger {
  /** The tenant's events: `ledger.events({...})` follows the log; `ledger.events.read(...)` is the query. */
  readonly events: EventsApi & ((options?: EventsOptions) => AsyncGenerator<C.StoredEvent, void, undefined>);
  readonly tenant: string;
  readonly prefix: string;
  readonly stream: string;
  /** The credentials file the connection used and where it was found (`path` null: none), and where the lookup went. */
  readonly creds: FoundCredentials;
  private readonly caller: Caller;

  private constructor(private readonly link: Link, caller: Caller, stream: string, creds: Ledger["creds"]) {
    this.caller = caller;
    this.tenant = caller.settings.tenant;
    this.prefix = caller.settings.prefix;
    this.stream = stream;
    this.creds = creds;
    const api = bindApi(caller);
    Object.assign(this, api);
    this.events = Object.assign((options?: EventsOptions) => followEvents(caller, options), api.events);
  }

  /** Connect; fails at once and distinctly on missing credentials, refused connections and refused credentials. */
  static async connect(options: LedgerOptions = {}): Promise<Ledger> {
    const env = process.env;
    const natsUrl = options.natsUrl ?? env.NATS_URL ?? "nats://127.0.0.1:4222";
    const creds = findCredentials(options.creds);
    const timeout = options.timeout ?? 5000;
    const tenant = options.tenant ?? env.AGENTLEDGER_TENANT ?? "tnt_default";
    checkIds("connect", { tenant }, [TENANT_CHECK]);
    const named = options.actor ?? env.AGENTLEDGER_ACTOR ?? "usr_client";
    const actor = typeof named === "string" ? actorOf(named) : named;
    const link = await Link.open(natsUrl, creds, timeout, "agentledger-ts");
    const caller = new Caller(link, {
      tenant,
      prefix: options.prefix ?? env.AGENTLEDGER_PREFIX ?? "ledger",
      actor,
      timeout,
      retryFor: options.retryFor ?? 10_000,
      onRetry: options.onRetry,
    });
    return new Ledger(link, caller, options.stream ?? env.AGENTLEDGER_STREAM ?? "LEDGER", creds);
  }

  /** The highest log position this client's commands reached: pass it as `min_position` to read your own writes on any engine. */
  get position(): number {
    return this.caller.position;
  }

  /** A command by name, answered with its whole accepted reply (`position`, `events`, `result`). */
  command<N extends CommandName>(name: N, args: CommandArgs<C.Commands[N]>, options?: CallOptions): Promise<CommandAccepted<N>> {
    return this.caller.commandReply(name, args, options);
  }

  /** A query by name, answered with its whole answer (`position` of the read models, `result`). */
  query<N extends QueryName>(name: N, args: QueryArgs<C.Queries[N]>, options?: CallOptions): Promise<QueryAnswer<N>> {
    return this.caller.queryAnswer(name, args, options);
  }

  /**
   * For auditors: the tenant's events from its audit stream `AUDIT_<stream>`, through the durable
   * consumer `durable` (made on first use, resumed by name), with the headers the audit stream keeps.
   */
  audit(options: AuditOptions): AsyncGenerator<AuditEvent, void, undefined> {
    checkIds("events.read", { thread_id: options.thread_id });
    const filter = options.thread_id ? `thr.${options.thread_id}.>` : ">";
    return readAudit(this.link.nc, `AUDIT_${this.stream}`, `${this.prefix}.evt.${this.tenant}.${filter}`, options);
  }

  /** Finish what is in flight and close the connection. */
  close(): Promise<void> {
    return this.link.close();
  }
}
