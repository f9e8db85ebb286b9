// What differs between the configuration in force and a newly read one, and which of those
// differences a reload applies: the schema says per option ("live" or "restart").

import { type Config, isGlobalOption, isHostOption } from "./config.ts";
import {
  GLOBAL_OPTIONS,
  HOST_OPTIONS,
  LOG_OPTIONS,
  type OptionReload,
  type OptionSpec,
  STORAGE_OPTIONS,
} from "./config_schema.ts";
import type { ModuleReloadOutcome } from "./modules.ts";

/** One option whose value differs between two configurations. */
export interface OptionChange {
  /** The option as written in the file: `scram_iterations`, `log.level`, `storage.path`. */
  option: string;
  /** The host whose value differs, for host and module options; undefined for global ones. */
  host?: string;
  /** "live": a reload applies it; "restart": the running value stays until a restart. */
  reload: OptionReload;
  /** Where the new file sets it (0 when it is back to its default). */
  line: number;
}

// Tables compared key by key below, or through the hosts they define.
const TABLES = new Set(["log", "storage", "cluster", "dns", "host", "component"]);

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Lists the options whose value differs from `running` to `next`: global options, the log and
 * storage tables, the lists of hosts and components, and host and module options for each host
 * present in both (a host added or removed is the change `host`).
 *
 * @example
 * ```ts
 * const restart = configChanges(server.config, next).filter((c) => c.reload === "restart");
 * ```
 */
export function configChanges(
  running: Config,
  next: Config,
  moduleOptions: Record<string, OptionSpec> = {},
): OptionChange[] {
  const changes: OptionChange[] = [];
  const add = (option: string, reload: OptionReload, line: number | undefined, host?: string) =>
    changes.push({ option, ...(host === undefined ? {} : { host }), reload, line: line ?? 0 });

  for (const [name, spec] of Object.entries(GLOBAL_OPTIONS)) {
    if (TABLES.has(name) || !isGlobalOption(name)) continue;
    if (!same(running.get(name), next.get(name))) {
      add(name, spec.reload, next.lineOf(undefined, name));
    }
  }
  // dns.nameservers is another spelling of dns_nameservers, compared above.
  const logLine = next.lineOf(undefined, "log");
  for (const key of Object.keys(LOG_OPTIONS) as (keyof Config["log"])[]) {
    if (!same(running.log[key], next.log[key])) add(`log.${key}`, LOG_OPTIONS[key].reload, logLine);
  }
  const storageLine = next.lineOf(undefined, "storage");
  for (const key of Object.keys(STORAGE_OPTIONS) as (keyof Config["storage"])[]) {
    if (running.storage[key] !== next.storage[key]) {
      add(`storage.${key}`, STORAGE_OPTIONS[key].reload, storageLine);
    }
  }
  // Joining, leaving or changing a cluster takes a restart (the running node keeps its table).
  if (!same(running.cluster, next.cluster)) {
    add("cluster", "restart", next.lineOf(undefined, "cluster"));
  }
  const domains = (c: Config) => c.hosts.map((h) => h.domain);
  if (!same(domains(running), domains(next))) add("host", GLOBAL_OPTIONS.host.reload, undefined);
  const components = (c: Config) =>
    c.components.map((x) => [x.domain, x.modules.join(","), x.secret ?? ""]);
  if (!same(components(running), components(next))) {
    add("component", GLOBAL_OPTIONS.component.reload, undefined);
  }

  const before = new Set([...domains(running), ...running.components.map((c) => c.domain)]);
  const shared = [...domains(next), ...next.components.map((c) => c.domain)]
    .filter((domain) => before.has(domain));
  for (const domain of shared) {
    for (const [name, spec] of Object.entries(HOST_OPTIONS)) {
      if (!isHostOption(name)) continue;
      if (!same(running.hostOption(domain, name), next.hostOption(domain, name))) {
        add(name, spec.reload, next.lineOf(domain, name), domain);
      }
    }
    // Module options as written (modules apply their defaults themselves). They are always
    // live: the module is told, or loaded again (ModuleManager.applyConfig).
    for (const name of Object.keys(moduleOptions)) {
      if (isGlobalOption(name) || isHostOption(name)) continue;
      if (!same(running.hostRaw(domain, name), next.hostRaw(domain, name))) {
        add(name, "live", next.lineOf(domain, name), domain);
      }
    }
  }
  return changes;
}

/**
 * Names each change once ("scram_iterations on a.example"), with `file:line` when set in the
 * file, for messages and logs.
 */
export function describeChange(change: OptionChange, file: string): string {
  const where = change.line > 0 ? ` (${file}:${change.line})` : "";
  return `${change.option}${change.host === undefined ? "" : ` on ${change.host}`}${where}`;
}

/** What `Server.reload` did. */
export interface ReloadReport {
  /** Changed options now in force. */
  applied: OptionChange[];
  /** Changed options that keep their running value until a restart. */
  needRestart: OptionChange[];
  /** Modules started over because options they read while loading changed. */
  modules: ModuleReloadOutcome[];
}
