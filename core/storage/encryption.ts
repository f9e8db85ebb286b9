// `lilt storage encrypt|decrypt|rekey`: rewrites the whole store under another key (or none)
// with SQLCipher's sqlcipher_export into a new file beside it, verified and synced before it is
// renamed over the old one, so a crash at any point leaves one whole store, old or new.

import { basename, dirname } from "node:path";
import { hasPlainHeader } from "./database.ts";
import { verifyStore } from "./backup.ts";
import { openSqlCipher, sqlString, StorageKeyError } from "./sqlcipher.ts";

/** A conversion was refused or failed; the store is unchanged. One line for the operator. */
export class StoreConversionError extends Error {}

/** Options for `convertStore`. */
export interface ConvertStoreOptions {
  /** The key the store is encrypted with now ("" for a plain store). */
  fromKey: string;
  /** The key to encrypt it with ("" to write a plain store). */
  toKey: string;
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Rewrites the store at `path` from `fromKey` to `toKey` (either may be "" for plain) while no
 * server runs on it (the caller checks). The old file is not kept: a plain copy would undo
 * `encrypt`, an old-key copy would undo `rekey`; take a backup first to keep one. Steps: the
 * store is opened with `fromKey` (a wrong key changes nothing), exported into
 * `<path>.convert-<random>` (mode 0600) with `toKey`, its schema version copied, the copy checked
 * with `verifyStore` under `toKey` and fsynced, then renamed over `path`. Throws
 * `StoreConversionError` (or `SqlCipherUnavailableError` when SQLCipher is missing).
 *
 * @example
 * ```ts
 * await convertStore("data/lilt.sqlite", { fromKey: "", toKey: key }); // encrypt
 * ```
 */
export async function convertStore(path: string, options: ConvertStoreOptions): Promise<void> {
  const { fromKey, toKey } = options;
  if (fromKey === toKey) {
    throw new StoreConversionError("Expected a new key that differs from the current one");
  }
  if (!await exists(path)) throw new StoreConversionError(`There is no store at '${path}'`);
  if (fromKey === "" && !hasPlainHeader(path)) {
    throw new StoreConversionError(
      `'${path}' is not a plain SQLite database (is it encrypted already?)`,
    );
  }
  let source;
  try {
    source = openSqlCipher(path, { key: fromKey });
  } catch (error) {
    if (error instanceof StorageKeyError) throw new StoreConversionError(error.message);
    throw error;
  }
  const tmp = `${path}.convert-${crypto.randomUUID().slice(0, 8)}`;
  try {
    try {
      const { user_version: version } = source.prepare("PRAGMA user_version").get() as {
        user_version: number;
      };
      (await Deno.open(tmp, { createNew: true, write: true, mode: 0o600 })).close();
      source.exec(`ATTACH DATABASE ${sqlString(tmp)} AS lilt_target KEY ${sqlString(toKey)}`);
      try {
        source.prepare("SELECT sqlcipher_export('lilt_target')").get();
        // sqlcipher_export copies the schema and rows, not the schema version Lilt keeps.
        source.exec(`PRAGMA lilt_target.user_version = ${Math.trunc(version)}`);
      } finally {
        source.exec("DETACH DATABASE lilt_target");
      }
    } catch (error) {
      throw new StoreConversionError(`Cannot write '${tmp}': ${reason(error)}`);
    } finally {
      // Closing the last connection checkpoints the store's WAL into it and removes the WAL.
      source.close();
    }
    if (await exists(`${path}-wal`) && (await Deno.stat(`${path}-wal`)).size > 0) {
      throw new StoreConversionError(
        `'${path}-wal' is still in use: another process has the store open; stop it first`,
      );
    }
    try {
      verifyStore(tmp, { key: toKey });
    } catch (error) {
      throw new StoreConversionError(`The new store '${tmp}' failed its check: ${reason(error)}`);
    }
    const file = await Deno.open(tmp, { read: true, write: true });
    try {
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (error) {
    for (const leftover of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`]) {
      await Deno.remove(leftover).catch(() => {});
    }
    if (error instanceof StoreConversionError) throw error;
    throw new StoreConversionError(
      `Cannot replace '${basename(path)}' (it is unchanged): ${reason(error)}`,
    );
  }
  // The rename is durable once the directory is synced; stale empty -wal/-shm files of the old
  // store must not be paired with the new one.
  await syncDirectory(dirname(path));
  for (const stale of [`${path}-wal`, `${path}-shm`]) await Deno.remove(stale).catch(() => {});
}

async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself has happened.
  }
}
