// Local accounts and their SCRAM credentials. Passwords are never stored, only salted SCRAM
// keys for SHA-1 and SHA-256, and nothing is cached: another process (`lilt user create`) may
// change accounts while the server runs.

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

/** Options for `AccountStore`. */
export interface AccountStoreOptions {
  /** PBKDF2 iterations for new or changed passwords (default 10000). */
  iterations?: number;
}

/** `create` found the account already there. */
export class AccountExistsError extends Error {}
/** An operation needed an account that does not exist. */
export class AccountNotFoundError extends Error {}

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

  /** Uses the accounts tables of `db`. */
  constructor(db: Database, options: AccountStoreOptions = {}) {
    this.#database = db;
    if (options.iterations !== undefined) this.setIterations(options.iterations);
  }

  /** The PBKDF2 iteration count used for new credentials. */
  get iterations(): number {
    return this.#iterations;
  }

  /** Sets the iteration count for passwords set from now on (existing ones keep theirs). */
  setIterations(n: number): void {
    if (!Number.isSafeInteger(n) || n < MIN_ITERATIONS || n > MAX_ITERATIONS) {
      throw new RangeError(
        `Expected an integer SCRAM iteration count from ${MIN_ITERATIONS} to ${MAX_ITERATIONS}, ` +
          `found ${n}`,
      );
    }
    this.#iterations = n;
  }

  /** Creates an account; throws `AccountExistsError` when it exists, `PasswordPrepError` for a bad password. */
  async create(host: string, username: string, password: string): Promise<void> {
    checkNames(host, username);
    const prepared = preparePassword(password);
    if (this.exists(host, username)) throw existsError(host, username);
    const credentials = await this.#derive(prepared);
    const database = this.#database;
    database.transaction(() => {
      const inserted = database
        .prepare(
          "INSERT INTO accounts (host, user, created_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .run(host, username, Date.now());
      // Another process may have created it while PBKDF2 ran.
      if (inserted.changes === 0) throw existsError(host, username);
      this.#writeCredentials(host, username, credentials);
    });
  }

  /** Replaces an account's password; throws `AccountNotFoundError` when it does not exist. */
  async setPassword(host: string, username: string, password: string): Promise<void> {
    checkNames(host, username);
    const prepared = preparePassword(password);
    if (!this.exists(host, username)) throw notFoundError(host, username);
    const credentials = await this.#derive(prepared);
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

  /** Deletes an account and its credentials; false when there was none. Stored data is kept. */
  delete(host: string, username: string): boolean {
    const database = this.#database;
    return database.transaction(() => {
      database.prepare("DELETE FROM account_credentials WHERE host = ? AND user = ?")
        .run(host, username);
      return database.prepare("DELETE FROM accounts WHERE host = ? AND user = ?")
        .run(host, username).changes > 0;
    });
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
      const storedKey = await digest(hash, await hmac(hash, salted, utf8("Client Key")));
      return timingSafeEqual(storedKey, stored.storedKey);
    }
    const hash = SCRAM_HASHES[0];
    const salt = await fakeSalt(`${hash}\0${host}\0${username}`);
    await saltPassword(prepared, { hash, salt, iterations: this.#iterations });
    return false;
  }

  async #derive(prepared: string): Promise<Record<ScramHash, ScramCredentials>> {
    const iterations = this.#iterations;
    const [sha256, sha1] = await Promise.all([
      deriveCredentials(prepared, { hash: "SHA-256", iterations }),
      deriveCredentials(prepared, { hash: "SHA-1", iterations }),
    ]);
    return { "SHA-256": sha256, "SHA-1": sha1 };
  }

  #writeCredentials(
    host: string,
    username: string,
    credentials: Partial<Record<ScramHash, ScramCredentials>>,
  ): void {
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

function checkNames(host: string, username: string): void {
  if (host === "") throw new TypeError("Expected a non-empty host, found ''");
  if (username === "") throw new TypeError("Expected a non-empty username, found ''");
}

function existsError(host: string, username: string): AccountExistsError {
  return new AccountExistsError(`Cannot create account '${username}@${host}': it already exists`);
}

function notFoundError(host: string, username: string): AccountNotFoundError {
  return new AccountNotFoundError(`Expected account '${username}@${host}' to exist, found none`);
}
