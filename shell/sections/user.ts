// The `user` section of the admin shell: accounts and their lifecycle (create, password,
// disable/enable, deletion with grace and restore, bulk import, activity). `user role` and
// `user set_role` live with the roles commands.

import {
  type CommandContext,
  CommandError,
  type CommandResult,
  type CommandSpec,
} from "../../core/admin_commands.ts";
import {
  closeUserSessions,
  deleteAccount,
  restoreAccount,
} from "../../core/auth/account_lifecycle.ts";
import {
  AccountExistsError,
  type AccountInfo,
  AccountNotFoundError,
  AccountTombstonedError,
  type NewAccount,
} from "../../core/auth/accounts.ts";
import { RoleError, RoleModel } from "../../core/auth/roles.ts";
import { PasswordPrepError } from "../../core/auth/saslprep.ts";
import { JidError, parseJid } from "../../core/jid.ts";
import type { AdminServer } from "../../core/admin_commands.ts";

/** An account address argument, split and checked against the server's local hosts. */
interface Account {
  host: string;
  user: string;
  jid: string;
}

function accountArg(server: AdminServer, text: string | undefined): Account {
  if (!text) throw new CommandError("Expected an account address (user@host)");
  let jid;
  try {
    jid = parseJid(text);
  } catch (error) {
    if (error instanceof JidError) throw new CommandError(error.message);
    throw error;
  }
  if (jid.local === undefined || jid.resource !== undefined) {
    throw new CommandError(`Expected an account address (user@host), found '${text}'`);
  }
  hostArg(server, jid.domain);
  return { host: jid.domain, user: jid.local, jid: jid.bareString() };
}

function hostArg(server: AdminServer, text: string | undefined): string {
  if (!text) throw new CommandError("Expected a host");
  const host = server.hosts.get(text.toLowerCase());
  if (!host || host.kind !== "local") {
    const hosts = [...server.hosts.values()].filter((h) => h.kind === "local").map((h) => h.domain);
    throw new CommandError(`'${text}' is not a local host (hosts: ${hosts.join(", ")})`);
  }
  return host.domain;
}

function requireAccount(server: AdminServer, account: Account): void {
  if (!server.accounts.exists(account.host, account.user)) {
    throw new CommandError(`No account ${account.jid}`);
  }
}

/** Runs `fn`, turning the account store's expected failures into CommandErrors. */
async function expected<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (
      error instanceof AccountExistsError || error instanceof AccountNotFoundError ||
      error instanceof AccountTombstonedError || error instanceof PasswordPrepError ||
      error instanceof RoleError
    ) {
      throw new CommandError(error.message);
    }
    throw error;
  }
}

function roleModel(server: AdminServer, host: string): RoleModel {
  return new RoleModel({
    config: server.config,
    storage: server.storage,
    accounts: server.accounts,
    host,
  });
}

function checkRole(
  server: AdminServer,
  host: string,
  role: string | undefined,
): RoleModel | undefined {
  if (role === undefined || role === "") return undefined;
  const model = roleModel(server, host);
  if (!model.has(role)) {
    throw new CommandError(
      `Unknown role '${role}' (roles of ${host}: ${model.roles().map((r) => r.name).join(", ")})`,
    );
  }
  return model;
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** Turns a glob (`*`, `?`) into an anchored, case-insensitive regular expression. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`, "i");
}

/**
 * Parses a duration such as "30d", "12h", "90m", "45s" or "2w" (a bare number is seconds)
 * into milliseconds; undefined when the text is not one.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+)\s*([smhdw]?)$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[
    match[2].toLowerCase() as "" | "s" | "m" | "h" | "d" | "w"
  ];
  return Number(match[1]) * unit * 1000;
}

/** The latest sign of life of an account: last login or logout, else its creation. */
function lastActive(info: AccountInfo): number {
  return Math.max(info.lastLogin ?? 0, info.lastLogout ?? 0) || info.createdAt;
}

/** One parsed line of an import file. */
interface ImportLine {
  line: number;
  account: Account;
  password: string;
  role?: string;
}

/**
 * Reads `jid password [role]` lines (blank lines and `#` comments skipped). Passwords cannot
 * contain whitespace in this format. Problems are collected per line, never echoing passwords.
 */
function parseImport(
  server: AdminServer,
  text: string,
): { lines: ImportLine[]; failed: { line: number; jid: string; reason: string }[] } {
  const lines: ImportLine[] = [];
  const failed: { line: number; jid: string; reason: string }[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const fields = trimmed.split(/\s+/);
    if (fields.length < 2 || fields.length > 3) {
      failed.push({
        line,
        jid: fields[0],
        reason: `Expected 'jid password [role]', found ${fields.length} field(s)`,
      });
      return;
    }
    try {
      const account = accountArg(server, fields[0]);
      const role = fields[2];
      if (role !== undefined) checkRole(server, account.host, role);
      lines.push({ line, account, password: fields[1], role });
    } catch (error) {
      failed.push({ line, jid: fields[0], reason: (error as Error).message });
    }
  });
  return { lines, failed };
}

async function importAccounts(ctx: CommandContext, file: string): Promise<CommandResult> {
  const { server } = ctx;
  let text: string;
  if (file === "-") {
    // The server cannot read the caller's stdin: `lilt shell` forwards it over the socket.
    if (!ctx.readInput) {
      throw new CommandError(
        "'-' means the caller's standard input, and none was sent: " +
          "run 'lilt shell user import - < FILE' from a shell, or give a file path",
      );
    }
    text = await ctx.readInput();
  } else {
    try {
      text = await Deno.readTextFile(file);
    } catch (error) {
      throw new CommandError(`Cannot read '${file}': ${(error as Error).message}`);
    }
  }
  const { lines, failed } = parseImport(server, text);
  const byHost = new Map<string, ImportLine[]>();
  for (const line of lines) {
    const list = byHost.get(line.account.host) ?? [];
    list.push(line);
    byHost.set(line.account.host, list);
  }
  const created: string[] = [];
  for (const [host, hostLines] of byHost) {
    const entries: NewAccount[] = hostLines.map((l) => ({
      username: l.account.user,
      password: l.password,
    }));
    const result = await server.accounts.createMany(host, entries);
    const lineOf = new Map(hostLines.map((l) => [l.account.user, l]));
    for (const f of result.failed) {
      const l = lineOf.get(f.username);
      failed.push({ line: l?.line ?? 0, jid: `${f.username}@${host}`, reason: f.reason });
    }
    const withRole = hostLines.filter((l) => l.role !== undefined);
    if (withRole.length > 0) {
      const model = roleModel(server, host);
      const createdSet = new Set(result.created);
      server.database.transaction(() => {
        for (const l of withRole) {
          if (createdSet.has(l.account.user)) model.setRole(host, l.account.user, l.role!);
        }
      });
    }
    created.push(...result.created.map((user) => `${user}@${host}`));
  }
  failed.sort((a, b) => a.line - b.line);
  const skipped = failed.length === 0 ? "" : `, skipped ${failed.length}`;
  return {
    message: `Created ${created.length} account(s)${skipped}` +
      failed.slice(0, 5).map((f) => `\n  line ${f.line} (${f.jid}): ${f.reason}`).join("") +
      (failed.length > 5 ? `\n  … and ${failed.length - 5} more` : ""),
    data: { created: created.length, failed },
  };
}

/** The commands of the `user` section (all but `role` and `set_role`). */
export function userCommands(): CommandSpec[] {
  return [
    {
      section: "user",
      name: "create",
      summary: "Create an account, optionally with a role",
      args: [
        { name: "jid", kind: "jid" },
        { name: "password", kind: "password" },
        { name: "role", kind: "role", optional: true },
      ],
      run: async ({ server }, [jidText, password, role]) => {
        const account = accountArg(server, jidText);
        if (!password) throw new CommandError("Expected a password");
        const model = checkRole(server, account.host, role);
        await expected(() => server.accounts.create(account.host, account.user, password));
        if (model) model.setRole(account.host, account.user, role!);
        return {
          message: `Created ${account.jid}${model ? ` with role ${role}` : ""}`,
          data: { jid: account.jid, role: model ? role : null },
        };
      },
    },
    {
      section: "user",
      name: "password",
      summary: "Change an account's password",
      args: [{ name: "jid", kind: "jid" }, { name: "password", kind: "password" }],
      run: async ({ server }, [jidText, password]) => {
        const account = accountArg(server, jidText);
        if (!password) throw new CommandError("Expected a password");
        await expected(() => server.accounts.setPassword(account.host, account.user, password));
        return { message: `Changed the password of ${account.jid}`, data: { jid: account.jid } };
      },
    },
    {
      section: "user",
      name: "delete",
      summary: "Delete an account (restorable during deletion_grace_period); sessions close",
      args: [{ name: "jid", kind: "jid" }],
      run: async ({ server }, [jidText]) => {
        const account = accountArg(server, jidText);
        requireAccount(server, account);
        const outcome = await expected(() => deleteAccount(server, account.host, account.user));
        const message = outcome.state === "purged"
          ? `Deleted ${account.jid} and its data`
          : `Disabled ${account.jid}; it is deleted with its data after ${
            iso(outcome.purgeAt)
          } unless restored with 'user restore'`;
        return {
          message,
          data: {
            jid: account.jid,
            state: outcome.state,
            purge_at: iso(outcome.purgeAt),
            closed_sessions: outcome.closedSessions,
          },
        };
      },
    },
    {
      section: "user",
      name: "restore",
      summary: "Cancel a pending deletion and enable the account again",
      args: [{ name: "jid", kind: "jid" }],
      run: ({ server }, [jidText]) => {
        const account = accountArg(server, jidText);
        try {
          restoreAccount(server, account.host, account.user);
        } catch (error) {
          throw new CommandError((error as Error).message);
        }
        return { message: `Restored ${account.jid}`, data: { jid: account.jid } };
      },
    },
    {
      section: "user",
      name: "disable",
      summary: "Refuse logins to an account and close its live sessions",
      args: [{ name: "jid", kind: "jid" }],
      run: async ({ server }, [jidText]) => {
        const account = accountArg(server, jidText);
        requireAccount(server, account);
        await expected(() => server.accounts.disable(account.host, account.user));
        const closed = closeUserSessions(server, account.host, account.user, "Account disabled");
        return {
          message: `Disabled ${account.jid} (closed ${closed} session(s))`,
          data: { jid: account.jid, closed_sessions: closed },
        };
      },
    },
    {
      section: "user",
      name: "enable",
      summary: "Allow logins to a disabled account again",
      args: [{ name: "jid", kind: "jid" }],
      run: async ({ server }, [jidText]) => {
        const account = accountArg(server, jidText);
        requireAccount(server, account);
        if (server.accounts.deletedAt(account.host, account.user) !== undefined) {
          throw new CommandError(
            `${account.jid} is pending deletion: use 'user restore ${account.jid}' to keep it`,
          );
        }
        await expected(() => server.accounts.enable(account.host, account.user));
        return { message: `Enabled ${account.jid}`, data: { jid: account.jid } };
      },
    },
    {
      section: "user",
      name: "list",
      summary: "List a host's accounts, optionally matching a glob pattern (e.g. 'a*')",
      args: [{ name: "host", kind: "host" }, { name: "pattern", kind: "string", optional: true }],
      run: ({ server }, [hostText, pattern]) => {
        const host = hostArg(server, hostText);
        const match = pattern ? globToRegExp(pattern) : undefined;
        const infos = server.accounts.listInfo(host).filter((info) =>
          !match || match.test(pattern!.includes("@") ? `${info.username}@${host}` : info.username)
        );
        const rows = infos.map((info) => ({
          jid: `${info.username}@${host}`,
          disabled: info.disabled,
          deleted: info.deletedAt !== undefined,
          last_login: iso(info.lastLogin),
        }));
        return {
          table: {
            columns: ["jid", "disabled", "deleted", "last_login"],
            rows: rows.map((r) => [r.jid, r.disabled, r.deleted, r.last_login]),
          },
          data: rows,
        };
      },
    },
    {
      section: "user",
      name: "import",
      summary: "Create accounts from 'jid password [role]' lines in FILE, or '-' for stdin",
      args: [{ name: "file", kind: "file", stdin: true }],
      run: (ctx, [file]) => {
        if (!file) throw new CommandError("Expected a file of 'jid password [role]' lines");
        return importAccounts(ctx, file);
      },
    },
    {
      section: "user",
      name: "activity",
      summary: "Show an account's last login and logout",
      args: [{ name: "jid", kind: "jid" }],
      run: ({ server }, [jidText]) => {
        const account = accountArg(server, jidText);
        const info = server.accounts.info(account.host, account.user);
        if (!info) throw new CommandError(`No account ${account.jid}`);
        const online = server.sessions.userSessions(account.host, account.user).length;
        const data = {
          jid: account.jid,
          last_login: iso(info.lastLogin),
          last_logout: iso(info.lastLogout),
          online_sessions: online,
        };
        return {
          message: `${account.jid}: last login ${data.last_login ?? "never"}, last logout ` +
            `${data.last_logout ?? "never"}, ${online} session(s) online`,
          data,
        };
      },
    },
    {
      section: "user",
      name: "list_inactive",
      summary: "List accounts with no login or logout for DURATION (e.g. 30d, 12h, 90m, 45s)",
      args: [{ name: "host", kind: "host" }, { name: "duration", kind: "duration" }],
      run: ({ server }, [hostText, durationText]) => {
        const host = hostArg(server, hostText);
        const duration = parseDuration(durationText ?? "");
        if (duration === undefined) {
          throw new CommandError(
            `Expected a duration such as 30d, 12h, 90m or 45s, found '${durationText ?? ""}'`,
          );
        }
        const cutoff = Date.now() - duration;
        const rows = server.accounts.listInfo(host)
          .filter((info) =>
            lastActive(info) < cutoff &&
            server.sessions.userSessions(host, info.username).length === 0
          )
          .map((info) => ({
            jid: `${info.username}@${host}`,
            last_active: iso(lastActive(info)),
            last_login: iso(info.lastLogin),
            disabled: info.disabled,
          }));
        return {
          table: {
            columns: ["jid", "last_active", "last_login", "disabled"],
            rows: rows.map((r) => [r.jid, r.last_active, r.last_login, r.disabled]),
          },
          data: rows,
        };
      },
    },
  ];
}
