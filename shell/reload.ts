// Re-reading the configuration file of a running server: one code path for SIGHUP (main.ts)
// and the admin shell's `config reload`, so both validate and apply it the same way.

import { formatProblem, loadConfig } from "../core/config.ts";
import { configChanges, describeChange, type OptionChange } from "../core/config_changes.ts";
import { getLogger } from "../core/log.ts";
import type { AdminServer } from "../core/admin_commands.ts";

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
  /** Changed options now in force ("offline_max_messages on localhost (file:12)"). */
  applied: string[];
  /** Changed options that keep their running value until a restart. */
  needRestart: string[];
  /** Modules started over for changed options, or that failed to ("offline on localhost"). */
  modules: string[];
}

/** The lines `config reload` prints for a result that was applied. */
export function describeReload(result: ReloadResult): string[] {
  const lines = [`Reloaded ${result.file}`];
  if (result.applied.length === 0 && result.needRestart.length === 0) {
    lines.push("No option changed");
  }
  if (result.applied.length > 0) lines.push(`Applied: ${result.applied.join(", ")}`);
  if (result.needRestart.length > 0) {
    lines.push(
      `Not applied, restart the server for these (the running values stay): ${
        result.needRestart.join(", ")
      }`,
    );
  }
  for (const module of result.modules) lines.push(`Module ${module}`);
  return [...lines, ...result.problems];
}

const NOTHING_DONE = { applied: [], needRestart: [], modules: [] };

/** What a reload would do now (`config pending`), without applying anything. */
export interface PendingChanges {
  /** The server's configuration file, which was read. */
  file: string;
  /** Problems found; when one is an error, `changes` is empty. */
  problems: string[];
  /** True when the file has errors (a reload would keep the running configuration). */
  invalid: boolean;
  /** Every option whose value in the file differs from the running one. */
  changes: OptionChange[];
}

/** Reads the server's configuration file and compares it with the configuration in force. */
export function pendingChanges(server: AdminServer): PendingChanges {
  const file = server.config.file;
  const declared = server.modules.declaredOptions();
  const { config, problems } = loadConfig(file, { moduleOptions: declared });
  const lines = problems.map(formatProblem);
  if (!config) return { file, problems: lines, invalid: true, changes: [] };
  return {
    file,
    problems: lines,
    invalid: false,
    changes: configChanges(server.config, config, declared),
  };
}

/** Servers with a reload under way (a second SIGHUP or shell request waits its turn). */
const reloading = new WeakMap<AdminServer, Promise<ReloadResult>>();

/**
 * Reads the server's configuration file again and applies it (`Server.reload`). A file with
 * errors is not applied: the running configuration stays. Problems are logged and returned.
 */
export function reloadConfiguration(server: AdminServer): Promise<ReloadResult> {
  const running = reloading.get(server);
  if (running) return running.then(() => reloadConfiguration(server));
  const work = (async (): Promise<ReloadResult> => {
    const file = server.config.file;
    try {
      const { config, problems } = loadConfig(file, {
        moduleOptions: server.modules.declaredOptions(),
      });
      const lines = problems.map(formatProblem);
      for (const line of lines) log.warn("{problem}", { problem: line });
      if (!config) {
        const error = "The configuration has errors; keeping the running configuration";
        log.error(error);
        return { ok: false, file, problems: lines, error, ...NOTHING_DONE };
      }
      const report = await server.reload(config);
      return {
        ok: true,
        file,
        problems: lines,
        applied: report.applied.map((c) => describeChange(c, file)),
        needRestart: report.needRestart.map((c) => describeChange(c, file)),
        modules: report.modules.map((m) =>
          `${m.module} on ${m.host}: ${
            m.error === undefined
              ? `reloaded for ${m.options.join(", ")}`
              : `failed to load with the new ${m.options.join(", ")} and is unloaded: ${m.error}`
          }`
        ),
      };
    } catch (error) {
      log.error("Reload failed: {error}", { error });
      return {
        ok: false,
        file,
        problems: [],
        error: `Reload failed: ${(error as Error).message}`,
        ...NOTHING_DONE,
      };
    }
  })();
  reloading.set(server, work);
  return work.finally(() => reloading.delete(server));
}
