// The table of modules shipped with Lilt: the names operators list in `modules = [...]`.

import type { ModuleTable } from "../core/modules.ts";
import * as disco from "./disco.ts";
import * as ping from "./ping.ts";
import * as presence from "./presence.ts";
import * as roster from "./roster.ts";

/** Built-in modules by name. */
export const builtinModules: ModuleTable = { disco, ping, presence, roster };
