// The part of a SQLite connection Lilt uses, as an interface both drivers satisfy: the embedded
// `node:sqlite` for a plain store, SQLCipher through FFI (sqlcipher.ts) for an encrypted one.

import { backup, DatabaseSync } from "node:sqlite";
import { openSqlCipher, SqlCipherDatabase } from "./sqlcipher.ts";

/** A value bound to a `?` parameter (what `node:sqlite` accepts, without named parameters). */
export type SqlInputValue = null | number | bigint | string | ArrayBufferView;

/** A column value read from a row: INTEGER → number, REAL → number, TEXT, BLOB, NULL. */
export type SqlOutputValue = null | number | bigint | string | Uint8Array;

/** One result row, keyed by column name. */
export type SqlRow = Record<string, SqlOutputValue>;

/** What a write statement did. */
export interface SqlRunResult {
  /** Rows changed by the statement. */
  changes: number | bigint;
  /** The rowid of the last row inserted on the connection. */
  lastInsertRowid: number | bigint;
}

/** A prepared statement; each call binds `params` to its `?` placeholders in order. */
export interface SqlStatement {
  /** Runs the statement to completion. */
  run(...params: SqlInputValue[]): SqlRunResult;
  /** The first row, or undefined when there is none. */
  get(...params: SqlInputValue[]): SqlRow | undefined;
  /** Every row. */
  all(...params: SqlInputValue[]): SqlRow[];
}

/** An open SQLite connection: the subset of `node:sqlite`'s `DatabaseSync` Lilt relies on. */
export interface SqlConnection {
  /** False once closed. */
  readonly isOpen: boolean;
  /** True inside an explicit transaction (BEGIN … COMMIT). */
  readonly isTransaction: boolean;
  /** Runs one or more statements that return no rows. */
  exec(sql: string): void;
  /** Compiles one statement. */
  prepare(sql: string): SqlStatement;
  /** Closes the connection; further use throws. */
  close(): void;
}

/** Options for `openConnection`. */
export interface OpenConnectionOptions {
  /**
   * SQLCipher passphrase: when set (non-empty) the file is opened through SQLCipher and must
   * be encrypted with this key (a new file is created encrypted). Unset: plain `node:sqlite`.
   */
  key?: string;
  /** Open without write access. */
  readOnly?: boolean;
}

/**
 * Opens `path` with the driver its encryption needs: `node:sqlite` without a key, SQLCipher
 * (core/storage/sqlcipher.ts) with one. With a key the key is checked before anything else
 * touches the file; a wrong key throws `StorageKeyError` and changes nothing on disk.
 */
export function openConnection(path: string, options: OpenConnectionOptions = {}): SqlConnection {
  if (options.key) return openSqlCipher(path, { key: options.key, readOnly: options.readOnly });
  return new DatabaseSync(path, { readOnly: options.readOnly ?? false });
}

/**
 * Opens another file the way `db` was opened: the same driver and, for SQLCipher, the same key
 * (which never leaves the driver). For a backup copy that must be encrypted like its source.
 */
export function openLike(
  db: SqlConnection,
  path: string,
  options: { readOnly?: boolean } = {},
): SqlConnection {
  if (db instanceof SqlCipherDatabase) return db.openSibling(path, options);
  return openConnection(path, options);
}

/** Whether `db` is an encrypted (SQLCipher) connection. */
export function isEncrypted(db: SqlConnection): boolean {
  return db instanceof SqlCipherDatabase && db.encrypted;
}

/**
 * Copies the whole database behind `db` into `destPath` (an existing empty file or one to
 * overwrite) with SQLite's online backup API, letting other work run between steps. An
 * encrypted connection writes an encrypted copy with its own key.
 */
export async function backupConnection(db: SqlConnection, destPath: string): Promise<void> {
  if (db instanceof SqlCipherDatabase) {
    await db.backup(destPath);
  } else if (db instanceof DatabaseSync) {
    await backup(db, destPath);
  } else {
    throw new TypeError("Expected a node:sqlite or SQLCipher connection to back up");
  }
}
