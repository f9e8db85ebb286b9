// Collects the built-in admin shell sections (shell/sections/*.ts); `lilt start` registers
// them on the server's command registry. Modules add their own with `m.shellCommands`.

import type { CommandSpec } from "../../core/admin_commands.ts";
import { c2sCommands } from "./c2s.ts";
import { certCommands } from "./cert.ts";
import { clusterCommands } from "./cluster.ts";
import { configCommands } from "./config.ts";
import { debugCommands } from "./debug.ts";
import { dnsCommands } from "./dns.ts";
import { hostCommands } from "./host.ts";
import { httpCommands } from "./http.ts";
import { moduleCommands } from "./module.ts";
import { portCommands } from "./port.ts";
import { roleCommands } from "./role.ts";
import { rosterCommands } from "./roster.ts";
import { s2sCommands } from "./s2s.ts";
import { serverCommands } from "./server.ts";
import { serverBackupCommands } from "./server_backup.ts";
import { statsCommands } from "./stats.ts";
import { userCommands } from "./user.ts";
import { watchCommands } from "./watch.ts";

/** Every built-in admin shell command (`help` is answered by the admin socket itself). */
export function builtinSections(): CommandSpec[] {
  return [
    ...serverCommands(),
    ...serverBackupCommands(),
    ...configCommands(),
    ...moduleCommands(),
    ...hostCommands(),
    ...portCommands(),
    ...httpCommands(),
    ...certCommands(),
    ...c2sCommands(),
    ...s2sCommands(),
    ...clusterCommands(),
    ...dnsCommands(),
    ...userCommands(),
    ...roleCommands(),
    ...rosterCommands(),
    ...watchCommands(),
    ...statsCommands(),
    ...debugCommands(),
  ];
}
