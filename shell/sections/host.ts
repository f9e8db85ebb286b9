// The `host` section of the admin shell: the virtual hosts and components being served.

import type { CommandSpec } from "../../core/admin_commands.ts";

/** The commands of the `host` section. */
export function hostCommands(): CommandSpec[] {
  return [
    {
      section: "host",
      name: "list",
      summary: "List the active hosts and components",
      args: [],
      run: ({ server }) => {
        const sessions = server.sessions.all();
        return {
          table: {
            columns: ["host", "kind", "modules", "sessions"],
            rows: [...server.hosts.values()].map((host) => [
              host.domain,
              host.kind,
              server.modules.loaded(host.domain).length,
              sessions.filter((s) => s.kind !== "internal" && s.host === host.domain).length,
            ]),
          },
        };
      },
    },
  ];
}
