// `lilt storage migrate`: moves a stopped server's store between the embedded SQLite file and
// PostgreSQL (issue 19), both ways, by copying every table's rows into a target that got the
// same schema through the normal migrations, then proving the copy by counting both sides.

import { resolve } from "node:path";
import { type Config, readKeyFile, serverUrlProblem, sqlSchemaProblem } from "../core/config.ts";
import { configureSilentLogging } from "../core/log.ts";
import type { ModuleTable } from "../core/modules.ts";
import {
  openConnection,
  type SqlConnection,
  type SqlInputValue,
} from "../core/storage/connection.ts";
import { Database, type OpenDatabaseOptions, storageOptions } from "../core/storage/database.ts";
import type { Migration } from "../core/storage/migrations.ts";
import { openPostgres } from "../core/storage/postgresql.ts";

/** Tables that record schema versions: each side keeps its own, written by its migrations. */
const BOOKKEEPING_TABLES = new Set(["module_schema", "lilt_schema_version"]);

/** Rows read from the source and committed to the target per transaction. */
const BATCH_ROWS = 500;

/** Parameters per INSERT statement at most (SQLite's oldest limit is 999). */
const MAX_PARAMS_PER_INSERT = 999;

/** Rows per multi-row INSERT at most, whatever the table's width. */
const MAX_ROWS_PER_INSERT = 100;

/** A store migration cannot start, or stopped: the message says what to do. */
export class StoreMigrationError extends Error {}

/**
 * A migration stopped after it began writing to the target, which holds part of the store
 * now (and must be emptied before the next try).
 */
export class PartialCopyError extends Error {}

/** One side of a migration: how to open it, and what to call it in messages. */
export interface MigrationEnd {
  /** How `Database.open` opens it. */
  open: OpenDatabaseOptions;
  /** What to say to empty it and start over (when it already holds data). */
  startOver: string;
}

/** Options for {@link migrateStore}. */
export interface MigrateStoreOptions {
  /** The store to read (opened, and brought to the current core schema, as a server would). */
  source: MigrationEnd;
  /** The store to write: a new file or an empty PostgreSQL schema. */
  target: MigrationEnd;
  /** Module files by name, whose `migrations` create the module tables the source has. */
  modules: ModuleTable;
  /** Rows per transaction (default 500). */
  batchRows?: number;
}

/** Rows of one table on each side after the copy. */
export interface TableCount {
  table: string;
  source: number;
  target: number;
}

/** What {@link migrateStore} copied. */
export interface MigrateStoreResult {
  /** Every copied table, in the order copied (parents before the tables referring to them). */
  tables: TableCount[];
  /** The tables whose row counts differ (empty when the copy is whole). */
  mismatched: TableCount[];
  /** Module schemas created on the target, with the version the source had. */
  moduleSchemas: { schema: string; version: number }[];
}

/**
 * Copies every row of the store `options.source` into `options.target`, which must hold no
 * rows (a new file, an empty schema): the target gets the core schema and each module schema
 * the source records in `module_schema` (at the source's version) through their migrations,
 * then each table is copied in primary-key order, `batchRows` rows per transaction, values
 * unchanged (bytes as bytes, integers exact); PostgreSQL identity columns are moved past the
 * largest id copied. Both sides are counted afterwards. Throws StoreMigrationError when the
 * target holds data or the source has tables of a module this Lilt does not know (nothing is
 * written then), and PartialCopyError when the copy stops midway.
 *
 * @example
 * ```ts
 * const result = migrateStore({
 *   source: { open: { path: "data/lilt.sqlite" }, startOver: "" },
 *   target: {
 *     open: { path: "pg", postgres: { url: "postgresql://lilt@db/lilt", password: "", schema: "" } },
 *     startOver: "drop its tables",
 *   },
 *   modules: builtinModules,
 * });
 * if (result.mismatched.length > 0) throw new Error("incomplete copy");
 * ```
 */
export function migrateStore(options: MigrateStoreOptions): MigrateStoreResult {
  const { source: sourceEnd, target: targetEnd } = options;
  const batchRows = options.batchRows ?? BATCH_ROWS;
  refuseTargetWithData(targetEnd);
  const source = Database.open(sourceEnd.open);
  let target: Database | undefined;
  try {
    const moduleSchemas = readModuleSchemas(source);
    const schemaSteps = moduleMigrations(options.modules);
    const plan = moduleSchemas.map(({ schema, version }) => {
      const steps = schemaSteps.get(schema);
      if (steps === undefined) {
        throw new StoreMigrationError(
          `The source has tables of module '${schema}' (module_schema records version ` +
            `${version}), which this Lilt does not know: only the tables of built-in modules ` +
            "can be migrated",
        );
      }
      const known = steps.length === 0 ? 0 : steps[steps.length - 1].version;
      if (version > known) {
        throw new StoreMigrationError(
          `The source's tables of module '${schema}' are at version ${version} but this Lilt ` +
            `knows up to ${known}: migrate with the Lilt that wrote them`,
        );
      }
      return { schema, version, steps: steps.filter((step) => step.version <= version) };
    });
    target = Database.open(targetEnd.open);
    let counts: TableCount[];
    try {
      for (const { schema, steps } of plan) target.migrateModule(schema, steps);
      counts = copyTables(source, target, batchRows);
    } catch (error) {
      throw new PartialCopyError((error as Error).message, { cause: error });
    }
    return {
      tables: counts,
      mismatched: counts.filter((count) => count.source !== count.target),
      moduleSchemas: plan.map(({ schema, version }) => ({ schema, version })),
    };
  } finally {
    target?.close();
    source.close();
  }
}

/**
 * Copies every table of `source` (but the version bookkeeping) into the migrated `target`,
 * parents before the tables that refer to them, and counts both sides.
 */
function copyTables(source: Database, target: Database, batchRows: number): TableCount[] {
  // The embedded side describes the tables (columns, keys, references): SQLite's catalog is
  // what the migrations were written for.
  const embedded = source.dialect === "sqlite" ? source : target;
  const other = embedded === source ? target : source;
  const sourceTables = listTables(source).filter((name) => !BOOKKEEPING_TABLES.has(name));
  const targetTables = new Set(listTables(target));
  const missing = sourceTables.filter((name) => !targetTables.has(name));
  if (missing.length > 0) {
    throw new StoreMigrationError(
      "The source has tables the target did not get from the migrations: " +
        `${missing.join(", ")}; no module of this Lilt creates them`,
    );
  }
  const tables = new Map(sourceTables.map((name) => [name, describeTable(embedded, name)]));
  for (const table of tables.values()) {
    const columns = listColumns(other, table.name);
    const same = columns.length === table.columns.length &&
      table.columns.every((column) => columns.includes(column));
    if (!same) {
      throw new StoreMigrationError(
        `Table ${table.name} has other columns on SQLite (${table.columns.join(", ")}) than ` +
          `on PostgreSQL (${columns.join(", ")})`,
      );
    }
  }
  const order = parentsFirst([...tables.values()]);
  for (const table of order) copyTable(source, target, table, batchRows);
  if (target.dialect === "postgresql") advanceIdentities(target, new Set(tables.keys()));
  return order.map((table) => ({
    table: table.name,
    source: countRows(source, table.name),
    target: countRows(target, table.name),
  }));
}

/** A table as the copy needs it. */
interface TableShape {
  name: string;
  /** Every column, in declaration order. */
  columns: string[];
  /** The primary key's columns in key order: the order rows are read in. */
  key: string[];
  /** Tables this one refers to by foreign key (copied before it). */
  parents: string[];
}

/** The tables of `database`'s schema (SQLite's own excluded). */
function listTables(database: Database): string[] {
  const sql = database.dialect === "sqlite"
    ? "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' " +
      "ESCAPE '\\' ORDER BY name"
    : "SELECT table_name AS name FROM information_schema.tables " +
      "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name";
  return database.db.prepare(sql).all().map((row) => String(row.name));
}

/** The column names of `table` (declaration order on SQLite). */
function listColumns(database: Database, table: string): string[] {
  if (database.dialect === "sqlite") {
    return database.db.prepare(`PRAGMA table_info(${quoteName(table)})`).all()
      .map((row) => String(row.name));
  }
  return database.db.prepare(
    "SELECT column_name AS name FROM information_schema.columns " +
      "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
  ).all(table).map((row) => String(row.name));
}

/** Columns, primary key and references of `table`, from SQLite's catalog. */
function describeTable(embedded: Database, name: string): TableShape {
  const info = embedded.db.prepare(`PRAGMA table_info(${quoteName(name)})`).all() as {
    name: string;
    pk: number;
  }[];
  const key = info.filter((column) => column.pk > 0).sort((a, b) => a.pk - b.pk)
    .map((column) => column.name);
  if (key.length === 0) {
    throw new StoreMigrationError(
      `Table ${name} has no primary key: the migration reads tables in key order`,
    );
  }
  const references = embedded.db.prepare(`PRAGMA foreign_key_list(${quoteName(name)})`).all();
  return {
    name,
    columns: info.map((column) => column.name),
    key,
    parents: [...new Set(references.map((row) => String(row.table)))].filter((t) => t !== name),
  };
}

/** `tables` ordered so that each comes after the tables its foreign keys point at. */
function parentsFirst(tables: TableShape[]): TableShape[] {
  const byName = new Map(tables.map((table) => [table.name, table]));
  const ordered: TableShape[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (table: TableShape) => {
    const seen = state.get(table.name);
    if (seen === "done") return;
    if (seen === "visiting") {
      throw new StoreMigrationError(`Tables refer to each other in a cycle through ${table.name}`);
    }
    state.set(table.name, "visiting");
    for (const parent of table.parents) {
      const shape = byName.get(parent);
      if (shape) visit(shape);
    }
    state.set(table.name, "done");
    ordered.push(table);
  };
  for (const table of tables) visit(table);
  return ordered;
}

/**
 * Copies `table` in primary-key order, `batchRows` rows per target transaction; each batch
 * continues after the last key read (no OFFSET, so a large table costs no more per batch).
 */
function copyTable(source: Database, target: Database, table: TableShape, batchRows: number) {
  const columns = table.columns.map(quoteName).join(", ");
  const key = table.key.map(quoteName).join(", ");
  const keyParams = table.key.map(() => "?").join(", ");
  const first = source.prepare(
    `SELECT ${columns} FROM ${quoteName(table.name)} ` +
      `ORDER BY ${key} LIMIT ?`,
  );
  const next = source.prepare(
    `SELECT ${columns} FROM ${quoteName(table.name)} WHERE (${key}) > (${keyParams}) ` +
      `ORDER BY ${key} LIMIT ?`,
  );
  const rowsPerInsert = Math.max(
    1,
    Math.min(MAX_ROWS_PER_INSERT, Math.floor(MAX_PARAMS_PER_INSERT / table.columns.length)),
  );
  const insert = (rows: number) => {
    const tuple = `(${table.columns.map(() => "?").join(", ")})`;
    return target.prepare(
      `INSERT INTO ${quoteName(table.name)} (${columns}) VALUES ` +
        Array.from({ length: rows }, () => tuple).join(", "),
    );
  };
  let after: SqlInputValue[] | undefined;
  while (true) {
    const rows = after === undefined ? first.all(batchRows) : next.all(...after, batchRows);
    if (rows.length === 0) return;
    target.transaction(() => {
      for (let start = 0; start < rows.length; start += rowsPerInsert) {
        const chunk = rows.slice(start, start + rowsPerInsert);
        const params: SqlInputValue[] = [];
        for (const row of chunk) for (const column of table.columns) params.push(row[column]);
        insert(chunk.length).run(...params);
      }
    });
    const last = rows[rows.length - 1];
    after = table.key.map((column) => last[column]);
    if (rows.length < batchRows) return;
  }
}

/**
 * Moves each identity column's sequence of the copied tables past the largest id, so the rows
 * a server inserts next do not collide with copied ones.
 */
function advanceIdentities(target: Database, copied: Set<string>): void {
  const identities = target.db.prepare(
    "SELECT table_name AS name, column_name AS column FROM information_schema.columns " +
      "WHERE table_schema = current_schema() AND is_identity = 'YES'",
  ).all().map((row) => ({ table: String(row.name), column: String(row.column) }));
  for (const { table, column } of identities) {
    if (!copied.has(table)) continue;
    const row = target.db.prepare(
      `SELECT max(${quoteName(column)}) AS largest FROM ${quoteName(table)}`,
    ).get();
    const largest = row?.largest;
    if (largest === null || largest === undefined) continue;
    target.db.prepare(
      `SELECT setval(pg_get_serial_sequence(${quoteText(quoteName(table))}, ` +
        `${quoteText(column)}), ${BigInt(largest as number | bigint)})`,
    ).get();
  }
}

/** The rows of `table`. */
function countRows(database: Database, table: string): number {
  const row = database.db.prepare(`SELECT count(*) AS n FROM ${quoteName(table)}`).get();
  return Number(row?.n ?? 0);
}

/** The module schemas `database` records, by name, with their versions. */
function readModuleSchemas(database: Database): { schema: string; version: number }[] {
  return database.db.prepare("SELECT module, version FROM module_schema ORDER BY module").all()
    .map((row) => ({ schema: String(row.module), version: Number(row.version) }));
}

/** Each schema name the modules migrate (their `schema`, or their name) with its steps. */
function moduleMigrations(modules: ModuleTable): Map<string, readonly Migration[]> {
  const steps = new Map<string, readonly Migration[]>();
  for (const [name, file] of Object.entries(modules)) {
    if (file.migrations) steps.set(file.schema ?? name, file.migrations);
  }
  return steps;
}

/**
 * Throws StoreMigrationError when the target already holds rows (Lilt's or anyone's), before
 * anything is written to it: a copy into it would mix two stores.
 */
function refuseTargetWithData(end: MigrationEnd): void {
  const { open } = end;
  let db: SqlConnection;
  let tables: () => string[];
  if (open.postgres) {
    db = openPostgres({
      url: open.postgres.url,
      password: open.postgres.password || undefined,
      schema: open.postgres.schema || undefined,
      applicationName: "lilt storage migrate",
    });
    tables = () =>
      db.prepare(
        "SELECT table_name AS name FROM information_schema.tables " +
          "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
      ).all().map((row) => String(row.name));
  } else {
    const size = fileSize(open.path);
    if (size === undefined || size === 0) return;
    try {
      db = openConnection(open.path, { key: open.key, readOnly: true });
    } catch (error) {
      throw new StoreMigrationError(
        `Cannot read the target ${open.path}: ${(error as Error).message}; give a new file`,
      );
    }
    tables = () =>
      db.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' " +
          "ESCAPE '\\'",
      ).all().map((row) => String(row.name));
  }
  let names: string[];
  try {
    names = tables();
  } catch (error) {
    db.close();
    throw new StoreMigrationError(
      `Cannot read the tables of the target ${open.path}: ${(error as Error).message}`,
    );
  }
  try {
    const filled = names.filter((name) =>
      !BOOKKEEPING_TABLES.has(name) &&
      db.prepare(`SELECT 1 AS found FROM ${quoteName(name)} LIMIT 1`).get() !== undefined
    ).sort();
    if (filled.length > 0) {
      const shown = filled.length > 5 ? `${filled.slice(0, 5).join(", ")}, …` : filled.join(", ");
      throw new StoreMigrationError(
        `The target ${open.path} already holds data (rows in ${filled.length} ` +
          `table${filled.length === 1 ? "" : "s"}: ${shown}); a migration fills an empty ` +
          `store only. To start over, ${end.startOver}`,
      );
    }
  } finally {
    db.close();
  }
}

function fileSize(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** A double-quoted SQL identifier (both engines read it as the name, whatever its spelling). */
function quoteName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A single-quoted SQL string literal. */
function quoteText(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

// ---------------------------------------------------------------------------------------------
// The command line.

/** What `lilt storage migrate` was asked to do, from its options. */
export type MigrateRequest =
  | { to: "postgresql"; url: string; passwordFile: string; schema: string }
  | { to: "sqlite"; path: string };

/** The options of `lilt storage migrate` as parsed (strings, absent when not given). */
export interface MigrateArgs {
  to?: string;
  url?: string;
  "password-file"?: string;
  schema?: string;
  path?: string;
}

/** The parseArgs declarations of the options `storage migrate` takes. */
export const MIGRATE_OPTIONS = {
  to: { type: "string" },
  url: { type: "string" },
  "password-file": { type: "string" },
  schema: { type: "string" },
  path: { type: "string" },
} as const;

/** The names of {@link MIGRATE_OPTIONS}, for refusing them with the other storage actions. */
export const MIGRATE_OPTION_NAMES: readonly (keyof MigrateArgs)[] = [
  "to",
  "url",
  "password-file",
  "schema",
  "path",
];

/** The request `args` make, or why they make none (a usage error). */
export function parseMigrateArgs(args: MigrateArgs): MigrateRequest | { error: string } {
  const given = (names: (keyof MigrateArgs)[]) => names.filter((name) => args[name] !== undefined);
  if (args.to === "postgresql") {
    const wrong = given(["path"]);
    if (wrong.length > 0) return { error: "--path is for --to sqlite (the new file)" };
    if (args.url === undefined) {
      return { error: "storage migrate --to postgresql needs --url postgresql://USER@HOST/DB" };
    }
    const problem = serverUrlProblem(
      args.url,
      "postgresql",
      "--url",
      "a file and give --password-file FILE",
    );
    if (problem) return { error: problem };
    const schema = args.schema ?? "";
    const schemaProblem = sqlSchemaProblem(schema, "--schema");
    if (schemaProblem) return { error: schemaProblem };
    const passwordFile = args["password-file"] === undefined ? "" : resolve(args["password-file"]);
    return { to: "postgresql", url: args.url, passwordFile, schema };
  }
  if (args.to === "sqlite") {
    const wrong = given(["url", "password-file", "schema"]);
    if (wrong.length > 0) {
      return {
        error: `--${wrong[0]} is for --to postgresql; --to sqlite reads the configured ` +
          "PostgreSQL store",
      };
    }
    if (args.path === undefined) return { error: "storage migrate --to sqlite needs --path FILE" };
    return { to: "sqlite", path: resolve(args.path) };
  }
  return {
    error: args.to === undefined
      ? "storage migrate needs --to postgresql or --to sqlite"
      : `--to takes postgresql or sqlite, found '${args.to}'`,
  };
}

/**
 * Runs `lilt storage migrate` for `config` (a stopped server's): copies its store to the
 * requested one, prints each table's rows on both sides and the configuration to use next.
 * Returns the exit status (1 when the copy failed or the counts differ).
 */
export async function runStorageMigrate(
  config: Config,
  request: MigrateRequest,
  modules: ModuleTable,
): Promise<number> {
  const storage = config.storage;
  let source: MigrationEnd;
  let target: MigrationEnd;
  if (request.to === "postgresql") {
    if (storage.driver !== "sqlite") {
      console.error(
        `lilt: storage migrate --to postgresql copies the embedded store, but ${config.file} ` +
          `already stores the data in PostgreSQL (${storage.url}); --to sqlite copies it into ` +
          "a file",
      );
      return 1;
    }
    if (fileSize(storage.path) === undefined) {
      console.error(`lilt: storage migrate failed: there is no store at ${storage.path}`);
      return 1;
    }
    let password = "";
    if (request.passwordFile !== "") {
      const read = readKeyFile(request.passwordFile, "--password-file");
      if (!("key" in read)) {
        console.error(`lilt: ${read.error}`);
        return 1;
      }
      password = read.key;
    }
    const schema = request.schema;
    source = { open: storageOptions(storage), startOver: "" };
    target = {
      open: storageOptions({
        ...storage,
        driver: "postgresql",
        url: request.url,
        password,
        schema,
      }),
      startOver: schema === ""
        ? "drop Lilt's tables from the database (or give an empty schema with --schema NAME)"
        : `drop the schema (DROP SCHEMA ${schema} CASCADE) or give another --schema`,
    };
  } else {
    if (storage.driver !== "postgresql") {
      console.error(
        `lilt: storage migrate --to sqlite copies a PostgreSQL store, but ${config.file} uses ` +
          `the embedded store (${storage.path}); --to postgresql copies it into PostgreSQL`,
      );
      return 1;
    }
    source = { open: storageOptions(storage), startOver: "" };
    target = {
      open: storageOptions({ ...storage, driver: "sqlite", path: request.path, key: "" }),
      startOver: `remove ${request.path} (and its -wal and -shm files) or give another --path`,
    };
  }
  await configureSilentLogging(config.log);

  const started = performance.now();
  let result: MigrateStoreResult;
  try {
    result = migrateStore({ source, target, modules });
  } catch (error) {
    const startOver = error instanceof PartialCopyError
      ? `; what was copied stays in ${target.open.path}: to start over, ${target.startOver}`
      : "";
    console.error(`lilt: storage migrate failed: ${(error as Error).message}${startOver}`);
    return 1;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(formatCounts(result.tables));
  const rows = result.tables.reduce((sum, count) => sum + count.target, 0);
  if (result.mismatched.length > 0) {
    console.error(
      `lilt: storage migrate failed: the row counts differ for ` +
        `${
          result.mismatched.map((c) => `${c.table} (${c.source} against ${c.target})`).join(", ")
        }` +
        `; keep using ${source.open.path}. To start over, ${target.startOver}`,
    );
    return 1;
  }
  console.log(
    `\nCopied ${rows} rows of ${result.tables.length} tables from ${source.open.path} to ` +
      `${target.open.path} in ${seconds} s; the counts match.`,
  );
  console.log(nextSteps(config, request));
  return 0;
}

/** The per-table counts as an aligned table. */
export function formatCounts(counts: readonly TableCount[]): string {
  const header = { table: "table", source: "source rows", target: "target rows" };
  const width = Math.max(header.table.length, ...counts.map((count) => count.table.length));
  const line = (table: string, source: string, target: string) =>
    `${table.padEnd(width)}  ${source.padStart(header.source.length)}  ` +
    target.padStart(header.target.length);
  return [
    line(header.table, header.source, header.target),
    ...counts.map((count) => line(count.table, String(count.source), String(count.target))),
  ].join("\n");
}

/** What to change in the configuration so that the server uses the new store. */
function nextSteps(config: Config, request: MigrateRequest): string {
  const storage = config.storage;
  if (request.to === "postgresql") {
    const lines = ['driver = "postgresql"', `url = ${JSON.stringify(request.url)}`];
    if (request.passwordFile !== "") {
      lines.push(`password_file = ${JSON.stringify(request.passwordFile)}`);
    }
    if (request.schema !== "") lines.push(`schema = ${JSON.stringify(request.schema)}`);
    return `Next: in ${config.file}, replace the [storage] table (its path and key no longer ` +
      `apply) with\n\n[storage]\n${lines.join("\n")}\n\nand start Lilt. ${storage.path} is ` +
      "left as it was: keep it until the server runs well on PostgreSQL.";
  }
  return `Next: in ${config.file}, replace the [storage] table (its url, password_file and ` +
    `schema no longer apply) with\n\n[storage]\ndriver = "sqlite"\npath = ` +
    `${JSON.stringify(request.path)}\n\nand start Lilt. The PostgreSQL store is left as it ` +
    "was. To encrypt the new file, set storage.key_file and run 'lilt storage encrypt'.";
}
