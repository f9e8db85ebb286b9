// Local accounts and their SCRAM credentials. Passwords are never stored, only salted SCRAM
// keys for SHA-1 and SHA-256, and nothing is cached: another process (`lilt user create`) may
// change accounts while the server runs.

import { getLogger } from "../log.ts";
import type { Database } from "../storage/database.ts";
import { preparePassword } from "./saslprep.ts";
import {
  deriveCredentials,
  digest,
  fakeSalt,
  HASH_BYTES,
  hmac,
  saltPassword,
  SCRAM_HASHES,
  type ScramCredentials,
  type ScramHash,
  timingSafeEqual,
  utf8,
} from "./scram.ts";

export type { ScramCredentials, ScramHash } from "./scram.ts";

/** Default PBKDF2 iteration count for new credentials. */
export const DEFAULT_ITERATIONS = 10_000;
/** Smallest accepted iteration count (RFC 7677 §4 asks for at least 4096). */
export const MIN_ITERATIONS = 4096;
/** Largest accepted iteration count (keeps a typo from stalling every login). */
export const MAX_ITERATIONS = 10_000_000;
/** How long login and logout times wait in memory before they are written together. */
export const ACTIVITY_FLUSH_MS = 1000;

const log = getLogger(["auth", "accounts"]);

/** Options for `AccountStore`. */
export interface AccountStoreOptions {
  /** PBKDF2 iterations for new or changed passwords (default 10000). */
  iterations?: number;
  /**
   * The count for one host (its `scram_iterations`), asked each time a password is set; the
   * `iterations` count applies where this is not given.
   */
  hostIterations?: (host: string) => number;
}

/** `create` found the account already there. */
export class AccountExistsError extends Error {}
/** An operation needed an account that does not exist. */
export class AccountNotFoundError extends Error {}
/** `create` found the name held by a tombstone (a recently purged account). */
export class AccountTombstonedError extends Error {}

/** One account with its lifecycle state, for listings. */
export interface AccountInfo {
  /** The username (JID localpart). */
  username: string;
  /** When it was created (ms since the epoch). */
  createdAt: number;
  /** Login refused (set by `disable`, and while a deletion is pending). */
  disabled: boolean;
  /** When a pending deletion was requested (ms), or undefined. */
  deletedAt?: number;
  /** Last successful authentication (ms), or undefined. */
  lastLogin?: number;
  /** Last session end (ms), or undefined. */
  lastLogout?: number;
}

/** One line of a bulk import (`createMany`). */
export interface NewAccount {
  username: string;
  password: string;
}

/** What `createMany` did: created names, and the others with the reason each was skipped. */
export interface CreateManyResult {
  created: string[];
  failed: { username: string; reason: string }[];
}

/** Options for `createMany`. */
export interface CreateManyOptions {
  /** Accounts hashed concurrently per batch (default 64; PBKDF2 runs off the main thread). */
  batchSize?: number;
}

/** Login and logout times of one account, waiting to be written. */
interface PendingActivity {
  host: string;
  user: string;
  login?: number;
  logout?: number;
}

interface AccountRow {
  user: string;
  created_ms: number;
  disabled: number;
  deleted_ms: number | null;
  last_login_ms: number | null;
  last_logout_ms: number | null;
}

interface CredentialRow {
  salt: Uint8Array;
  iterations: number;
  stored_key: Uint8Array;
  server_key: Uint8Array;
}

/**
 * Accounts per host. Usernames are JID localparts the caller has already prepared; passwords
 * are prepared here with PRECIS OpaqueString (`preparePassword`) before hashing.
 *
 * @example
 * ```ts
 * const accounts = new AccountStore(database);
 * await accounts.create("example.com", "juliet", "r0m30");
 * await accounts.verifyPassword("example.com", "juliet", "r0m30"); // true
 * ```
 */
export class AccountStore {
  #database: Database;
  #iterations = DEFAULT_ITERATIONS;
  #hostIterations: ((host: string) => number) | undefined;
  /** Login and logout times not written yet, by host NUL user (see `touchLogin`). */
  #activity = new Map<string, PendingActivity>();
  #activityTimer: ReturnType<typeof setTimeout> | undefined;
  /** Per host, the SCRAM hashes every account has keys for (see `scramHashesOfAll`). */
  #universalHashes = new Map<string, ReadonlySet<ScramHash>>();

  /** Uses the accounts tables of `db`. */
  constructor(db: Database, options: AccountStoreOptions = {}) {
    this.#database = db;
    if (options.iterations !== undefined) this.setIterations(options.iterations);
    this.#hostIterations = options.hostIterations;
  }

  /** The PBKDF2 iteration count used for new credentials where no host count is given. */
  get iterations(): number {
    return this.#iterations;
  }

  /** The PBKDF2 iteration count for new credentials on `host`. */
  iterationsFor(host: string): number {
    if (this.#hostIterations === undefined) return this.#iterations;
    return checkIterations(this.#hostIterations(host));
  }

  /** Sets the iteration count for passwords set from now on (existing ones keep theirs). */
  setIterations(n: number): void {
    this.#iterations = checkIterations(n);
  }

  /**
   * Creates an account; throws `AccountExistsError` when it exists, `AccountTombstonedError`
   * while a purged account's tombstone holds the name, `PasswordPrepError` for a bad password.
   */
  async create(host: string, username: string, password: string): Promise<void> {
    checkNames(host, username);
    const prepared = preparePassword(password);
    if (this.exists(host, username)) throw existsError(host, username);
    this.#checkTombstone(host, username);
    const credentials = await this.#derive(prepared, host);
    const database = this.#database;
    database.transaction(() => {
      // Another process may have created it while PBKDF2 ran.
      if (!this.#insertAccount(host, username)) throw existsError(host, username);
      this.#writeCredentials(host, username, credentials);
    });
  }

  /**
   * Creates many accounts at once (provisioning, migrations): passwords are hashed in
   * concurrent batches, then every account is inserted in one transaction. Existing,
   * tombstoned, duplicate or invalid entries are skipped and reported, never fatal.
   */
  async createMany(
    host: string,
    accounts: NewAccount[],
    options: CreateManyOptions = {},
  ): Promise<CreateManyResult> {
    if (host === "") throw new TypeError("Expected a non-empty host, found ''");
    const batchSize = options.batchSize ?? 64;
    const failed: CreateManyResult["failed"] = [];
    const pending: { username: string; prepared: string }[] = [];
    const seen = new Set<string>();
    for (const { username, password } of accounts) {
      try {
        checkNames(host, username);
        if (seen.has(username)) throw new Error(`'${username}@${host}' is listed twice`);
        seen.add(username);
        if (this.exists(host, username)) throw existsError(host, username);
        this.#checkTombstone(host, username);
        pending.push({ username, prepared: preparePassword(password) });
      } catch (error) {
        failed.push({ username, reason: (error as Error).message });
      }
    }
    const derived: { username: string; credentials: Record<ScramHash, ScramCredentials> }[] = [];
    for (let i = 0; i < pending.length; i += batchSize) {
      const batch = pending.slice(i, i + batchSize);
      const results = await Promise.all(batch.map((p) => this.#derive(p.prepared, host)));
      batch.forEach((p, j) => derived.push({ username: p.username, credentials: results[j] }));
    }
    const created: string[] = [];
    this.#database.transaction(() => {
      for (const { username, credentials } of derived) {
        if (!this.#insertAccount(host, username)) {
          failed.push({ username, reason: existsError(host, username).message });
          continue;
        }
        this.#writeCredentials(host, username, credentials);
        created.push(username);
      }
    });
    return { created, failed };
  }

  /** Replaces an account's password; throws `AccountNotFoundError` when it does not exist. */
  async setPassword(host: string, username: string, password: string): Promise<void> {
    checkNames(host, username);
    const prepared = preparePassword(password);
    if (!this.exists(host, username)) throw notFoundError(host, username);
    const credentials = await this.#derive(prepared, host);
    this.#database.transaction(() => {
      if (!this.exists(host, username)) throw notFoundError(host, username);
      this.#writeCredentials(host, username, credentials);
    });
  }

  /**
   * Stores precomputed credentials (e.g. imported from another server), creating the account
   * when needed. Hashes absent from `credentials` lose their old credentials.
   */
  setCredentials(
    host: string,
    username: string,
    credentials: Partial<Record<ScramHash, ScramCredentials>>,
  ): void {
    checkNames(host, username);
    for (const hash of SCRAM_HASHES) {
      const c = credentials[hash];
      if (c === undefined) continue;
      const size = HASH_BYTES[hash];
      if (c.storedKey.length !== size || c.serverKey.length !== size) {
        throw new RangeError(
          `Expected ${size}-byte ${hash} keys for '${username}@${host}', found ` +
            `${c.storedKey.length} and ${c.serverKey.length}`,
        );
      }
      if (!Number.isSafeInteger(c.iterations) || c.iterations < 1 || c.salt.length === 0) {
        throw new RangeError(
          `Expected a salt and a positive iteration count for '${username}@${host}', found ` +
            `${c.salt.length} salt bytes and ${c.iterations} iterations`,
        );
      }
    }
    const database = this.#database;
    database.transaction(() => {
      database
        .prepare(
          "INSERT INTO accounts (host, user, created_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .run(host, username, Date.now());
      this.#writeCredentials(host, username, credentials);
    });
  }

  /**
   * The SCRAM hashes every account of `host` has keys for. Accounts imported from a server that
   * kept only SCRAM-SHA-1 keys (Prosody) cannot answer SCRAM-SHA-256 until their password is
   * set again, so the host offers only the hashes all its accounts have. Cached per host: this
   * store's own writes keep it right; other processes only add accounts with every hash while
   * the server runs (imports refuse a running server).
   */
  scramHashesOfAll(host: string): ReadonlySet<ScramHash> {
    let hashes = this.#universalHashes.get(host);
    if (hashes === undefined) {
      const database = this.#database;
      const accounts = Number(
        (database.prepare("SELECT COUNT(*) AS n FROM accounts WHERE host = ?").get(host) as {
          n: number;
        }).n,
      );
      const counts = new Map<string, number>();
      const rows = database
        .prepare("SELECT hash, COUNT(*) AS n FROM account_credentials WHERE host = ? GROUP BY hash")
        .all(host) as { hash: string; n: number }[];
      for (const row of rows) counts.set(row.hash, Number(row.n));
      hashes = new Set(SCRAM_HASHES.filter((hash) => (counts.get(hash) ?? 0) >= accounts));
      this.#universalHashes.set(host, hashes);
    }
    return hashes;
  }

  /** Deletes an account and its credentials; false when there was none. Stored data is kept. */
  delete(host: string, username: string): boolean {
    this.#universalHashes.delete(host);
    const database = this.#database;
    return database.transaction(() => {
      database.prepare("DELETE FROM account_credentials WHERE host = ? AND user = ?")
        .run(host, username);
      this.#dropFastTokens(host, username);
      return database.prepare("DELETE FROM accounts WHERE host = ? AND user = ?")
        .run(host, username).changes > 0;
    });
  }

  /**
   * Refuses login to an account (its state is kept) and ends its FAST tokens; throws
   * `AccountNotFoundError`.
   */
  disable(host: string, username: string): void {
    this.#update(host, username, "disabled = 1");
    this.#dropFastTokens(host, username);
  }

  #dropFastTokens(host: string, username: string): void {
    this.#database.prepare("DELETE FROM fast_tokens WHERE host = ? AND user = ?")
      .run(host, username);
  }

  /** Allows login again; throws `AccountNotFoundError`. A pending deletion stays pending. */
  enable(host: string, username: string): void {
    this.#update(host, username, "disabled = 0");
  }

  /** Whether login is refused (disabled, or deletion pending); false for a missing account. */
  isDisabled(host: string, username: string): boolean {
    const row = this.#database
      .prepare("SELECT disabled FROM accounts WHERE host = ? AND user = ?")
      .get(host, username) as { disabled: number } | undefined;
    return row !== undefined && row.disabled !== 0;
  }

  /**
   * Starts a deletion with grace period: the account is disabled and stamped with `when`,
   * its data kept until `purge`. Throws `AccountNotFoundError`.
   */
  markDeleted(host: string, username: string, when: number = Date.now()): void {
    this.#update(host, username, "disabled = 1, deleted_ms = ?", when);
    this.#dropFastTokens(host, username);
  }

  /** Cancels a pending deletion and enables the account; false when none was pending. */
  unmarkDeleted(host: string, username: string): boolean {
    return this.#database
      .prepare(
        "UPDATE accounts SET disabled = 0, deleted_ms = NULL " +
          "WHERE host = ? AND user = ? AND deleted_ms IS NOT NULL",
      )
      .run(host, username).changes > 0;
  }

  /** When the account's pending deletion was requested (ms), or undefined. */
  deletedAt(host: string, username: string): number | undefined {
    const row = this.#database
      .prepare("SELECT deleted_ms FROM accounts WHERE host = ? AND user = ?")
      .get(host, username) as { deleted_ms: number | null } | undefined;
    return row?.deleted_ms ?? undefined;
  }

  /** Usernames of `host` whose deletion was requested at or before `cutoff` (ms), sorted. */
  deletedBefore(host: string, cutoff: number): string[] {
    const rows = this.#database
      .prepare(
        "SELECT user FROM accounts WHERE host = ? AND deleted_ms IS NOT NULL " +
          "AND deleted_ms <= ? ORDER BY user",
      )
      .all(host, cutoff) as { user: string }[];
    return rows.map((row) => row.user);
  }

  /**
   * Removes an account for good and leaves a tombstone holding its name until `tombstoneUntil`
   * (ms; nothing when it is not in the future). Stored data is the caller's (`Storage.deleteUser`).
   */
  purge(host: string, username: string, tombstoneUntil: number): boolean {
    return this.#database.transaction(() => {
      const removed = this.delete(host, username);
      const now = Date.now();
      if (tombstoneUntil > now) {
        this.#database
          .prepare(
            "INSERT INTO account_tombstones (host, user, deleted_ms, expires_ms) " +
              "VALUES (?, ?, ?, ?) ON CONFLICT (host, user) DO UPDATE SET " +
              "deleted_ms = excluded.deleted_ms, expires_ms = excluded.expires_ms",
          )
          .run(host, username, now, tombstoneUntil);
      }
      return removed;
    });
  }

  /** Until when (ms) a tombstone holds `username`, or undefined when the name is free. */
  tombstoneUntil(host: string, username: string, now: number = Date.now()): number | undefined {
    const row = this.#database
      .prepare(
        "SELECT expires_ms FROM account_tombstones WHERE host = ? AND user = ? AND expires_ms > ?",
      )
      .get(host, username, now) as { expires_ms: number } | undefined;
    return row?.expires_ms;
  }

  /** Forgets tombstones that expired by `now`; returns how many. */
  dropExpiredTombstones(now: number = Date.now()): number {
    return Number(
      this.#database.prepare("DELETE FROM account_tombstones WHERE expires_ms <= ?").run(now)
        .changes,
    );
  }

  /**
   * Records a successful login (for `user activity` and `list_inactive`). Kept in memory and
   * written with the other logins and logouts of the moment in one transaction, within
   * `ACTIVITY_FLUSH_MS` (or at `flushActivity`): a login pays no write of its own.
   */
  touchLogin(host: string, username: string, when: number = Date.now()): void {
    this.#pendingActivity(host, username).login = when;
  }

  /** Records the end of an account's last session, written like `touchLogin`'s. */
  touchLogout(host: string, username: string, when: number = Date.now()): void {
    this.#pendingActivity(host, username).logout = when;
  }

  #pendingActivity(host: string, user: string): PendingActivity {
    const key = `${host}\0${user}`;
    let entry = this.#activity.get(key);
    if (!entry) {
      entry = { host, user };
      this.#activity.set(key, entry);
    }
    if (this.#activityTimer === undefined) {
      const timer = setTimeout(() => this.flushActivity(), ACTIVITY_FLUSH_MS);
      Deno.unrefTimer(timer);
      this.#activityTimer = timer;
    }
    return entry;
  }

  /**
   * Writes the login and logout times recorded since the last write, in one transaction. The
   * server calls it before closing the database; reads of those times call it first.
   */
  flushActivity(): void {
    clearTimeout(this.#activityTimer);
    this.#activityTimer = undefined;
    if (this.#activity.size === 0) return;
    const pending = [...this.#activity.values()];
    this.#activity.clear();
    try {
      this.#database.transaction(() => {
        const update = this.#database.prepare(
          "UPDATE accounts SET last_login_ms = COALESCE(?, last_login_ms), " +
            "last_logout_ms = COALESCE(?, last_logout_ms) WHERE host = ? AND user = ?",
        );
        for (const { host, user, login, logout } of pending) {
          update.run(login ?? null, logout ?? null, host, user);
        }
      });
    } catch (error) {
      // Only activity times are lost; the accounts themselves are untouched.
      log.warn("Could not record {count} login/logout time(s): {error}", {
        count: pending.length,
        error,
      });
    }
  }

  /** One account with its lifecycle state, or undefined. */
  info(host: string, username: string): AccountInfo | undefined {
    this.flushActivity();
    const row = this.#database
      .prepare(
        "SELECT user, created_ms, disabled, deleted_ms, last_login_ms, last_logout_ms " +
          "FROM accounts WHERE host = ? AND user = ?",
      )
      .get(host, username) as AccountRow | undefined;
    return row && toInfo(row);
  }

  /** Every account of `host` with its lifecycle state, sorted by username. */
  listInfo(host: string): AccountInfo[] {
    this.flushActivity();
    const rows = this.#database
      .prepare(
        "SELECT user, created_ms, disabled, deleted_ms, last_login_ms, last_logout_ms " +
          "FROM accounts WHERE host = ? ORDER BY user",
      )
      .all(host) as unknown as AccountRow[];
    return rows.map(toInfo);
  }

  /** Whether the account exists. */
  exists(host: string, username: string): boolean {
    return this.#database.prepare("SELECT 1 FROM accounts WHERE host = ? AND user = ?")
      .get(host, username) !== undefined;
  }

  /** The usernames of `host`, sorted. */
  list(host: string): string[] {
    const rows = this.#database.prepare("SELECT user FROM accounts WHERE host = ? ORDER BY user")
      .all(host) as { user: string }[];
    return rows.map((row) => row.user);
  }

  /** The stored SCRAM credentials for `hash`, or undefined when the account has none. */
  credentials(host: string, username: string, hash: ScramHash): ScramCredentials | undefined {
    const row = this.#database
      .prepare(
        "SELECT salt, iterations, stored_key, server_key FROM account_credentials " +
          "WHERE host = ? AND user = ? AND hash = ?",
      )
      .get(host, username, hash) as CredentialRow | undefined;
    if (row === undefined) return undefined;
    return {
      salt: row.salt,
      iterations: row.iterations,
      storedKey: row.stored_key,
      serverKey: row.server_key,
    };
  }

  /**
   * Checks a plain-text password (SASL PLAIN) by deriving with the stored salt and comparing
   * StoredKey in constant time. A missing account costs the same PBKDF2 work, so timing does
   * not reveal whether it exists.
   */
  async verifyPassword(host: string, username: string, password: string): Promise<boolean> {
    let prepared: string;
    try {
      prepared = preparePassword(password);
    } catch {
      return false;
    }
    for (const hash of SCRAM_HASHES) {
      const stored = this.credentials(host, username, hash);
      if (stored === undefined) continue;
      const salted = await saltPassword(prepared, {
        hash,
        salt: stored.salt,
        iterations: stored.iterations,
      });
      const storedKey = digest(hash, hmac(hash, salted, utf8("Client Key")));
      const valid = timingSafeEqual(storedKey, stored.storedKey);
      if (valid) await this.#addMissingHashes(host, username, prepared);
      return valid;
    }
    const hash = SCRAM_HASHES[0];
    const salt = fakeSalt(`${hash}\0${host}\0${username}`);
    await saltPassword(prepared, { hash, salt, iterations: this.iterationsFor(host) });
    return false;
  }

  #insertAccount(host: string, username: string): boolean {
    return this.#database
      .prepare(
        "INSERT INTO accounts (host, user, created_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
      )
      .run(host, username, Date.now()).changes > 0;
  }

  #checkTombstone(host: string, username: string): void {
    const until = this.tombstoneUntil(host, username);
    if (until === undefined) return;
    throw new AccountTombstonedError(
      `Cannot create account '${username}@${host}': the name belonged to a deleted account ` +
        `and is reserved until ${new Date(until).toISOString()}`,
    );
  }

  #update(host: string, username: string, set: string, ...values: (number | string)[]): void {
    const changed = this.#database
      .prepare(`UPDATE accounts SET ${set} WHERE host = ? AND user = ?`)
      .run(...values, host, username).changes;
    if (changed === 0) throw notFoundError(host, username);
  }

  async #derive(
    prepared: string,
    host: string,
  ): Promise<Record<ScramHash, ScramCredentials>> {
    const iterations = this.iterationsFor(host);
    const [sha256, sha1] = await Promise.all([
      deriveCredentials(prepared, { hash: "SHA-256", iterations }),
      deriveCredentials(prepared, { hash: "SHA-1", iterations }),
    ]);
    return { "SHA-256": sha256, "SHA-1": sha1 };
  }

  /**
   * Gives an account keys for the hashes it lacks (an imported SCRAM-SHA-1-only account), now
   * that a login has shown its password; FAST tokens stay, since the password is the same.
   */
  async #addMissingHashes(host: string, username: string, prepared: string): Promise<void> {
    const missing = SCRAM_HASHES.filter((hash) => !this.credentials(host, username, hash));
    if (missing.length === 0) return;
    const iterations = this.iterationsFor(host);
    const derived = await Promise.all(
      missing.map((hash) => deriveCredentials(prepared, { hash, iterations })),
    );
    const insert = this.#database.prepare(
      "INSERT INTO account_credentials " +
        "(host, user, hash, salt, iterations, stored_key, server_key, updated_ms) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, user, hash) DO NOTHING",
    );
    const now = Date.now();
    this.#database.transaction(() => {
      if (!this.exists(host, username)) return;
      missing.forEach((hash, i) => {
        const c = derived[i];
        insert.run(host, username, hash, c.salt, c.iterations, c.storedKey, c.serverKey, now);
      });
    });
    this.#universalHashes.delete(host);
  }

  #writeCredentials(
    host: string,
    username: string,
    credentials: Partial<Record<ScramHash, ScramCredentials>>,
  ): void {
    // Keys for every hash the host offers keep the cached set right; fewer may shrink it.
    const universal = this.#universalHashes.get(host);
    if (universal && [...universal].some((hash) => credentials[hash] === undefined)) {
      this.#universalHashes.delete(host);
    }
    // A new password ends every FAST token (XEP-0484): whoever had the old one is out.
    this.#dropFastTokens(host, username);
    const database = this.#database;
    database.prepare("DELETE FROM account_credentials WHERE host = ? AND user = ?")
      .run(host, username);
    const insert = database.prepare(
      "INSERT INTO account_credentials " +
        "(host, user, hash, salt, iterations, stored_key, server_key, updated_ms) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    const now = Date.now();
    for (const hash of SCRAM_HASHES) {
      const c = credentials[hash];
      if (c === undefined) continue;
      insert.run(host, username, hash, c.salt, c.iterations, c.storedKey, c.serverKey, now);
    }
  }
}

function checkIterations(n: number): number {
  if (!Number.isSafeInteger(n) || n < MIN_ITERATIONS || n > MAX_ITERATIONS) {
    throw new RangeError(
      `Expected an integer SCRAM iteration count from ${MIN_ITERATIONS} to ${MAX_ITERATIONS}, ` +
        `found ${n}`,
    );
  }
  return n;
}

function checkNames(host: string, username: string): void {
  if (host === "") throw new TypeError("Expected a non-empty host, found ''");
  if (username === "") throw new TypeError("Expected a non-empty username, found ''");
}

function toInfo(row: AccountRow): AccountInfo {
  return {
    username: row.user,
    createdAt: row.created_ms,
    disabled: row.disabled !== 0,
    deletedAt: row.deleted_ms ?? undefined,
    lastLogin: row.last_login_ms ?? undefined,
    lastLogout: row.last_logout_ms ?? undefined,
  };
}

function existsError(host: string, username: string): AccountExistsError {
  return new AccountExistsError(`Cannot create account '${username}@${host}': it already exists`);
}

function notFoundError(host: string, username: string): AccountNotFoundError {
  return new AccountNotFoundError(`Expected account '${username}@${host}' to exist, found none`);
}
