// The slice of the running server that the router, sessions and modules may use. Kept as an
// interface so core files depend on a shape, not on the server assembly (no import cycles).

import type { HttpRoutes } from "./http/routes.ts";
import type { CommandRegistry } from "./admin_commands.ts";
import type { AccountStore } from "./auth/accounts.ts";
import type { Config } from "./config.ts";
import type { EventLoopLag } from "./event_loop_lag.ts";
import type { ScheduledTimers } from "./timers.ts";
import type { Host } from "./hosts.ts";
import type { Metrics } from "./metrics.ts";
import type { Session, SessionManager } from "./sessions.ts";
import type { Database } from "./storage/database.ts";
import type { Storage } from "./storage/stores.ts";
import type { Element } from "./xml/element.ts";

/** Delivery to remote domains (federation), when the server federates. */
export interface RemoteDelivery {
  /** Sends a stanza to its remote `to` domain, or bounces it to `origin` with the reason. */
  send(stanza: Element, origin: Session): void;
}

/** Read-mostly access to server state for core components and modules. */
export interface ServerContext {
  /** The configuration in force (replaced on reload). */
  readonly config: Config;
  /** Bound and connected sessions. */
  readonly sessions: SessionManager;
  /** Local hosts and components by domain. */
  readonly hosts: ReadonlyMap<string, Host>;
  /** Per-host data stores. */
  readonly storage: Storage;
  /** The database under them, for the tables modules own (see `ModuleFile.migrations`). */
  readonly database: Database;
  /** Accounts and their SCRAM credentials. */
  readonly accounts: AccountStore;
  /** Admin shell commands. */
  readonly commands: CommandRegistry;
  /** Counters (`stats counters`; /metrics and `stats show` read some of them). */
  readonly metrics: Metrics;
  /** Event-loop lag, sampled by the core for /metrics and the shell's `debug loop`. */
  readonly loopLag: EventLoopLag;
  /** The timers modules and the core set, with their owners (the shell's `debug timers`). */
  readonly timers: ScheduledTimers;
  /** HTTP routes by host (see `ModuleAPI.httpRoute`). */
  readonly http: HttpRoutes;
  /** The bound port of the first HTTP or HTTPS listener (throws when there is none). */
  port(kind: "http" | "https"): number;
  /** When the server started (ms epoch). */
  readonly startedAt: number;
  /** Federation; undefined when the server has no s2s listener (remote stanzas bounce). */
  readonly remote: RemoteDelivery | undefined;
  /** Routes a stanza as if it came from `origin` (RFC 6121 §8 rules). */
  route(stanza: Element, origin: Session): void;
  /** The internal session a host uses as origin for stanzas it sends itself. */
  hostSession(domain: string): Session;
}
