// The one SQL connection a server process writes through: opened with the settings Lilt relies
// on (for SQLite: WAL, foreign keys, busy timeout), migrated, with nestable transactions and a
// statement cache so hot paths do not re-parse SQL. Plain stores use node:sqlite; a store with
// a key is opened through SQLCipher (connection.ts); storage.driver = "postgresql" opens a
// PostgreSQL database through libpq (postgresql.ts), with the same synchronous interface.

import { dirname } from "node:path";
import { getLogger } from "../log.ts";
import {
  backupConnection,
  openConnection,
  type SqlConnection,
  type SqlStatement,
} from "./connection.ts";
import { migrate, migrateModule, type Migration } from "./migrations.ts";
import { loadSqlCipher, StorageKeyError } from "./sqlcipher.ts";
import { isPostgres, openPostgres } from "./postgresql.ts";

const log = getLogger("storage");

/** Options for `Database.open`. */
export interface OpenDatabaseOptions {
  /** Path of the database file (its directory is created), or ":memory:". */
  path: string;
  /** Schema steps to apply instead of the built-in ones (tests only). */
  migrations?: readonly Migration[];
  /**
   * SQLCipher passphrase (`storage.key` / `storage.key_file`): the file is encrypted with it
   * (created encrypted when new). A key that does not open the file throws
   * `StorageKeyError` before anything is written. Empty or unset: a plain SQLite file.
   */
  key?: string;
  /**
   * Opens this PostgreSQL database instead of a file (`path` is then only its name in
   * messages): `url` without the password, `schema` "" for the default search_path.
   */
  postgres?: { url: string; password: string; schema: string };
}

/** The SQL engine behind a {@link Database}. */
export type SqlDialect = "sqlite" | "postgresql";

/** The options that open the store a configuration's `[storage]` table names. */
export function storageOptions(storage: {
  driver: SqlDialect;
  path: string;
  key: string;
  url: string;
  password: string;
  schema: string;
}): OpenDatabaseOptions {
  if (storage.driver === "postgresql") {
    const { url, password, schema } = storage;
    return { path: postgresLabel(url, schema), postgres: { url, password, schema } };
  }
  return { path: storage.path, key: storage.key };
}

/** How a PostgreSQL store is named in messages: its URL (which never holds the password). */
function postgresLabel(url: string, schema: string): string {
  return schema === "" ? url : `${url} (schema ${schema})`;
}

/**
 * A migrated SQLite database. Statements are synchronous and block the event loop, so keep
 * them short and batch hot-path writes with `transaction`.
 *
 * @example
 * ```ts
 * const database = Database.open({ path: "data/lilt.sqlite" });
 * database.transaction(() => {
 *   database.prepare("DELETE FROM kv WHERE host = ?").run("old.example");
 * });
 * database.close();
 * ```
 */
export class Database {
  /** The raw connection, for core code that needs SQLite directly. */
  readonly db: SqlConnection;
  /** The path the database was opened from (for PostgreSQL, its URL and schema). */
  readonly path: string;
  /** The engine: SQL written for Lilt runs on both, but backups and pragmas differ. */
  readonly dialect: SqlDialect;
  #statements = new Map<string, SqlStatement>();
  #depth = 0;
  /** True while the current task's writes share one transaction (see `batchWrites`). */
  #batching = false;
  /** Writers that hold rows in memory (the archive's write-behind queue); see `flush`. */
  #flushers: (() => void)[] = [];

  private constructor(db: SqlConnection, path: string) {
    this.db = db;
    this.path = path;
    this.dialect = isPostgres(db) ? "postgresql" : "sqlite";
  }

  /**
   * Opens (creating if needed) and migrates a database. A new file is created with mode 0600
   * (it holds credential hashes) in a directory created with mode 0700. With `key`, the key is
   * proven (a read of the schema) before the journal mode is set or a migration runs, so a
   * wrong key leaves the file byte-identical.
   */
  static open(options: OpenDatabaseOptions): Database {
    if (options.postgres) return Database.#openPostgres(options, options.postgres);
    const { path } = options;
    const inMemory = path === ":memory:";
    if (options.key) {
      // The library first: without it nothing is created on disk (not even an empty store).
      try {
        loadSqlCipher();
      } catch (error) {
        throw new Error(`Cannot open database '${path}': ${reason(error)}`, { cause: error });
      }
    }
    if (!inMemory) {
      Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // SQLite gives its -wal and -shm files the main file's permissions.
      Deno.openSync(path, { create: true, write: true, mode: 0o600 }).close();
    }
    let db: SqlConnection;
    try {
      db = openConnection(path, { key: options.key });
    } catch (error) {
      if (error instanceof StorageKeyError) throw error;
      throw new Error(`Cannot open database '${path}': ${reason(error)}`, { cause: error });
    }
    try {
      db.exec("PRAGMA busy_timeout = 5000");
      if (!options.key && !inMemory) expectPlainFile(db, path);
      if (!inMemory) {
        const row = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
        if (row.journal_mode !== "wal") {
          throw new Error(`Expected journal mode 'wal' for '${path}', found '${row.journal_mode}'`);
        }
      }
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec("PRAGMA foreign_keys = ON");
      migrate(db, { migrations: options.migrations, label: `database '${path}'` });
    } catch (error) {
      db.close();
      throw error;
    }
    return new Database(db, path);
  }

  static #openPostgres(
    options: OpenDatabaseOptions,
    postgres: NonNullable<OpenDatabaseOptions["postgres"]>,
  ): Database {
    let db: SqlConnection;
    try {
      db = openPostgres({
        url: postgres.url,
        password: postgres.password || undefined,
        schema: postgres.schema || undefined,
        applicationName: "lilt",
      });
    } catch (error) {
      throw new Error(`Cannot open database ${options.path}: ${reason(error)}`, { cause: error });
    }
    try {
      migrate(db, { migrations: options.migrations, label: `database ${options.path}` });
    } catch (error) {
      db.close();
      throw error;
    }
    return new Database(db, options.path);
  }

  /** What starts a write transaction: SQLite takes its write lock up front. */
  get #begin(): string {
    return this.dialect === "sqlite" ? "BEGIN IMMEDIATE" : "BEGIN";
  }

  /** A prepared statement for `sql`, cached by its text for the connection's lifetime. */
  prepare(sql: string): SqlStatement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /**
   * Runs `fn` in a transaction (BEGIN IMMEDIATE, so the write lock is taken up front) and
   * commits, or rolls back and rethrows when it throws. Nested calls use savepoints, so an
   * inner failure caught by the outer function undoes only the inner work. `fn` must be
   * synchronous: a returned promise is an error (the work would escape the transaction).
   */
  transaction<T>(fn: () => T): T {
    const depth = this.#depth;
    const started = depth === 0 ? performance.now() : 0;
    const savepoint = `lilt_savepoint_${depth}`;
    this.db.exec(depth === 0 ? this.#begin : `SAVEPOINT ${savepoint}`);
    this.#depth = depth + 1;
    let result: T;
    try {
      result = fn();
      if (isPromiseLike(result)) {
        Promise.resolve(result).catch(() => {});
        throw new TypeError(
          "Expected a synchronous transaction function, found one that returned a promise",
        );
      }
    } catch (error) {
      this.#depth = depth;
      this.#undo(depth, savepoint);
      throw error;
    }
    this.#depth = depth;
    try {
      this.db.exec(depth === 0 ? "COMMIT" : `RELEASE ${savepoint}`);
    } catch (error) {
      this.#undo(depth, savepoint);
      throw error;
    }
    if (depth === 0) {
      this.transactionStats.count++;
      this.transactionStats.seconds += (performance.now() - started) / 1000;
    }
    return result;
  }

  /**
   * Committed outermost transactions and write batches: how many and their total time (a
   * transaction from BEGIN to COMMIT, a batch its COMMIT), for /metrics.
   */
  readonly transactionStats = { count: 0, seconds: 0 };

  /**
   * Puts the writes that follow, until the current task ends, into one transaction: stores
   * call it before each write, so the stanzas of one socket read (or one timer) commit together
   * instead of paying a commit each. The commit runs as a microtask, before the event loop
   * handles any other I/O, so nothing waits on it longer than the task that wrote. Inside an
   * explicit `transaction` the writes simply join it.
   */
  batchWrites(): void {
    if (this.#depth > 0) return;
    this.db.exec(this.#begin);
    this.#batching = true;
    this.#depth = 1;
    queueMicrotask(() => this.#commitBatch());
  }

  #commitBatch(): void {
    if (!this.#batching) return;
    this.#batching = false;
    this.#depth = 0;
    if (!this.db.isOpen || !this.db.isTransaction) return;
    try {
      const started = performance.now();
      this.db.exec("COMMIT");
      this.transactionStats.count++;
      this.transactionStats.seconds += (performance.now() - started) / 1000;
    } catch (error) {
      log.error("Could not commit the writes of this moment: {error}", { error: reason(error) });
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
    }
  }

  #undo(depth: number, savepoint: string): void {
    // SQLite may already have rolled back on its own (e.g. disk full); do not mask the cause.
    if (!this.db.isTransaction) return;
    if (depth === 0) {
      this.db.exec("ROLLBACK");
    } else {
      this.db.exec(`ROLLBACK TO ${savepoint}`);
      this.db.exec(`RELEASE ${savepoint}`);
    }
  }

  /**
   * Brings the tables module `name` owns up to its newest `migrations` step (see
   * `migrateModule`). The writes of the current moment are committed first, since each step
   * runs in a transaction of its own; inside an explicit `transaction` this throws.
   */
  migrateModule(name: string, migrations: readonly Migration[]): void {
    this.#commitBatch();
    if (this.#depth > 0) {
      throw new Error(`Cannot migrate module '${name}' inside a transaction`);
    }
    migrateModule(this.db, name, migrations);
  }

  /**
   * Registers a writer that queues rows in memory: `fn` writes them, and runs on `flush`,
   * before a backup and before the connection closes.
   */
  addFlusher(fn: () => void): void {
    this.#flushers.push(fn);
  }

  /**
   * Commits the writes of the current moment now instead of in their microtask: for an answer
   * that tells a peer its stanzas are safe (a stream management `<a/>`, a ping reply), which
   * must not reach the socket before them. Output queued earlier in the same task is flushed
   * by a microtask that can run before the batch's own commit. The archive's write-behind queue
   * is not flushed (its items are not promised to anyone).
   */
  commitWrites(): void {
    this.#commitBatch();
  }

  /** Writes every row the registered writers still hold in memory. */
  flush(): void {
    if (!this.db.isOpen) return;
    for (const fn of this.#flushers) fn();
  }

  /**
   * Copies the live database to `destPath` (created with mode 0600, or overwritten) without
   * stopping writers. An encrypted store gives a copy encrypted with the same key.
   */
  async backup(destPath: string): Promise<void> {
    if (this.dialect === "postgresql") {
      throw new Error(
        "The store is a PostgreSQL database: back it up with PostgreSQL's tools (pg_dump), " +
          "not lilt backup",
      );
    }
    this.flush();
    this.#commitBatch();
    Deno.mkdirSync(dirname(destPath), { recursive: true, mode: 0o700 });
    Deno.openSync(destPath, { create: true, write: true, mode: 0o600 }).close();
    await backupConnection(this.db, destPath);
  }

  /**
   * Whether table `name` exists (in the store's schema on PostgreSQL): for code that reads a
   * module's tables only when that module has created them.
   */
  hasTable(name: string): boolean {
    const sql = this.dialect === "sqlite"
      ? "SELECT 1 AS found FROM sqlite_schema WHERE type = 'table' AND name = ?"
      : "SELECT 1 AS found FROM information_schema.tables " +
        "WHERE table_schema = current_schema() AND table_name = ?";
    return this.prepare(sql).get(name) !== undefined;
  }

  /** Closes the connection; further use throws. Calling it twice is harmless. */
  close(): void {
    if (!this.db.isOpen) return;
    this.flush();
    this.#commitBatch();
    this.#statements.clear();
    this.db.close();
  }
}

/**
 * Reads the schema of a store opened without a key: an encrypted file fails here with
 * SQLite's "file is not a database", which is turned into what the operator has to do.
 */
function expectPlainFile(db: SqlConnection, path: string): void {
  try {
    db.prepare("SELECT count(*) AS n FROM sqlite_schema").get();
  } catch (error) {
    if ((error as { errcode?: number }).errcode === 26 && !hasPlainHeader(path)) {
      throw new StorageKeyError(
        `'${path}' is not a plain SQLite database (it looks encrypted): set storage.key_file ` +
          "(or storage.key) to the key it was encrypted with",
      );
    }
    throw error;
  }
}

/** Whether `path` starts with the plain SQLite header (an encrypted file looks random). */
export function hasPlainHeader(path: string): boolean {
  const header = new Uint8Array(16);
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch {
    return false;
  }
  try {
    const read = file.readSync(header);
    return read === 16 && new TextDecoder().decode(header) === "SQLite format 3\0";
  } finally {
    file.close();
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === "object" && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
