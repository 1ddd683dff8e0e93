// Where the client finds its NATS credentials, in the order every Agent Ledger client uses.
import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

import { CredsFileMissingError } from "./ledger-error.js";

/** The data directory's admin credentials, as `agentledger serve` / `make run` writes them. */
export const DATA_DIR_CREDS = join(".agentledger", "auth", "admin.creds");

/** The credentials file found and why it was chosen, or none (`path` null), and where the lookup went. */
export interface FoundCredentials {
  path: string | null;
  source: "argument" | "NATS_CREDS" | "data directory" | "config directory" | null;
  looked: string[];
}

/** What the lookup reads: the process's by default, anything in tests. */
export interface LookupContext {
  env?: Record<string, string | undefined>;
  cwd?: string;
  home?: string;
}

/**
 * The first of: the explicit `creds` argument; `NATS_CREDS`; `.agentledger/auth/admin.creds` in
 * the working directory or any parent; `$XDG_CONFIG_HOME/agentledger/credentials.creds` (default
 * `~/.config/agentledger/credentials.creds`). A file named by the argument or `NATS_CREDS` must
 * exist (`CredsFileMissingError`). None found: the client connects without credentials, and a server
 * that wants some is answered with `NoCredentialsError`, listing `looked`.
 */
export function findCredentials(creds?: string, context: LookupContext = {}): FoundCredentials {
  const env = context.env ?? process.env;
  const cwd = resolve(context.cwd ?? process.cwd());
  const looked: string[] = [];
  const named = (path: string, source: "argument" | "NATS_CREDS"): FoundCredentials => {
    const full = resolve(cwd, path);
    if (!isFile(full)) throw new CredsFileMissingError(full, source === "argument" ? "the creds argument" : "NATS_CREDS");
    return { path: full, source, looked: [...looked, full] };
  };
  if (creds) return named(creds, "argument");
  looked.push("the creds argument (not given)");
  if (env.NATS_CREDS) return named(env.NATS_CREDS, "NATS_CREDS");
  looked.push("NATS_CREDS (not set)");
  for (let dir = cwd; ; dir = dirname(dir)) {
    const path = join(dir, DATA_DIR_CREDS);
    if (isFile(path)) return { path, source: "data directory", looked: [...looked, path] };
    if (dirname(dir) === dir) break;
  }
  looked.push(`${DATA_DIR_CREDS} in ${cwd} and its parents`);
  const config = env.XDG_CONFIG_HOME || join(context.home ?? homedir(), ".config");
  const path = join(config, "agentledger", "credentials.creds");
  looked.push(path);
  if (isFile(path)) return { path, source: "config directory", looked };
  return { path: null, source: null, looked };
}

function isFile(path: string): boolean {
  return existsSync(path) && statSync(path).isFile();
}
