// The module loader and the API handed to each module. Everything a module registers
// (hooks, disco entries, timers, unload callbacks) is tracked so unloading removes all of it.

import type { HttpHandler, HttpRouteOptions } from "./http/routes.ts";
import type { CommandSpec } from "./admin_commands.ts";
import { roleModelFor } from "./auth/roles.ts";
import { isHostOption } from "./config.ts";
import type { HostOptionName, HostOptionValues, OptionSpec } from "./config_schema.ts";
import type { ServerContext } from "./context.ts";
import type { EventHandler } from "./events.ts";
import type { DiscoIdentity, DiscoItem, Host, HostEvents } from "./hosts.ts";
import type { JID } from "./jid.ts";
import { requestIq } from "./iq.ts";
import { getLogger } from "./log.ts";
import type { Database } from "./storage/database.ts";
import type { Migration } from "./storage/migrations.ts";
import type { ArchiveOptions, ArchiveStore, KeyValueStore, MapStore } from "./storage/stores.ts";
import { Element } from "./xml/element.ts";

/** The shape of a module file: a default load function and optional option declarations. */
export interface ModuleFile {
  /** Called once per host the module is loaded on. */
  default: (m: ModuleAPI) => void | Promise<void>;
  /** The options the module reads, so `lilt check config` knows them. */
  options?: Record<string, OptionSpec>;
  /** One line for `module list` and docs. */
  description?: string;
  /**
   * Modules this one needs on the same host: loaded before it (when the configuration does not
   * list them), and not unloaded while it is loaded.
   */
  depends?: string[];
  /**
   * The schema of the tables this module owns, as forward-only steps numbered 1, 2, 3 … for
   * this module alone. They run before the module first loads in a process (each step in its
   * own transaction, recorded in module_schema); append steps, never edit released ones. Name
   * the tables after the module, and use them through `m.database`.
   */
  migrations?: readonly Migration[];
  /**
   * The name `migrations` are recorded under (default: the module's name). Modules that share
   * tables (the pubsub component and PEP) name the same schema and pass the same steps, so
   * whichever loads first creates them and the other finds them up to date.
   */
  schema?: string;
}

/**
 * Services modules offer each other on a host (`m.provide`, `m.service`), typed by augmenting
 * this interface from the providing module's file:
 *
 * ```ts
 * declare module "../core/modules.ts" {
 *   interface ModuleServices {
 *     archive: MessageArchive;
 *   }
 * }
 * ```
 */
// deno-lint-ignore no-empty-interface
export interface ModuleServices {}

/**
 * The service `name` a module provides on `host`, or undefined: for code outside the host's
 * modules (shell commands). Modules use `m.service`, which also checks `depends`.
 */
export function hostService<K extends keyof ModuleServices & string>(
  host: Host,
  name: K,
): ModuleServices[K] | undefined {
  return host.services.get(name)?.service as ModuleServices[K] | undefined;
}

/** A module could not be unloaded: others loaded on the host depend on it. */
export class ModuleInUseError extends Error {}

/** A named table of module files (built-in modules, later plugins). */
export type ModuleTable = Record<string, ModuleFile>;

/** A module option had a value of the wrong type or out of bounds. */
export class ModuleOptionError extends Error {}

/** Store kinds a module can open. */
export type StoreKind = "keyval" | "map" | "archive";

/** Options for `ModuleAPI.addTimer`. */
export interface TimerOptions {
  /** Run every `ms` milliseconds until cancelled or unloaded. */
  repeat?: boolean;
  /** What the timer does, shown by the shell's `debug timers` (e.g. "archive expiry"). */
  label?: string;
}

export { IqError } from "./iq.ts";

/**
 * The API a module receives for one host. Hooks, disco entries, timers and unload callbacks
 * registered through it are removed when the module is unloaded.
 *
 * @example
 * ```ts
 * export default function ping(m: ModuleAPI) {
 *   m.addFeature("urn:xmpp:ping");
 *   m.hook("iq-get/host/urn:xmpp:ping:ping", ({ stanza, origin }) => {
 *     origin.send(reply(stanza));
 *     return true;
 *   });
 * }
 * ```
 */
export class ModuleAPI {
  /** Module name (its file name in mod/). */
  readonly name: string;
  /** The host the module is loaded on. */
  readonly host: Host;
  /** Server state the module may use. */
  readonly server: ServerContext;
  /** Logger with category ["lilt", "mod", name]. */
  readonly log: ReturnType<typeof getLogger>;
  #cleanups: (() => void)[] = [];
  #unloadCallbacks: (() => void)[] = [];
  #iqCounter = 0;
  /** Options read while loading: name -> fingerprint of the value then (see `staleOptions`). */
  #readWhileLoading = new Map<string, string>();
  #loading = true;
  #followsReloads = false;

  /** The options the module declares (its `options` export). */
  #declared: Record<string, OptionSpec>;

  constructor(
    name: string,
    host: Host,
    server: ServerContext,
    declared: Record<string, OptionSpec> = {},
  ) {
    this.name = name;
    this.host = host;
    this.server = server;
    this.log = getLogger(["mod", name]);
    this.#declared = declared;
  }

  /** The host's domain. */
  get domain(): string {
    return this.host.domain;
  }

  /** Hooks an event on this host; higher priority runs first. */
  hook<K extends keyof HostEvents & string>(
    name: K,
    handler: EventHandler<HostEvents[K]>,
    priority = 0,
  ): void {
    this.#cleanups.push(this.host.events.on(name, handler, { priority, owner: this.name }));
    if (name === "config-reloaded") this.#followsReloads = true;
  }

  /** Removes a hook added with `hook`. */
  unhook<K extends keyof HostEvents & string>(name: K, handler: EventHandler<HostEvents[K]>): void {
    this.host.events.off(name, handler);
  }

  /** Advertises a disco#info feature on the host. */
  addFeature(feature: string): void {
    this.#cleanups.push(this.host.disco.addFeature(feature));
  }

  /** Advertises a disco#info identity on the host. */
  addIdentity(category: string, type: string, name?: string): void {
    const identity: DiscoIdentity = { category, type, name };
    this.#cleanups.push(this.host.disco.addIdentity(identity));
  }

  /** Adds a XEP-0128 extension form to the host's disco#info. */
  addExtension(form: Element): void {
    this.#cleanups.push(this.host.disco.addExtension(form));
  }

  /** Adds a disco#items entry on the host (a service it offers). */
  addItem(item: DiscoItem): void {
    this.#cleanups.push(this.host.disco.addItem(item));
  }

  /** Advertises a feature on every account's bare JID (PEP, MAM). */
  addAccountFeature(feature: string): void {
    this.#cleanups.push(this.host.accountDisco.addFeature(feature));
  }

  /** Advertises an identity on every account's bare JID (`pubsub/pep`). */
  addAccountIdentity(category: string, type: string, name?: string): void {
    this.#cleanups.push(this.host.accountDisco.addIdentity({ category, type, name }));
  }

  #raw(name: string): unknown {
    this.#noteRead(name);
    return this.server.config.hostRaw(this.domain, name);
  }

  /** Remembers what an option was when the module read it while loading. */
  #noteRead(name: string): void {
    if (this.#loading && !this.#readWhileLoading.has(name)) {
      this.#readWhileLoading.set(name, this.#fingerprint(name));
    }
  }

  /** The value as the module reads it: a core option's, or the raw one (getters add defaults). */
  #fingerprint(name: string): string {
    const config = this.server.config;
    const value = isHostOption(name)
      ? config.hostOption(this.domain, name)
      : config.hostRaw(this.domain, name);
    return JSON.stringify(value) ?? "";
  }

  /**
   * Options the module read while loading whose value has changed since (after a reload).
   * The module manager reloads such a module unless it hooks `config-reloaded`.
   */
  staleOptions(): string[] {
    return [...this.#readWhileLoading]
      .filter(([name, then]) => this.#fingerprint(name) !== then)
      .map(([name]) => name);
  }

  /** True when the module hooks `config-reloaded`, so it re-reads its options itself. */
  get followsReloads(): boolean {
    return this.#followsReloads;
  }

  /** Marks the end of loading; options read later are read live. Called by the module manager. */
  settle(): void {
    this.#loading = false;
  }

  #fail(name: string, expected: string, value: unknown): never {
    const line = this.server.config.lineOf(this.domain, name);
    const where = line ? `${this.server.config.file}:${line}: ` : "";
    throw new ModuleOptionError(
      `${where}Option '${name}' of module '${this.name}' expected ${expected}, found ${
        JSON.stringify(value)
      }`,
    );
  }

  /**
   * One of the options the module declares in its `options` export, read with the type,
   * default and bounds declared there (one place for them, not repeated where it is read).
   * Reading an option the module does not declare is a programming error and throws.
   */
  option<T = unknown>(name: string): T {
    const spec = this.#declared[name];
    if (!spec) {
      throw new Error(`Module '${this.name}' reads option '${name}' that it does not declare`);
    }
    const fallback = spec.default;
    switch (spec.type) {
      case "string":
        return this.optionString(name, fallback as string) as T;
      case "boolean":
        return this.optionBoolean(name, fallback as boolean) as T;
      case "integer":
        return this.optionInteger(name, fallback as number, spec.min, spec.max) as T;
      case "number":
        return this.optionNumber(name, fallback as number, spec.min, spec.max) as T;
      case "string[]":
        return this.optionStrings(name, fallback as string[]) as T;
      case "enum":
        return this.optionEnum(name, fallback as string, spec.values ?? []) as T;
      default:
        return (this.optionRaw(name) ?? fallback) as T;
    }
  }

  /** A string option (host value, then global, then the default). */
  optionString(name: string, fallback: string): string {
    const value = this.#raw(name);
    if (value === undefined) return fallback;
    if (typeof value !== "string") this.#fail(name, "a string", value);
    return value;
  }

  /** A boolean option. */
  optionBoolean(name: string, fallback: boolean): boolean {
    const value = this.#raw(name);
    if (value === undefined) return fallback;
    if (typeof value !== "boolean") this.#fail(name, "true or false", value);
    return value;
  }

  /** A number option within bounds (inclusive). */
  optionNumber(name: string, fallback: number, min = -Infinity, max = Infinity): number {
    const value = this.#raw(name);
    if (value === undefined) return fallback;
    if (typeof value !== "number" || Number.isNaN(value) || value < min || value > max) {
      this.#fail(name, `a number from ${min} to ${max}`, value);
    }
    return value;
  }

  /** An integer option within bounds (inclusive). */
  optionInteger(name: string, fallback: number, min = -Infinity, max = Infinity): number {
    const value = this.optionNumber(name, fallback, min, max);
    if (!Number.isInteger(value)) this.#fail(name, "an integer", value);
    return value;
  }

  /** One of a fixed set of strings. */
  optionEnum<T extends string>(name: string, fallback: T, values: readonly T[]): T {
    const value = this.#raw(name);
    if (value === undefined) return fallback;
    if (typeof value !== "string" || !values.includes(value as T)) {
      this.#fail(name, `one of ${values.join(", ")}`, value);
    }
    return value as T;
  }

  /** An option's raw TOML value (host, then global), for modules that parse tables themselves. */
  optionRaw(name: string): unknown {
    return this.#raw(name);
  }

  /** A core host option for this host (e.g. `admins`), with its schema type. */
  hostOption<K extends HostOptionName>(name: K): HostOptionValues[K] {
    this.#noteRead(name);
    return this.server.config.hostOption(this.domain, name);
  }

  /** A list of strings. */
  optionStrings(name: string, fallback: string[]): string[] {
    const value = this.#raw(name);
    if (value === undefined) return fallback;
    if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
      this.#fail(name, "a list of strings", value);
    }
    return value as string[];
  }

  /**
   * The server's database, for the tables this module owns (created by its `migrations`).
   * Statements are synchronous; wrap related writes in `database.transaction`.
   */
  get database(): Database {
    return this.server.database;
  }

  /** Opens one of this host's stores. */
  openStore<T = unknown>(name: string, kind: "keyval"): KeyValueStore<T>;
  openStore<T = unknown>(name: string, kind: "map"): MapStore<T>;
  openStore(name: string, kind: "archive", options?: ArchiveOptions): ArchiveStore;
  openStore(
    name: string,
    kind: StoreKind,
    options?: ArchiveOptions,
  ): KeyValueStore<unknown> | MapStore<unknown> | ArchiveStore {
    const storage = this.server.storage;
    if (kind === "keyval") return storage.keyval(this.domain, name);
    if (kind === "map") return storage.map(this.domain, name);
    return storage.archive(this.domain, name, options);
  }

  /** Routes a stanza from this host (use `from` = the host or one of its JIDs). */
  send(stanza: Element): void {
    if (!stanza.attrs.from) stanza.attrs.from = this.domain;
    this.server.route(stanza, this.server.hostSession(this.domain));
  }

  /**
   * Sends an iq get/set from this host and resolves with the result stanza. Rejects with
   * `IqError` on an error reply or after `timeoutMs` without an answer.
   */
  sendIq(stanza: Element, timeoutMs = 30_000): Promise<Element> {
    if (!stanza.attrs.id) stanza.attrs.id = `lilt-${this.name}-${++this.#iqCounter}`;
    // On unload the iq is abandoned: its promise rejects instead of hanging forever.
    const unloaded = new AbortController();
    const abandon = () => unloaded.abort("module-unloaded");
    this.#cleanups.push(abandon);
    return requestIq(this.server, this.host, stanza, { timeoutMs, signal: unloaded.signal })
      .finally(() => {
        const i = this.#cleanups.indexOf(abandon);
        if (i >= 0) this.#cleanups.splice(i, 1);
      });
  }

  /** Runs `fn` after `ms` (or every `ms` with `repeat`); returns a cancel function. */
  addTimer(ms: number, fn: () => void, options: TimerOptions = {}): () => void {
    const run = () => {
      try {
        fn();
      } catch (error) {
        this.log.error("Timer in module {module} threw: {error}", { module: this.name, error });
      }
    };
    const clear = this.server.timers.schedule(
      ms,
      options.repeat ? run : () => {
        cancel();
        run();
      },
      { owner: this.name, host: this.domain, label: options.label, repeat: options.repeat },
    );
    const cancel = () => {
      clear();
      const i = this.#cleanups.indexOf(cancel);
      if (i >= 0) this.#cleanups.splice(i, 1);
    };
    this.#cleanups.push(cancel);
    return cancel;
  }

  /**
   * Serves an HTTP route on this host (requests whose Host header names it, on the
   * `http_interfaces` listeners); removed on unload. Throws when the route is taken. A path
   * ending in "/*" serves every path below it; `options.maxBodyBytes` replaces
   * `http_max_body_size` for this route.
   *
   * @example
   * ```ts
   * m.httpRoute("GET", "/hello", () => new Response("hi"));
   * ```
   */
  httpRoute(
    method: string,
    path: string,
    handler: HttpHandler,
    options: HttpRouteOptions = {},
  ): void {
    this.#cleanups.push(
      this.server.http.add(this.domain, method, path, handler, { ...options, owner: this.name }),
    );
  }

  /** Adds admin shell commands (`lilt shell SECTION NAME ...`); removed on unload. */
  shellCommands(specs: CommandSpec[]): void {
    this.#cleanups.push(this.server.commands.add(specs));
  }

  /**
   * Whether an actor may perform an action on this host (core/auth/roles.ts): a JID's role
   * comes from `admins`, its stored role or `default_user_role`; "operator" is the admin shell.
   * Remote JIDs, unknown and disabled accounts are guests.
   */
  may(action: string, actor: JID | "operator"): boolean {
    return roleModelFor(this.server, this.domain).may(action, actor);
  }

  /** A named counter shown by `stats counters` (e.g. `m.metric("offline.stored").inc()`). */
  metric(name: string): { inc(n?: number): void } {
    return this.server.metrics.counter(name);
  }

  /**
   * Offers a service to the other modules of this host (withdrawn on unload). One module
   * provides each service; a second one providing it is an error.
   */
  provide<K extends keyof ModuleServices & string>(name: K, service: ModuleServices[K]): void {
    const services = this.host.services;
    const current = services.get(name);
    if (current) {
      throw new Error(
        `Module '${this.name}' cannot provide '${name}' on '${this.domain}': ` +
          `'${current.owner}' already does`,
      );
    }
    const entry = { owner: this.name, service };
    services.set(name, entry);
    this.#cleanups.push(() => {
      if (services.get(name) === entry) services.delete(name);
    });
  }

  /**
   * A service another module of this host provides. Throws when none does: declare the
   * providing module in `depends`, so it is loaded first.
   */
  service<K extends keyof ModuleServices & string>(name: K): ModuleServices[K] {
    const entry = this.host.services.get(name);
    if (!entry) {
      throw new Error(
        `Module '${this.name}' needs the service '${name}' on '${this.domain}', ` +
          "which no loaded module provides",
      );
    }
    return entry.service as ModuleServices[K];
  }

  /** Registers a callback run when the module is unloaded (before hooks are removed). */
  onUnload(fn: () => void): void {
    this.#unloadCallbacks.push(fn);
  }

  /** Undoes everything registered through this API. Called by the module manager. */
  dispose(): void {
    for (const fn of this.#unloadCallbacks.splice(0).reverse()) {
      try {
        fn();
      } catch (error) {
        this.log.error("Unload callback of {module} threw: {error}", {
          module: this.name,
          error,
        });
      }
    }
    for (const cleanup of this.#cleanups.splice(0).reverse()) cleanup();
  }
}

/** A module that a reload restarted because options it read while loading changed. */
export interface ModuleReloadOutcome {
  module: string;
  host: string;
  /** The changed options it had read. */
  options: string[];
  /** Why loading it again failed (it is then unloaded). */
  error?: string;
}

/** Loads and unloads modules per host, from a table of available module files. */
export class ModuleManager {
  #server: ServerContext;
  /** Schemas (module names, or `ModuleFile.schema`) brought up to date in this process. */
  #migrated = new Set<string>();
  #available: ModuleTable;
  /** host domain -> module name -> its API instance */
  #loaded = new Map<string, Map<string, ModuleAPI>>();
  #log = getLogger("modules");

  constructor(server: ServerContext, available: ModuleTable) {
    this.#server = server;
    this.#available = { ...available };
  }

  /** Adds (or replaces) a loadable module, e.g. a third-party plugin. */
  register(name: string, file: ModuleFile): void {
    this.#available[name] = file;
  }

  /** Names of the modules that can be loaded. */
  available(): string[] {
    return Object.keys(this.#available).sort();
  }

  /** The module file for a name, if known. */
  file(name: string): ModuleFile | undefined {
    return this.#available[name];
  }

  /**
   * `names` with the modules they depend on, dependencies first, each once (the order a host
   * loads them in). Throws on a cycle; an unknown name fails when it is loaded.
   */
  withDependencies(names: readonly string[]): string[] {
    const ordered: string[] = [];
    const visiting = new Set<string>();
    const visit = (name: string, path: string[]) => {
      if (ordered.includes(name)) return;
      if (visiting.has(name)) {
        throw new Error(`Module dependency cycle: ${[...path, name].join(" -> ")}`);
      }
      visiting.add(name);
      for (const dep of this.#available[name]?.depends ?? []) visit(dep, [...path, name]);
      visiting.delete(name);
      ordered.push(name);
    };
    for (const name of names) visit(name, []);
    return ordered;
  }

  /** The loaded modules of a host that need `name` (directly or through others). */
  dependentsOf(domain: string, name: string): string[] {
    const loaded = this.loaded(domain);
    const found = new Set<string>();
    const walk = (target: string) => {
      for (const other of loaded) {
        if (found.has(other)) continue;
        if (this.#available[other]?.depends?.includes(target)) {
          found.add(other);
          walk(other);
        }
      }
    };
    walk(name);
    return loaded.filter((n) => found.has(n));
  }

  /**
   * Loads a module on a host, after the modules it depends on that are not loaded yet. Throws
   * (after undoing partial registration) on failure.
   */
  async load(host: Host, name: string): Promise<void> {
    for (const dep of this.withDependencies([name])) {
      if (dep !== name && !this.isLoaded(host.domain, dep)) await this.#loadOne(host, dep);
    }
    await this.#loadOne(host, name);
  }

  async #loadOne(host: Host, name: string): Promise<void> {
    const file = this.#available[name];
    if (!file) {
      throw new Error(
        `Unknown module '${name}' for host '${host.domain}' (available: ${
          this.available().join(", ")
        })`,
      );
    }
    let modules = this.#loaded.get(host.domain);
    if (!modules) this.#loaded.set(host.domain, modules = new Map());
    if (modules.has(name)) {
      throw new Error(`Module '${name}' is already loaded on '${host.domain}'`);
    }
    const schema = file.schema ?? name;
    if (file.migrations !== undefined && !this.#migrated.has(schema)) {
      this.#server.database.migrateModule(schema, file.migrations);
      this.#migrated.add(schema);
    }
    const api = new ModuleAPI(name, host, this.#server, file.options);
    try {
      await file.default(api);
    } catch (error) {
      api.dispose();
      throw error;
    }
    api.settle();
    modules.set(name, api);
    this.#log.debug("Loaded module {module} on {host}", { module: name, host: host.domain });
  }

  /**
   * Unloads a module from a host; false when it was not loaded. Throws `ModuleInUseError` while
   * other loaded modules depend on it, unless `cascade` unloads those first.
   */
  unload(host: Host, name: string, options: { cascade?: boolean } = {}): boolean {
    const api = this.#loaded.get(host.domain)?.get(name);
    if (!api) return false;
    const dependents = this.dependentsOf(host.domain, name);
    if (dependents.length > 0) {
      if (!options.cascade) {
        throw new ModuleInUseError(
          `Module '${name}' on '${host.domain}' is needed by ${
            dependents.map((d) => `'${d}'`).join(", ")
          }; unload those first`,
        );
      }
      for (const dependent of dependents.reverse()) this.unload(host, dependent);
    }
    api.dispose();
    this.#loaded.get(host.domain)!.delete(name);
    this.#log.debug("Unloaded module {module} from {host}", { module: name, host: host.domain });
    return true;
  }

  /** Unloads every module of a host (in reverse load order, so dependents go first). */
  unloadAll(host: Host): void {
    const names = [...(this.#loaded.get(host.domain)?.keys() ?? [])].reverse();
    for (const name of names) this.unload(host, name, { cascade: true });
  }

  /** The options every loadable module declares (so the configuration checker knows them). */
  declaredOptions(): Record<string, OptionSpec> {
    const all: Record<string, OptionSpec> = {};
    for (const file of Object.values(this.#available)) Object.assign(all, file.options ?? {});
    return all;
  }

  /**
   * After a reload: a module that read options while loading and finds one changed starts over
   * (unloaded and loaded again) so it works with the new value, unless it hooks
   * `config-reloaded` and re-reads them itself. A module that fails to load again stays
   * unloaded, and the failure is returned.
   */
  async applyConfig(host: Host): Promise<ModuleReloadOutcome[]> {
    const outcomes: ModuleReloadOutcome[] = [];
    for (const [name, api] of [...(this.#loaded.get(host.domain) ?? [])]) {
      if (api.followsReloads) continue;
      const options = api.staleOptions();
      if (options.length === 0) continue;
      // Modules that need this one go down with it and come back after it.
      const dependents = this.dependentsOf(host.domain, name);
      this.unload(host, name, { cascade: true });
      try {
        await this.load(host, name);
        for (const dependent of dependents) {
          if (!this.isLoaded(host.domain, dependent)) await this.load(host, dependent);
        }
        this.#log.info("Reloaded module {module} on {host} for changed options {options}", {
          module: name,
          host: host.domain,
          options: options.join(", "),
        });
        outcomes.push({ module: name, host: host.domain, options });
      } catch (error) {
        const message = (error as Error).message;
        this.#log.error("Module {module} on {host} failed to load with the new options: {error}", {
          module: name,
          host: host.domain,
          error: message,
        });
        outcomes.push({ module: name, host: host.domain, options, error: message });
      }
    }
    return outcomes;
  }

  /** Names of the modules loaded on a host, in load order. */
  loaded(domain: string): string[] {
    return [...(this.#loaded.get(domain)?.keys() ?? [])];
  }

  /** True when the module is loaded on the host. */
  isLoaded(domain: string, name: string): boolean {
    return this.#loaded.get(domain)?.has(name) ?? false;
  }
}
