// The archive store (message archives, offline messages): items are numbered per owner and
// appended through a write-behind queue, so the relay path pays an array push and the disk
// sees one transaction per moment of traffic instead of one per stanza.

import type { SQLInputValue } from "node:sqlite";
import type { Database } from "./database.ts";
import { getLogger } from "../log.ts";

const log = getLogger("storage");

/** One archived item (typically a stanza's XML text). */
export interface ArchiveItem {
  /**
   * Opaque id, unique and never reused within its archive: `<when>-<seq>.<tag>`, the time
   * and per-archive sequence number that find the row, and 48 random bits.
   */
  id: string;
  /** When it happened, ms since the epoch. */
  when: number;
  /** The other party as a bare or full JID (the module decides); "" when none. */
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
  /**
   * Only items with this party: a bare JID matches every resource of it, a full JID (with a
   * `/resource`) only that resource (XEP-0313 §4.1.1).
   */
  with?: string;
  /** Only items strictly before the item with this id (throws if it does not exist). */
  before?: string;
  /** Only items strictly after the item with this id (throws if it does not exist). */
  after?: string;
  /** Only items with one of these ids (at most MAX_ARCHIVE_IDS; more throw a RangeError). */
  ids?: string[];
  /** At most this many items (counted from the newest end when `reverse`). */
  limit?: number;
  /** Newest first: with `limit`, the last `limit` items, newest first. */
  reverse?: boolean;
}

/**
 * The most ids one `ArchiveQuery` may list: each is two statement parameters, and SQLite
 * takes at most 32,766 parameters (PostgreSQL 65,535).
 */
export const MAX_ARCHIVE_IDS = 15 * 1024;

/** A per-user, time-ordered archive. */
export interface ArchiveStore {
  /**
   * Appends an item and returns its new id at once; the row reaches the database with the
   * next batch (every read of the archive sees it). `when` defaults to now, `with` and
   * `type` to "".
   */
  append(user: string, item: Omit<Partial<ArchiveItem>, "id"> & { payload: string }): string;
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
  /**
   * Replaces the payload (and `type`, when given) of the item with this id, keeping its id
   * and time: a tombstone for a retracted message. Returns false when there is no such item.
   */
  replace(user: string, id: string, payload: string, type?: string): boolean;
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

/** How long a message archive's appended item waits in memory at most (see `ArchiveOptions`). */
export const ARCHIVE_FLUSH_DELAY_MS = 100;

/** Options for opening an archive store. */
export interface ArchiveOptions {
  /**
   * How long appended items may wait in memory before they are written, in ms. 0 (the
   * default) writes them when the current task ends, as the other stores do: for data that
   * exists nowhere else (offline messages). A message archive, whose items were also
   * delivered, uses ARCHIVE_FLUSH_DELAY_MS so busy moments share one transaction; a crash
   * loses at most that much of it.
   */
  writeBehindMs?: number;
}
/** Pending items that make the batch be written at once. */
const FLUSH_AT_ITEMS = 4096;
/** Owners remembered without pending items before the cache is trimmed. */
const OWNER_CACHE_SIZE = 50_000;

/** One archive (host, user, store): its row id once written, and the next sequence number. */
interface Owner {
  key: string;
  host: string;
  user: string;
  store: string;
  /** archive_owners.id, undefined until the first batch that writes for it. */
  id: number | undefined;
  nextSeq: number;
  /** Items appended since the last batch (added to archive_owners.items when written). */
  pending: number;
}

interface PendingItem {
  owner: Owner;
  seq: number;
  tag: string;
  when: number;
  withJid: string;
  withResource: string;
  type: string;
  payload: string;
  /** A batch with this item failed once already (the next failure drops it). */
  retried?: boolean;
}

interface ItemRow {
  seq: number;
  tag: string;
  when_ms: number;
  with_jid: string;
  with_resource: string;
  type: string;
  payload: string;
}

/**
 * The write-behind queue of one database's archives: ids are handed out at append, rows are
 * written by `flush` (after ARCHIVE_FLUSH_DELAY_MS, at FLUSH_AT_ITEMS, before any read or
 * delete of an archive, and when the database closes or is backed up).
 */
class ArchiveWriter {
  readonly #database: Database;
  #owners = new Map<string, Owner>();
  #pending: PendingItem[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the scheduled flush is due (ms epoch), while one is. */
  #flushDueAt: number | undefined;
  #tags = "";

  constructor(database: Database) {
    this.#database = database;
    database.addFlusher(() => this.flush());
  }

  /** The owner record of (host, user, store), read from the database on first use. */
  owner(host: string, user: string, store: string): Owner {
    const key = `${host}\n${user}\n${store}`;
    let owner = this.#owners.get(key);
    if (owner === undefined) {
      if (this.#owners.size >= OWNER_CACHE_SIZE) this.#trim();
      const row = this.#database
        .prepare(
          "SELECT id, next_seq FROM archive_owners WHERE host = ? AND user = ? AND store = ?",
        )
        .get(host, user, store) as { id: number; next_seq: number } | undefined;
      owner = { key, host, user, store, id: row?.id, nextSeq: row?.next_seq ?? 1, pending: 0 };
      this.#owners.set(key, owner);
    }
    return owner;
  }

  /** Queues one item and returns its id. */
  append(
    owner: Owner,
    item: Omit<PendingItem, "owner" | "seq" | "tag">,
    writeBehindMs: number,
  ): string {
    const seq = owner.nextSeq++;
    const tag = this.#tag();
    owner.pending++;
    this.#pending.push({ owner, seq, tag, ...item });
    if (this.#pending.length >= FLUSH_AT_ITEMS) {
      this.flush();
    } else if (writeBehindMs <= 0) {
      // Written now, in the transaction the current task's other writes share.
      this.#database.batchWrites();
      this.flush();
    } else {
      this.#flushLater();
    }
    return `${item.when}-${seq}.${tag}`;
  }

  /** Makes sure a flush runs within ARCHIVE_FLUSH_DELAY_MS. */
  #flushLater(): void {
    if (this.#timer !== undefined) return;
    const timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, ARCHIVE_FLUSH_DELAY_MS);
    Deno.unrefTimer(timer);
    this.#timer = timer;
    this.#flushDueAt = Date.now() + ARCHIVE_FLUSH_DELAY_MS;
  }

  /** Items waiting to be written, and when the scheduled flush is due (`debug timers`). */
  get state(): ArchiveWriteBehind {
    return {
      queued: this.#pending.length,
      flushDueAt: this.#timer === undefined ? null : this.#flushDueAt ?? null,
    };
  }

  /**
   * Writes every queued item in one transaction. When that fails (a full disk), the items
   * stay queued for one more try a moment later; items whose second try fails are dropped,
   * and both are logged as errors.
   */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#pending.length === 0) return;
    const items = this.#pending;
    this.#pending = [];
    const database = this.#database;
    const touched = new Set<Owner>();
    const created: Owner[] = [];
    const stale: Owner[] = [];
    try {
      for (const item of items) touched.add(item.owner);
      // Owner rows are locked (made, then updated) before any item is written, in one order
      // (by key) on every node: two cluster nodes writing batches for the same two accounts
      // at once (a message archived by both parties, from each side) would otherwise each
      // hold one row and wait for the other's, until PostgreSQL's deadlock check aborts one.
      const owners = [...touched].sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
      database.transaction(() => {
        // CASE rather than SQLite's two-argument max(), which PostgreSQL lacks.
        const update = database.prepare(
          "UPDATE archive_owners SET items = items + ?, " +
            "next_seq = CASE WHEN next_seq > ? THEN next_seq ELSE ? END WHERE id = ?",
        );
        for (const owner of owners) {
          if (owner.id === undefined) {
            owner.id = this.#createOwner(owner);
            created.push(owner);
          }
          const changes =
            update.run(owner.pending, owner.nextSeq, owner.nextSeq, owner.id!).changes;
          if (Number(changes) === 0) {
            // Its row went away under us (an outer transaction rolled back after it was
            // made): write the batch again under a new one.
            stale.push(owner);
            throw new Error(`the archive owner row of ${owner.user}@${owner.host} is gone`);
          }
        }
        const insert = database.prepare(
          "INSERT INTO archive_items " +
            "(owner, seq, tag, when_ms, with_jid, with_resource, type, payload) " +
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        );
        for (const item of items) {
          const owner = item.owner;
          insert.run(
            owner.id!,
            item.seq,
            item.tag,
            item.when,
            item.withJid,
            item.withResource,
            item.type,
            item.payload,
          );
        }
      });
      for (const owner of touched) owner.pending = 0;
    } catch (error) {
      // The transaction rolled back: owners created in it do not exist.
      for (const owner of [...created, ...stale]) owner.id = undefined;
      const retry: PendingItem[] = [];
      for (const item of items) {
        if (item.retried) {
          item.owner.pending--;
        } else {
          item.retried = true;
          retry.push(item);
        }
      }
      this.#pending = retry.concat(this.#pending);
      if (retry.length > 0) this.#flushLater();
      log.error(
        "Could not write {n} archived items ({dropped} dropped, {kept} kept for one more try): {error}",
        {
          n: items.length,
          dropped: items.length - retry.length,
          kept: retry.length,
          error: error instanceof Error ? error.message : String(error),
        },
      );
    }
  }

  /** Forgets the owners of (host, user) after their rows were deleted. */
  forgetUser(host: string, user: string): void {
    for (const [key, owner] of this.#owners) {
      if (owner.host === host && owner.user === user) this.#owners.delete(key);
    }
  }

  #createOwner(owner: Owner): number {
    const row = this.#database
      .prepare(
        "INSERT INTO archive_owners (host, user, store, items, next_seq) VALUES (?, ?, ?, 0, 1) " +
          "ON CONFLICT (host, user, store) DO UPDATE SET host = excluded.host RETURNING id",
      )
      .get(owner.host, owner.user, owner.store) as { id: number };
    return row.id;
  }

  /** Drops cached owners that wait for nothing (they are read again when used). */
  #trim(): void {
    for (const [key, owner] of this.#owners) {
      if (owner.pending === 0) this.#owners.delete(key);
    }
  }

  /** 8 random URL-safe characters (48 bits), cut from a pool refilled 4 KiB at a time. */
  #tag(): string {
    if (this.#tags.length < 8) {
      const bytes = crypto.getRandomValues(new Uint8Array(3072));
      let binary = "";
      for (const byte of bytes) binary += String.fromCharCode(byte);
      this.#tags = btoa(binary).replaceAll("+", "-").replaceAll("/", "_");
    }
    const tag = this.#tags.slice(0, 8);
    this.#tags = this.#tags.slice(8);
    return tag;
  }
}

const writers = new WeakMap<Database, ArchiveWriter>();

/** The archive write-behind queue of a database: what `debug timers` shows of it. */
export interface ArchiveWriteBehind {
  /** Archive items accepted but not yet written. */
  queued: number;
  /** When the flush that writes them is due (ms epoch), or null when none is scheduled. */
  flushDueAt: number | null;
}

/** The write-behind queue of a database's archives (empty before any archive write). */
export function archiveWriteBehind(database: Database): ArchiveWriteBehind {
  return writers.get(database)?.state ?? { queued: 0, flushDueAt: null };
}

function writerOf(database: Database): ArchiveWriter {
  let writer = writers.get(database);
  if (writer === undefined) {
    writer = new ArchiveWriter(database);
    writers.set(database, writer);
  }
  return writer;
}

/** Deletes every archive of (host, user), queued items included. */
export function deleteUserArchives(database: Database, host: string, user: string): void {
  const writer = writerOf(database);
  writer.flush();
  database.prepare(
    "DELETE FROM archive_items WHERE owner IN " +
      "(SELECT id FROM archive_owners WHERE host = ? AND user = ?)",
  ).run(host, user);
  database.prepare("DELETE FROM archive_owners WHERE host = ? AND user = ?").run(host, user);
  writer.forgetUser(host, user);
}

/** The archive `store` of `host` in `database`. */
export function openArchive(
  database: Database,
  host: string,
  store: string,
  options: ArchiveOptions = {},
): ArchiveStore {
  const writeBehindMs = options.writeBehindMs ?? 0;
  if (!Number.isFinite(writeBehindMs) || writeBehindMs < 0) {
    throw new RangeError(`Expected writeBehindMs >= 0, found ${writeBehindMs}`);
  }
  return new SqlArchiveStore(database, writerOf(database), host, store, writeBehindMs);
}

/** A WHERE clause (without the keyword) and its parameters. */
interface Selection {
  where: string;
  params: SQLInputValue[];
}

const ID = /^(0|[1-9][0-9]{0,15})-([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{1,32})$/;

/** An item id split into its time, sequence number and tag, or undefined when malformed. */
function parseId(id: string): { when: number; seq: number; tag: string } | undefined {
  const match = ID.exec(id);
  if (match === null) return undefined;
  const when = Number(match[1]);
  const seq = Number(match[2]);
  if (!Number.isSafeInteger(when) || !Number.isSafeInteger(seq)) return undefined;
  return { when, seq, tag: match[3] };
}

/** The id of a stored row. */
function idOf(row: { when_ms: number; seq: number; tag: string }): string {
  return `${row.when_ms}-${row.seq}.${row.tag}`;
}

/** Splits a JID string into its bare part and resource ("" when none). */
function splitJid(jid: string): [string, string] {
  const slash = jid.indexOf("/");
  return slash < 0 ? [jid, ""] : [jid.slice(0, slash), jid.slice(slash + 1)];
}

/** True when a query selects a user's whole archive (its limit and order do not count). */
function isWholeArchive(query: ArchiveQuery): boolean {
  return query.start === undefined && query.end === undefined && query.with === undefined &&
    query.before === undefined && query.after === undefined && query.ids === undefined;
}

class SqlArchiveStore implements ArchiveStore {
  constructor(
    private readonly database: Database,
    private readonly writer: ArchiveWriter,
    private readonly host: string,
    private readonly store: string,
    private readonly writeBehindMs: number,
  ) {}

  append(user: string, item: Omit<Partial<ArchiveItem>, "id"> & { payload: string }): string {
    const when = item.when ?? Date.now();
    if (!Number.isSafeInteger(when) || when < 0) {
      throw new TypeError(`Expected an archive time in integer ms since 1970, found ${when}`);
    }
    const [withJid, withResource] = splitJid(item.with ?? "");
    return this.writer.append(this.writer.owner(this.host, user, this.store), {
      when,
      withJid,
      withResource,
      type: item.type ?? "",
      payload: item.payload,
    }, this.writeBehindMs);
  }

  find(user: string, query: ArchiveQuery = {}): ArchiveItem[] {
    const selection = this.#select(user, query);
    if (selection === undefined) return [];
    const { where, params } = selection;
    const sql =
      "SELECT seq, tag, when_ms, with_jid, with_resource, type, payload FROM archive_items " +
      "WHERE " + where + orderAndLimit(query, params);
    const rows = this.database.prepare(sql).all(...params) as unknown as ItemRow[];
    return rows.map((row) => ({
      id: idOf(row),
      when: row.when_ms,
      with: row.with_resource === "" ? row.with_jid : `${row.with_jid}/${row.with_resource}`,
      type: row.type,
      payload: row.payload,
    }));
  }

  countUpTo(user: string, max: number, query: ArchiveQuery = {}): number {
    const limit = Math.max(0, Math.floor(max));
    if (isWholeArchive(query)) return Math.min(this.#total(user), limit);
    const selection = this.#select(user, query);
    if (selection === undefined) return 0;
    const row = this.database
      .prepare(
        "SELECT count(*) AS n FROM (SELECT 1 FROM archive_items WHERE " + selection.where +
          " LIMIT ?) AS matched",
      )
      .get(...selection.params, limit) as { n: number };
    return row.n;
  }

  count(user: string, query: ArchiveQuery = {}): number {
    if (isWholeArchive(query)) return this.#total(user);
    const selection = this.#select(user, query);
    if (selection === undefined) return 0;
    const row = this.database
      .prepare("SELECT count(*) AS n FROM archive_items WHERE " + selection.where)
      .get(...selection.params) as { n: number };
    return row.n;
  }

  delete(user: string, query: ArchiveQuery = {}): number {
    const selection = this.#select(user, query);
    if (selection === undefined) return 0;
    const { where, params } = selection;
    let sql = "DELETE FROM archive_items WHERE " + where;
    if (query.limit !== undefined) {
      sql = "DELETE FROM archive_items WHERE id IN (SELECT id FROM archive_items WHERE " +
        where + orderAndLimit(query, params) + ")";
    }
    const owner = this.writer.owner(this.host, user, this.store);
    return this.database.transaction(() => {
      const deleted = Number(this.database.prepare(sql).run(...params).changes);
      if (deleted > 0) {
        this.database.prepare("UPDATE archive_owners SET items = items - ? WHERE id = ?")
          .run(deleted, owner.id!);
      }
      return deleted;
    });
  }

  bytes(user: string, query: ArchiveQuery = {}): number {
    const selection = this.#select(user, query);
    if (selection === undefined) return 0;
    // The engines name the UTF-8 length differently: SQLite before 3.43 (an older SQLCipher)
    // has no octet_length(), and PostgreSQL's CAST to bytea reads backslashes as escapes.
    const byteLength = this.database.dialect === "postgresql"
      ? "octet_length(payload)"
      : "length(CAST(payload AS BLOB))";
    const row = this.database
      .prepare(
        `SELECT coalesce(sum(${byteLength}), 0) AS n FROM archive_items WHERE ` +
          selection.where,
      )
      .get(...selection.params) as { n: number };
    return Number(row.n);
  }

  replace(user: string, id: string, payload: string, type?: string): boolean {
    const parsed = parseId(id);
    if (parsed === undefined || this.#select(user, {}) === undefined) return false;
    const owner = this.writer.owner(this.host, user, this.store);
    const changes = this.database.prepare(
      "UPDATE archive_items SET payload = ?, type = coalesce(?, type) " +
        "WHERE owner = ? AND when_ms = ? AND seq = ? AND tag = ?",
    ).run(payload, type ?? null, owner.id!, parsed.when, parsed.seq, parsed.tag).changes;
    return Number(changes) > 0;
  }

  /** Every item of `user` in this store, written or queued. */
  #total(user: string): number {
    const owner = this.writer.owner(this.host, user, this.store);
    if (owner.id === undefined) return owner.pending;
    const row = this.database.prepare("SELECT items FROM archive_owners WHERE id = ?")
      .get(owner.id) as { items: number } | undefined;
    return (row?.items ?? 0) + owner.pending;
  }

  /**
   * The rows `query` selects, after writing the queued items; undefined when the archive has
   * never been written (nothing can match). Throws ArchiveItemNotFoundError for an unknown
   * `before`/`after` id, RangeError for more than MAX_ARCHIVE_IDS ids.
   */
  #select(user: string, query: ArchiveQuery): Selection | undefined {
    if (query.ids !== undefined && query.ids.length > MAX_ARCHIVE_IDS) {
      throw new RangeError(
        `Expected at most ${MAX_ARCHIVE_IDS} archive ids in one query, found ${query.ids.length}`,
      );
    }
    this.writer.flush();
    const owner = this.writer.owner(this.host, user, this.store);
    if (owner.id === undefined) {
      const missing = query.after ?? query.before;
      if (missing !== undefined) throw new ArchiveItemNotFoundError(missing);
      return undefined;
    }
    /** True when no row can match (an id list without a well-formed id). */
    let nothing = false;
    const conditions = ["owner = ?"];
    const params: SQLInputValue[] = [owner.id];
    if (query.start !== undefined) {
      conditions.push("when_ms >= ?");
      params.push(query.start);
    }
    if (query.end !== undefined) {
      conditions.push("when_ms <= ?");
      params.push(query.end);
    }
    if (query.with !== undefined) {
      const [bare, resource] = splitJid(query.with);
      conditions.push("with_jid = ?");
      params.push(bare);
      if (resource !== "") {
        conditions.push("with_resource = ?");
        params.push(resource);
      }
    }
    if (query.ids !== undefined) {
      // The times find the rows through the time index, the whole id (with its tag) must match.
      const ids = query.ids.filter((id) => parseId(id) !== undefined);
      if (ids.length === 0) {
        nothing = true;
      } else {
        const padded = padIds(ids);
        const list = new Array(padded.length).fill("?").join(", ");
        conditions.push(
          `when_ms IN (${list}) AND (when_ms || '-' || seq || '.' || tag) IN (${list})`,
        );
        params.push(...padded.map((id) => parseId(id)!.when), ...padded);
      }
    }
    if (query.after !== undefined) {
      const anchor = this.#anchor(owner.id, query.after);
      conditions.push("(when_ms, id) > (?, ?)");
      params.push(anchor.when_ms, anchor.id);
    }
    if (query.before !== undefined) {
      const anchor = this.#anchor(owner.id, query.before);
      conditions.push("(when_ms, id) < (?, ?)");
      params.push(anchor.when_ms, anchor.id);
    }
    return nothing ? undefined : { where: conditions.join(" AND "), params };
  }

  #anchor(owner: number, id: string): { when_ms: number; id: number } {
    const parsed = parseId(id);
    const row = parsed === undefined ? undefined : this.database
      .prepare(
        "SELECT when_ms, id FROM archive_items " +
          "WHERE owner = ? AND when_ms = ? AND seq = ? AND tag = ?",
      )
      .get(owner, parsed.when, parsed.seq, parsed.tag) as
        | { when_ms: number; id: number }
        | undefined;
    if (row === undefined) throw new ArchiveItemNotFoundError(id);
    return row;
  }
}

/**
 * Id lists are padded to a power of two up to 1024, then to a multiple of 1024, so few
 * distinct statement texts are cached.
 */
function idListSize(n: number): number {
  if (n > 1024) return Math.ceil(n / 1024) * 1024;
  let size = 1;
  while (size < n) size *= 2;
  return size;
}

/** A non-empty `ids` with its last id repeated up to its padded length (IN ignores repeats). */
function padIds(ids: string[]): string[] {
  const padded = ids.slice();
  const size = idListSize(ids.length);
  while (padded.length < size) padded.push(ids[ids.length - 1]);
  return padded;
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
