// Reads what Prosody 0.12 stored, from either of its storage backends, through one small
// interface: its internal file storage (DATA_DIR/HOST/STORE/USER.dat and .list, names
// %-encoded) and its SQL storage in SQLite (tables `prosody` and `prosodyarchive`). The importer
// (prosody_import.ts) sees the same Lua tables and stanzas from both.

import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { Element } from "../../core/xml/element.ts";
import { parseElement } from "../../core/xml/parser.ts";
import {
  luaFromJson,
  LuaSyntaxError,
  LuaTable,
  type LuaValue,
  parseLuaItems,
  parseLuaReturn,
} from "./lua_table.ts";
import { elementFromLua, luaFromElement } from "./prosody_stanza.ts";

/** The data is not Prosody's, or a file of it cannot be read; nothing was imported. */
export class ProsodyDataError extends Error {}

/** One entry of an archive store (offline messages, PEP items). */
export interface ProsodyArchiveItem {
  /** The item's key (archive id, or a PEP item id). */
  key: string;
  /** When it was stored, in seconds since the epoch (Prosody's own unit). */
  when: number | undefined;
  /** The store's "with" column (a PEP item's publisher). */
  with: string | undefined;
  /** The stored stanza. */
  value: Element;
}

/** What one Prosody storage backend holds, read-only. */
export interface ProsodyStorage {
  /** "internal" (files) or "sql" (SQLite). */
  readonly kind: "internal" | "sql";
  /** Where the data was read from (named in messages). */
  readonly location: string;
  /** The hosts that have at least one account. */
  accountHosts(): string[];
  /** The users of `host` with an account, in a stable order. */
  users(host: string): string[];
  /** A keyval (or map) store's value for one user; undefined when it holds nothing. */
  keyval(host: string, user: string, store: string): LuaTable | undefined;
  /** The hosts with a host-wide (user-less) value in `store`, such as MUC's "persistent". */
  hostsWithStore(store: string): string[];
  /** A store's host-wide value (Prosody's `store:get(nil)`); undefined when it holds nothing. */
  hostKeyval(host: string, store: string): LuaTable | undefined;
  /** The archive stores a user has entries in whose name starts with `prefix`. */
  archiveStores(host: string, user: string, prefix: string): string[];
  /** A user's entries in an archive store, oldest first. */
  archive(host: string, user: string, store: string): ProsodyArchiveItem[];
  /** Releases the database (SQL). */
  close(): void;
}

/** Prosody's datamanager name encoding: every byte but ASCII letters and digits is %xx. */
export function prosodyEncode(name: string, keep = /[A-Za-z0-9]/): string {
  return Array.from(new TextEncoder().encode(name), (b) => {
    const c = String.fromCharCode(b);
    return b < 0x80 && keep.test(c) ? c : `%${b.toString(16).padStart(2, "0")}`;
  }).join("");
}

/** Undoes {@link prosodyEncode} (and its store-name variant, which also keeps `_`). */
export function prosodyDecode(name: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const hex = name.slice(i + 1, i + 3);
    if (name[i] === "%" && /^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...new TextEncoder().encode(name[i]));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Store names keep `_` unencoded (datamanager's store_encode). */
function encodeStore(store: string): string {
  return prosodyEncode(store, /[A-Za-z0-9_]/);
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function listDir(path: string): Deno.DirEntry[] {
  try {
    return [...Deno.readDirSync(path)].sort((a, b) => a.name < b.name ? -1 : 1);
  } catch {
    return [];
  }
}

/** Prosody's internal storage: one directory per host, one per store, one file per user. */
class FileStorage implements ProsodyStorage {
  readonly kind = "internal";
  readonly location: string;

  constructor(dir: string) {
    this.location = dir;
  }

  accountHosts(): string[] {
    return listDir(this.location)
      .filter((e) => e.isDirectory && this.#hasAccounts(join(this.location, e.name)))
      .map((e) => prosodyDecode(e.name));
  }

  #hasAccounts(hostDir: string): boolean {
    return listDir(join(hostDir, "accounts")).some((e) => e.isFile && e.name.endsWith(".dat"));
  }

  users(host: string): string[] {
    return listDir(join(this.location, prosodyEncode(host), "accounts"))
      .filter((e) => e.isFile && e.name.endsWith(".dat"))
      .map((e) => prosodyDecode(e.name.slice(0, -4)));
  }

  #path(host: string, user: string, store: string, ext: string): string {
    return join(
      this.location,
      prosodyEncode(host),
      encodeStore(store),
      `${prosodyEncode(user)}.${ext}`,
    );
  }

  #read(path: string): Uint8Array | undefined {
    try {
      return Deno.readFileSync(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw new ProsodyDataError(`Cannot read ${path}: ${(error as Error).message}`);
    }
  }

  keyval(host: string, user: string, store: string): LuaTable | undefined {
    return this.#readTable(this.#path(host, user, store, "dat"));
  }

  hostsWithStore(store: string): string[] {
    return listDir(this.location)
      .filter((e) =>
        e.isDirectory && isFile(join(this.location, e.name, `${encodeStore(store)}.dat`))
      )
      .map((e) => prosodyDecode(e.name));
  }

  hostKeyval(host: string, store: string): LuaTable | undefined {
    return this.#readTable(join(this.location, prosodyEncode(host), `${encodeStore(store)}.dat`));
  }

  #readTable(path: string): LuaTable | undefined {
    const bytes = this.#read(path);
    if (bytes === undefined) return undefined;
    const value = parse(() => parseLuaReturn(bytes, { source: path }));
    if (value === undefined) return undefined;
    if (!(value instanceof LuaTable)) {
      throw new ProsodyDataError(`${path}: expected a table, found a ${typeof value}`);
    }
    return value;
  }

  archiveStores(host: string, user: string, prefix: string): string[] {
    const file = `${prosodyEncode(user)}.list`;
    return listDir(join(this.location, prosodyEncode(host)))
      .filter((e) => e.isDirectory && e.name.startsWith(encodeStore(prefix)))
      .filter((e) => isFile(join(this.location, prosodyEncode(host), e.name, file)))
      .map((e) => prosodyDecode(e.name));
  }

  archive(host: string, user: string, store: string): ProsodyArchiveItem[] {
    const path = this.#path(host, user, store, "list");
    const bytes = this.#read(path);
    if (bytes === undefined) return [];
    const items = parse(() => parseLuaItems(bytes, { source: path }));
    return items.map((item, i) => {
      const where = `${path}: item ${i + 1}`;
      if (!(item instanceof LuaTable)) throw new ProsodyDataError(`${where} is not a table`);
      const attr = item.table("attr");
      const stamp = attr?.string("stamp");
      // The store's own fields, which Prosody removes before handing the stanza out.
      const stanza = new LuaTable();
      for (const [key, value] of item.entries) {
        if (key !== "key" && key !== "when" && key !== "with") stanza.entries.set(key, value);
      }
      if (attr !== undefined) {
        const cleaned = new LuaTable();
        for (const [key, value] of attr.entries) {
          if (key !== "stamp" && key !== "stamp_legacy") cleaned.entries.set(key, value);
        }
        stanza.entries.set("attr", cleaned);
      }
      const parsedStamp = stamp === undefined ? NaN : Date.parse(stamp) / 1000;
      return {
        key: item.string("key") ?? String(i + 1),
        when: item.number("when") ?? (Number.isFinite(parsedStamp) ? parsedStamp : undefined),
        with: item.string("with"),
        value: elementFromLua(stanza, { where }),
      };
    });
  }

  close(): void {}
}

function parse<T>(run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (error instanceof LuaSyntaxError) throw new ProsodyDataError(error.message);
    throw error;
  }
}

/** Prosody's SQL storage in one SQLite file. */
class SqlStorage implements ProsodyStorage {
  readonly kind = "sql";
  readonly location: string;
  #db: DatabaseSync;
  #hasArchive: boolean;

  constructor(path: string) {
    this.location = path;
    try {
      this.#db = new DatabaseSync(path, { readOnly: true });
      const tables = new Set(
        this.#db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all()
          .map((row) => String(row.name)),
      );
      if (!tables.has("prosody")) {
        throw new ProsodyDataError(
          `${path} is not Prosody's SQL storage: it has no 'prosody' table`,
        );
      }
      this.#hasArchive = tables.has("prosodyarchive");
    } catch (error) {
      if (error instanceof ProsodyDataError) throw error;
      throw new ProsodyDataError(`Cannot read ${path} as SQLite: ${(error as Error).message}`);
    }
  }

  accountHosts(): string[] {
    return this.#db.prepare(
      "SELECT DISTINCT host FROM prosody WHERE store = 'accounts' AND user != '' ORDER BY host",
    ).all().map((row) => String(row.host));
  }

  users(host: string): string[] {
    return this.#db.prepare(
      "SELECT DISTINCT user FROM prosody WHERE host = ? AND store = 'accounts' AND user != '' " +
        "ORDER BY user",
    ).all(host).map((row) => String(row.user));
  }

  hostsWithStore(store: string): string[] {
    return this.#db.prepare(
      "SELECT DISTINCT host FROM prosody WHERE store = ? AND user = '' ORDER BY host",
    ).all(store).map((row) => String(row.host));
  }

  hostKeyval(host: string, store: string): LuaTable | undefined {
    return this.keyval(host, "", store);
  }

  keyval(host: string, user: string, store: string): LuaTable | undefined {
    const rows = this.#db.prepare(
      "SELECT key, type, value FROM prosody WHERE host = ? AND user = ? AND store = ?",
    ).all(host, user, store);
    if (rows.length === 0) return undefined;
    const table = new LuaTable();
    for (const row of rows) {
      const key = String(row.key);
      const where = `${this.location}: ${store} of ${user}@${host}, key '${key}'`;
      const raw = sqlValue(String(row.type), String(row.value), where);
      if (raw === undefined) continue;
      const value = raw instanceof Element ? luaFromElement(raw) : raw;
      if (key !== "") {
        table.entries.set(key, value);
      } else if (value instanceof LuaTable) {
        // Non-string keys (a roster's [false] metadata, a stanza's children) live under "".
        for (const [k, v] of value.entries) table.entries.set(k, v);
      }
    }
    return table;
  }

  archiveStores(host: string, user: string, prefix: string): string[] {
    if (!this.#hasArchive) return [];
    return this.#db.prepare(
      "SELECT DISTINCT store FROM prosodyarchive WHERE host = ? AND user = ? ORDER BY store",
    ).all(host, user).map((row) => String(row.store)).filter((s) => s.startsWith(prefix));
  }

  archive(host: string, user: string, store: string): ProsodyArchiveItem[] {
    if (!this.#hasArchive) return [];
    const rows = this.#db.prepare(
      'SELECT key, "when", "with", type, value FROM prosodyarchive ' +
        "WHERE host = ? AND user = ? AND store = ? ORDER BY sort_id",
    ).all(host, user, store);
    return rows.map((row) => {
      const where = `${this.location}: ${store} of ${user}@${host}, item '${row.key}'`;
      const type = String(row.type);
      if (type !== "xml") {
        throw new ProsodyDataError(`${where}: expected a stanza (type xml), found type '${type}'`);
      }
      const value = sqlValue(type, String(row.value), where) as Element;
      const when = Number(row.when);
      return {
        key: String(row.key),
        when: Number.isFinite(when) ? when : undefined,
        with: row.with === null || row.with === "" ? undefined : String(row.with),
        value,
      };
    });
  }

  close(): void {
    this.#db.close();
  }
}

/** A value of Prosody's SQL storage by its type column. */
function sqlValue(type: string, text: string, where: string): LuaValue | Element | undefined {
  switch (type) {
    case "string":
      return text;
    case "number": {
      const n = Number(text);
      if (text.trim() === "" || Number.isNaN(n)) {
        throw new ProsodyDataError(`${where}: '${text}' is not a number`);
      }
      return n;
    }
    case "boolean":
      if (text === "true") return true;
      if (text === "false") return false;
      throw new ProsodyDataError(`${where}: '${text}' is not a boolean`);
    case "json":
      try {
        return luaFromJson(JSON.parse(text));
      } catch (error) {
        throw new ProsodyDataError(`${where}: bad JSON (${(error as Error).message})`);
      }
    case "xml":
      try {
        return parseElement(text);
      } catch (error) {
        throw new ProsodyDataError(`${where}: bad XML (${(error as Error).message})`);
      }
    default:
      throw new ProsodyDataError(`${where}: unknown value type '${type}'`);
  }
}

function holdsAccounts(sqlite: string): boolean {
  try {
    const storage = new SqlStorage(sqlite);
    try {
      return storage.accountHosts().length > 0;
    } finally {
      storage.close();
    }
  } catch {
    return false;
  }
}

/** Which backend to read; "auto" decides by what DATA_DIR holds. */
export type ProsodyStorageKind = "auto" | "internal" | "sql";

/** The SQLite file Prosody's SQL storage uses by default, in its data directory. */
export const PROSODY_SQLITE = "prosody.sqlite";

/**
 * Opens Prosody's data at `path`: a data directory (internal storage, or `prosody.sqlite` in
 * it) or an SQLite file. Throws `ProsodyDataError` when it holds neither.
 */
export function openProsodyStorage(
  path: string,
  kind: ProsodyStorageKind = "auto",
): ProsodyStorage {
  if (isFile(path)) {
    if (kind === "internal") {
      throw new ProsodyDataError(`${path} is a file; internal storage is a directory`);
    }
    return new SqlStorage(path);
  }
  if (!isDirectory(path)) throw new ProsodyDataError(`${path} does not exist`);
  const sqlite = join(path, PROSODY_SQLITE);
  const files = new FileStorage(path);
  const hasFiles = files.accountHosts().length > 0;
  // An SQLite file without Prosody's accounts (left by a tool, or from an abandoned switch to
  // SQL storage) does not make the directory SQL storage.
  const hasSqlite = isFile(sqlite) && holdsAccounts(sqlite);
  if (kind === "internal" || (kind === "auto" && hasFiles && !hasSqlite)) {
    if (!hasFiles) {
      throw new ProsodyDataError(
        `${path} is not a Prosody data directory with internal storage: no ` +
          "HOST/accounts/USER.dat files",
      );
    }
    return files;
  }
  if (kind === "sql" || (kind === "auto" && hasSqlite && !hasFiles)) {
    if (!isFile(sqlite)) throw new ProsodyDataError(`${path} has no ${PROSODY_SQLITE}`);
    return new SqlStorage(sqlite);
  }
  if (hasFiles && hasSqlite) {
    throw new ProsodyDataError(
      `${path} holds both internal storage (HOST/accounts/) and ${PROSODY_SQLITE}: say which ` +
        "Prosody used with --storage internal or --storage sql",
    );
  }
  throw new ProsodyDataError(
    `${path} is not a Prosody data directory: no HOST/accounts/USER.dat files (internal ` +
      `storage) and no ${PROSODY_SQLITE} (SQL storage)`,
  );
}
