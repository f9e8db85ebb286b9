// PostgreSQL through libpq (the PostgreSQL project's C client) over Deno FFI: the driver for
// `storage.driver = "postgresql"`. Lilt's stores are synchronous by design (database.ts), so
// this driver is too: every call blocks on libpq until the server answers, and it implements
// the same `SqlConnection` as node:sqlite and SQLCipher (connection.ts). Statement text is in
// Lilt's SQLite dialect and is translated by sql_dialect.ts.

import type {
  SqlConnection,
  SqlInputValue,
  SqlOutputValue,
  SqlRow,
  SqlRunResult,
  SqlStatement,
} from "./connection.ts";
import { getLogger } from "../log.ts";
import { toPostgresSql } from "./sql_dialect.ts";

const log = getLogger("storage");

const CONNECTION_OK = 0;
const PGRES_EMPTY_QUERY = 0;
const PGRES_COMMAND_OK = 1;
const PGRES_TUPLES_OK = 2;
const PQTRANS_IDLE = 0;
const PQTRANS_INTRANS = 2;
const PQTRANS_INERROR = 3;
const PG_DIAG_SQLSTATE = "C".charCodeAt(0);
const PG_DIAG_MESSAGE_PRIMARY = "M".charCodeAt(0);
const PG_DIAG_MESSAGE_DETAIL = "D".charCodeAt(0);

const OID_BOOL = 16;
const OID_BYTEA = 17;
const OID_INT8 = 20;
const OID_INT2 = 21;
const OID_INT4 = 23;
const OID_TEXT = 25;
const OID_OID = 26;
const OID_FLOAT4 = 700;
const OID_FLOAT8 = 701;
const OID_NUMERIC = 1700;

/** How long after a failed reconnection the next call may try again. */
const RECONNECT_INTERVAL_MS = 1000;

/** Translations kept per connection before the cache starts over. */
const MAX_CACHED_TRANSLATIONS = 10_000;

/**
 * SQLSTATEs of a parameter whose type the server cannot infer from the statement alone
 * (`SELECT ?`, `? IS NULL`, an ambiguous operator): the statement is prepared again with
 * types taken from the call's values.
 */
const UNTYPED_PARAMETER_STATES = new Set(["42P18", "42P08", "42725"]);

const SYMBOLS = {
  PQlibVersion: { parameters: [], result: "i32" },
  PQconnectdbParams: { parameters: ["buffer", "buffer", "i32"], result: "pointer" },
  PQstatus: { parameters: ["pointer"], result: "i32" },
  PQerrorMessage: { parameters: ["pointer"], result: "pointer" },
  PQfinish: { parameters: ["pointer"], result: "void" },
  PQreset: { parameters: ["pointer"], result: "void" },
  PQserverVersion: { parameters: ["pointer"], result: "i32" },
  PQtransactionStatus: { parameters: ["pointer"], result: "i32" },
  PQexec: { parameters: ["pointer", "buffer"], result: "pointer" },
  PQprepare: { parameters: ["pointer", "buffer", "buffer", "i32", "buffer"], result: "pointer" },
  PQexecPrepared: {
    parameters: ["pointer", "buffer", "i32", "buffer", "buffer", "buffer", "i32"],
    result: "pointer",
  },
  PQresultStatus: { parameters: ["pointer"], result: "i32" },
  PQresultErrorMessage: { parameters: ["pointer"], result: "pointer" },
  PQresultErrorField: { parameters: ["pointer", "i32"], result: "pointer" },
  PQntuples: { parameters: ["pointer"], result: "i32" },
  PQnfields: { parameters: ["pointer"], result: "i32" },
  PQfname: { parameters: ["pointer", "i32"], result: "pointer" },
  PQftype: { parameters: ["pointer", "i32"], result: "u32" },
  PQgetvalue: { parameters: ["pointer", "i32", "i32"], result: "pointer" },
  PQgetlength: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  PQgetisnull: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  PQcmdTuples: { parameters: ["pointer"], result: "pointer" },
  PQcmdStatus: { parameters: ["pointer"], result: "pointer" },
  PQclear: { parameters: ["pointer"], result: "void" },
  PQsetNoticeProcessor: { parameters: ["pointer", "function", "pointer"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Library = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** libpq could not be loaded. */
export class LibpqUnavailableError extends Error {}

/** An error the server (or libpq) reported, with the server's SQLSTATE as `code`. */
export class PostgresError extends Error {
  /** The SQLSTATE (e.g. "23505" for a unique violation); "" when libpq gave none. */
  readonly code: string;
  /** The server's DETAIL line, when it sent one. */
  readonly detail: string | undefined;
  /** Creates the error from the server's primary message and SQLSTATE. */
  constructor(message: string, code: string, detail?: string) {
    super(code === "" ? message : `${message} (SQLSTATE ${code})`);
    this.code = code;
    this.detail = detail;
  }
}

/** Use of a closed connection. */
export class PostgresStateError extends Error {
  /** node:sqlite's code for the same misuse. */
  readonly code = "ERR_INVALID_STATE";
}

const encoder = new TextEncoder();

function cString(text: string, what: string): Uint8Array {
  if (text.includes("\0")) {
    throw new TypeError(`Expected ${what} without NUL characters for PostgreSQL, found one`);
  }
  return encoder.encode(text + "\0");
}

function readCString(pointer: Deno.PointerValue): string {
  return pointer === null ? "" : new Deno.UnsafePointerView(pointer).getCString();
}

/** The library names tried, in order, when LILT_LIBPQ_LIBRARY is not set. */
export function libpqCandidates(): string[] {
  if (Deno.build.os === "darwin") return ["libpq.5.dylib", "libpq.dylib"];
  return ["libpq.so.5", "libpq.so"];
}

let loaded: { lib: Library; path: string; version: number } | undefined;

/**
 * Loads libpq once: the file named by LILT_LIBPQ_LIBRARY when set, else the first of
 * `libpqCandidates()` the dynamic linker finds. `version` is libpq's own (150018 for 15.18).
 * Throws LibpqUnavailableError saying how to get it.
 */
export function loadLibpq(): { path: string; version: number } {
  if (loaded) return { path: loaded.path, version: loaded.version };
  const named = Deno.env.get("LILT_LIBPQ_LIBRARY");
  const candidates = named ? [named] : libpqCandidates();
  const problems: string[] = [];
  for (const path of candidates) {
    try {
      const lib = Deno.dlopen(path, SYMBOLS).symbols;
      loaded = { lib, path, version: lib.PQlibVersion() };
      return { path, version: loaded.version };
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new LibpqUnavailableError(
          "Loading libpq needs FFI: run Lilt with --allow-ffi (scripts/lilt does)",
        );
      }
      problems.push(`'${path}': ${(error as Error).message}`);
    }
  }
  throw new LibpqUnavailableError(
    `The PostgreSQL driver needs libpq (PostgreSQL's client library, libpq.so.5), and none ` +
      `was found (${problems.join("; ")}): install it (Debian: apt-get install libpq5) or set ` +
      "LILT_LIBPQ_LIBRARY to its path",
  );
}

function library(): Library {
  loadLibpq();
  return loaded!.lib;
}

const NOTICE_PROCESSOR = { parameters: ["pointer", "pointer"], result: "void" } as const;
let noticeCallback: Deno.UnsafeCallback<typeof NOTICE_PROCESSOR> | undefined;

/**
 * libpq's notice processor for every connection: the server's warnings (client_min_messages is
 * warning) go to Lilt's log instead of libpq's default, stderr. libpq calls it synchronously,
 * from inside the call that received the notice.
 */
function noticeProcessor(): Deno.PointerObject {
  noticeCallback ??= new Deno.UnsafeCallback(NOTICE_PROCESSOR, (_arg, message) => {
    log.warn("PostgreSQL: {notice}", { notice: oneLine(readCString(message)) });
  });
  return noticeCallback.pointer;
}

/** Quotes `name` as a PostgreSQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `url` with any password replaced by `***`, for messages and logs. */
export function redactConnectionString(url: string): string {
  return url
    .replace(/^(postgres(?:ql)?:\/\/[^:@/?#]*):[^@/?#]*@/i, "$1:***@")
    .replace(/([?&]password=)[^&#]*/gi, "$1***")
    .replace(/(^|\s)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, "$1$2***");
}

/** Options for `openPostgres`. */
export interface OpenPostgresOptions {
  /**
   * A libpq connection string: a URL (`postgresql://lilt@127.0.0.1:5432/lilt`) or
   * `key=value` pairs. Prefer `password` over a password inside it.
   */
  url: string;
  /** The password, passed to libpq on its own so it never appears in a URL or a message. */
  password?: string;
  /**
   * A schema for Lilt's tables: created when missing, and the connection's only search_path
   * entry, so several servers can share one database.
   */
  schema?: string;
  /** Shown in pg_stat_activity (default "lilt"). */
  applicationName?: string;
}

/**
 * Connects to PostgreSQL with libpq and returns a `SqlConnection` over it. Throws a
 * PostgresError naming the server (password redacted) when the connection fails.
 *
 * @example
 * ```ts
 * const db = openPostgres({ url: "postgresql://lilt@127.0.0.1:5432/lilt", schema: "lilt" });
 * db.prepare("SELECT value FROM kv WHERE host = ? AND user = ?").get("example.com", "juliet");
 * db.close();
 * ```
 */
export function openPostgres(options: OpenPostgresOptions): PostgresConnection {
  const lib = library();
  const params: [string, string][] = [
    ["connect_timeout", "10"],
    ["dbname", options.url],
  ];
  if (options.password !== undefined) params.push(["password", options.password]);
  params.push(
    ["application_name", options.applicationName ?? "lilt"],
    ["client_encoding", "UTF8"],
  );
  const keep: Uint8Array[] = [];
  const keywords = pointerArray(params.map(([key]) => key), keep);
  const values = pointerArray(params.map(([, value]) => value), keep);
  const conn = lib.PQconnectdbParams(keywords, values, 1);
  const target = redactConnectionString(options.url);
  if (conn === null) {
    throw new PostgresError(`Cannot connect to PostgreSQL at ${target}: out of memory`, "");
  }
  if (lib.PQstatus(conn) !== CONNECTION_OK) {
    let reason = oneLine(readCString(lib.PQerrorMessage(conn)));
    // libpq does not quote passwords back; this is a second line of defence, for passwords
    // long enough not to mangle the message.
    if ((options.password?.length ?? 0) >= 4) reason = reason.replaceAll(options.password!, "***");
    lib.PQfinish(conn);
    throw new PostgresError(`Cannot connect to PostgreSQL at ${target}: ${reason}`, "08001");
  }
  lib.PQsetNoticeProcessor(conn, noticeProcessor(), null);
  const db = new PostgresConnection(lib, conn);
  try {
    db.setSession("SET client_min_messages = warning");
    if (options.schema !== undefined) useSchema(db, options.schema);
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

function useSchema(db: PostgresConnection, schema: string): void {
  if (schema === "") throw new TypeError("Expected a non-empty PostgreSQL schema name");
  const name = quoteIdentifier(schema);
  try {
    db.exec(`CREATE SCHEMA IF NOT EXISTS ${name}`);
  } catch (error) {
    // Two servers creating the same schema at once: the loser sees the winner's row.
    const code = (error as PostgresError).code;
    if (code !== "23505" && code !== "42P06") throw error;
  }
  db.setSession(`SET search_path TO ${name}`);
}

/** A NULL-terminated `char**` of `texts`; the encoded strings are pushed to `keep`. */
function pointerArray(texts: string[], keep: Uint8Array[]): BigUint64Array {
  const array = new BigUint64Array(texts.length + 1);
  texts.forEach((text, i) => {
    const bytes = new Uint8Array(new ArrayBuffer(encoder.encode(text).length + 1));
    bytes.set(cString(text, "a connection parameter"));
    keep.push(bytes);
    array[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
  });
  return array;
}

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, "; ");
}

/** A statement the server has prepared, and the shape of its rows once seen. */
interface Prepared {
  name: Uint8Array;
  columns?: { names: string[]; oids: number[] };
}

/** A result of `PostgresConnection.execute`, with the statement that produced it. */
interface Execution {
  result: Deno.PointerObject;
  prepared: Prepared;
}

/**
 * A connection to PostgreSQL (see `openPostgres`) as a `SqlConnection`. Parameters are sent as
 * text (numbers in JavaScript's shortest round-trip form, bigints as integers) except byte
 * arrays, sent as binary bytea; their types are inferred by the server. Columns are converted
 * by type: integers and floats (and numeric) to number, int8 beyond 2^53 to bigint, boolean to
 * 1/0, bytea to Uint8Array, anything else to its text.
 *
 * Unlike SQLite, an error inside a transaction aborts the whole transaction on PostgreSQL:
 * every later statement fails (SQLSTATE 25P02) until ROLLBACK (or ROLLBACK TO a savepoint).
 *
 * A lost connection (server restart, network) fails the statement that finds it; the next one
 * reconnects (at most once a second) and restores the session's settings. When the connection
 * was lost inside a transaction, the transaction is gone: every statement throws (08006) until
 * the caller's ROLLBACK, so no later write of it commits on its own.
 */
export class PostgresConnection implements SqlConnection {
  /** Which SQL dialect the connection speaks. */
  readonly dialect = "postgresql";
  #lib: Library;
  #conn: Deno.PointerValue;
  /** Server-side prepared statements, by translated text and parameter type signature. */
  #prepared = new Map<string, Prepared>();
  /**
   * Texts whose parameter types the server cannot infer, prepared with the values' types:
   * NULLs left to the server (1), or typed as text when even that fails (2).
   */
  #typing = new Map<string, 1 | 2>();
  /** Translations, by original text. */
  #translated = new Map<string, string>();
  #nextName = 1;
  /** SET statements run on connecting, and again after a reconnection. */
  #session: string[] = [];
  /** Whether the connection was inside a transaction when the current call began. */
  #transactionBefore = false;
  /** The connection broke inside a transaction, which the caller has not rolled back yet. */
  #lostTransaction = false;
  /** performance.now() before which no reconnection is tried. */
  #nextReconnect = 0;

  /** Use `openPostgres`. */
  constructor(lib: Library, conn: Deno.PointerObject) {
    this.#lib = lib;
    this.#conn = conn;
  }

  /** False once closed. */
  get isOpen(): boolean {
    return this.#conn !== null;
  }

  /**
   * True inside an explicit transaction (also one an error has aborted, or one whose
   * connection was lost, until ROLLBACK).
   */
  get isTransaction(): boolean {
    if (this.#conn === null) return false;
    if (this.#lostTransaction) return true;
    const status = this.#lib.PQtransactionStatus(this.#conn);
    return status === PQTRANS_INTRANS || status === PQTRANS_INERROR;
  }

  /** Runs a SET statement now, and again whenever the connection is re-established. */
  setSession(sql: string): void {
    this.exec(sql);
    this.#session.push(sql);
  }

  /** The server's version number (150018 for 15.18). */
  get serverVersion(): number {
    return this.#lib.PQserverVersion(this.#handle());
  }

  /**
   * Runs one or more statements (translated from Lilt's dialect) that return no rows. A COMMIT
   * the server turns into a ROLLBACK (the transaction had failed) throws.
   */
  exec(sql: string): void {
    const text = this.#translate(sql);
    if (this.#lostTransaction && /^\s*rollback\s*(transaction|work)?\s*;?\s*$/i.test(text)) {
      // The server rolled it back when the connection went.
      this.#lostTransaction = false;
      return;
    }
    const conn = this.#ready();
    const result = this.#lib.PQexec(conn, cString(text, "SQL"));
    try {
      this.#check(result);
      if (/^\s*(commit|end)\b/i.test(text) && this.#commandStatus(result!) === "ROLLBACK") {
        throw new PostgresError(
          "The transaction was rolled back instead of committed: a statement in it had failed",
          "25P02",
        );
      }
    } finally {
      this.#lib.PQclear(result);
    }
  }

  /** A statement for `sql` (one statement); the server prepares it on first use. */
  prepare(sql: string): SqlStatement {
    this.#handle();
    return new PostgresStatement(this, this.#translate(sql));
  }

  /** Closes the connection; throws when already closed. */
  close(): void {
    const conn = this.#handle();
    this.#conn = null;
    this.#prepared.clear();
    this.#lib.PQfinish(conn);
  }

  /** Runs `text` (already translated) with `params`; the caller reads and frees the result. */
  execute(text: string, params: SqlInputValue[]): Execution {
    const conn = this.#ready();
    const prepared = this.#preparedFor(text, params);
    const count = params.length;
    let values: BigUint64Array | null = null;
    let lengths: Int32Array | null = null;
    let formats: Int32Array | null = null;
    // Every value in one buffer (kept alive by this frame), pointed into by `values`.
    let block: Uint8Array | null = null;
    if (count > 0) {
      values = new BigUint64Array(count);
      lengths = new Int32Array(count);
      formats = new Int32Array(count);
      const parts: (Uint8Array | null)[] = new Array(count);
      let size = 0;
      for (let i = 0; i < count; i++) {
        const part = encodeParameter(params[i], i + 1);
        parts[i] = part;
        if (part !== null) size += part.length + 1;
      }
      block = new Uint8Array(new ArrayBuffer(Math.max(size, 1)));
      const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(block)));
      let offset = 0;
      for (let i = 0; i < count; i++) {
        const part = parts[i];
        if (part === null) continue;
        block.set(part, offset);
        values[i] = base + BigInt(offset);
        lengths[i] = part.length;
        formats[i] = ArrayBuffer.isView(params[i]) ? 1 : 0;
        offset += part.length + 1;
      }
    }
    const result = this.#lib.PQexecPrepared(
      conn,
      prepared.name,
      count,
      values,
      lengths,
      formats,
      0,
    );
    block = null;
    if (result === null) throw this.#connectionError();
    const status = this.#lib.PQresultStatus(result);
    if (status !== PGRES_TUPLES_OK && status !== PGRES_COMMAND_OK) {
      const error = this.#resultError(result);
      this.#lib.PQclear(result);
      throw error;
    }
    return { result, prepared };
  }

  /** Rows of a result of `execute`, at most `limit`. */
  rows({ result, prepared }: Execution, limit: number): SqlRow[] {
    const lib = this.#lib;
    const count = Math.min(lib.PQntuples(result), limit);
    if (count === 0) return [];
    const columns = prepared.columns ??= this.#columns(result);
    const { names, oids } = columns;
    const rows: SqlRow[] = new Array(count);
    for (let r = 0; r < count; r++) {
      // A null prototype, as node:sqlite gives: a column may be named like an Object method.
      const row: SqlRow = Object.create(null);
      for (let c = 0; c < names.length; c++) {
        if (lib.PQgetisnull(result, r, c) !== 0) {
          row[names[c]] = null;
          continue;
        }
        row[names[c]] = decodeValue(oids[c], lib.PQgetvalue(result, r, c)!);
      }
      rows[r] = row;
    }
    return rows;
  }

  /** Rows a write changed, from the result's command tag. */
  changes({ result }: Execution): number {
    const text = readCString(this.#lib.PQcmdTuples(result));
    return text === "" ? 0 : Number(text);
  }

  /** Frees a result of `execute`. */
  free({ result }: Execution): void {
    this.#lib.PQclear(result);
  }

  #columns(result: Deno.PointerObject): { names: string[]; oids: number[] } {
    const count = this.#lib.PQnfields(result);
    const names: string[] = [];
    const oids: number[] = [];
    for (let c = 0; c < count; c++) {
      names.push(readCString(this.#lib.PQfname(result, c)));
      oids.push(this.#lib.PQftype(result, c));
    }
    return { names, oids };
  }

  #translate(sql: string): string {
    let text = this.#translated.get(sql);
    if (text === undefined) {
      text = toPostgresSql(sql);
      // Statements built with inlined values must not grow the cache without bound.
      if (this.#translated.size >= MAX_CACHED_TRANSLATIONS) this.#translated.clear();
      this.#translated.set(sql, text);
    }
    return text;
  }

  /** The server-side statement for `text` with these values' types, prepared if new. */
  #preparedFor(text: string, params: SqlInputValue[]): Prepared {
    const typing = this.#typing.get(text) ?? 0;
    const types = typing === 0 ? binaryTypes(params) : valueTypes(params, typing === 2);
    const key = types === null ? text : `${types.join(",")}\0${text}`;
    const known = this.#prepared.get(key);
    if (known !== undefined) return known;
    try {
      return this.#prepare(key, text, types);
    } catch (error) {
      if (typing === 2 || !UNTYPED_PARAMETER_STATES.has((error as PostgresError).code)) {
        throw error;
      }
      this.#typing.set(text, typing === 0 ? 1 : 2);
      return this.#preparedFor(text, params);
    }
  }

  #prepare(key: string, text: string, types: Uint32Array | null): Prepared {
    const conn = this.#handle();
    const name = cString(`lilt_${this.#nextName++}`, "a statement name");
    // A failed prepare would abort the surrounding transaction, as any error does on
    // PostgreSQL; inside one, a savepoint keeps the transaction usable, as with SQLite.
    const inTransaction = this.#lib.PQtransactionStatus(conn) === PQTRANS_INTRANS;
    if (inTransaction) this.exec("SAVEPOINT lilt_prepare");
    const result = this.#lib.PQprepare(
      conn,
      name,
      cString(text, "SQL"),
      types?.length ?? 0,
      types,
    );
    let failure: unknown;
    try {
      this.#check(result);
    } catch (error) {
      failure = error;
    } finally {
      if (result !== null) this.#lib.PQclear(result);
    }
    if (inTransaction) {
      if (failure !== undefined) this.exec("ROLLBACK TO SAVEPOINT lilt_prepare");
      this.exec("RELEASE SAVEPOINT lilt_prepare");
    }
    if (failure !== undefined) throw failure;
    const prepared: Prepared = { name };
    this.#prepared.set(key, prepared);
    return prepared;
  }

  /** Throws the error a PQexec/PQprepare result carries. */
  #check(result: Deno.PointerValue): void {
    if (result === null) throw this.#connectionError();
    const status = this.#lib.PQresultStatus(result);
    if (
      status === PGRES_COMMAND_OK || status === PGRES_TUPLES_OK || status === PGRES_EMPTY_QUERY
    ) {
      return;
    }
    throw this.#resultError(result);
  }

  #commandStatus(result: Deno.PointerObject): string {
    return readCString(this.#lib.PQcmdStatus(result));
  }

  #resultError(result: Deno.PointerObject): PostgresError {
    const lib = this.#lib;
    const code = readCString(lib.PQresultErrorField(result, PG_DIAG_SQLSTATE));
    const primary = readCString(lib.PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY));
    const detail = readCString(lib.PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL));
    const message = primary !== ""
      ? primary
      : oneLine(readCString(lib.PQresultErrorMessage(result)));
    return this.#failure(
      message || "PostgreSQL reported an error without a message",
      code,
      detail || undefined,
    );
  }

  #connectionError(): PostgresError {
    const message = this.#conn === null
      ? ""
      : oneLine(readCString(this.#lib.PQerrorMessage(this.#conn)));
    return this.#failure(message || "libpq returned no result (out of memory?)", "08006");
  }

  /**
   * The error for a failed call; when the connection broke in it, notes whether a transaction
   * went with it, and gives libpq's own messages (no SQLSTATE) connection_failure's.
   */
  #failure(message: string, code: string, detail?: string): PostgresError {
    const conn = this.#conn;
    if (conn !== null && this.#lib.PQstatus(conn) !== CONNECTION_OK) {
      if (this.#transactionBefore) this.#lostTransaction = true;
      if (code === "") code = "08006";
    }
    return new PostgresError(message, code, detail);
  }

  /**
   * The handle for a call that talks to the server: reconnects first when the connection was
   * lost; throws while a lost transaction awaits its ROLLBACK.
   */
  #ready(): Deno.PointerObject {
    const conn = this.#handle();
    if (this.#lostTransaction) {
      throw new PostgresError(
        "The connection to PostgreSQL was lost inside a transaction, which was rolled back: " +
          "roll back before going on",
        "08006",
      );
    }
    if (this.#lib.PQstatus(conn) !== CONNECTION_OK) this.#reconnect(conn);
    this.#transactionBefore = this.#lib.PQtransactionStatus(conn) !== PQTRANS_IDLE;
    return conn;
  }

  #reconnect(conn: Deno.PointerObject): void {
    const now = performance.now();
    if (now < this.#nextReconnect) {
      throw new PostgresError(
        "Not connected to PostgreSQL: the connection was lost, and the last reconnection " +
          "failed (next attempt within a second)",
        "08006",
      );
    }
    this.#lib.PQreset(conn);
    if (this.#lib.PQstatus(conn) !== CONNECTION_OK) {
      // Each attempt may block up to connect_timeout: not on every call while the server is away.
      this.#nextReconnect = performance.now() + RECONNECT_INTERVAL_MS;
      throw new PostgresError(
        "Lost the connection to PostgreSQL and could not reconnect: " +
          oneLine(readCString(this.#lib.PQerrorMessage(conn))),
        "08001",
      );
    }
    // The new session has none of the old one's prepared statements or settings.
    this.#prepared.clear();
    log.warn("Reconnected to PostgreSQL after the connection was lost");
    for (const sql of this.#session) this.exec(sql);
  }

  #handle(): Deno.PointerObject {
    if (this.#conn === null) throw new PostgresStateError("The PostgreSQL connection is closed");
    return this.#conn;
  }
}

class PostgresStatement implements SqlStatement {
  #owner: PostgresConnection;
  #text: string;

  constructor(owner: PostgresConnection, text: string) {
    this.#owner = owner;
    this.#text = text;
  }

  /**
   * Runs the statement. `changes` is the count from the command tag; `lastInsertRowid` is
   * always 0, since PostgreSQL has no rowid (use RETURNING for a generated key).
   */
  run(...params: SqlInputValue[]): SqlRunResult {
    const execution = this.#owner.execute(this.#text, params);
    try {
      return { changes: this.#owner.changes(execution), lastInsertRowid: 0 };
    } finally {
      this.#owner.free(execution);
    }
  }

  get(...params: SqlInputValue[]): SqlRow | undefined {
    const execution = this.#owner.execute(this.#text, params);
    try {
      return this.#owner.rows(execution, 1)[0];
    } finally {
      this.#owner.free(execution);
    }
  }

  all(...params: SqlInputValue[]): SqlRow[] {
    const execution = this.#owner.execute(this.#text, params);
    try {
      return this.#owner.rows(execution, Infinity);
    } finally {
      this.#owner.free(execution);
    }
  }
}

/**
 * The parameter types to prepare with when the server infers them: null (all inferred) unless
 * a value is a byte array, which is sent in binary and must be typed bytea.
 */
function binaryTypes(params: SqlInputValue[]): Uint32Array | null {
  for (let i = 0; i < params.length; i++) {
    if (ArrayBuffer.isView(params[i])) {
      return Uint32Array.from(params, (value) => ArrayBuffer.isView(value) ? OID_BYTEA : 0);
    }
  }
  return null;
}

function valueType(value: SqlInputValue, nullAsText: boolean): number {
  if (value === null) return nullAsText ? OID_TEXT : 0;
  switch (typeof value) {
    case "number":
      return Number.isInteger(value) ? OID_INT8 : OID_FLOAT8;
    case "bigint":
      return OID_INT8;
    case "string":
      return OID_TEXT;
  }
  return OID_BYTEA;
}

/** Types from the values themselves: int8, float8, text, bytea (NULL: unknown, or text). */
function valueTypes(params: SqlInputValue[], nullAsText: boolean): Uint32Array {
  return Uint32Array.from(params, (value) => valueType(value, nullAsText));
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** A parameter's bytes: text for everything but byte arrays; null for SQL NULL. */
function encodeParameter(value: SqlInputValue, index: number): Uint8Array | null {
  if (value === null) return null;
  switch (typeof value) {
    case "number":
      return encoder.encode(Object.is(value, -0) ? "0" : String(value));
    case "bigint":
      if (value < INT64_MIN || value > INT64_MAX) {
        throw new RangeError(`BigInt value is too large to bind to parameter ${index}: ${value}`);
      }
      return encoder.encode(value.toString());
    case "string":
      if (value.includes("\0")) {
        throw new TypeError(
          `Expected text without NUL characters for PostgreSQL parameter ${index}, found one`,
        );
      }
      return encoder.encode(value);
  }
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new TypeError(`Provided value cannot be bound to PostgreSQL parameter ${index}`);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

/** Converts a column value from its text form by the column's type OID. */
function decodeValue(oid: number, pointer: Deno.PointerObject): SqlOutputValue {
  switch (oid) {
    case OID_INT2:
    case OID_INT4:
    case OID_OID:
      return Number(new Deno.UnsafePointerView(pointer).getCString());
    case OID_INT8: {
      const text = new Deno.UnsafePointerView(pointer).getCString();
      if (text.length < 16) return Number(text);
      const big = BigInt(text);
      return big > MAX_SAFE || big < MIN_SAFE ? big : Number(big);
    }
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
      return Number(new Deno.UnsafePointerView(pointer).getCString());
    case OID_BOOL:
      return new Deno.UnsafePointerView(pointer).getUint8() === 0x74 /* t */ ? 1 : 0;
    case OID_BYTEA:
      return decodeBytea(new Deno.UnsafePointerView(pointer).getCString());
  }
  return new Deno.UnsafePointerView(pointer).getCString();
}

const HEX_VALUES = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) table[48 + i] = i;
  for (let i = 0; i < 6; i++) {
    table[65 + i] = 10 + i;
    table[97 + i] = 10 + i;
  }
  return table;
})();

/** Decodes bytea's hex text output (`\x0a0b…`, PostgreSQL's default bytea_output). */
function decodeBytea(text: string): Uint8Array {
  if (!text.startsWith("\\x")) {
    throw new Error("Expected bytea in hex form ('\\x…'); set bytea_output = hex");
  }
  const length = (text.length - 2) >> 1;
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const high = HEX_VALUES[text.charCodeAt(2 + 2 * i)];
    const low = HEX_VALUES[text.charCodeAt(3 + 2 * i)];
    bytes[i] = (high << 4) | low;
  }
  return bytes;
}

/** Whether `db` is a PostgreSQL connection (without loading libpq). */
export function isPostgres(db: SqlConnection): db is PostgresConnection {
  return (db as { dialect?: string }).dialect === "postgresql";
}
