// Admin shell commands about roles: `role list|show` and the role commands of the user section
// (`user role`, `user set_role`); the role model itself lives in core/auth/roles.ts.

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { RoleConfigError, RoleError, type RoleModel, roleModelFor } from "../../core/auth/roles.ts";
import type { AdminServer } from "../../core/admin_commands.ts";
import { type JID, tryParseJid } from "../../core/jid.ts";

function hostModel(server: AdminServer, host: string | undefined): RoleModel {
  try {
    if (host === undefined) return roleModelFor(server, "");
    if (!server.hosts.has(host) || server.hosts.get(host)!.kind !== "local") {
      throw new CommandError(
        `Unknown host '${host}' (hosts: ${[...server.hosts.keys()].join(", ")})`,
      );
    }
    return roleModelFor(server, host);
  } catch (error) {
    if (error instanceof RoleConfigError) throw new CommandError(error.message);
    throw error;
  }
}

function accountJid(server: AdminServer, text: string): JID {
  const jid = tryParseJid(text);
  if (!jid?.local || jid.resource !== undefined) {
    throw new CommandError(`Expected a bare JID such as 'alice@example.com', found '${text}'`);
  }
  if (!server.hosts.has(jid.domain)) throw new CommandError(`Unknown host '${jid.domain}'`);
  if (!server.accounts.exists(jid.domain, jid.local)) {
    throw new CommandError(`No account '${jid.bareString()}'`);
  }
  return jid.bare;
}

/** The `role` section, plus `user role` and `user set_role`. */
export function roleCommands(): CommandSpec[] {
  return [
    {
      section: "role",
      name: "list",
      summary: "Lists the roles of a host (or of the global configuration) and what they inherit",
      args: [{ name: "host", kind: "host", optional: true }],
      run(ctx, [host]) {
        // Without a host: the roles every host gets unless its own options change them.
        const model = hostModel(ctx.server, host);
        const roles = model.roles();
        return {
          table: {
            columns: ["role", "inherits", "permissions", "default"],
            rows: roles.map((r) => [
              r.name,
              r.inherits.join(", "),
              r.permissions.length,
              r.name === model.defaultRole,
            ]),
          },
          data: roles.map((r) => ({ ...r, default: r.name === model.defaultRole })),
        };
      },
    },
    {
      section: "role",
      name: "show",
      summary: "Shows a role's permissions (own and inherited) and the roles it inherits",
      args: [{ name: "host", kind: "host" }, { name: "role", kind: "role" }],
      run(ctx, [host, role]) {
        const model = hostModel(ctx.server, host);
        if (!model.has(role)) {
          throw new CommandError(
            `Unknown role '${role}' on ${host} (roles: ${
              model.roles().map((r) => r.name).join(", ")
            })`,
          );
        }
        const inherits = model.ancestors(role);
        const permissions = [...model.permissions(role)];
        const rows = permissions.map((action) => [action, model.grantedBy(role, action)!.by]);
        return {
          message: inherits.length > 0
            ? `Role ${role} inherits ${inherits.join(", ")}`
            : `Role ${role} inherits nothing`,
          table: { columns: ["permission", "granted by"], rows },
          data: {
            name: role,
            inherits,
            permissions: permissions.map((action, i) => ({ action, from: rows[i][1] })),
          },
        };
      },
    },
    {
      section: "user",
      name: "role",
      summary: "Shows an account's role and where it comes from (admins, stored, default)",
      args: [{ name: "jid", kind: "jid" }],
      run(ctx, [text]) {
        const jid = accountJid(ctx.server, text ?? "");
        const { role, source } = hostModel(ctx.server, jid.domain).explain(jid);
        return {
          message: `${jid.bareString()}: ${role} (${source})`,
          data: { jid: jid.bareString(), role, source },
        };
      },
    },
    {
      section: "user",
      name: "set_role",
      summary: "Sets an account's role",
      args: [{ name: "jid", kind: "jid" }, { name: "role", kind: "role" }],
      run(ctx, [text, role]) {
        const jid = accountJid(ctx.server, text ?? "");
        const model = hostModel(ctx.server, jid.domain);
        try {
          model.setRole(jid.domain, jid.local!, role ?? "");
        } catch (error) {
          if (error instanceof RoleError) throw new CommandError(error.message);
          throw error;
        }
        const note = model.isListedAdmin(jid.local!)
          ? " (listed in 'admins', which keeps it admin until removed from the list)"
          : "";
        return {
          message: `${jid.bareString()} now has role ${role}${note}`,
          data: { jid: jid.bareString(), role, effective: model.roleOf(jid) },
        };
      },
    },
  ];
}
