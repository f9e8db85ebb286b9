// Re-reading the configuration file of a running server: one code path for SIGHUP (main.ts)
// and the admin shell's `config reload`, so both validate and apply it the same way.

import { formatProblem, loadConfig } from "../core/config.ts";
import type { OptionSpec } from "../core/config_schema.ts";
import { getLogger } from "../core/log.ts";
import type { Server } from "../core/server.ts";

const log = getLogger("config");

/** The outcome of a reload. */
export interface ReloadResult {
  /** The new configuration is in force. */
  ok: boolean;
  /** The file that was read. */
  file: string;
  /** Problems found, as `file:line: severity: message` lines (warnings too when ok). */
  problems: string[];
  /** Why nothing was applied, when not ok. */
  error?: string;
}

/** Servers with a reload under way (a second SIGHUP or shell request waits its turn). */
const reloading = new WeakMap<Server, Promise<ReloadResult>>();

/** The options every module the server can load declares, so the checker knows them. */
function moduleOptions(server: Server): Record<string, OptionSpec> {
  const all: Record<string, OptionSpec> = {};
  for (const name of server.modules.available()) {
    Object.assign(all, server.modules.file(name)?.options ?? {});
  }
  return all;
}

/**
 * Reads the server's configuration file again and applies it (`Server.reload`). A file with
 * errors is not applied: the running configuration stays. Problems are logged and returned.
 */
export function reloadConfiguration(server: Server): Promise<ReloadResult> {
  const running = reloading.get(server);
  if (running) return running.then(() => reloadConfiguration(server));
  const work = (async (): Promise<ReloadResult> => {
    const file = server.config.file;
    try {
      const { config, problems } = loadConfig(file, { moduleOptions: moduleOptions(server) });
      const lines = problems.map(formatProblem);
      for (const line of lines) log.warn("{problem}", { problem: line });
      if (!config) {
        const error = "The configuration has errors; keeping the running configuration";
        log.error(error);
        return { ok: false, file, problems: lines, error };
      }
      await server.reload(config);
      return { ok: true, file, problems: lines };
    } catch (error) {
      log.error("Reload failed: {error}", { error });
      return { ok: false, file, problems: [], error: `Reload failed: ${(error as Error).message}` };
    }
  })();
  reloading.set(server, work);
  return work.finally(() => reloading.delete(server));
}
