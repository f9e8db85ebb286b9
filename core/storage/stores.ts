// The three store shapes modules persist data in (Prosody's model): one JSON value per user,
// a keyed map per user, and a time-ordered archive per user (message archives, MAM).

import type { Database } from "./database.ts";
import {
  type ArchiveOptions,
  type ArchiveStore,
  deleteUserArchives,
  openArchive,
} from "./archive_store.ts";

export {
  type ArchiveItem,
  ArchiveItemNotFoundError,
  type ArchiveOptions,
  type ArchiveQuery,
  type ArchiveStore,
  MAX_ARCHIVE_IDS,
} from "./archive_store.ts";

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
  archive(host: string, store: string, options?: ArchiveOptions): ArchiveStore {
    return openArchive(this.#database, host, store, options);
  }

  /** Deletes everything `user` of `host` has in every key-value, map and archive store. */
  deleteUser(host: string, user: string): void {
    const database = this.#database;
    database.transaction(() => {
      database.prepare("DELETE FROM kv WHERE host = ? AND user = ?").run(host, user);
      database.prepare("DELETE FROM map WHERE host = ? AND user = ?").run(host, user);
      deleteUserArchives(database, host, user);
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
