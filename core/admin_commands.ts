// The admin command registry: every command the admin shell offers (built-in sections and
// those modules add with `m.shellCommands`) is a typed spec here. The socket server and the
// `lilt shell` client (shell/) only transport requests to these specs and print results.

import type { AuthThrottle } from "./auth/throttle.ts";
import type { ServerContext } from "./context.ts";
import type { ModuleManager } from "./modules.ts";
import type { Listener } from "./net/listener.ts";
import type { LoadedCertificate } from "./net/certificates.ts";
import type { CertificateChange, TlsHostEntry } from "./net/tls.ts";
import type { ReloadReport } from "./config_changes.ts";
import type { RouteObserver } from "./router.ts";
import type { S2SManager } from "./s2s/manager.ts";
import type { Database } from "./storage/database.ts";
import type { StreamErrorCondition } from "./xml/stanza.ts";
import type { Config } from "./config.ts";
import type { ClusterNodeStatus } from "./cluster/cluster.ts";

/**
 * What admin commands may use of the running server: the module-facing context plus the
 * operator's tools (modules, the database for backups and stats, stanza watching, listeners,
 * federation, reload and shutdown). Commands depend on this shape, not on the server assembly.
 */
export interface AdminServer extends ServerContext {
  readonly modules: ModuleManager;
  readonly database: Database;
  readonly router: { observe(observer: RouteObserver): () => void };
  readonly listeners: readonly Listener[];
  readonly remote: S2SManager | undefined;
  /** Failed-login counts and delays (core/auth/throttle.ts). */
  readonly throttle: AuthThrottle;
  /** This node's view of its cluster (core/cluster/); undefined on a single node. */
  readonly cluster?: { readonly node: string; status(): ClusterNodeStatus[] } | undefined;
  /** Applies a new configuration (SIGHUP, `config reload`). */
  reload(next: Config): Promise<ReloadReport>;
  /** The certificates in force: one per host, and one per component that has its own. */
  readonly certificates: readonly TlsHostEntry[];
  /** The certificate TLS presents for a name (what SNI picks for it). */
  certificateForName(name: string): LoadedCertificate;
  /** Reads every certificate again and puts them in force for new connections. */
  reloadCertificates(): Promise<CertificateChange[]>;
  /** Closes every stream and stops the server. */
  shutdown(reason?: string, condition?: StreamErrorCondition): Promise<void>;
}

/** What kind of value an argument takes: drives tab completion and password prompts. */
export type ArgKind =
  | "jid"
  | "host"
  | "role"
  | "module"
  | "password"
  | "number"
  | "duration"
  | "file"
  | "level"
  | "text"
  | "string";

/** One positional argument of a command. */
export interface ArgSpec {
  name: string;
  kind: ArgKind;
  /** May be left out (only trailing arguments). */
  optional?: boolean;
  /** Takes the rest of the line (free text such as an announcement). */
  rest?: boolean;
  /**
   * For a `file` argument: `-` stands for the caller's standard input, which `lilt shell`
   * forwards over the socket (the command reads it with `ctx.readInput`).
   */
  stdin?: boolean;
}

/** A table for humans (`lilt shell`) and a list of row objects for `--json`. */
export interface TableResult {
  columns: string[];
  rows: (string | number | boolean | null)[][];
  /**
   * Text too long for a column, by row index: printed indented on its own line under that row
   * (not part of the `--json` row objects; put it in `data` too).
   */
  details?: (string | null)[];
}

/**
 * A command's answer: a one-line `message`, a `table`, and/or machine-readable `data`.
 * `--json` prints `data` (or the table as row objects, or the message).
 */
export interface CommandResult {
  message?: string;
  table?: TableResult;
  data?: unknown;
}

/** What a running command gets. */
export interface CommandContext {
  /** The running server, as far as admin commands use it (this is the operator's channel). */
  server: AdminServer;
  /**
   * For streaming commands (`stream: true`): sends one event to the client. The command
   * keeps running until `signal` aborts (client cancelled or disconnected).
   */
  emit(event: unknown): void;
  /** Aborted when the client cancels the command or goes away. */
  signal: AbortSignal;
  /**
   * The whole standard input the client forwarded for this request (see `ArgSpec.stdin`);
   * absent when it forwards none. Rejects with a `CommandError` when the input is too large
   * or the client goes away before its end.
   */
  readInput?(): Promise<string>;
}

/** Thrown by a command for an expected failure (bad argument, unknown user): no stack. */
export class CommandError extends Error {}

/** A shell command: `SECTION NAME ARGS...`. */
export interface CommandSpec {
  section: string;
  name: string;
  /** One line for `help SECTION`. */
  summary: string;
  args: ArgSpec[];
  /** Streams events until cancelled (watch commands). */
  stream?: boolean;
  run(ctx: CommandContext, args: string[]): CommandResult | Promise<CommandResult>;
}

/**
 * Sections and their commands; modules add and remove theirs at load and unload. A module
 * loaded on several hosts registers the same commands once per host: the command stays
 * available until the last of them is removed.
 */
export class CommandRegistry {
  #commands = new Map<string, CommandSpec[]>();

  /** Adds commands; returns a function removing exactly these registrations. */
  add(specs: CommandSpec[]): () => void {
    for (const spec of specs) {
      const key = `${spec.section} ${spec.name}`;
      const list = this.#commands.get(key) ?? [];
      list.push(spec);
      this.#commands.set(key, list);
    }
    return () => {
      for (const spec of specs) {
        const key = `${spec.section} ${spec.name}`;
        const list = this.#commands.get(key);
        const index = list?.lastIndexOf(spec) ?? -1;
        if (index < 0) continue;
        list!.splice(index, 1);
        if (list!.length === 0) this.#commands.delete(key);
      }
    };
  }

  /** The command `section name`, if any (the latest registration). */
  get(section: string, name: string): CommandSpec | undefined {
    return this.#commands.get(`${section} ${name}`)?.at(-1);
  }

  /** All commands, sorted by section then name. */
  list(): CommandSpec[] {
    return [...this.#commands.values()].map((list) => list.at(-1)!).sort((a, b) =>
      a.section.localeCompare(b.section) || a.name.localeCompare(b.name)
    );
  }

  /** Section names, sorted. */
  sections(): string[] {
    return [...new Set(this.list().map((c) => c.section))];
  }
}
