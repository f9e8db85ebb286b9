// Online backups and offline restores of the SQLite store, for cron: a snapshot is written to a
// temporary name, verified, then renamed, so a backup file that exists is always a whole one.
// An encrypted store's backups are encrypted with the same key.

import { basename, dirname } from "node:path";
import {
  backupConnection,
  isEncrypted,
  openConnection,
  openLike,
  type SqlConnection,
} from "./connection.ts";
import type { Database } from "./database.ts";
import { readVersion, SCHEMA_VERSION } from "./migrations.ts";

/** A backup or restore failed; the message is one line for an operator or a cron mail. */
export class BackupError extends Error {}

/** Tables every Lilt store has (schema version 1 and later), besides the archive's. */
const REQUIRED_TABLES = ["kv", "map", "accounts", "account_credentials"];

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function randomSuffix(): string {
  return crypto.randomUUID().slice(0, 8);
}

async function removeQuietly(path: string): Promise<void> {
  for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    await Deno.remove(file).catch(() => {});
  }
}

/** Options for `verifyStore`, `backupDatabase` and `restoreDatabase`. */
export interface StoreKeyOptions {
  /** The store's SQLCipher key (`storage.key`/`key_file`); unset for a plain store. */
  key?: string;
}

/**
 * Checks that `path` is an intact Lilt store this version can open (with `options.key` when it
 * is encrypted): `PRAGMA integrity_check` says "ok", the schema version is known, and the core
 * tables exist. Throws `BackupError`.
 */
export function verifyStore(path: string, options: StoreKeyOptions = {}): void {
  let db: SqlConnection;
  try {
    db = openConnection(path, { readOnly: true, key: options.key });
  } catch (error) {
    throw new BackupError(`Cannot open '${path}': ${reason(error)}`);
  }
  try {
    verifyConnection(db, path);
  } finally {
    db.close();
  }
}

/** `verifyStore`'s checks on an open connection. */
function verifyConnection(db: SqlConnection, path: string): void {
  let problems: string[];
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    problems = rows.map((row) => row.integrity_check);
  } catch (error) {
    const hint = (error as { errcode?: number }).errcode === 26 && !isEncrypted(db)
      ? " (if it is encrypted, set storage.key_file to its key)"
      : "";
    throw new BackupError(`'${path}' is not a usable SQLite database: ${reason(error)}${hint}`);
  }
  if (problems.length !== 1 || problems[0] !== "ok") {
    throw new BackupError(
      `'${path}' failed the integrity check: ${problems.slice(0, 3).join("; ")}`,
    );
  }
  const version = readVersion(db);
  if (version < 1 || version > SCHEMA_VERSION) {
    throw new BackupError(
      `Expected a Lilt store with schema version 1 to ${SCHEMA_VERSION} in '${path}', ` +
        `found version ${version}`,
    );
  }
  const tables = new Set(
    (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as {
      name: string;
    }[]).map((row) => row.name),
  );
  const archive = version >= 5 ? ["archive_owners", "archive_items"] : ["archive"];
  const missing = [...REQUIRED_TABLES, ...archive].filter((name) => !tables.has(name));
  if (missing.length > 0) {
    throw new BackupError(
      `Expected Lilt's tables in '${path}', found none of: ${missing.join(", ")}`,
    );
  }
}

/**
 * Takes a consistent snapshot of a live store into `destFile` while writers keep going
 * (SQLite's online backup API). `source` is the server's open `Database`, or the path of a
 * store file (opened read-only, with `options.key` when encrypted; safe while a server runs on it
 * thanks to WAL). The copy is written to `destFile.tmp-<random>` (mode 0600; encrypted with the
 * store's key when the store is encrypted), switched to a self-contained rollback journal,
 * verified as `verifyStore` does, and renamed over `destFile`. The directory of `destFile` must
 * exist (it is not created). On failure nothing is left behind and `BackupError` says why.
 *
 * @example
 * ```ts
 * await backupDatabase(server.database, "/var/backups/lilt.sqlite");
 * await backupDatabase("/var/lib/lilt/lilt.sqlite", "/var/backups/lilt.sqlite");
 * ```
 */
export async function backupDatabase(
  source: Database | string,
  destFile: string,
  options: StoreKeyOptions = {},
): Promise<void> {
  const tmp = `${destFile}.tmp-${randomSuffix()}`;
  let owned: SqlConnection | undefined;
  try {
    let db: SqlConnection;
    if (typeof source === "string") {
      try {
        await Deno.stat(source);
        owned = openConnection(source, { readOnly: true, key: options.key });
        db = owned;
      } catch (error) {
        throw new BackupError(`Cannot open the store '${source}': ${reason(error)}`);
      }
    } else {
      source.flush(); // rows a writer still holds in memory belong in the snapshot
      db = source.db;
    }
    // A missing directory is a typo or an unmounted disk more often than a wish: say so
    // instead of creating it (and filling the wrong file system from cron every night).
    const dir = dirname(destFile);
    let dirInfo: Deno.FileInfo | undefined;
    try {
      dirInfo = await Deno.stat(dir);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new BackupError(`Cannot use the directory '${dir}': ${reason(error)}`);
      }
    }
    if (!dirInfo) throw new BackupError(`The directory '${dir}' does not exist`);
    if (!dirInfo.isDirectory) throw new BackupError(`'${dir}' is not a directory`);
    try {
      // The snapshot holds credential hashes: create it private before SQLite writes to it.
      (await Deno.open(tmp, { createNew: true, write: true, mode: 0o600 })).close();
      await backupConnection(db, tmp);
    } catch (error) {
      throw new BackupError(`Cannot write the backup '${tmp}': ${reason(error)}`);
    }
    // The snapshot inherits WAL mode; a backup should be one file that needs no -wal/-shm.
    // The copy is opened as the source was (same driver, same key).
    let copy: SqlConnection;
    try {
      copy = openLike(db, tmp);
    } catch (error) {
      throw new BackupError(`Cannot finish the backup '${tmp}': ${reason(error)}`);
    }
    owned?.close();
    owned = undefined;
    try {
      try {
        copy.exec("PRAGMA journal_mode = DELETE");
      } catch (error) {
        throw new BackupError(`Cannot finish the backup '${tmp}': ${reason(error)}`);
      }
      verifyConnection(copy, tmp);
    } finally {
      copy.close();
    }
    try {
      await Deno.rename(tmp, destFile);
    } catch (error) {
      throw new BackupError(`Cannot move the backup into place as '${destFile}': ${reason(error)}`);
    }
  } catch (error) {
    owned?.close();
    await removeQuietly(tmp);
    if (error instanceof BackupError) throw error;
    throw new BackupError(`Backup to '${destFile}' failed: ${reason(error)}`);
  }
}

/** What `restoreDatabase` did. */
export interface RestoreOutcome {
  /** Where the replaced store was moved (undefined when there was none). */
  replacedPath?: string;
}

/**
 * Puts the backup `backupFile` in place as the store `storePath`. The server must not be
 * running (the caller checks, see `isServerRunning`). The backup is verified first (with
 * `options.key` for an encrypted store: the backup must open with the configured key); the
 * current store and its -wal/-shm files move aside to `<name>.replaced-<timestamp>`; the backup
 * is copied next to the store under a temporary name and renamed into place (mode 0600).
 * Throws `BackupError`.
 */
export async function restoreDatabase(
  backupFile: string,
  storePath: string,
  options: StoreKeyOptions = {},
): Promise<RestoreOutcome> {
  verifyStore(backupFile, options);
  const dir = dirname(storePath);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${storePath}.restore-${randomSuffix()}`;
  try {
    (await Deno.open(tmp, { createNew: true, write: true, mode: 0o600 })).close();
    await Deno.copyFile(backupFile, tmp);
    await Deno.chmod(tmp, 0o600);
  } catch (error) {
    await removeQuietly(tmp);
    throw new BackupError(`Cannot copy '${backupFile}' next to '${storePath}': ${reason(error)}`);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const replaced = `${storePath}.replaced-${stamp}`;
  let replacedPath: string | undefined;
  try {
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        await Deno.rename(`${storePath}${suffix}`, `${replaced}${suffix}`);
        if (suffix === "") replacedPath = replaced;
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    await Deno.rename(tmp, storePath);
  } catch (error) {
    await removeQuietly(tmp);
    throw new BackupError(
      `Cannot put the backup in place of '${basename(storePath)}' (the old store is at ` +
        `'${replaced}' if it was moved): ${reason(error)}`,
    );
  }
  return { replacedPath };
}

/**
 * Whether a Lilt server answers on its admin socket `socketPath` (a stale socket file from a
 * crashed run does not count). This is how `lilt restore` refuses to run under a live server:
 * in WAL mode a running server holds no lock that a second process could detect.
 */
export async function isServerRunning(socketPath: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path: socketPath });
    conn.close();
    return true;
  } catch {
    return false;
  }
}
