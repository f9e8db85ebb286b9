// Tells whether Lilt runs from its source checkout (`deno run main.ts`) or packaged (a
// `deno compile` binary, or the single-file bundle): only the former may look beside its own
// files, e.g. for a SQLCipher build in .tools/ or a lilt.toml next to main.ts.

import { fileURLToPath } from "node:url";

/** This file's place in the source tree, which a bundle or a compiled binary does not keep. */
const SOURCE_SUFFIX = "/core/source_tree.ts";

/**
 * The root of the source checkout Lilt runs from, or undefined when it runs packaged: in a
 * compiled binary (`Deno.build.standalone`) the files live in an embedded file system, and in
 * the bundle every module's `import.meta.url` is the bundle's own file, so no path beside it
 * means anything.
 *
 * @example
 * ```ts
 * const root = sourceTreeRoot();
 * if (root) candidates.push(`${root}/.tools/sqlcipher/libsqlcipher.so`);
 * ```
 */
export function sourceTreeRoot(url: string = import.meta.url): string | undefined {
  if (Deno.build.standalone) return undefined;
  if (!url.startsWith("file:") || !url.endsWith(SOURCE_SUFFIX)) return undefined;
  return fileURLToPath(url.slice(0, -SOURCE_SUFFIX.length));
}
