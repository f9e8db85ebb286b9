// The schema's history as forward-only steps, so every database file, old or new, reaches the
// layout this code expects; `PRAGMA user_version` records how far a file has come (on
// PostgreSQL, the one-row table lilt_schema_version).

import type { SqlConnection } from "./connection.ts";
import { isPostgres } from "./postgresql.ts";

/** One forward-only schema step. */
export interface Migration {
  /** The `user_version` the database has after this step (1, 2, 3 … without gaps). */
  readonly version: number;
  /** One line for logs and `lilt check`. */
  readonly description: string;
  /** Applies the step; runs inside a transaction. */
  up(db: SqlConnection): void;
}

/** A database was written by a newer Lilt (its schema version is above the code's). */
export class SchemaTooNewError extends Error {}

/** Every migration, in order. Append new steps; never edit or reorder released ones. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "key-value, map and archive stores; accounts with SCRAM credentials",
    up(db) {
      // `user` is "" for host-level data so primary keys never hold NULL.
      db.exec(`
        CREATE TABLE kv (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          store TEXT NOT NULL,
          value TEXT NOT NULL,
          PRIMARY KEY (host, user, store)
        ) WITHOUT ROWID;

        CREATE TABLE map (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          store TEXT NOT NULL,
          key TEXT NOT NULL,
          value TEXT NOT NULL,
          PRIMARY KEY (host, user, store, key)
        ) WITHOUT ROWID;

        CREATE TABLE archive (
          id INTEGER PRIMARY KEY,
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          store TEXT NOT NULL,
          key TEXT NOT NULL,
          when_ms INTEGER NOT NULL,
          with_jid TEXT NOT NULL,
          type TEXT NOT NULL,
          payload TEXT NOT NULL,
          UNIQUE (host, user, store, key)
        );
        CREATE INDEX archive_when ON archive (host, user, store, when_ms);
        CREATE INDEX archive_with ON archive (host, user, store, with_jid, when_ms);

        CREATE TABLE accounts (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          created_ms INTEGER NOT NULL,
          PRIMARY KEY (host, user)
        ) WITHOUT ROWID;

        CREATE TABLE account_credentials (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          hash TEXT NOT NULL,
          salt BLOB NOT NULL,
          iterations INTEGER NOT NULL,
          stored_key BLOB NOT NULL,
          server_key BLOB NOT NULL,
          updated_ms INTEGER NOT NULL,
          PRIMARY KEY (host, user, hash),
          FOREIGN KEY (host, user) REFERENCES accounts (host, user) ON DELETE CASCADE
        ) WITHOUT ROWID;
      `);
    },
  },
  {
    version: 2,
    description: "account lifecycle: disabled flag, pending deletion, last activity, tombstones",
    up(db) {
      // deleted_ms is set while a deletion waits out its grace period (the account is also
      // disabled); tombstones keep a purged name from being re-created until expires_ms.
      db.exec(`
        ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE accounts ADD COLUMN deleted_ms INTEGER;
        ALTER TABLE accounts ADD COLUMN last_login_ms INTEGER;
        ALTER TABLE accounts ADD COLUMN last_logout_ms INTEGER;

        CREATE TABLE account_tombstones (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          deleted_ms INTEGER NOT NULL,
          expires_ms INTEGER NOT NULL,
          PRIMARY KEY (host, user)
        ) WITHOUT ROWID;
      `);
    },
  },
  {
    version: 3,
    description: "archive item counts per user and store, kept by triggers",
    up(db) {
      // Quotas (offline storage) and RSM totals read one row instead of walking an index
      // whose length grows with the archive. Triggers keep the counts right for every writer.
      db.exec(`
        CREATE TABLE archive_counts (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          store TEXT NOT NULL,
          n INTEGER NOT NULL,
          PRIMARY KEY (host, user, store)
        ) WITHOUT ROWID;

        INSERT INTO archive_counts (host, user, store, n)
          SELECT host, user, store, count(*) FROM archive GROUP BY host, user, store;
      `);
      // SQLite's trigger syntax. A PostgreSQL schema is always created by a Lilt that has
      // step 5, which drops `archive` (and its triggers) before anything is archived in it.
      if (isPostgres(db)) return;
      db.exec(`
        CREATE TRIGGER archive_counted_insert AFTER INSERT ON archive BEGIN
          INSERT INTO archive_counts (host, user, store, n)
            VALUES (NEW.host, NEW.user, NEW.store, 1)
            ON CONFLICT (host, user, store) DO UPDATE SET n = n + 1;
        END;

        CREATE TRIGGER archive_counted_delete AFTER DELETE ON archive BEGIN
          UPDATE archive_counts SET n = n - 1
            WHERE host = OLD.host AND user = OLD.user AND store = OLD.store;
        END;
      `);
    },
  },
  {
    version: 4,
    description: "XEP-0484 FAST tokens per account and client installation",
    up(db) {
      db.exec(`
        CREATE TABLE fast_tokens (
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          agent TEXT NOT NULL,
          mechanism TEXT NOT NULL,
          token TEXT NOT NULL,
          expires_ms INTEGER NOT NULL,
          prev_token TEXT,
          prev_expires_ms INTEGER,
          PRIMARY KEY (host, user, agent)
        ) WITHOUT ROWID;
      `);
    },
  },
  {
    version: 5,
    description: "archive v2: items numbered per owner, written in batches; full-JID 'with'",
    up(db) {
      // An owner row per (host, user, store) keeps the count and the next sequence number, so
      // item rows carry a small integer instead of three strings in every index. Items of one
      // owner are appended at the end of each index, and ids are "<when>-<seq>.<tag>": time
      // and sequence find the row through the time index (no index of ids to keep), the random
      // tag keeps ids unguessable. Existing items keep their order; their old random key
      // becomes the tag.
      db.exec(`
        CREATE TABLE archive_owners (
          id INTEGER PRIMARY KEY,
          host TEXT NOT NULL,
          user TEXT NOT NULL,
          store TEXT NOT NULL,
          items INTEGER NOT NULL,
          next_seq INTEGER NOT NULL,
          UNIQUE (host, user, store)
        );

        CREATE TABLE archive_items (
          id INTEGER PRIMARY KEY,
          owner INTEGER NOT NULL,
          seq INTEGER NOT NULL,
          tag TEXT NOT NULL,
          when_ms INTEGER NOT NULL,
          with_jid TEXT NOT NULL,
          with_resource TEXT NOT NULL,
          type TEXT NOT NULL,
          payload TEXT NOT NULL
        );

        INSERT INTO archive_owners (host, user, store, items, next_seq)
          SELECT host, user, store, count(*), count(*) + 1 FROM archive
          GROUP BY host, user, store;
      `);
      // SQLite's instr(). On PostgreSQL `archive` is always empty here (see step 3): there is
      // nothing to copy.
      if (!isPostgres(db)) {
        db.exec(`
        INSERT INTO archive_items
            (owner, seq, tag, when_ms, with_jid, with_resource, type, payload)
          SELECT o.id,
            row_number() OVER (PARTITION BY a.host, a.user, a.store ORDER BY a.when_ms, a.id),
            a.key, a.when_ms,
            CASE WHEN instr(a.with_jid, '/') > 0
              THEN substr(a.with_jid, 1, instr(a.with_jid, '/') - 1) ELSE a.with_jid END,
            CASE WHEN instr(a.with_jid, '/') > 0
              THEN substr(a.with_jid, instr(a.with_jid, '/') + 1) ELSE '' END,
            a.type, a.payload
          FROM archive a JOIN archive_owners o
            ON o.host = a.host AND o.user = a.user AND o.store = a.store
          ORDER BY a.host, a.user, a.store, a.when_ms, a.id;
      `);
      }
      db.exec(`
        CREATE INDEX archive_items_when ON archive_items (owner, when_ms);
        CREATE INDEX archive_items_with ON archive_items (owner, with_jid, when_ms);

        DROP TABLE archive;
        DROP TABLE archive_counts;
      `);
    },
  },
  {
    version: 6,
    description: "module-owned schemas: the version each module's own tables are at",
    up(db) {
      db.exec(`
        CREATE TABLE module_schema (
          module TEXT PRIMARY KEY,
          version INTEGER NOT NULL
        ) WITHOUT ROWID;
      `);
    },
  },
];

/** The schema version this code writes and understands. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1].version;

/** Options for `migrate`. */
export interface MigrateOptions {
  /** The steps to apply (defaults to `MIGRATIONS`; tests pass their own). */
  migrations?: readonly Migration[];
  /** Names the database in errors (its path). */
  label?: string;
}

/**
 * Brings `db` up to the newest version in `options.migrations`, one transaction per step.
 * Throws `SchemaTooNewError` when the file's version is newer than the code knows, so an old
 * binary never writes into a schema it does not understand.
 */
export function migrate(db: SqlConnection, options: MigrateOptions = {}): void {
  const label = options.label ?? "database";
  applySteps(db, options.migrations ?? MIGRATIONS, {
    read: readVersion,
    write: (version) => writeVersion(db, version),
    tooNew: (found, known) =>
      `Cannot open ${label}: its schema version is ${found} but this Lilt knows up to ` +
      `${known}; upgrade Lilt or restore a backup made by this version`,
  });
}

/**
 * Brings the tables module `name` owns up to the newest of its `migrations` (versioned per
 * module, recorded in module_schema, one transaction per step). Throws `SchemaTooNewError`
 * when the file was written by a newer version of the module.
 */
export function migrateModule(
  db: SqlConnection,
  name: string,
  migrations: readonly Migration[],
): void {
  const read = () =>
    (db.prepare("SELECT version FROM module_schema WHERE module = ?").get(name) as
      | { version: number }
      | undefined)?.version ?? 0;
  applySteps(db, migrations, {
    read,
    write: (version) =>
      db.prepare(
        "INSERT INTO module_schema (module, version) VALUES (?, ?) " +
          "ON CONFLICT (module) DO UPDATE SET version = excluded.version",
      ).run(name, version),
    tooNew: (found, known) =>
      `Cannot load module '${name}': its tables are at version ${found} but this module knows ` +
      `up to ${known}; upgrade the module or restore a backup made with this version`,
    prefix: `Module '${name}': `,
  });
}

/** Where a schema's version is kept, and what to say when it is newer than the code. */
interface VersionSlot {
  read(db: SqlConnection): number;
  write(version: number): void;
  tooNew(found: number, known: number): string;
  /** Put before a failed step's message. */
  prefix?: string;
}

function applySteps(db: SqlConnection, migrations: readonly Migration[], slot: VersionSlot): void {
  const known = migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`Expected migration ${i + 1} at position ${i}, found version ${m.version}`);
    }
  });
  const check = (found: number) => {
    if (found > known) throw new SchemaTooNewError(slot.tooNew(found, known));
  };
  check(slot.read(db));
  for (const migration of migrations) {
    if (slot.read(db) >= migration.version) continue;
    // BEGIN IMMEDIATE takes the write lock first, so a second process opening the same file
    // waits and then re-reads the version instead of applying the step twice.
    db.exec("BEGIN IMMEDIATE");
    try {
      if (isPostgres(db)) lockSchema(db);
      const current = slot.read(db);
      check(current);
      if (current < migration.version) {
        try {
          migration.up(db);
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          throw new Error(
            `${slot.prefix ?? ""}Migration ${migration.version} (${migration.description}) ` +
              `failed: ${reason}`,
            { cause: error },
          );
        }
        slot.write(migration.version);
      }
      db.exec("COMMIT");
    } catch (error) {
      db.exec("ROLLBACK");
      throw error;
    }
  }
}

/**
 * Reads the schema version recorded in the file (0 for a new database); on PostgreSQL, in the
 * table lilt_schema_version of the connection's schema (0 while it does not exist).
 */
export function readVersion(db: SqlConnection): number {
  if (isPostgres(db)) {
    // A query of the catalog, not to_regclass(): after waiting for another server's migration
    // a lookup by name can still answer from the session's cache, made before that commit.
    const table = db.prepare(
      "SELECT count(*) AS found FROM pg_catalog.pg_tables " +
        "WHERE schemaname = current_schema() AND tablename = 'lilt_schema_version'",
    ).get() as { found: number };
    if (table.found === 0) return 0;
    const row = db.prepare("SELECT version FROM lilt_schema_version").get() as
      | { version: number }
      | undefined;
    return row?.version ?? 0;
  }
  const row = db.prepare("PRAGMA user_version").get() as { user_version: number };
  return row.user_version;
}

/**
 * Records the schema version: `PRAGMA user_version` on SQLite; on PostgreSQL (which has no
 * such header) the one row of lilt_schema_version, created when missing. Runs inside the
 * migration's transaction, so the version and the step it records commit together.
 */
function writeVersion(db: SqlConnection, version: number): void {
  if (!isPostgres(db)) {
    db.exec(`PRAGMA user_version = ${version}`);
    return;
  }
  db.exec(`
    CREATE TABLE IF NOT EXISTS lilt_schema_version (version INTEGER NOT NULL);
    DELETE FROM lilt_schema_version;
    INSERT INTO lilt_schema_version (version) VALUES (${Math.trunc(version)});
  `);
}

/**
 * Serialises migrations of one PostgreSQL schema (BEGIN takes no lock there, unlike SQLite's
 * BEGIN IMMEDIATE): a second server waits here, then re-reads the version. The lock is held
 * until the transaction ends.
 */
function lockSchema(db: SqlConnection): void {
  db.exec(
    "SELECT pg_advisory_xact_lock(hashtext('lilt migrations ' || coalesce(current_schema(), '')))",
  );
}
