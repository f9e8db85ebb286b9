// Where `lilt` looks for its configuration when no -c is given. Every command uses this one
// search, so a cron job started in / finds the file that `lilt start` found in Lilt's directory.

import { join, resolve } from "node:path";

/** Where the search looks besides the fixed system path. */
export interface ConfigSearchOptions {
  /** The value of $LILT_CONFIG: when set it is the answer, as given. */
  env?: string;
  /** The caller's working directory. */
  cwd: string;
  /** The directory Lilt runs from (where main.ts is), when known. */
  installDir?: string;
}

/** The outcome: the file to read, or every path that was tried. */
export type ConfigSearchResult =
  | { found: true; path: string }
  | { found: false; tried: string[] };

/** The system-wide configuration file. */
export const SYSTEM_CONFIG = "/etc/lilt/lilt.toml";

/**
 * The files looked at, in order: `lilt.toml` in the working directory, then in Lilt's
 * directory, then `/etc/lilt/lilt.toml`, then `conf.example.toml` in the working directory and
 * in Lilt's directory. Run from Lilt's directory this is the order `lilt start` always used;
 * run from anywhere else (cron starts in /) it still reaches Lilt's directory.
 */
export function configCandidates(options: ConfigSearchOptions): string[] {
  const dirs = [resolve(options.cwd)];
  if (options.installDir && resolve(options.installDir) !== dirs[0]) {
    dirs.push(resolve(options.installDir));
  }
  const paths = [
    ...dirs.map((dir) => join(dir, "lilt.toml")),
    SYSTEM_CONFIG,
    ...dirs.map((dir) => join(dir, "conf.example.toml")),
  ];
  return [...new Set(paths)];
}

/**
 * Finds the configuration file: $LILT_CONFIG when set, else the first of `configCandidates`
 * that exists.
 *
 * @example
 * ```ts
 * const result = await findConfigFile({ env: Deno.env.get("LILT_CONFIG"), cwd: Deno.cwd() });
 * if (!result.found) console.error(`No configuration file (tried ${result.tried.join(", ")})`);
 * ```
 */
export async function findConfigFile(options: ConfigSearchOptions): Promise<ConfigSearchResult> {
  if (options.env) return { found: true, path: options.env };
  const tried = configCandidates(options);
  for (const path of tried) {
    try {
      await Deno.stat(path);
      return { found: true, path };
    } catch (error) {
      // Anything but "not there" (no permission) is for the reader to report.
      if (!(error instanceof Deno.errors.NotFound)) return { found: true, path };
    }
  }
  return { found: false, tried };
}
