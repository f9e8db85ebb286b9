// Loads the TOML configuration, checks it against the schema and reports every problem with
// file:line, then offers typed, per-host option lookups with inheritance from the global level.

import { parse, TomlDate, TomlError } from "smol-toml";
import { dirname, resolve } from "node:path";
import {
  CLUSTER_OPTIONS,
  COMPONENT_OPTIONS,
  type CoreOptionSpec,
  GLOBAL_OPTIONS as GLOBAL_OPTION_SPECS,
  type GlobalOptionName,
  type GlobalOptionValues,
  HOST_OPTIONS as HOST_OPTION_SPECS,
  type HostOptionName,
  type HostOptionValues,
  LOG_LEVELS,
  LOG_OPTIONS,
  type OptionSpec,
  STORAGE_OPTIONS,
} from "./config_schema.ts";
import { parseJid } from "./jid.ts";

/** One problem found in a configuration file. */
export interface ConfigProblem {
  /** The file as it was named to the loader. */
  file: string;
  /** 1-based line; 0 when the problem concerns the whole file. */
  line: number;
  /** Errors stop the load; warnings do not. */
  severity: "error" | "warning";
  /** What is wrong, starting in lower case (it follows "error: "). */
  message: string;
}

/** Formats a problem like a compiler: "conf.toml:12: error: ..." (no line number for line 0). */
export function formatProblem(p: ConfigProblem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}` : p.file;
  return `${where}: ${p.severity}: ${p.message}`;
}

/** A virtual host after validation. */
export interface HostConfig {
  /** Prepared domain. */
  domain: string;
  /** Modules to load: the host's list (or the global one) minus every disabled module. */
  modules: string[];
  /** Options set in this [[host]] section (validated when known, raw otherwise). */
  options: Record<string, unknown>;
  /** Line of the [[host]] header. */
  line: number;
}

/** A component after validation. */
export interface ComponentConfig {
  /** Prepared domain. */
  domain: string;
  /** The modules of an internal component (empty for an external one). */
  modules: string[];
  /** Shared secret, when external. */
  secret?: string;
  /** Other options set in this [[component]] section. */
  options: Record<string, unknown>;
  /** Line of the [[component]] header. */
  line: number;
}

/** The [log] table after validation. */
export interface LogConfig {
  /** Default lowest level: trace, debug, info, warning, error or fatal. */
  level: string;
  /** Whether to log to standard error. */
  console: boolean;
  /** Absolute path of the log file, or "" for none. */
  file: string;
  /** Category ("lilt.c2s") to lowest level. */
  categories: Record<string, string>;
  /** Whether to send records to the local syslog socket (absent: false). */
  syslog?: boolean;
  /** The syslog socket; "" or absent: /dev/log (/var/run/log on FreeBSD). */
  syslogSocket?: string;
  /** The syslog facility name (absent: "daemon"). */
  syslogFacility?: string;
  /** Whether to send records to journald's native socket (absent: false). */
  journald?: boolean;
  /** The journald socket; "" or absent: /run/systemd/journal/socket. */
  journaldSocket?: string;
}

/** Options for {@link loadConfig} and {@link parseConfigText}. */
export interface LoadConfigOptions {
  /** Options declared by modules: known keys, validated like core options. */
  moduleOptions?: Record<string, OptionSpec>;
}

/** The outcome of loading: a config when there was no error, and every problem found. */
export interface LoadConfigResult {
  /** Undefined when any problem is an error. */
  config?: Config;
  /** Errors and warnings, in file order within each kind of check. */
  problems: ConfigProblem[];
}

// Indexed by names read from the file, so looked up as plain records.
const GLOBAL_OPTIONS: Record<string, CoreOptionSpec> = GLOBAL_OPTION_SPECS;
const HOST_OPTIONS: Record<string, CoreOptionSpec> = HOST_OPTION_SPECS;

/** True when `name` is a global core option (read with `Config.get`). */
export function isGlobalOption(name: string): name is GlobalOptionName {
  return Object.hasOwn(GLOBAL_OPTIONS, name);
}

/** True when `name` is a host core option (read with `Config.hostOption`). */
export function isHostOption(name: string): name is HostOptionName {
  return Object.hasOwn(HOST_OPTIONS, name);
}

/**
 * The type an option getter returns: the schema's type of the option, or the type given
 * explicitly (`get<number>("s2s_queue_limit")`, the older spelling, still scope-checked).
 */
export type Declared<T, FromSchema> = [T] extends [never] ? FromSchema : T;

type Path = readonly (string | number)[];
type Table = Record<string, unknown>;

interface SectionState {
  domain: string;
  path: Path;
  raw: Table;
  options: Map<string, unknown>;
}

/**
 * A validated configuration. Option values are read through `get` (global options only) and
 * `hostOption` (host options only: the host's value, then the top-level one, then the schema
 * default). Both accept only the names of their scope, in the types and at run time, so a
 * host option cannot be read as if it were global.
 */
export class Config {
  /** Absolute path of the file (or of the name given to {@link parseConfigText}). */
  readonly file: string;
  /** Absolute data directory. */
  readonly dataDir: string;
  /** Virtual hosts in file order. */
  readonly hosts: HostConfig[];
  /** Components in file order. */
  readonly components: ComponentConfig[];
  /** Logging settings. */
  readonly log: LogConfig;
  /** Storage settings; `path` is absolute. */
  readonly storage: StorageConfig;
  /** The [cluster] table, or undefined when this server is a single node. */
  readonly cluster: ClusterConfig | undefined;
  #globals: Map<string, unknown>;
  #raw: Table;
  #sections: Map<string, SectionState>;
  #index: TomlLineIndex;

  /** Built by the loader; not meant to be constructed elsewhere. */
  constructor(init: ConfigInit) {
    this.file = init.file;
    this.dataDir = init.dataDir;
    this.hosts = init.hosts;
    this.components = init.components;
    this.log = init.log;
    this.storage = init.storage;
    this.cluster = init.cluster;
    this.#globals = init.globals;
    this.#raw = init.raw;
    this.#sections = init.sections;
    this.#index = init.index;
  }

  /**
   * A global option's validated value, or its default. Throws a TypeError for a host option
   * (read it with `hostOption`) or an unknown name.
   */
  get<T = never, K extends GlobalOptionName = GlobalOptionName>(
    key: K,
  ): Declared<T, GlobalOptionValues[K]> {
    if (!isGlobalOption(key)) throw scopeError(key, "global");
    const value = this.#globals.has(key) ? this.#globals.get(key) : this.#raw[key];
    return value as Declared<T, GlobalOptionValues[K]>;
  }

  /**
   * A host's (or component's) option: the host's value, else the top-level value, else the
   * schema default. `admins` joins the top-level and host lists. Throws a TypeError for a
   * global option or an unknown name.
   */
  hostOption<T = never, K extends HostOptionName = HostOptionName>(
    host: string,
    key: K,
  ): Declared<T, HostOptionValues[K]> {
    if (!isHostOption(key)) throw scopeError(key, "host");
    const section = this.#section(host);
    let value: unknown;
    if (key === "admins") {
      const global = (this.#globals.get("admins") ?? []) as string[];
      const own = (section?.options.get("admins") ?? []) as string[];
      value = [...new Set([...global, ...own])];
    } else if (section?.options.has(key)) value = section.options.get(key);
    else value = this.#globals.get(key);
    return value as Declared<T, HostOptionValues[K]>;
  }

  /** A host option's top-level value (what hosts without their own value use), or its default. */
  hostDefault<T = never, K extends HostOptionName = HostOptionName>(
    key: K,
  ): Declared<T, HostOptionValues[K]> {
    if (!isHostOption(key)) throw scopeError(key, "host");
    return this.#globals.get(key) as Declared<T, HostOptionValues[K]>;
  }

  /**
   * An option's value by a name known only at run time (the admin shell's `config get`, module
   * options): a global option; a host option for `host` (its top-level value without a host);
   * a module option's validated value; else the raw TOML value, or undefined. `storage` gives the
   * resolved table with the key replaced by "(set, not shown)".
   */
  valueOf(name: string, host?: string): unknown {
    // The storage key is a secret: the shell shows whether one is set, never the key.
    if (name === "storage") {
      const { driver, path, key, key_file, url, password_file, schema } = this.storage;
      if (driver === "postgresql") return { driver, url, password_file, schema };
      return { driver, path, key: key === "" ? "" : "(set, not shown)", key_file };
    }
    if (name === "cluster" && this.cluster) {
      const { password: _password, ...shown } = this.cluster;
      return shown;
    }
    if (isGlobalOption(name)) return this.get(name);
    if (isHostOption(name)) {
      return host === undefined ? this.hostDefault(name) : this.hostOption(host, name);
    }
    const section = host === undefined ? undefined : this.#section(host);
    if (section?.options.has(name)) return section.options.get(name);
    if (section && name in section.raw) return section.raw[name];
    if (this.#globals.has(name)) return this.#globals.get(name);
    return this.#raw[name];
  }

  /**
   * This configuration with the given global options (and the `storage` options) held
   * at their values in `running`: what a reload applies when those need a restart.
   */
  keeping(running: Config, names: readonly string[]): Config {
    const globals = new Map(this.#globals);
    for (const name of names) {
      if (running.#globals.has(name)) globals.set(name, running.#globals.get(name));
    }
    const keepsStorage = names.some((name) => name.startsWith("storage."));
    return new Config({
      file: this.file,
      dataDir: names.includes("data_dir") ? running.dataDir : this.dataDir,
      hosts: this.hosts,
      components: this.components,
      log: this.log,
      storage: keepsStorage ? running.storage : this.storage,
      // Joining or leaving a cluster takes a restart: the running node keeps its table.
      cluster: running.cluster,
      globals,
      raw: this.#raw,
      sections: this.#sections,
      index: this.#index,
    });
  }

  /** The raw TOML value of an option for a host (host section first, then top level). */
  hostRaw(host: string, key: string): unknown {
    const section = this.#section(host);
    if (section && key in section.raw) return section.raw[key];
    return this.#raw[key];
  }

  /** The line where an option is set for a host (or globally when `host` is undefined). */
  lineOf(host: string | undefined, key: string): number | undefined {
    if (host !== undefined) {
      const section = this.#section(host);
      if (section && key in section.raw) return this.#index.lineOf([...section.path, key]);
    }
    return key in this.#raw ? this.#index.lineOf([key]) : undefined;
  }

  #section(host: string): SectionState | undefined {
    const found = this.#sections.get(host);
    if (found) return found;
    try {
      return this.#sections.get(parseJid(host).domain);
    } catch {
      return undefined;
    }
  }
}

function scopeError(key: string, wanted: "global" | "host"): TypeError {
  if (wanted === "global" && isHostOption(key)) {
    return new TypeError(
      `Option '${key}' is set per host: read it with hostOption(host, '${key}')`,
    );
  }
  if (wanted === "host" && isGlobalOption(key)) {
    return new TypeError(`Option '${key}' is global: read it with get('${key}')`);
  }
  return new TypeError(`Unknown ${wanted} option '${key}'`);
}

interface ConfigInit {
  file: string;
  dataDir: string;
  hosts: HostConfig[];
  components: ComponentConfig[];
  log: LogConfig;
  storage: StorageConfig;
  cluster: ClusterConfig | undefined;
  globals: Map<string, unknown>;
  raw: Table;
  sections: Map<string, SectionState>;
  index: TomlLineIndex;
}

/** The `[storage]` table, resolved. */
export interface StorageConfig {
  /** "sqlite" (the embedded store) or "postgresql". */
  driver: "sqlite" | "postgresql";
  /** The database file (absolute); with PostgreSQL unused. */
  path: string;
  /** PostgreSQL: the connection URL (without the password), "" with SQLite. */
  url: string;
  /** PostgreSQL: the password read from `password_file` ("" when none). */
  password: string;
  /** PostgreSQL: the password file (absolute), or "". */
  password_file: string;
  /** PostgreSQL: the schema for Lilt's tables, or "" for the default search_path. */
  schema: string;
  /**
   * The SQLCipher passphrase: `storage.key`, or the content of `storage.key_file` (one trailing
   * newline stripped). Empty for a plain store.
   */
  key: string;
  /** The key file (absolute), or "" when the key is not read from a file. */
  key_file: string;
}

/** The `[cluster]` table, resolved (see core/cluster/). */
export interface ClusterConfig {
  /** This node's name (the host name unless set). */
  node: string;
  /** The shared Redis server, without a password. */
  redis_url: string;
  /** The Redis password file (absolute), or "". */
  redis_password_file: string;
  /** The password read from `redis_password_file` ("" when none). */
  password: string;
  /** Seconds between heartbeats. */
  heartbeat_interval: number;
  /** Seconds without a heartbeat after which a node is dead. */
  node_timeout: number;
}

/** The URL schemes of the servers Lilt connects to, and an example of each for messages. */
const SERVER_URLS = {
  postgresql: {
    schemes: ["postgresql:", "postgres:"],
    example: "postgresql://user@host:5432/database",
  },
  redis: { schemes: ["redis:", "rediss:"], example: "redis://host:6379/0" },
};

/**
 * Why `url` is not a URL of a `kind` server Lilt accepts (`name` is the setting in messages,
 * `passwordIn` where the password goes instead), or undefined: the server's scheme, and no
 * password, which would show in logs and the shell.
 */
export function serverUrlProblem(
  url: string,
  kind: keyof typeof SERVER_URLS,
  name: string,
  passwordIn: string,
): string | undefined {
  const { schemes, example } = SERVER_URLS[kind];
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || !schemes.includes(parsed.protocol)) {
    return `${name} must look like ${example}, found ${JSON.stringify(url)}`;
  }
  if (parsed.password !== "") return `${name} must not hold the password: put it in ${passwordIn}`;
  return undefined;
}

/** Why `schema` is not a PostgreSQL schema name Lilt accepts ("" is: the default), or undefined. */
export function sqlSchemaProblem(schema: string, name: string): string | undefined {
  if (schema === "" || /^[a-z_][a-z0-9_]{0,62}$/.test(schema)) return undefined;
  return `${name} must be a lower-case SQL name (letters, digits, _), found ${
    JSON.stringify(schema)
  }`;
}

/**
 * Reads a `storage.key_file`: it must be a regular file that only its owner can read or write
 * (mode 0600 or 0400), since it holds the key to every account's data.
 */
export function readKeyFile(
  path: string,
  option = "storage.key_file",
): { key: string } | { error: string } {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    return { error: `cannot read ${option} '${path}': ${(error as Error).message}` };
  }
  if (!info.isFile) return { error: `${option} '${path}' is not a regular file` };
  const mode = info.mode ?? 0;
  if ((mode & 0o077) !== 0) {
    return {
      error: `${option} '${path}' can be accessed by group or others (mode ` +
        `${(mode & 0o777).toString(8).padStart(4, "0")}): run chmod 600 on it`,
    };
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    return { error: `cannot read ${option} '${path}': ${(error as Error).message}` };
  }
  const key = text.endsWith("\r\n")
    ? text.slice(0, -2)
    : text.endsWith("\n")
    ? text.slice(0, -1)
    : text;
  if (key === "") return { error: `${option} '${path}' is empty` };
  if (key.includes("\0")) return { error: `${option} '${path}' contains a NUL character` };
  return { key };
}

/**
 * Reads and validates a configuration file. A file that cannot be read gives one problem on
 * line 0.
 *
 * @example
 * ```ts
 * const { config, problems } = loadConfig("/etc/lilt/lilt.toml");
 * for (const p of problems) console.error(formatProblem(p));
 * if (!config) Deno.exit(1);
 * ```
 */
export function loadConfig(path: string, options: LoadConfigOptions = {}): LoadConfigResult {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return {
      problems: [{
        file: path,
        line: 0,
        severity: "error",
        message: `cannot read the file: ${reason}`,
      }],
    };
  }
  return parseConfigText(text, path, options);
}

/** Validates configuration text; `file` names it in problems and anchors relative paths. */
export function parseConfigText(
  text: string,
  file: string,
  options: LoadConfigOptions = {},
): LoadConfigResult {
  const problems: ConfigProblem[] = [];
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (error) {
    if (error instanceof TomlError) {
      const firstLine = error.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
      problems.push({
        file,
        line: error.line,
        severity: "error",
        message: `TOML syntax error at column ${error.column}: ${firstLine}`,
      });
    } else {
      problems.push({ file, line: 0, severity: "error", message: `cannot parse TOML: ${error}` });
    }
    return { problems };
  }
  const validator = new Validator(text, file, options.moduleOptions ?? {}, problems);
  const config = validator.run(doc);
  // File order reads best; whole-file problems (line 0) come last.
  const order = (p: ConfigProblem) => p.line === 0 ? Infinity : p.line;
  problems.sort((a, b) => order(a) - order(b));
  const failed = problems.some((p) => p.severity === "error");
  return failed ? { problems } : { config, problems };
}

/** Validates a parsed document, collecting problems; builds the Config. */
class Validator {
  #file: string;
  #baseDir: string;
  #index: TomlLineIndex;
  #moduleOptions: Record<string, OptionSpec>;
  #problems: ConfigProblem[];

  constructor(
    text: string,
    file: string,
    moduleOptions: Record<string, OptionSpec>,
    problems: ConfigProblem[],
  ) {
    this.#file = file;
    this.#baseDir = dirname(resolve(file));
    this.#index = indexTomlLines(text);
    this.#moduleOptions = moduleOptions;
    this.#problems = problems;
  }

  run(doc: Table): Config {
    const globals = new Map<string, unknown>();
    for (const [key, spec] of Object.entries({ ...this.#moduleOptions, ...HOST_OPTIONS })) {
      globals.set(key, this.#defaultOf(spec));
    }
    for (const [key, spec] of Object.entries(GLOBAL_OPTIONS)) {
      if (spec.type !== "table") globals.set(key, this.#defaultOf(spec));
    }

    const topLevelKnown = [
      ...Object.keys(GLOBAL_OPTIONS),
      ...Object.keys(HOST_OPTIONS),
      ...Object.keys(this.#moduleOptions),
    ];
    for (const [key, value] of Object.entries(doc)) {
      if (
        key === "log" || key === "storage" || key === "cluster" || key === "host" ||
        key === "component"
      ) continue;
      if (key === "dns") {
        this.#dns(value, doc, globals);
        continue;
      }
      const spec = GLOBAL_OPTIONS[key] ?? HOST_OPTIONS[key] ?? this.#moduleOptions[key];
      if (!spec) {
        this.#unknown([key], key, topLevelKnown);
        continue;
      }
      const checked = this.#value(spec, value, key, [key]);
      if (checked !== INVALID) globals.set(key, checked);
    }
    this.#keyPair(doc, [], "the top-level options");

    const log = this.#log(doc.log);
    const dataDir = globals.get("data_dir") as string;
    const storage = this.#storage(doc.storage, dataDir);
    const cluster = this.#cluster(doc.cluster, storage);

    const sections = new Map<string, SectionState>();
    const domainLines = new Map<string, number>();
    const hosts: HostConfig[] = [];
    for (const section of this.#sections(doc, "host", domainLines)) {
      sections.set(section.domain, section);
      hosts.push({
        domain: section.domain,
        modules: this.#modulesFor(section, globals),
        options: Object.fromEntries(section.options),
        line: this.#line(section.path),
      });
    }
    const components: ComponentConfig[] = [];
    for (const section of this.#sections(doc, "component", domainLines)) {
      sections.set(section.domain, section);
      const { module, modules, secret, ...rest } = Object.fromEntries(section.options);
      components.push({
        domain: section.domain,
        modules: module ? [module as string] : (modules as string[] | undefined) ?? [],
        ...(secret !== undefined ? { secret: secret as string } : {}),
        options: rest,
        line: this.#line(section.path),
      });
    }
    if (doc.host === undefined || (Array.isArray(doc.host) && doc.host.length === 0)) {
      this.#problem([], "error", "no [[host]] section: at least one virtual host is required");
    }

    return new Config({
      file: resolve(this.#file),
      dataDir,
      hosts,
      components,
      log,
      storage,
      cluster,
      globals,
      raw: doc,
      sections,
      index: this.#index,
    });
  }

  #log(value: unknown): LogConfig {
    const log: LogConfig = { level: "info", console: true, file: "", categories: {} };
    const table = this.#table(value, "log", ["log"]);
    if (!table) return log;
    for (const [key, raw] of Object.entries(table)) {
      const path = ["log", key];
      const spec = LOG_OPTIONS[key];
      if (!spec) {
        this.#unknown(path, `log.${key}`, Object.keys(LOG_OPTIONS));
        continue;
      }
      if (key === "categories") {
        const categories = this.#table(raw, "log.categories", path);
        for (const [category, level] of Object.entries(categories ?? {})) {
          const checked = this.#value(
            { ...spec, type: "enum", values: LOG_LEVELS },
            level,
            `log.categories."${category}"`,
            [...path, category],
          );
          if (checked !== INVALID) log.categories[category] = checked as string;
        }
        continue;
      }
      const checked = this.#value(spec, raw, `log.${key}`, path);
      if (checked === INVALID) continue;
      if (key === "level") log.level = checked as string;
      else if (key === "console") log.console = checked as boolean;
      else if (key === "file") log.file = checked as string;
      else if (key === "syslog") log.syslog = checked as boolean;
      else if (key === "syslog_socket") log.syslogSocket = checked as string;
      else if (key === "syslog_facility") log.syslogFacility = checked as string;
      else if (key === "journald") log.journald = checked as boolean;
      else if (key === "journald_socket") log.journaldSocket = checked as string;
    }
    return log;
  }

  /** `[dns] nameservers = [...]`: another spelling of `dns_nameservers`. */
  #dns(value: unknown, doc: Table, globals: Map<string, unknown>): void {
    const table = this.#table(value, "dns", ["dns"]);
    if (!table) return;
    for (const [key, raw] of Object.entries(table)) {
      const path = ["dns", key];
      if (key !== "nameservers") {
        this.#unknown(path, `dns.${key}`, ["nameservers"]);
        continue;
      }
      if (doc.dns_nameservers !== undefined) {
        this.#problem(path, "error", "set either 'dns.nameservers' or 'dns_nameservers', not both");
        continue;
      }
      const checked = this.#value(GLOBAL_OPTIONS.dns_nameservers, raw, "dns.nameservers", path);
      if (checked !== INVALID) globals.set("dns_nameservers", checked);
    }
  }

  #storage(value: unknown, dataDir: string): StorageConfig {
    const storage: StorageConfig = {
      driver: "sqlite",
      path: resolve(dataDir, "lilt.sqlite"),
      key: "",
      key_file: "",
      url: "",
      password: "",
      password_file: "",
      schema: "",
    };
    const table = this.#table(value, "storage", ["storage"]);
    if (!table) return storage;
    for (const [key, raw] of Object.entries(table)) {
      const path = ["storage", key];
      const spec = STORAGE_OPTIONS[key];
      if (!spec) {
        this.#unknown(path, `storage.${key}`, Object.keys(STORAGE_OPTIONS));
        continue;
      }
      const checked = this.#value(spec, raw, `storage.${key}`, path);
      if (checked === INVALID) continue;
      if (key === "path") {
        if (checked === "") this.#problem(path, "error", "option 'storage.path' must not be empty");
        else storage.path = resolve(dataDir, checked as string);
      } else if (key === "key") {
        if ((checked as string).includes("\0")) {
          this.#problem(path, "error", "option 'storage.key' must not contain a NUL character");
        } else storage.key = checked as string;
      } else if (key === "key_file") storage.key_file = checked as string;
      else if (key === "driver") {
        if (checked === "sqlite" || checked === "postgresql") storage.driver = checked;
        else {
          this.#problem(
            path,
            "error",
            `option 'storage.driver' must be "sqlite" or "postgresql", found ${
              JSON.stringify(checked)
            }`,
          );
        }
      } else if (key === "url") storage.url = checked as string;
      else if (key === "password_file") storage.password_file = checked as string;
      else if (key === "schema") storage.schema = checked as string;
    }
    this.#postgresStorage(storage, table);
    if (storage.key_file !== "") {
      const path = ["storage", "key_file"];
      if (storage.key !== "") {
        this.#problem(
          path,
          "error",
          "set either 'storage.key' or 'storage.key_file', not both (key_file is recommended)",
        );
        return { ...storage, key: "" };
      }
      const read = readKeyFile(storage.key_file);
      if ("key" in read) storage.key = read.key;
      else this.#problem(path, "error", read.error);
    }
    return storage;
  }

  /**
   * The [cluster] table: the nodes share the PostgreSQL store (each node's own embedded file
   * would split the accounts), and find each other through Redis.
   */
  #cluster(value: unknown, storage: StorageConfig): ClusterConfig | undefined {
    const table = this.#table(value, "cluster", ["cluster"]);
    if (!table) return undefined;
    const cluster: ClusterConfig = {
      node: "",
      redis_url: "",
      redis_password_file: "",
      password: "",
      heartbeat_interval: CLUSTER_OPTIONS.heartbeat_interval.default as number,
      node_timeout: CLUSTER_OPTIONS.node_timeout.default as number,
    };
    for (const [key, raw] of Object.entries(table)) {
      const path = ["cluster", key];
      const spec = CLUSTER_OPTIONS[key];
      if (!spec) {
        this.#unknown(path, `cluster.${key}`, Object.keys(CLUSTER_OPTIONS));
        continue;
      }
      const checked = this.#value(spec, raw, `cluster.${key}`, path);
      if (checked === INVALID) continue;
      if (key === "node") cluster.node = checked as string;
      else if (key === "redis_url") cluster.redis_url = checked as string;
      else if (key === "redis_password_file") cluster.redis_password_file = checked as string;
      else if (key === "heartbeat_interval") cluster.heartbeat_interval = checked as number;
      else if (key === "node_timeout") cluster.node_timeout = checked as number;
    }
    const at = (key: string) => key in table ? ["cluster", key] : ["cluster"];
    if (storage.driver !== "postgresql") {
      this.#problem(
        ["cluster"],
        "error",
        'a [cluster] table needs storage.driver = "postgresql": the nodes must share one store',
      );
    }
    if (cluster.node === "") cluster.node = Deno.hostname();
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(cluster.node)) {
      this.#problem(
        at("node"),
        "error",
        "option 'cluster.node' must be 1 to 64 letters, digits, '.', '_' or '-', found " +
          JSON.stringify(cluster.node),
      );
    }
    if (cluster.redis_url === "") {
      this.#problem(at("redis_url"), "error", "a [cluster] table needs cluster.redis_url");
    } else {
      const problem = serverUrlProblem(
        cluster.redis_url,
        "redis",
        "option 'cluster.redis_url'",
        "cluster.redis_password_file",
      );
      if (problem) {
        this.#problem(at("redis_url"), "error", problem);
        cluster.redis_url = ""; // a password in it must show nowhere
      }
    }
    if (cluster.node_timeout <= cluster.heartbeat_interval) {
      this.#problem(
        at("node_timeout"),
        "error",
        `option 'cluster.node_timeout' must be longer than cluster.heartbeat_interval ` +
          `(${cluster.heartbeat_interval}), found ${cluster.node_timeout}`,
      );
    }
    if (cluster.redis_password_file !== "") {
      const read = readKeyFile(cluster.redis_password_file, "cluster.redis_password_file");
      if ("key" in read) cluster.password = read.key;
      else this.#problem(["cluster", "redis_password_file"], "error", read.error);
    }
    return cluster;
  }

  /**
   * Checks the PostgreSQL options against the driver: they need each other, the URL must be
   * one libpq reads and carry no password (it would show in logs and the shell), and the
   * embedded store's encryption key has no meaning there.
   */
  #postgresStorage(storage: StorageConfig, table: Table): void {
    const postgresOnly = ["url", "password_file", "schema"].filter((key) => key in table);
    if (storage.driver !== "postgresql") {
      for (const key of postgresOnly) {
        this.#problem(
          ["storage", key],
          "error",
          `option 'storage.${key}' needs storage.driver = "postgresql"`,
        );
      }
      return;
    }
    const at = (key: string) => key in table ? ["storage", key] : ["storage", "driver"];
    for (const key of ["key", "key_file"].filter((key) => key in table)) {
      this.#problem(
        ["storage", key],
        "error",
        `option 'storage.${key}' encrypts the embedded store only; with PostgreSQL, encrypt ` +
          "the database server's disks instead",
      );
    }
    storage.key = "";
    storage.key_file = "";
    if (storage.url === "") {
      this.#problem(at("url"), "error", 'storage.driver = "postgresql" needs storage.url');
    } else {
      const problem = serverUrlProblem(
        storage.url,
        "postgresql",
        "option 'storage.url'",
        "storage.password_file",
      );
      if (problem) {
        this.#problem(at("url"), "error", problem);
        storage.url = ""; // a password in it must show nowhere
      }
    }
    const schemaProblem = sqlSchemaProblem(storage.schema, "option 'storage.schema'");
    if (schemaProblem) this.#problem(at("schema"), "error", schemaProblem);
    if (storage.password_file !== "") {
      const read = readKeyFile(storage.password_file, "storage.password_file");
      if ("key" in read) storage.password = read.key;
      else this.#problem(["storage", "password_file"], "error", read.error);
    }
  }

  /** Validates the [[host]] or [[component]] sections and yields the good ones. */
  *#sections(
    doc: Table,
    kind: "host" | "component",
    domainLines: Map<string, number>,
  ): Generator<SectionState> {
    const list = doc[kind];
    if (list === undefined) return;
    if (!Array.isArray(list)) {
      this.#problem(
        [kind],
        "error",
        `'${kind}' must be written as [[${kind}]] sections (an array of tables), found ${
          describe(list)
        }`,
      );
      return;
    }
    for (let i = 0; i < list.length; i++) {
      const path = [kind, i];
      const raw = list[i];
      if (!isTable(raw)) {
        this.#problem(
          path,
          "error",
          `each '${kind}' entry must be a table, found ${describe(raw)}`,
        );
        continue;
      }
      const domain = this.#sectionDomain(raw, kind, path, domainLines);
      const options = new Map<string, unknown>();
      const own = kind === "component" ? Object.keys(COMPONENT_OPTIONS) : ["domain"];
      const hostModuleKeys = Object.entries(this.#moduleOptions)
        .filter(([, spec]) => spec.scope === "host").map(([key]) => key);
      const known = [...own, ...Object.keys(HOST_OPTIONS), ...hostModuleKeys];
      for (const [key, value] of Object.entries(raw)) {
        if (key === "domain") continue;
        const keyPath = [...path, key];
        const moduleSpec = this.#moduleOptions[key];
        const spec = (kind === "component" ? COMPONENT_OPTIONS[key] : undefined) ??
          HOST_OPTIONS[key] ?? (moduleSpec?.scope === "host" ? moduleSpec : undefined);
        if (!spec) {
          if (GLOBAL_OPTIONS[key] || moduleSpec) {
            this.#problem(
              keyPath,
              "error",
              `option '${key}' is global and cannot be set in a [[${kind}]] section`,
            );
          } else {
            this.#unknown(keyPath, key, known);
            options.set(key, value);
          }
          continue;
        }
        const checked = this.#value(spec, value, key, keyPath);
        if (checked !== INVALID) options.set(key, checked);
      }
      this.#keyPair(raw, path, `[[${kind}]] '${domain ?? "?"}'`);
      if (kind === "component") {
        const hasModule = typeof raw.module === "string" && raw.module !== "";
        const hasModules = Array.isArray(raw.modules) && raw.modules.length > 0;
        const hasSecret = typeof raw.secret === "string" && raw.secret !== "";
        if (hasModule && hasModules) {
          this.#problem(
            [...path, "modules"],
            "error",
            "a component has either 'module' (one) or 'modules' (a list), not both",
          );
        } else if ((hasModule || hasModules) && hasSecret) {
          this.#problem(
            [...path, "secret"],
            "error",
            "a component has either 'modules' (internal) or 'secret' (external), not both",
          );
        } else if (!hasModule && !hasModules && !hasSecret) {
          this.#problem(
            path,
            "error",
            "a [[component]] needs 'modules' (internal component) or 'secret' (external component)",
          );
        }
      }
      if (domain !== undefined) yield { domain, path, raw, options };
    }
  }

  #sectionDomain(
    raw: Table,
    kind: string,
    path: Path,
    domainLines: Map<string, number>,
  ): string | undefined {
    if (!("domain" in raw)) {
      this.#problem(path, "error", `[[${kind}]] section has no 'domain'`);
      return undefined;
    }
    const value = this.#value(COMPONENT_OPTIONS.domain, raw.domain, "domain", [...path, "domain"]);
    if (value === INVALID) return undefined;
    const domainPath = [...path, "domain"];
    let domain: string;
    try {
      const jid = parseJid(value as string);
      if (!jid.isDomain()) {
        this.#problem(
          domainPath,
          "error",
          `'domain' must be a bare domain such as "example.com", found '${value}'`,
        );
        return undefined;
      }
      domain = jid.domain;
    } catch (error) {
      const reason = (error as { reason?: string }).reason ?? String(error);
      this.#problem(domainPath, "error", `invalid domain '${value}': ${reason}`);
      return undefined;
    }
    const line = this.#line(domainPath);
    const first = domainLines.get(domain);
    if (first !== undefined) {
      this.#problem(
        domainPath,
        "error",
        `duplicate domain '${domain}' (already defined at line ${first})`,
      );
      return undefined;
    }
    domainLines.set(domain, line);
    return domain;
  }

  #modulesFor(section: SectionState, globals: Map<string, unknown>): string[] {
    const base = (section.options.get("modules") ?? globals.get("modules")) as string[];
    const disabled = new Set([
      ...(globals.get("modules_disabled") as string[]),
      ...((section.options.get("modules_disabled") ?? []) as string[]),
    ]);
    return [...new Set(base)].filter((name) => !disabled.has(name));
  }

  /** certificate and key go together. */
  #keyPair(table: Table, path: Path, where: string): void {
    const cert = typeof table.certificate === "string" ? table.certificate : "";
    const key = typeof table.key === "string" ? table.key : "";
    if ((cert === "") !== (key === "")) {
      const missing = cert === "" ? "certificate" : "key";
      const present = cert === "" ? "key" : "certificate";
      this.#problem(
        [...path, present],
        "error",
        `'${present}' is set without '${missing}' in ${where}: set both or neither`,
      );
    }
  }

  #table(value: unknown, name: string, path: Path): Table | undefined {
    if (value === undefined) return undefined;
    if (!isTable(value)) {
      this.#problem(path, "error", `'${name}' must be a table, found ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  #defaultOf(spec: OptionSpec): unknown {
    const value = structuredClone(spec.default);
    if (spec.path && typeof value === "string" && value !== "") {
      return resolve(this.#baseDir, value);
    }
    return value;
  }

  /** Checks a value against its spec; returns the (path-resolved) value or INVALID. */
  #value(spec: OptionSpec, value: unknown, name: string, path: Path): unknown {
    const fail = (message: string, at: Path = path) => {
      this.#problem(at, "error", message);
      return INVALID;
    };
    switch (spec.type) {
      case "string":
        if (typeof value !== "string") {
          return fail(`option '${name}' must be a string, found ${describe(value)}`);
        }
        break;
      case "boolean":
        if (typeof value !== "boolean") {
          return fail(`option '${name}' must be true or false, found ${describe(value)}`);
        }
        break;
      case "integer":
      case "number": {
        const isInteger = spec.type === "integer";
        if (typeof value !== "number" || (isInteger && !Number.isInteger(value))) {
          const expected = isInteger ? "an integer" : "a number";
          return fail(`option '${name}' must be ${expected}, found ${describe(value)}`);
        }
        if (spec.min !== undefined && value < spec.min) {
          return fail(`option '${name}' must be at least ${spec.min}, found ${value}`);
        }
        if (spec.max !== undefined && value > spec.max) {
          return fail(`option '${name}' must be at most ${spec.max}, found ${value}`);
        }
        break;
      }
      case "enum": {
        const values = spec.values ?? [];
        if (typeof value !== "string" || !values.includes(value)) {
          const hint = typeof value === "string" ? didYouMean(value, values) : "";
          return fail(
            `option '${name}' must be one of ${values.join(", ")}, found ${describe(value)}${hint}`,
          );
        }
        break;
      }
      case "string[]": {
        if (!Array.isArray(value)) {
          return fail(`option '${name}' must be an array of strings, found ${describe(value)}`);
        }
        for (let i = 0; i < value.length; i++) {
          const item = value[i];
          if (typeof item !== "string") {
            return fail(
              `option '${name}' must be an array of strings, found ${describe(item)} at index ${i}`,
              [...path, i],
            );
          }
          const message = spec.check?.(item, name);
          if (message) return fail(message, [...path, i]);
        }
        if (spec.path) {
          return value.map((item) => item === "" ? item : resolve(this.#baseDir, item));
        }
        return spec.normalize ? value.map(spec.normalize) : [...value];
      }
      case "table":
        if (!isTable(value)) {
          return fail(`option '${name}' must be a table, found ${describe(value)}`);
        }
        if (!this.#tableChecked(spec, value, `option '${name}'`, path)) return INVALID;
        break;
      case "table[]": {
        // A list of tables, or one table of named tables (its reader checks the contents).
        if (isTable(value)) {
          let ok = true;
          for (const [key, entry] of Object.entries(value)) {
            if (!isTable(entry)) continue;
            const where = `option '${name}' entry '${key}'`;
            ok = this.#tableChecked(spec, entry, where, [...path, key]) && ok;
          }
          if (!ok) return INVALID;
          break;
        }
        if (!Array.isArray(value)) {
          return fail(`option '${name}' must be a list of tables, found ${describe(value)}`);
        }
        for (let i = 0; i < value.length; i++) {
          if (!isTable(value[i])) {
            return fail(
              `option '${name}' must be a list of tables, found ${
                describe(value[i])
              } at index ${i}`,
              [...path, i],
            );
          }
        }
        let ok = true;
        for (let i = 0; i < value.length; i++) {
          const where = `option '${name}' entry ${i + 1}`;
          ok = this.#tableChecked(spec, value[i], where, [...path, i]) && ok;
        }
        if (!ok) return INVALID;
        break;
      }
    }
    if (typeof value === "string") {
      const message = spec.check?.(value, name);
      if (message) return fail(message);
      if (spec.path && value !== "") return resolve(this.#baseDir, value);
      if (spec.normalize) return spec.normalize(value);
    }
    return value;
  }

  /** Runs a spec's `checkTable` on one table, reporting each problem at its key's line. */
  #tableChecked(spec: OptionSpec, table: Table, where: string, path: Path): boolean {
    const found = spec.checkTable?.(table) ?? [];
    for (const problem of found) {
      const at = problem.key !== undefined && problem.key in table ? [...path, problem.key] : path;
      this.#problem(at, "error", `${where}: ${problem.message}`);
    }
    return found.length === 0;
  }

  #unknown(path: Path, name: string, known: readonly string[]): void {
    const last = String(path[path.length - 1]);
    const prefix = name.slice(0, name.length - last.length);
    const best = closestName(last, known);
    const hint = best === undefined ? "" : ` (did you mean '${prefix}${best}'?)`;
    this.#problem(path, "warning", `unknown option '${name}'${hint}`);
  }

  #line(path: Path): number {
    return this.#index.nearestLineOf(path);
  }

  #problem(path: Path, severity: "error" | "warning", message: string): void {
    const line = path.length === 0 ? 0 : this.#line(path);
    this.#problems.push({ file: this.#file, line, severity, message });
  }
}

const INVALID = Symbol("invalid");

function isTable(value: unknown): value is Table {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof TomlDate) && !(value instanceof Date);
}

/** Names a TOML value's type (and the value, when short) for messages. */
function describe(value: unknown): string {
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return `string ${JSON.stringify(shown)}`;
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? `integer ${value}` : `float ${value}`;
  }
  if (typeof value === "boolean") return `boolean ${value}`;
  if (typeof value === "bigint") return `integer ${value}`;
  if (Array.isArray(value)) return "an array";
  if (value instanceof TomlDate || value instanceof Date) return `date-time ${value.toISOString()}`;
  if (isTable(value)) return "a table";
  return String(value);
}

/** " (did you mean 'x'?)" when a known name is close enough, else "". */
function didYouMean(name: string, known: readonly string[]): string {
  const best = closestName(name, known);
  return best === undefined ? "" : ` (did you mean '${best}'?)`;
}

/** The known name closest to `name` by edit distance, when close enough. */
function closestName(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const limit = Math.max(1, Math.floor(name.length / 3));
  const lower = name.toLowerCase();
  for (const candidate of known) {
    const other = candidate.toLowerCase();
    // A prefix of at least three letters ("warn" for "warning") counts as one edit.
    const isPrefix = lower.length >= 3 && (other.startsWith(lower) || lower.startsWith(other));
    const distance = isPrefix ? 1 : editDistance(lower, other);
    if (distance <= limit && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Edit distance where swapping two neighbouring letters counts as one edit. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0][j] = j;
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, rows[i - 2][j - 2] + 1);
      }
      rows[i][j] = best;
    }
  }
  return rows[a.length][b.length];
}

// ---------------------------------------------------------------------------------------------
// Line locator: smol-toml reports no key positions, so a small scanner maps key paths to lines.

/** Maps TOML key paths (array-of-table entries as indexes) to the line that defines them. */
export class TomlLineIndex {
  #lines = new Map<string, number>();

  /** Records the line of a path unless it is already known. */
  set(path: Path, line: number): void {
    const key = JSON.stringify(path);
    if (!this.#lines.has(key)) this.#lines.set(key, line);
  }

  /** The line defining exactly this path, e.g. `["host", 0, "domain"]`. */
  lineOf(path: Path): number | undefined {
    return this.#lines.get(JSON.stringify(path));
  }

  /** The line of the path or of its nearest known ancestor; 0 when none is known. */
  nearestLineOf(path: Path): number {
    for (let n = path.length; n > 0; n--) {
      const line = this.lineOf(path.slice(0, n));
      if (line !== undefined) return line;
    }
    return 0;
  }
}

/**
 * Scans TOML text and records the line of every table header, key and array element. It
 * assumes the text already parsed; on anything unexpected it stops with what it has.
 *
 * @example
 * ```ts
 * indexTomlLines('a = 1\n[[host]]\ndomain = "x"\n').lineOf(["host", 0, "domain"]); // 3
 * ```
 */
export function indexTomlLines(text: string): TomlLineIndex {
  const index = new TomlLineIndex();
  try {
    new LineScanner(text, index).document();
  } catch {
    // Keep what was found so far: problems then point at the nearest known line.
  }
  return index;
}

class LineScanner {
  #text: string;
  #index: TomlLineIndex;
  #pos = 0;
  #line = 1;
  #arrayTables = new Map<string, number>();

  constructor(text: string, index: TomlLineIndex) {
    this.#text = text;
    this.#index = index;
  }

  document(): void {
    let table: Path = [];
    while (true) {
      this.#skipBlank(true);
      if (this.#pos >= this.#text.length) return;
      const start = this.#pos;
      if (this.#peek() === "[") {
        const isArray = this.#text[this.#pos + 1] === "[";
        this.#pos += isArray ? 2 : 1;
        this.#skipBlank(false);
        const keys = this.#key();
        this.#skipBlank(false);
        this.#pos += isArray ? 2 : 1;
        table = isArray ? this.#arrayHeader(keys) : this.#resolve(keys);
        this.#index.set(table, this.#line);
      } else {
        this.#keyValue(table);
      }
      this.#skipBlank(false);
      if (this.#pos === start) this.#pos++; // never loop without progress
    }
  }

  #arrayHeader(keys: string[]): Path {
    const parent = this.#resolve(keys.slice(0, -1));
    const path = [...parent, keys[keys.length - 1]];
    const id = JSON.stringify(path);
    const next = (this.#arrayTables.get(id) ?? -1) + 1;
    this.#arrayTables.set(id, next);
    this.#index.set(path, this.#line);
    return [...path, next];
  }

  /** Turns header keys into a path, entering the latest element of arrays of tables. */
  #resolve(keys: string[]): Path {
    const path: (string | number)[] = [];
    for (const key of keys) {
      path.push(key);
      const current = this.#arrayTables.get(JSON.stringify(path));
      if (current !== undefined) path.push(current);
    }
    return path;
  }

  #keyValue(table: Path): void {
    const line = this.#line;
    const keys = this.#key();
    for (let n = 1; n <= keys.length; n++) this.#index.set([...table, ...keys.slice(0, n)], line);
    this.#skipBlank(false);
    if (this.#peek() === "=") this.#pos++;
    this.#skipBlank(false);
    this.#value([...table, ...keys]);
  }

  #key(): string[] {
    const keys: string[] = [];
    while (true) {
      this.#skipBlank(false);
      const c = this.#peek();
      if (c === '"') keys.push(this.#basicString());
      else if (c === "'") keys.push(this.#literalString());
      else {
        const match = /^[A-Za-z0-9_-]+/.exec(this.#text.slice(this.#pos, this.#pos + 256));
        if (!match) return keys;
        keys.push(match[0]);
        this.#pos += match[0].length;
      }
      this.#skipBlank(false);
      if (this.#peek() !== ".") return keys;
      this.#pos++;
    }
  }

  #value(path: Path): void {
    const c = this.#peek();
    if (this.#text.startsWith('"""', this.#pos)) this.#multiline('"""');
    else if (this.#text.startsWith("'''", this.#pos)) this.#multiline("'''");
    else if (c === '"') this.#basicString();
    else if (c === "'") this.#literalString();
    else if (c === "[") this.#array(path);
    else if (c === "{") this.#inlineTable(path);
    else {
      while (this.#pos < this.#text.length && !/[,\]}\n#]/.test(this.#text[this.#pos])) {
        this.#pos++;
      }
    }
  }

  #array(path: Path): void {
    this.#pos++;
    for (let i = 0;; i++) {
      this.#skipBlank(true);
      if (this.#pos >= this.#text.length) return;
      if (this.#peek() === "]") {
        this.#pos++;
        return;
      }
      const start = this.#pos;
      this.#index.set([...path, i], this.#line);
      this.#value([...path, i]);
      this.#skipBlank(true);
      if (this.#peek() === ",") this.#pos++;
      else if (this.#pos === start) this.#pos++;
    }
  }

  #inlineTable(path: Path): void {
    this.#pos++;
    while (true) {
      this.#skipBlank(true);
      if (this.#pos >= this.#text.length) return;
      if (this.#peek() === "}") {
        this.#pos++;
        return;
      }
      const start = this.#pos;
      this.#keyValue(path);
      this.#skipBlank(true);
      if (this.#peek() === ",") this.#pos++;
      else if (this.#pos === start) this.#pos++;
    }
  }

  #basicString(): string {
    this.#pos++;
    let raw = "";
    while (this.#pos < this.#text.length) {
      const c = this.#text[this.#pos++];
      if (c === '"') break;
      if (c === "\n") this.#line++;
      if (c === "\\") {
        raw += c + (this.#text[this.#pos++] ?? "");
        continue;
      }
      raw += c;
    }
    return unescapeBasic(raw);
  }

  #literalString(): string {
    this.#pos++;
    const end = this.#text.indexOf("'", this.#pos);
    const stop = end === -1 ? this.#text.length : end;
    const value = this.#text.slice(this.#pos, stop);
    this.#pos = stop + 1;
    return value;
  }

  #multiline(delimiter: string): void {
    this.#pos += 3;
    while (this.#pos < this.#text.length) {
      const c = this.#text[this.#pos];
      if (c === "\\" && delimiter === '"""') {
        if (this.#text[this.#pos + 1] === "\n") this.#line++;
        this.#pos += 2;
        continue;
      }
      if (this.#text.startsWith(delimiter, this.#pos)) {
        this.#pos += 3;
        // Up to two quotes right before the closing delimiter belong to the content.
        for (let extra = 0; extra < 2 && this.#text[this.#pos] === delimiter[0]; extra++) {
          this.#pos++;
        }
        return;
      }
      if (c === "\n") this.#line++;
      this.#pos++;
    }
  }

  /** Skips spaces, tabs and comments, and newlines too when `newlines` is set. */
  #skipBlank(newlines: boolean): void {
    while (this.#pos < this.#text.length) {
      const c = this.#text[this.#pos];
      if (c === " " || c === "\t" || c === "\r") this.#pos++;
      else if (c === "\n" && newlines) {
        this.#line++;
        this.#pos++;
      } else if (c === "#") {
        const end = this.#text.indexOf("\n", this.#pos);
        this.#pos = end === -1 ? this.#text.length : end;
      } else return;
    }
  }

  #peek(): string {
    return this.#text[this.#pos] ?? "";
  }
}

function unescapeBasic(raw: string): string {
  return raw.replace(/\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_, e: string) => {
    if (e[0] === "u" || e[0] === "U") return String.fromCodePoint(parseInt(e.slice(1), 16));
    const simple: Record<string, string> = {
      b: "\b",
      t: "\t",
      n: "\n",
      f: "\f",
      r: "\r",
      e: "\x1b",
      '"': '"',
      "\\": "\\",
    };
    return simple[e] ?? e;
  });
}
