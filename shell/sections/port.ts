// The `port` section of the admin shell: the addresses the server listens on.

import type { CommandSpec } from "../../core/admin_commands.ts";

/** The commands of the `port` section. */
export function portCommands(): CommandSpec[] {
  return [
    {
      section: "port",
      name: "list",
      summary: "List the listening ports",
      args: [],
      run: ({ server }) => ({
        table: {
          columns: ["service", "interface", "port"],
          rows: server.listeners.map((l) => [l.kind, l.host, l.port]),
        },
      }),
    },
  ];
}
