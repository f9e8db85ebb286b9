// The `s2s` section of the admin shell. Federation does not exist yet, so there are never
// links to show or close; the commands are wired so scripts and completion already work.

import { CommandError, type CommandSpec } from "../../core/admin_commands.ts";
import { jidArg } from "./c2s.ts";

/** The commands of the `s2s` section. */
export function s2sCommands(): CommandSpec[] {
  return [
    {
      section: "s2s",
      name: "show",
      summary: "Show server-to-server links",
      args: [{ name: "host", kind: "host", optional: true }],
      run: () => ({
        table: { columns: ["local", "remote", "direction", "secure", "idle"], rows: [] },
      }),
    },
    {
      section: "s2s",
      name: "close",
      summary: "Close the link between a local host and a remote server",
      args: [{ name: "from", kind: "host" }, { name: "to", kind: "host" }],
      run: (_ctx, [from, to]) => {
        const local = jidArg(from, "local host");
        const remote = jidArg(to, "remote host");
        throw new CommandError(`No such link from '${local}' to '${remote}'`);
      },
    },
  ];
}
