// The `config` section of the admin shell: read an option as the server sees it, and reload
// the file (the same code path as SIGHUP).

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { describeChange } from "../../core/config_changes.ts";
import { describeReload, pendingChanges, reloadConfiguration } from "../reload.ts";

/** The commands of the `config` section. */
export function configCommands(): CommandSpec[] {
  return [
    {
      section: "config",
      name: "get",
      summary: "Show an option's value (a host's value when HOST is given)",
      args: [
        { name: "host", kind: "host", optional: true },
        { name: "option", kind: "string" },
      ],
      run: ({ server }, args) => {
        if (args.length < 1 || args.length > 2) {
          throw new CommandError("Expected [HOST] OPTION");
        }
        const [host, option] = args.length === 2 ? args : [undefined, args[0]];
        if (host !== undefined && !server.hosts.has(host)) {
          throw new CommandError(
            `No host '${host}' (hosts: ${[...server.hosts.keys()].join(", ")})`,
          );
        }
        const value = server.config.valueOf(option, host);
        if (value === undefined) {
          throw new CommandError(
            `Option '${option}' is not set${host ? ` for '${host}'` : ""} and has no default`,
          );
        }
        return {
          message: JSON.stringify(value),
          data: { host: host ?? null, option, value },
        };
      },
    },
    {
      section: "config",
      name: "reload",
      summary: "Re-read the configuration file and apply it (as SIGHUP does)",
      args: [],
      run: async ({ server }) => {
        const result = await reloadConfiguration(server);
        if (!result.ok) {
          throw new CommandError([result.error, ...result.problems].join("\n"));
        }
        return { message: describeReload(result).join("\n"), data: result };
      },
    },
    {
      section: "config",
      name: "pending",
      summary: "Compare the file with the running configuration: what a reload would apply, " +
        "what needs a restart",
      args: [],
      run: ({ server }) => {
        const pending = pendingChanges(server);
        if (pending.invalid) {
          throw new CommandError(
            [`${pending.file} has errors: a reload would keep the running configuration`]
              .concat(pending.problems).join("\n"),
          );
        }
        const named = (reload: string) =>
          pending.changes.filter((c) => c.reload === reload)
            .map((c) => describeChange(c, pending.file));
        const live = named("live");
        const restart = named("restart");
        const lines = [`${pending.file} against the running configuration:`];
        if (live.length === 0 && restart.length === 0) lines.push("No option differs");
        if (live.length > 0) lines.push(`A reload applies: ${live.join(", ")}`);
        if (restart.length > 0) lines.push(`Only a restart applies: ${restart.join(", ")}`);
        return { message: [...lines, ...pending.problems].join("\n"), data: pending };
      },
    },
  ];
}
