// Roles and permissions (Prosody 13's model): who may do what on a host. Modules and the admin
// shell ask `may(action, actor)` instead of comparing JIDs against the `admins` list.

import type { AccountStore } from "./accounts.ts";
import { type Config, type ConfigProblem, formatProblem } from "../config.ts";
import type { HostOptionName } from "../config_schema.ts";
import type { ServerContext } from "../context.ts";
import type { JID } from "../jid.ts";
import type { Storage } from "../storage/stores.ts";

/** A role as configured or built in: its name, the roles it inherits and its own grants. */
export interface RoleDefinition {
  /** Role name, e.g. "admin" or a custom "moderator". */
  name: string;
  /** Roles whose permissions this one inherits, nearest first. */
  inherits: string[];
  /** Actions granted by this role itself; "*" grants every action. */
  permissions: string[];
}

/** A role as `RoleModel.roles()` reports it: effective permissions, inheritance resolved. */
export interface RoleInfo {
  /** Role name. */
  name: string;
  /** Roles it inherits directly. */
  inherits: string[];
  /** Every action the role may perform (own and inherited), sorted. */
  permissions: string[];
}

/** Where a user's role came from, for `user role JID`. */
export type RoleSource =
  | "operator"
  | "remote"
  | "unknown"
  | "disabled"
  | "admins"
  | "stored"
  | "default";

/** The actions Lilt itself checks or grants, with one line each (for `help roles`). */
export const ACTIONS: Readonly<Record<string, string>> = {
  "lilt:view-public-info": "Query public server information (disco, version, time)",
  "lilt:change-own-password": "Change one's own password",
  "lilt:delete-own-account": "Delete one's own account",
  "lilt:manage-own-data": "Manage one's own roster, vCard, private storage and blocklist",
  "lilt:muc-create-room": "Create chat rooms on the host's MUC services",
  "lilt:upload-file": "Upload files to the host's upload service",
  "lilt:invite-contact": "Invite contacts to the host",
  "lilt:user-create": "Create accounts",
  "lilt:user-delete": "Delete accounts",
  "lilt:user-disable": "Disable and enable accounts",
  "lilt:user-set-role": "Change the role of accounts",
  "lilt:user-list": "List accounts and their activity",
  "lilt:register-other": "Register accounts for other people (in-band or ad-hoc)",
  "lilt:module-load": "Load, unload and reload modules",
  "lilt:announce": "Send announcements to the host's users",
  "lilt:view-stats": "View server statistics and sessions",
  "lilt:c2s-close": "Close client sessions",
  "lilt:muc-admin": "Administer every chat room of the host",
  "lilt:config-reload": "Reload the configuration",
  "lilt:server-shutdown": "Shut the server down",
  "lilt:manage-all-hosts": "Administer every host of the server",
};

/** Lilt's built-in roles, lowest first: operator > admin > member > registered > guest. */
export const BUILTIN_ROLES: readonly RoleDefinition[] = [
  { name: "guest", inherits: [], permissions: ["lilt:view-public-info"] },
  {
    name: "registered",
    inherits: ["guest"],
    permissions: ["lilt:change-own-password", "lilt:delete-own-account", "lilt:manage-own-data"],
  },
  {
    name: "member",
    inherits: ["registered"],
    permissions: ["lilt:muc-create-room", "lilt:upload-file", "lilt:invite-contact"],
  },
  {
    name: "admin",
    inherits: ["member"],
    permissions: [
      "lilt:user-create",
      "lilt:user-delete",
      "lilt:user-disable",
      "lilt:user-set-role",
      "lilt:user-list",
      "lilt:register-other",
      "lilt:module-load",
      "lilt:announce",
      "lilt:view-stats",
      "lilt:c2s-close",
      "lilt:muc-admin",
    ],
  },
  { name: "operator", inherits: ["admin"], permissions: ["*"] },
];

/** The role name of the admin shell's (socket) actor and of the top built-in role. */
export const OPERATOR = "operator";
/** The role of remote, unknown and disabled accounts. */
export const GUEST = "guest";

/** The map store (per host, per user) holding an account's assigned role. */
export const ROLE_STORE = "roles";
/** The key of the assigned role inside the user's map. */
export const ROLE_KEY = "role";

/** The role configuration is invalid: the message names the file, line and option. */
export class RoleConfigError extends Error {
  /** Every problem found. */
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.problems = problems;
  }
}

/** A role or account named in a request does not exist. */
export class RoleError extends Error {}

/** Options for {@link RoleModel}. */
export interface RoleModelOptions {
  /** The configuration to read `custom_roles`, `add_permissions`, ... from. */
  config: Config;
  /** Storage holding assigned roles (map store "roles"). */
  storage: Storage;
  /** Accounts, to tell unknown and disabled accounts (guests) apart. */
  accounts?: AccountStore;
  /** The host; undefined reads only the global options (roles of no host, for listings). */
  host?: string;
}

interface Role {
  name: string;
  inherits: string[];
  /** action -> granted (true) or explicitly removed (false) on this role. */
  grants: Map<string, boolean>;
}

interface Decision {
  allowed: boolean;
  by: string;
}

/**
 * The roles of one host, built from configuration: built-in roles, `custom_roles`,
 * `add_permissions` / `remove_permissions`, `default_user_role`, and the host's `admins`.
 * A user's role comes from `admins` (admin), else the stored role (`setRole`), else
 * `default_user_role`; remote JIDs, unknown and disabled accounts are guests.
 *
 * @example
 * ```ts
 * const roles = new RoleModel({ config, storage, accounts, host: "example.com" });
 * roles.may("lilt:announce", parseJid("alice@example.com")); // true when alice is an admin
 * ```
 */
export class RoleModel {
  /** The host the model is for ("" when built from global options only). */
  readonly host: string;
  /** The role of local accounts with no other role. */
  readonly defaultRole: string;
  #roles = new Map<string, Role>();
  #admins: Set<string>;
  #storage: Storage;
  #accounts: AccountStore | undefined;
  #known: string[];
  #permissionCache = new Map<string, Set<string>>();

  /** Builds the model; throws {@link RoleConfigError} when the role options are invalid. */
  constructor(options: RoleModelOptions) {
    this.host = options.host ?? "";
    this.#storage = options.storage;
    this.#accounts = options.accounts;
    const { roles, defaultRole, problems } = readRoleConfig(options.config, options.host);
    if (problems.length > 0) throw new RoleConfigError(problems);
    this.#roles = roles;
    this.defaultRole = defaultRole;
    const admins = options.host === undefined
      ? []
      : options.config.hostOption(options.host, "admins");
    this.#admins = new Set(admins);
    const known = new Set(Object.keys(ACTIONS));
    for (const role of roles.values()) {
      for (const action of role.grants.keys()) if (action !== "*") known.add(action);
    }
    this.#known = [...known].sort();
  }

  /** True when a role of this name exists. */
  has(role: string): boolean {
    return this.#roles.has(role);
  }

  /** The role of a JID on this host, and where it came from. */
  explain(jid: JID): { role: string; source: RoleSource } {
    if (jid.domain !== this.host || jid.local === undefined) {
      return { role: GUEST, source: "remote" };
    }
    const user = jid.local;
    if (this.#accounts) {
      if (!this.#accounts.exists(this.host, user)) return { role: GUEST, source: "unknown" };
      if (this.#accounts.isDisabled(this.host, user)) return { role: GUEST, source: "disabled" };
    }
    if (this.#admins.has(`${user}@${this.host}`)) return { role: "admin", source: "admins" };
    const stored = this.#storage.map<string>(this.host, ROLE_STORE).get(user, ROLE_KEY);
    if (stored !== undefined && this.#roles.has(stored)) return { role: stored, source: "stored" };
    return { role: this.defaultRole, source: "default" };
  }

  /** The role of a JID on this host (see the class comment for the rules). */
  roleOf(jid: JID): string {
    return this.explain(jid).role;
  }

  /** Every action a role may perform, inherited ones included; empty for unknown roles. */
  permissions(role: string): Set<string> {
    let cached = this.#permissionCache.get(role);
    if (!cached) {
      cached = new Set(this.#known.filter((action) => this.#decide(role, action)?.allowed));
      this.#permissionCache.set(role, cached);
    }
    return cached;
  }

  /** The role that grants or removes `action` for `role` (itself or an ancestor), if any. */
  grantedBy(role: string, action: string): { allowed: boolean; by: string } | undefined {
    return this.#decide(role, action);
  }

  /** Whether a role may perform an action. */
  roleMay(role: string, action: string): boolean {
    return this.#decide(role, action)?.allowed ?? false;
  }

  /** Whether an actor (a JID, or the admin shell's "operator") may perform an action. */
  may(action: string, actor: JID | typeof OPERATOR): boolean {
    const role = actor === OPERATOR ? OPERATOR : this.roleOf(actor);
    return this.roleMay(role, action);
  }

  /** Every ancestor of a role, nearest first (without the role itself). */
  ancestors(role: string): string[] {
    const out: string[] = [];
    const visit = (name: string) => {
      for (const parent of this.#roles.get(name)?.inherits ?? []) {
        if (out.includes(parent)) continue;
        out.push(parent);
        visit(parent);
      }
    };
    visit(role);
    return out;
  }

  /** Stores the role of a local account (`user set_role`). */
  setRole(host: string, user: string, role: string): void {
    if (host !== this.host) {
      throw new RoleError(`Expected an account of '${this.host}', found one of '${host}'`);
    }
    if (!this.#roles.has(role)) {
      throw new RoleError(
        `Unknown role '${role}' (roles of ${host}: ${[...this.#roles.keys()].join(", ")})`,
      );
    }
    if (this.#accounts && !this.#accounts.exists(host, user)) {
      throw new RoleError(`No account '${user}@${host}'`);
    }
    this.#storage.map<string>(host, ROLE_STORE).set(user, ROLE_KEY, role);
  }

  /** The stored role of an account, if one was set. */
  storedRole(user: string): string | undefined {
    return this.#storage.map<string>(this.host, ROLE_STORE).get(user, ROLE_KEY);
  }

  /** True when the account is in the host's `admins` list (which wins over a stored role). */
  isListedAdmin(user: string): boolean {
    return this.#admins.has(`${user}@${this.host}`);
  }

  /** Every role: built-in ones first (lowest first), then custom ones in config order. */
  roles(): RoleInfo[] {
    return [...this.#roles.values()].map((role) => ({
      name: role.name,
      inherits: [...role.inherits],
      permissions: [...this.permissions(role.name)],
    }));
  }

  #decide(role: string, action: string, seen = new Set<string>()): Decision | undefined {
    const def = this.#roles.get(role);
    if (!def || seen.has(role)) return undefined;
    seen.add(role);
    const own = def.grants.get(action);
    if (own !== undefined) return { allowed: own, by: role };
    if (def.grants.get("*") === true) return { allowed: true, by: role };
    for (const parent of def.inherits) {
      const decision = this.#decide(parent, action, seen);
      if (decision) return decision;
    }
    return undefined;
  }
}

/** The role options read from a config for one host (or the global level). */
interface RoleConfig {
  roles: Map<string, Role>;
  defaultRole: string;
  problems: ConfigProblem[];
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string" && item !== "");
}

function readRoleConfig(config: Config, host: string | undefined): RoleConfig {
  const problems: ConfigProblem[] = [];
  const read = (key: HostOptionName): unknown =>
    host === undefined ? config.hostDefault(key) : config.hostOption(host, key);
  const problem = (key: string, message: string) => {
    problems.push({
      file: config.file,
      line: config.lineOf(host, key) ?? 0,
      severity: "error",
      message,
    });
  };

  const roles = new Map<string, Role>();
  for (const def of BUILTIN_ROLES) {
    roles.set(def.name, {
      name: def.name,
      inherits: [...def.inherits],
      grants: new Map(def.permissions.map((p) => [p, true])),
    });
  }

  // custom_roles: a list of { name, inherits, permissions } tables, or a table keyed by name.
  const custom = read("custom_roles");
  const entries: [string | undefined, unknown][] = [];
  if (Array.isArray(custom)) {
    for (const entry of custom) {
      entries.push([
        isTable(entry) && typeof entry.name === "string" ? entry.name : undefined,
        entry,
      ]);
    }
  } else if (isTable(custom)) {
    for (const [name, entry] of Object.entries(custom)) entries.push([name, entry]);
  } else if (custom !== undefined) {
    problem("custom_roles", "option 'custom_roles' must be a list of role tables");
  }
  const customNames: string[] = [];
  for (const [i, [name, entry]] of entries.entries()) {
    const at = `option 'custom_roles' entry ${name === undefined ? i + 1 : `'${name}'`}`;
    if (!isTable(entry)) {
      problem("custom_roles", `${at} must be a table with name, inherits and permissions`);
      continue;
    }
    if (name === undefined || name.trim() === "") {
      problem("custom_roles", `${at} has no 'name'`);
      continue;
    }
    const extra = Object.keys(entry).filter((k) =>
      !["name", "inherits", "permissions"].includes(k)
    );
    if (extra.length > 0) {
      problem(
        "custom_roles",
        `${at} has unknown key '${extra[0]}' (expected name, inherits, permissions)`,
      );
      continue;
    }
    if (BUILTIN_ROLES.some((r) => r.name === name)) {
      problem(
        "custom_roles",
        `${at} redefines the built-in role '${name}' (use add_permissions or remove_permissions)`,
      );
      continue;
    }
    if (customNames.includes(name)) {
      problem("custom_roles", `${at} defines role '${name}' twice`);
      continue;
    }
    const inherits = entry.inherits === undefined
      ? []
      : typeof entry.inherits === "string"
      ? [entry.inherits]
      : entry.inherits;
    if (!isStringList(inherits)) {
      problem("custom_roles", `${at}: 'inherits' must be a role name or a list of role names`);
      continue;
    }
    const permissions = entry.permissions ?? [];
    if (!isStringList(permissions)) {
      problem("custom_roles", `${at}: 'permissions' must be a list of action names`);
      continue;
    }
    customNames.push(name);
    roles.set(name, { name, inherits, grants: new Map(permissions.map((p) => [p, true])) });
  }
  for (const name of customNames) {
    for (const parent of roles.get(name)!.inherits) {
      if (!roles.has(parent)) {
        problem(
          "custom_roles",
          `option 'custom_roles': role '${name}' inherits unknown role '${parent}' (roles: ${
            [...roles.keys()].join(", ")
          })`,
        );
      }
    }
  }
  const cycle = findCycle(roles);
  if (cycle) {
    problem(
      "custom_roles",
      `option 'custom_roles': roles inherit from each other in a cycle: ${cycle.join(" -> ")}`,
    );
  }

  // add_permissions / remove_permissions: role -> list of actions.
  for (
    const [key, granted] of [["add_permissions", true], ["remove_permissions", false]] as const
  ) {
    const value = read(key);
    if (value === undefined) continue;
    if (!isTable(value)) {
      problem(key, `option '${key}' must be a table of role = [actions...]`);
      continue;
    }
    for (const [role, actions] of Object.entries(value)) {
      const def = roles.get(role);
      if (!def) {
        problem(
          key,
          `option '${key}' names unknown role '${role}' (roles: ${[...roles.keys()].join(", ")})`,
        );
        continue;
      }
      if (!isStringList(actions)) {
        problem(key, `option '${key}': '${role}' must be a list of action names`);
        continue;
      }
      for (const action of actions) def.grants.set(action, granted);
    }
  }

  const rawDefault = read("default_user_role");
  let defaultRole = "registered";
  if (rawDefault !== undefined) {
    if (typeof rawDefault !== "string" || !roles.has(rawDefault)) {
      problem(
        "default_user_role",
        `option 'default_user_role' names unknown role ${JSON.stringify(rawDefault)} (roles: ${
          [...roles.keys()].join(", ")
        })`,
      );
    } else defaultRole = rawDefault;
  }
  return { roles, defaultRole, problems };
}

/** The first inheritance cycle, as a path of role names ending where it started. */
function findCycle(roles: Map<string, Role>): string[] | undefined {
  const done = new Set<string>();
  const visit = (name: string, path: string[]): string[] | undefined => {
    const start = path.indexOf(name);
    if (start >= 0) return [...path.slice(start), name];
    if (done.has(name)) return undefined;
    const role = roles.get(name);
    if (!role) return undefined;
    for (const parent of role.inherits) {
      const found = visit(parent, [...path, name]);
      if (found) return found;
    }
    done.add(name);
    return undefined;
  };
  for (const name of roles.keys()) {
    const found = visit(name, []);
    if (found) return found;
  }
  return undefined;
}

/**
 * Checks the role options of the global level and every host and component, for `lilt check
 * config` and server start. Returns the problems (empty when the roles are fine).
 */
export function checkRoleConfig(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  const targets = [undefined, ...config.hosts.map((h) => h.domain)];
  for (const host of targets) {
    for (const p of readRoleConfig(config, host).problems) {
      const key = `${p.line}:${p.message}`;
      if (seen.has(key)) continue; // a global mistake shows once, not once per host
      seen.add(key);
      problems.push(p);
    }
  }
  return problems;
}

/**
 * Builds the role model of a host from a running server's config, storage and accounts; without
 * a host (or with ""), the roles of the global options.
 */
export function createRoleModel(server: ServerContext, host?: string): RoleModel {
  return new RoleModel({
    config: server.config,
    storage: server.storage,
    accounts: server.accounts,
    host: host === "" ? undefined : host,
  });
}

const cache = new WeakMap<ServerContext, { config: Config; models: Map<string, RoleModel> }>();

/**
 * The role model of a host of a running server, cached until the configuration is replaced
 * (reload). Stored roles are read from storage on every check, so `setRole` needs no reset.
 * The host "" gives the roles of the global options.
 */
export function roleModelFor(server: ServerContext, host: string): RoleModel {
  let entry = cache.get(server);
  if (!entry || entry.config !== server.config) {
    entry = { config: server.config, models: new Map() };
    cache.set(server, entry);
  }
  let model = entry.models.get(host);
  if (!model) {
    model = createRoleModel(server, host);
    entry.models.set(host, model);
  }
  return model;
}
