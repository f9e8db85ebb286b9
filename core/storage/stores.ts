// The three store shapes modules persist data in (Prosody's model): one JSON value per user,
// a keyed map per user, and a time-ordered archive per user (message archives, MAM).

import type { SQLInputValue } from "node:sqlite";
import type { Database } from "./database.ts";

/** One JSON value per (host, user, store); `user` is "" for host-level data. */
export interface KeyValueStore<T = unknown> {
  /** The stored value, or undefined when there is none. */
  get(user: string): T | undefined;
  /** Stores `value` (JSON-serialisable); undefined deletes it. */
  set(user: string, value: T | undefined): void;
}

/** Many JSON values per (host, user, store), one per key. */
export interface MapStore<T = unknown> {
  /** The value under `key`, or undefined. */
  get(user: string, key: string): T | undefined;
  /** Stores `value` under `key`; undefined deletes the key. */
  set(user: string, key: string, value: T | undefined): void;
  /** Every key and value of `user`, ordered by key. */
  getAll(user: string): Map<string, T>;
  /** How many keys `user` has (without reading their values). */
  count(user: string): number;
  /** Removes every key of `user`. */
  deleteAll(user: string): void;
}

/** One archived item (typically a stanza's XML text). */
export interface ArchiveItem {
  /** Random URL-safe id, unique per (host, user, store). */
  id: string;
  /** When it happened, ms since the epoch. */
  when: number;
  /** The other party (the MAM module decides: usually the bare JID); "" when none. */
  with: string;
  /** Free-form kind, e.g. "chat" or "groupchat"; "" when none. */
  type: string;
  /** The stored text. */
  payload: string;
}

/**
 * Which archive items to select. Items are ordered by (`when`, insertion); every field
 * narrows the selection.
 */
export interface ArchiveQuery {
  /** Only items with `when >= start` (ms). */
  start?: number;
  /** Only items with `when <= end` (ms). */
  end?: number;
  /** Only items whose `with` equals this exactly. */
  with?: string;
  /** Only items strictly before the item with this id (throws if it does not exist). */
  before?: string;
  /** Only items strictly after the item with this id (throws if it does not exist). */
  after?: string;
  /** Only items with one of these ids. */
  ids?: string[];
  /** At most this many items (counted from the newest end when `reverse`). */
  limit?: number;
  /** Newest first: with `limit`, the last `limit` items, newest first. */
  reverse?: boolean;
}

/** A per-user, time-ordered archive. */
export interface ArchiveStore {
  /**
   * Appends an item and returns its id: `item.id` if given (replacing an item with that id),
   * else a new random one. `when` defaults to now, `with` and `type` to "".
   */
  append(user: string, item: Partial<ArchiveItem> & { payload: string }): string;
  /** The matching items, oldest first (newest first when `query.reverse`). */
  find(user: string, query?: ArchiveQuery): ArchiveItem[];
  /** How many items match, ignoring `limit` and `reverse`. */
  count(user: string, query?: ArchiveQuery): number;
  /**
   * How many items match, counting no further than `max`: a quota check that costs at most
   * `max` steps however large the archive is.
   */
  countUpTo(user: string, max: number, query?: ArchiveQuery): number;
  /** Deletes the matching items (the oldest `limit`, or newest with `reverse`); returns how many. */
  delete(user: string, query?: ArchiveQuery): number;
  /** The stored size of the matching items' payloads, in bytes (UTF-8). */
  bytes(user: string, query?: ArchiveQuery): number;
}

/** `before` or `after` named an archive item that does not exist (MAM: item-not-found). */
export class ArchiveItemNotFoundError extends Error {
  /** The id that was not found. */
  readonly id: string;
  /** Creates the error for `id`. */
  constructor(id: string) {
    super(`Expected an archive item with id '${id}', found none`);
    this.id = id;
  }
}

/**
 * Opens the stores of each host. Store objects are cheap; statements are cached by the
 * database, so open a store where it is needed.
 *
 * @example
 * ```ts
 * const storage = new Storage(database);
 * const vcards = storage.keyval<string>("example.com", "vcard");
 * vcards.set("juliet", "<vCard xmlns='vcard-temp'/>");
 * ```
 */
export class Storage {
  #database: Database;

  /** Wraps an open, migrated database. */
  constructor(db: Database) {
    this.#database = db;
  }

  /** The key-value store `store` of `host`. */
  keyval<T = unknown>(host: string, store: string): KeyValueStore<T> {
    return new SqlKeyValueStore<T>(this.#database, host, store);
  }

  /** The map store `store` of `host`. */
  map<T = unknown>(host: string, store: string): MapStore<T> {
    return new SqlMapStore<T>(this.#database, host, store);
  }

  /** The archive store `store` of `host`. */
  archive(host: string, store: string): ArchiveStore {
    return new SqlArchiveStore(this.#database, host, store);
  }

  /** Deletes everything `user` of `host` has in every key-value, map and archive store. */
  deleteUser(host: string, user: string): void {
    const database = this.#database;
    database.transaction(() => {
      database.prepare("DELETE FROM kv WHERE host = ? AND user = ?").run(host, user);
      database.prepare("DELETE FROM map WHERE host = ? AND user = ?").run(host, user);
      database.prepare("DELETE FROM archive WHERE host = ? AND user = ?").run(host, user);
    });
  }
}

function encode(value: unknown, where: string): string {
  const text = JSON.stringify(value);
  if (text === undefined) {
    throw new TypeError(`Expected a JSON-serialisable value for ${where}, found ${typeof value}`);
  }
  return text;
}

/** What every store kind shares: the database and the (host, store) rows it works on. */
abstract class ScopedStore {
  constructor(
    protected readonly database: Database,
    protected readonly host: string,
    protected readonly store: string,
  ) {}
}

class SqlKeyValueStore<T> extends ScopedStore implements KeyValueStore<T> {
  get(user: string): T | undefined {
    const row = this.database
      .prepare("SELECT value FROM kv WHERE host = ? AND user = ? AND store = ?")
      .get(this.host, user, this.store) as { value: string } | undefined;
    return row === undefined ? undefined : JSON.parse(row.value) as T;
  }

  set(user: string, value: T | undefined): void {
    const encoded = value === undefined ? undefined : encode(value, `store '${this.store}'`);
    this.database.batchWrites();
    if (encoded === undefined) {
      this.database
        .prepare("DELETE FROM kv WHERE host = ? AND user = ? AND store = ?")
        .run(this.host, user, this.store);
      return;
    }
    this.database
      .prepare(
        "INSERT INTO kv (host, user, store, value) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (host, user, store) DO UPDATE SET value = excluded.value",
      )
      .run(this.host, user, this.store, encoded);
  }
}

class SqlMapStore<T> extends ScopedStore implements MapStore<T> {
  get(user: string, key: string): T | undefined {
    const row = this.database
      .prepare("SELECT value FROM map WHERE host = ? AND user = ? AND store = ? AND key = ?")
      .get(this.host, user, this.store, key) as { value: string } | undefined;
    return row === undefined ? undefined : JSON.parse(row.value) as T;
  }

  set(user: string, key: string, value: T | undefined): void {
    const encoded = value === undefined ? undefined : encode(value, `key '${key}'`);
    this.database.batchWrites();
    if (encoded === undefined) {
      this.database
        .prepare("DELETE FROM map WHERE host = ? AND user = ? AND store = ? AND key = ?")
        .run(this.host, user, this.store, key);
      return;
    }
    this.database
      .prepare(
        "INSERT INTO map (host, user, store, key, value) VALUES (?, ?, ?, ?, ?) " +
          "ON CONFLICT (host, user, store, key) DO UPDATE SET value = excluded.value",
      )
      .run(this.host, user, this.store, key, encoded);
  }

  getAll(user: string): Map<string, T> {
    const rows = this.database
      .prepare("SELECT key, value FROM map WHERE host = ? AND user = ? AND store = ? ORDER BY key")
      .all(this.host, user, this.store) as { key: string; value: string }[];
    return new Map(rows.map((row) => [row.key, JSON.parse(row.value) as T]));
  }

  count(user: string): number {
    const row = this.database
      .prepare("SELECT count(*) AS n FROM map WHERE host = ? AND user = ? AND store = ?")
      .get(this.host, user, this.store) as { n: number };
    return row.n;
  }

  deleteAll(user: string): void {
    this.database.batchWrites();
    this.database
      .prepare("DELETE FROM map WHERE host = ? AND user = ? AND store = ?")
      .run(this.host, user, this.store);
  }
}

interface ArchiveRow {
  key: string;
  when_ms: number;
  with_jid: string;
  type: string;
  payload: string;
}

/** A WHERE clause (without the keyword) and its parameters. */
interface Selection {
  where: string;
  params: SQLInputValue[];
}

const ID_BYTES = 12; // 16 base64url characters, 96 random bits

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(ID_BYTES));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

/** True when a query selects a user's whole archive (its limit and order do not count). */
function isWholeArchive(query: ArchiveQuery): boolean {
  return query.start === undefined && query.end === undefined && query.with === undefined &&
    query.before === undefined && query.after === undefined && query.ids === undefined;
}

class SqlArchiveStore extends ScopedStore implements ArchiveStore {
  append(user: string, item: Partial<ArchiveItem> & { payload: string }): string {
    const when = item.when ?? Date.now();
    if (!Number.isSafeInteger(when)) {
      throw new TypeError(`Expected an archive time in integer ms, found ${when}`);
    }
    const params = [when, item.with ?? "", item.type ?? "", item.payload];
    this.database.batchWrites();
    if (item.id !== undefined) {
      if (item.id === "") throw new TypeError("Expected a non-empty archive item id, found ''");
      this.database
        .prepare(
          "INSERT INTO archive (host, user, store, key, when_ms, with_jid, type, payload) " +
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, user, store, key) DO UPDATE SET " +
            "when_ms = excluded.when_ms, with_jid = excluded.with_jid, type = excluded.type, " +
            "payload = excluded.payload",
        )
        .run(this.host, user, this.store, item.id, ...params);
      return item.id;
    }
    const insert = this.database.prepare(
      "INSERT INTO archive (host, user, store, key, when_ms, with_jid, type, payload) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    for (;;) {
      // A collision of 96 random bits will not happen, but costs nothing to handle.
      const id = randomId();
      if (insert.run(this.host, user, this.store, id, ...params).changes === 1) return id;
    }
  }

  find(user: string, query: ArchiveQuery = {}): ArchiveItem[] {
    const { where, params } = this.#select(user, query);
    const sql = "SELECT key, when_ms, with_jid, type, payload FROM archive WHERE " + where +
      orderAndLimit(query, params);
    const rows = this.database.prepare(sql).all(...params) as unknown as ArchiveRow[];
    return rows.map((row) => ({
      id: row.key,
      when: row.when_ms,
      with: row.with_jid,
      type: row.type,
      payload: row.payload,
    }));
  }

  countUpTo(user: string, max: number, query: ArchiveQuery = {}): number {
    if (isWholeArchive(query)) return Math.min(this.#total(user), Math.max(0, Math.floor(max)));
    const { where, params } = this.#select(user, query);
    const row = this.database
      .prepare("SELECT count(*) AS n FROM (SELECT 1 FROM archive WHERE " + where + " LIMIT ?)")
      .get(...params, Math.max(0, Math.floor(max))) as { n: number };
    return row.n;
  }

  count(user: string, query: ArchiveQuery = {}): number {
    if (isWholeArchive(query)) return this.#total(user);
    const { where, params } = this.#select(user, query);
    const row = this.database.prepare("SELECT count(*) AS n FROM archive WHERE " + where)
      .get(...params) as { n: number };
    return row.n;
  }

  delete(user: string, query: ArchiveQuery = {}): number {
    const { where, params } = this.#select(user, query);
    this.database.batchWrites();
    let sql = "DELETE FROM archive WHERE " + where;
    if (query.limit !== undefined) {
      sql = "DELETE FROM archive WHERE id IN (SELECT id FROM archive WHERE " + where +
        orderAndLimit(query, params) + ")";
    }
    return Number(this.database.prepare(sql).run(...params).changes);
  }

  bytes(user: string, query: ArchiveQuery = {}): number {
    const { where, params } = this.#select(user, query);
    const row = this.database
      .prepare(
        "SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) AS n FROM archive WHERE " +
          where,
      )
      .get(...params) as { n: number };
    return row.n;
  }

  /** Every item of `user` in this store, from the count the triggers keep. */
  #total(user: string): number {
    const row = this.database
      .prepare("SELECT n FROM archive_counts WHERE host = ? AND user = ? AND store = ?")
      .get(this.host, user, this.store) as { n: number } | undefined;
    return row?.n ?? 0;
  }

  #select(user: string, query: ArchiveQuery): Selection {
    const conditions = ["host = ?", "user = ?", "store = ?"];
    const params: SQLInputValue[] = [this.host, user, this.store];
    if (query.start !== undefined) {
      conditions.push("when_ms >= ?");
      params.push(query.start);
    }
    if (query.end !== undefined) {
      conditions.push("when_ms <= ?");
      params.push(query.end);
    }
    if (query.with !== undefined) {
      conditions.push("with_jid = ?");
      params.push(query.with);
    }
    if (query.ids !== undefined) {
      // One parameter whatever the number of ids, so the statement text stays cacheable.
      conditions.push("key IN (SELECT value FROM json_each(?))");
      params.push(JSON.stringify(query.ids));
    }
    if (query.after !== undefined) {
      const anchor = this.#anchor(user, query.after);
      conditions.push("(when_ms, id) > (?, ?)");
      params.push(anchor.when_ms, anchor.id);
    }
    if (query.before !== undefined) {
      const anchor = this.#anchor(user, query.before);
      conditions.push("(when_ms, id) < (?, ?)");
      params.push(anchor.when_ms, anchor.id);
    }
    return { where: conditions.join(" AND "), params };
  }

  #anchor(user: string, key: string): { when_ms: number; id: number } {
    const row = this.database
      .prepare(
        "SELECT when_ms, id FROM archive WHERE host = ? AND user = ? AND store = ? AND key = ?",
      )
      .get(this.host, user, this.store, key) as { when_ms: number; id: number } | undefined;
    if (row === undefined) throw new ArchiveItemNotFoundError(key);
    return row;
  }
}

/** The ORDER BY and LIMIT clauses of `query`; appends the limit to `params`. */
function orderAndLimit(query: ArchiveQuery, params: SQLInputValue[]): string {
  let sql = query.reverse ? " ORDER BY when_ms DESC, id DESC" : " ORDER BY when_ms, id";
  if (query.limit !== undefined) {
    if (!Number.isSafeInteger(query.limit) || query.limit < 0) {
      throw new RangeError(`Expected a non-negative integer archive limit, found ${query.limit}`);
    }
    sql += " LIMIT ?";
    params.push(query.limit);
  }
  return sql;
}
