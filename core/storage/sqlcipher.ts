// SQLCipher 4 through Deno FFI: the second SQLite driver, used when the store has a key. It
// implements the `SqlConnection` subset (connection.ts) with node:sqlite's value conversions, so
// the stores cannot tell which driver they run on. The library is built by
// scripts/sqlcipher/build (or named by LILT_SQLCIPHER_LIBRARY); nothing loads it without a key.

import { join } from "node:path";
import { sourceTreeRoot } from "../source_tree.ts";
import type {
  SqlConnection,
  SqlInputValue,
  SqlOutputValue,
  SqlRow,
  SqlRunResult,
  SqlStatement,
} from "./connection.ts";

const SQLITE_OK = 0;
const SQLITE_ROW = 100;
const SQLITE_DONE = 101;
const SQLITE_INTEGER = 1;
const SQLITE_FLOAT = 2;
const SQLITE_TEXT = 3;
const SQLITE_BLOB = 4;
const SQLITE_OPEN_READONLY = 0x1;
const SQLITE_OPEN_READWRITE = 0x2;
const SQLITE_OPEN_CREATE = 0x4;
const SQLITE_OPEN_EXRESCODE = 0x02000000;
/** SQLITE_TRANSIENT: SQLite copies the bound text or blob before the call returns. */
const SQLITE_TRANSIENT = 0xffff_ffff_ffff_ffffn;
/** Pages copied per step of an online backup before other work gets a turn. */
const BACKUP_PAGES_PER_STEP = 256;

const SYMBOLS = {
  sqlite3_libversion: { parameters: [], result: "pointer" },
  sqlite3_open_v2: { parameters: ["buffer", "buffer", "i32", "pointer"], result: "i32" },
  sqlite3_close_v2: { parameters: ["pointer"], result: "i32" },
  sqlite3_errmsg: { parameters: ["pointer"], result: "pointer" },
  sqlite3_errstr: { parameters: ["i32"], result: "pointer" },
  sqlite3_extended_errcode: { parameters: ["pointer"], result: "i32" },
  sqlite3_exec: {
    parameters: ["pointer", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  sqlite3_prepare_v2: {
    parameters: ["pointer", "buffer", "i32", "buffer", "pointer"],
    result: "i32",
  },
  sqlite3_finalize: { parameters: ["pointer"], result: "i32" },
  sqlite3_reset: { parameters: ["pointer"], result: "i32" },
  sqlite3_clear_bindings: { parameters: ["pointer"], result: "i32" },
  sqlite3_step: { parameters: ["pointer"], result: "i32" },
  sqlite3_bind_parameter_count: { parameters: ["pointer"], result: "i32" },
  sqlite3_bind_null: { parameters: ["pointer", "i32"], result: "i32" },
  sqlite3_bind_int64: { parameters: ["pointer", "i32", "i64"], result: "i32" },
  sqlite3_bind_double: { parameters: ["pointer", "i32", "f64"], result: "i32" },
  sqlite3_bind_text: { parameters: ["pointer", "i32", "buffer", "i32", "usize"], result: "i32" },
  sqlite3_bind_blob: { parameters: ["pointer", "i32", "buffer", "i32", "usize"], result: "i32" },
  sqlite3_bind_zeroblob: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  sqlite3_column_count: { parameters: ["pointer"], result: "i32" },
  sqlite3_column_name: { parameters: ["pointer", "i32"], result: "pointer" },
  sqlite3_column_type: { parameters: ["pointer", "i32"], result: "i32" },
  sqlite3_column_int64: { parameters: ["pointer", "i32"], result: "i64" },
  sqlite3_column_double: { parameters: ["pointer", "i32"], result: "f64" },
  sqlite3_column_text: { parameters: ["pointer", "i32"], result: "pointer" },
  sqlite3_column_blob: { parameters: ["pointer", "i32"], result: "pointer" },
  sqlite3_column_bytes: { parameters: ["pointer", "i32"], result: "i32" },
  sqlite3_changes64: { parameters: ["pointer"], result: "i64" },
  sqlite3_last_insert_rowid: { parameters: ["pointer"], result: "i64" },
  sqlite3_get_autocommit: { parameters: ["pointer"], result: "i32" },
  sqlite3_backup_init: {
    parameters: ["pointer", "buffer", "pointer", "buffer"],
    result: "pointer",
  },
  sqlite3_backup_step: { parameters: ["pointer", "i32"], result: "i32" },
  sqlite3_backup_finish: { parameters: ["pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

type Library = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** What every SQLite since 3.7 exports: enough to ask an unknown library for its version. */
const PROBE_SYMBOLS = {
  sqlite3_libversion: SYMBOLS.sqlite3_libversion,
  sqlite3_open_v2: SYMBOLS.sqlite3_open_v2,
  sqlite3_close_v2: SYMBOLS.sqlite3_close_v2,
  sqlite3_prepare_v2: SYMBOLS.sqlite3_prepare_v2,
  sqlite3_step: SYMBOLS.sqlite3_step,
  sqlite3_column_text: SYMBOLS.sqlite3_column_text,
  sqlite3_finalize: SYMBOLS.sqlite3_finalize,
} as const satisfies Deno.ForeignLibraryInterface;

type ProbeLibrary = Deno.DynamicLibrary<typeof PROBE_SYMBOLS>["symbols"];

/** SQLCipher could not be loaded, or the library found is not SQLCipher 4. */
export class SqlCipherUnavailableError extends Error {}

/** The key does not open the file (wrong key, a plain file, or not a database at all). */
export class StorageKeyError extends Error {}

/** An error SQLite reported, with its (extended) result code, as node:sqlite's errors have. */
export class SqliteError extends Error {
  /** node:sqlite's code for SQLite errors. */
  readonly code = "ERR_SQLITE_ERROR";
  /** SQLite's extended result code. */
  readonly errcode: number;
  /** SQLite's description of the result code. */
  readonly errstr: string;
  /** Creates the error from SQLite's message and result code. */
  constructor(message: string, errcode: number, errstr: string) {
    super(message);
    this.errcode = errcode;
    this.errstr = errstr;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function cString(text: string): Uint8Array {
  if (text.includes("\0")) {
    throw new TypeError("Expected text without NUL characters for SQLite, found one");
  }
  return encoder.encode(text + "\0");
}

function readCString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : new Deno.UnsafePointerView(pointer).getCString();
}

/**
 * Where the library is looked for, in order, when LILT_SQLCIPHER_LIBRARY is not set: the build
 * of scripts/sqlcipher/build when Lilt runs from its source checkout (a compiled binary or the
 * bundle has no such directory), then the dynamic linker's own search.
 */
export function sqlCipherLibraryCandidates(): string[] {
  const candidates: string[] = [];
  const sourceRoot = sourceTreeRoot();
  if (sourceRoot !== undefined) {
    candidates.push(join(sourceRoot, ".tools", "sqlcipher", "libsqlcipher.so"));
  }
  // The dynamic linker's own search (ld.so.cache, LD_LIBRARY_PATH): a distribution's package.
  candidates.push("libsqlcipher.so", "libsqlcipher.so.1", "libsqlcipher.so.0");
  return candidates;
}

/** How to get the library: build it in the checkout, or (packaged) install it and name it. */
function buildHint(): string {
  if (sourceTreeRoot() !== undefined) {
    return "run scripts/sqlcipher/build in Lilt's directory (it builds SQLCipher 4 into " +
      ".tools/sqlcipher/), or set LILT_SQLCIPHER_LIBRARY to a SQLCipher 4 libsqlcipher.so";
  }
  return "install SQLCipher 4's shared library (libsqlcipher.so, version 4.x) and set " +
    "LILT_SQLCIPHER_LIBRARY to its path, or put it where the dynamic linker finds " +
    "libsqlcipher.so";
}

let loaded: { lib: Library; path: string; version: string } | undefined;

/** Opens a library file and checks it is SQLCipher 4; throws SqlCipherUnavailableError. */
function tryLoad(path: string): { dylib: Deno.DynamicLibrary<typeof SYMBOLS>; version: string } {
  // Probe with symbols old libraries have too, so an old one is named by its version rather
  // than by the first newer function it lacks.
  const probe = Deno.dlopen(path, PROBE_SYMBOLS);
  const lib = probe.symbols;
  let version = "";
  const handle = new BigUint64Array(1);
  const rc = lib.sqlite3_open_v2(
    cString(":memory:"),
    new Uint8Array(handle.buffer),
    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
    null,
  );
  const db = Deno.UnsafePointer.create(handle[0]);
  try {
    if (rc === SQLITE_OK) {
      version = queryText(lib, db, "PRAGMA cipher_version");
    }
  } finally {
    lib.sqlite3_close_v2(db);
  }
  const sqliteVersion = readCString(lib.sqlite3_libversion());
  probe.close();
  if (version === "") {
    throw new SqlCipherUnavailableError(
      `'${path}' is SQLite ${sqliteVersion} without SQLCipher (PRAGMA cipher_version is empty)`,
    );
  }
  if (!/^[4-9]\./.test(version)) {
    throw new SqlCipherUnavailableError(
      `'${path}' is SQLCipher ${version}; Lilt needs SQLCipher 4 (SQLCipher 3 cannot read or ` +
        "write SQLCipher 4's file format)",
    );
  }
  return { dylib: Deno.dlopen(path, SYMBOLS), version };
}

/**
 * The SQLCipher version of the library file `path` (for diagnostics and tests); throws
 * SqlCipherUnavailableError when it is not SQLCipher 4, naming what it is.
 */
export function inspectSqlCipherLibrary(path: string): { version: string } {
  const { dylib, version } = tryLoad(path);
  dylib.close();
  return { version };
}

/** Runs a one-row, one-column query during loading; "" when it returns nothing. */
function queryText(lib: ProbeLibrary, db: Deno.PointerValue, sql: string): string {
  const out = new BigUint64Array(1);
  const bytes = encoder.encode(sql);
  if (lib.sqlite3_prepare_v2(db, bytes, bytes.length, new Uint8Array(out.buffer), null) !== 0) {
    return "";
  }
  const stmt = Deno.UnsafePointer.create(out[0]);
  try {
    if (lib.sqlite3_step(stmt) !== SQLITE_ROW) return "";
    return readCString(lib.sqlite3_column_text(stmt, 0));
  } finally {
    lib.sqlite3_finalize(stmt);
  }
}

/**
 * Loads SQLCipher once: LILT_SQLCIPHER_LIBRARY when set, else the first of
 * `sqlCipherLibraryCandidates()` that loads. A library that is not SQLCipher 4 is refused with
 * its version. Throws SqlCipherUnavailableError saying how to get one.
 */
export function loadSqlCipher(): { path: string; version: string } {
  if (loaded) return { path: loaded.path, version: loaded.version };
  const named = Deno.env.get("LILT_SQLCIPHER_LIBRARY");
  const candidates = named ? [named] : sqlCipherLibraryCandidates();
  const problems: string[] = [];
  for (const path of candidates) {
    try {
      const { dylib, version } = tryLoad(path);
      loaded = { lib: dylib.symbols, path, version };
      return { path, version };
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new SqlCipherUnavailableError(
          "Loading SQLCipher needs FFI: run Lilt with --allow-ffi (scripts/lilt does)",
        );
      }
      if (error instanceof SqlCipherUnavailableError) problems.push(error.message);
      else if (named) problems.push(`'${path}' cannot be loaded: ${(error as Error).message}`);
    }
  }
  const found = problems.length > 0 ? ` (${problems.join("; ")})` : "";
  throw new SqlCipherUnavailableError(
    `An encrypted store needs the SQLCipher 4 library, and none was found${found}: ${buildHint()}`,
  );
}

function library(): Library {
  loadSqlCipher();
  return loaded!.lib;
}

/** Quotes `text` as an SQL string literal. */
export function sqlString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** Options for `openSqlCipher`. */
export interface OpenSqlCipherOptions {
  /** The passphrase (`PRAGMA key`); empty opens a plain file through SQLCipher's library. */
  key: string;
  /** Open without write access. */
  readOnly?: boolean;
}

/**
 * Opens `path` through SQLCipher with SQLCipher 4's default settings and `PRAGMA key`, then
 * reads the schema to prove the key: a key that does not open the file throws
 * StorageKeyError before anything is written (no journal mode is set, nothing is migrated).
 */
export function openSqlCipher(path: string, options: OpenSqlCipherOptions): SqlCipherDatabase {
  const lib = library();
  const handle = new BigUint64Array(1);
  const flags =
    (options.readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
    SQLITE_OPEN_EXRESCODE;
  const rc = lib.sqlite3_open_v2(cString(path), new Uint8Array(handle.buffer), flags, null);
  const pointer = Deno.UnsafePointer.create(handle[0]);
  if (rc !== SQLITE_OK) {
    const message = pointer === null ? readCString(lib.sqlite3_errstr(rc)) : errmsg(lib, pointer);
    lib.sqlite3_close_v2(pointer);
    throw new SqliteError(message, rc, readCString(lib.sqlite3_errstr(rc)));
  }
  const db = new SqlCipherDatabase(lib, pointer, options.key);
  try {
    if (options.key !== "") db.exec(`PRAGMA key = ${sqlString(options.key)}`);
    // The first read decrypts page 1: this is where a wrong key shows.
    db.prepare("SELECT count(*) AS n FROM sqlite_schema").get();
  } catch (error) {
    db.close();
    if (error instanceof SqliteError && (error.errcode & 0xff) === 26 /* SQLITE_NOTADB */) {
      throw new StorageKeyError(
        options.key === ""
          ? `'${path}' is not a plain SQLite database (it may be encrypted)`
          : `The storage key does not open '${path}': it is encrypted with another key, ` +
            "or not encrypted, or not a database",
      );
    }
    throw error;
  }
  return db;
}

function errmsg(lib: Library, db: Deno.PointerValue): string {
  return readCString(lib.sqlite3_errmsg(db));
}

/**
 * A connection to SQLCipher's library (see `openSqlCipher`): `SqlConnection` with
 * node:sqlite's conversions. Numbers bind as REAL, as node:sqlite binds them (INTEGER columns
 * store them as integers); bigints as INTEGER; strings as TEXT; ArrayBufferViews as BLOB; null
 * as NULL; anything else throws. INTEGER reads as number and throws outside the safe range.
 */
export class SqlCipherDatabase implements SqlConnection {
  #lib: Library;
  #db: Deno.PointerValue;
  #key: string;
  #statements = new Set<SqlCipherStatement>();

  /** Use `openSqlCipher`. */
  constructor(lib: Library, db: Deno.PointerValue, key: string) {
    this.#lib = lib;
    this.#db = db;
    this.#key = key;
  }

  /** Opens `path` through SQLCipher with this connection's key (see `openSqlCipher`). */
  openSibling(path: string, options: { readOnly?: boolean } = {}): SqlCipherDatabase {
    return openSqlCipher(path, { key: this.#key, readOnly: options.readOnly });
  }

  /** Whether the file is encrypted (opened with a non-empty key). */
  get encrypted(): boolean {
    return this.#key !== "";
  }

  /** False once closed. */
  get isOpen(): boolean {
    return this.#db !== null;
  }

  /** True inside an explicit transaction. */
  get isTransaction(): boolean {
    return this.#db !== null && this.#lib.sqlite3_get_autocommit(this.#db) === 0;
  }

  /** The open handle, or a node:sqlite-like error once closed. */
  handle(): Deno.PointerObject {
    if (this.#db === null) throw new SqliteStateError("database is not open");
    return this.#db;
  }

  /** The error SQLite reports for the last call on this connection. */
  error(rc: number): SqliteError {
    const code = this.#db === null ? rc : this.#lib.sqlite3_extended_errcode(this.#db);
    const message = this.#db === null
      ? readCString(this.#lib.sqlite3_errstr(rc))
      : errmsg(this.#lib, this.#db);
    return new SqliteError(message, code, readCString(this.#lib.sqlite3_errstr(code)));
  }

  /** Runs one or more statements that return no rows. */
  exec(sql: string): void {
    const rc = this.#lib.sqlite3_exec(this.handle(), cString(sql), null, null, null);
    if (rc !== SQLITE_OK) throw this.error(rc);
  }

  /** Compiles the first statement of `sql`. */
  prepare(sql: string): SqlStatement {
    const db = this.handle();
    const bytes = encoder.encode(sql);
    const out = new BigUint64Array(1);
    // A zero-length buffer would be passed as NULL; SQLite reads nByte bytes only.
    const text = bytes.length === 0 ? new Uint8Array(1) : bytes;
    const rc = this.#lib.sqlite3_prepare_v2(
      db,
      text,
      bytes.length,
      new Uint8Array(out.buffer),
      null,
    );
    if (rc !== SQLITE_OK) throw this.error(rc);
    const stmt = Deno.UnsafePointer.create(out[0]);
    if (stmt === null) {
      throw new SqliteError("not an error", 21, "bad parameter or other API misuse");
    }
    const statement = new SqlCipherStatement(this, this.#lib, stmt);
    this.#statements.add(statement);
    return statement;
  }

  /** Closes the connection (finalizing its statements); throws when already closed. */
  close(): void {
    const db = this.handle();
    for (const statement of this.#statements) statement.finalize();
    this.#statements.clear();
    const rc = this.#lib.sqlite3_close_v2(db);
    this.#db = null;
    if (rc !== SQLITE_OK) {
      throw new SqliteError(readCString(this.#lib.sqlite3_errstr(rc)), rc, "close failed");
    }
  }

  /**
   * Copies the database into `destPath` with SQLite's online backup API, the copy encrypted
   * with this connection's key, yielding to the event loop between steps.
   */
  async backup(destPath: string): Promise<void> {
    const source = this.handle();
    const dest = this.openSibling(destPath);
    try {
      const lib = this.#lib;
      const main = cString("main");
      const backup = lib.sqlite3_backup_init(dest.handle(), main, source, main);
      if (backup === null) throw dest.error(lib.sqlite3_extended_errcode(dest.handle()));
      let rc = SQLITE_OK;
      while (rc === SQLITE_OK || rc === 5 /* BUSY */ || rc === 6 /* LOCKED */) {
        rc = lib.sqlite3_backup_step(backup, BACKUP_PAGES_PER_STEP);
        if (rc === SQLITE_DONE) break;
        await new Promise((resolve) => setTimeout(resolve, 0));
        // The server may close its connection while the copy runs (shutdown).
        if (!this.isOpen) {
          lib.sqlite3_backup_finish(backup);
          throw new SqliteStateError("database is not open");
        }
      }
      const finish = lib.sqlite3_backup_finish(backup);
      if (rc !== SQLITE_DONE) throw dest.error(rc);
      if (finish !== SQLITE_OK) throw dest.error(finish);
    } finally {
      dest.close();
    }
  }

  /** Called by a statement once it is finalized. */
  forget(statement: SqlCipherStatement): void {
    this.#statements.delete(statement);
  }
}

/** Misuse of a closed connection, with node:sqlite's code for it. */
export class SqliteStateError extends Error {
  /** node:sqlite's code for this case. */
  readonly code = "ERR_INVALID_STATE";
}

class SqlCipherStatement implements SqlStatement {
  #owner: SqlCipherDatabase;
  #lib: Library;
  #stmt: Deno.PointerValue;
  #columns: string[] | undefined;
  #parameterCount: number;

  constructor(owner: SqlCipherDatabase, lib: Library, stmt: Deno.PointerObject) {
    this.#owner = owner;
    this.#lib = lib;
    this.#stmt = stmt;
    this.#parameterCount = lib.sqlite3_bind_parameter_count(stmt);
  }

  run(...params: SqlInputValue[]): SqlRunResult {
    const stmt = this.#start(params);
    try {
      let rc: number;
      do rc = this.#lib.sqlite3_step(stmt); while (rc === SQLITE_ROW);
      if (rc !== SQLITE_DONE) throw this.#owner.error(rc);
      const db = this.#owner.handle();
      return {
        changes: Number(this.#lib.sqlite3_changes64(db)),
        lastInsertRowid: Number(this.#lib.sqlite3_last_insert_rowid(db)),
      };
    } finally {
      this.#lib.sqlite3_reset(stmt);
    }
  }

  get(...params: SqlInputValue[]): SqlRow | undefined {
    const stmt = this.#start(params);
    try {
      const rc = this.#lib.sqlite3_step(stmt);
      if (rc === SQLITE_DONE) return undefined;
      if (rc !== SQLITE_ROW) throw this.#owner.error(rc);
      return this.#row(stmt);
    } finally {
      this.#lib.sqlite3_reset(stmt);
    }
  }

  all(...params: SqlInputValue[]): SqlRow[] {
    const stmt = this.#start(params);
    const rows: SqlRow[] = [];
    try {
      for (;;) {
        const rc = this.#lib.sqlite3_step(stmt);
        if (rc === SQLITE_DONE) return rows;
        if (rc !== SQLITE_ROW) throw this.#owner.error(rc);
        rows.push(this.#row(stmt));
      }
    } finally {
      this.#lib.sqlite3_reset(stmt);
    }
  }

  finalize(): void {
    if (this.#stmt === null) return;
    this.#lib.sqlite3_finalize(this.#stmt);
    this.#stmt = null;
    this.#owner.forget(this);
  }

  /** Resets the statement and binds `params`; returns the statement handle. */
  #start(params: SqlInputValue[]): Deno.PointerObject {
    this.#owner.handle();
    const stmt = this.#stmt;
    if (stmt === null) throw new SqliteStateError("statement has been finalized");
    const lib = this.#lib;
    lib.sqlite3_reset(stmt);
    lib.sqlite3_clear_bindings(stmt);
    for (let i = 0; i < params.length; i++) {
      const index = i + 1;
      if (index > this.#parameterCount) {
        throw new SqliteError("column index out of range", 25, "column index out of range");
      }
      const rc = bind(lib, stmt, index, params[i]);
      if (rc !== SQLITE_OK) throw this.#owner.error(rc);
    }
    return stmt;
  }

  #row(stmt: Deno.PointerObject): SqlRow {
    const lib = this.#lib;
    const columns = this.#columns ??= this.#names(stmt);
    const row: SqlRow = Object.create(null);
    for (let i = 0; i < columns.length; i++) row[columns[i]] = column(lib, stmt, i);
    return row;
  }

  #names(stmt: Deno.PointerObject): string[] {
    const count = this.#lib.sqlite3_column_count(stmt);
    const names: string[] = [];
    for (let i = 0; i < count; i++) names.push(readCString(this.#lib.sqlite3_column_name(stmt, i)));
    return names;
  }
}

/** Gives `error` the `code` node:sqlite uses for the same misuse. */
function withCode<T extends Error>(error: T, code: string): T {
  return Object.assign(error, { code });
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function bind(lib: Library, stmt: Deno.PointerObject, index: number, value: SqlInputValue): number {
  if (value === null) return lib.sqlite3_bind_null(stmt, index);
  switch (typeof value) {
    case "number":
      return lib.sqlite3_bind_double(stmt, index, value);
    case "bigint":
      if (value < INT64_MIN || value > INT64_MAX) {
        throw withCode(
          new RangeError("BigInt value is too large to bind"),
          "ERR_INVALID_ARG_VALUE",
        );
      }
      return lib.sqlite3_bind_int64(stmt, index, value);
    case "string": {
      const bytes = encoder.encode(value);
      if (bytes.length === 0) {
        return lib.sqlite3_bind_text(stmt, index, new Uint8Array(1), 0, SQLITE_TRANSIENT);
      }
      return lib.sqlite3_bind_text(stmt, index, bytes, bytes.length, SQLITE_TRANSIENT);
    }
  }
  if (ArrayBuffer.isView(value)) {
    if (value.byteLength === 0) return lib.sqlite3_bind_zeroblob(stmt, index, 0);
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return lib.sqlite3_bind_blob(stmt, index, bytes, bytes.length, SQLITE_TRANSIENT);
  }
  throw withCode(
    new TypeError(`Provided value cannot be bound to SQLite parameter ${index}.`),
    "ERR_INVALID_ARG_TYPE",
  );
}

function column(lib: Library, stmt: Deno.PointerObject, i: number): SqlOutputValue {
  switch (lib.sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER: {
      // Deno hands i64 results over as bigint or number depending on the value.
      const value = lib.sqlite3_column_int64(stmt, i);
      const number = Number(value);
      if (
        !Number.isSafeInteger(number) || (typeof value === "bigint" && BigInt(number) !== value)
      ) {
        throw withCode(
          new RangeError(`Value is too large to be represented as a JavaScript number: ${value}`),
          "ERR_OUT_OF_RANGE",
        );
      }
      return number;
    }
    case SQLITE_FLOAT:
      return lib.sqlite3_column_double(stmt, i);
    case SQLITE_TEXT: {
      const pointer = lib.sqlite3_column_text(stmt, i);
      const length = lib.sqlite3_column_bytes(stmt, i);
      if (pointer === null || length === 0) return "";
      return decoder.decode(new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, length)));
    }
    case SQLITE_BLOB: {
      const pointer = lib.sqlite3_column_blob(stmt, i);
      const length = lib.sqlite3_column_bytes(stmt, i);
      if (pointer === null || length === 0) return new Uint8Array(0);
      return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, length).slice(0));
    }
    default:
      return null;
  }
}
