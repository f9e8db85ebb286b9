// Account lifecycle policy on a running server: deletion with a grace period, restore, the
// periodic purge of expired deletions (with tombstones), and closing a locked-out user's streams.

import type { ServerContext } from "../context.ts";
import { getLogger } from "../log.ts";
import { AccountNotFoundError } from "./accounts.ts";

const log = getLogger("accounts");

/** Default `deletion_grace_period` (seconds): 7 days. */
export const DEFAULT_DELETION_GRACE_PERIOD = 604800;
/** Default `tombstone_period` (seconds): 30 days. */
export const DEFAULT_TOMBSTONE_PERIOD = 2592000;
/** How often the purge runs (it also runs once at start). */
export const MAINTENANCE_INTERVAL_MS = 24 * 3600 * 1000;

/** What `deleteAccount` did. */
export interface DeleteOutcome {
  /** "pending": disabled and restorable until `purgeAt`; "purged": gone now. */
  state: "pending" | "purged";
  /** When the purge task will remove it (ms), for "pending". */
  purgeAt?: number;
  /** How many live sessions were closed. */
  closedSessions: number;
}

function gracePeriodMs(server: ServerContext, host: string): number {
  const seconds = server.config.hostOption<number>(host, "deletion_grace_period") ??
    DEFAULT_DELETION_GRACE_PERIOD;
  return seconds * 1000;
}

function tombstonePeriodMs(server: ServerContext, host: string): number {
  const seconds = server.config.hostOption<number>(host, "tombstone_period") ??
    DEFAULT_TOMBSTONE_PERIOD;
  return seconds * 1000;
}

/** Closes every live stream of `username@host` with `not-authorized` and `text`; returns how many. */
export function closeUserSessions(
  server: ServerContext,
  host: string,
  username: string,
  text: string,
): number {
  const sessions = server.sessions.userSessions(host, username);
  for (const session of sessions) session.close("not-authorized", text);
  return sessions.length;
}

/**
 * Removes an account and all its data now, leaving a tombstone for `tombstone_period`.
 * False when there was no account.
 */
export function purgeAccount(server: ServerContext, host: string, username: string): boolean {
  server.storage.deleteUser(host, username);
  const removed = server.accounts.purge(
    host,
    username,
    Date.now() + tombstonePeriodMs(server, host),
  );
  if (removed) log.info("Purged account {user}@{host}", { user: username, host });
  // Modules with tables of their own (PEP nodes) delete the account's rows.
  const hostObject = server.hosts.get(host);
  hostObject?.events.fire("account-purged", { user: username, host: hostObject });
  return removed;
}

/**
 * Deletes an account as an operator or its owner asks: with a grace period it is disabled and
 * marked (data kept, `restoreAccount` undoes it); with `deletion_grace_period = 0` it is purged
 * at once. Live sessions are closed either way. Throws `AccountNotFoundError`.
 */
export function deleteAccount(
  server: ServerContext,
  host: string,
  username: string,
): DeleteOutcome {
  const graceMs = gracePeriodMs(server, host);
  const now = Date.now();
  if (graceMs === 0) {
    if (!server.accounts.exists(host, username)) {
      throw new AccountNotFoundError(`Expected account '${username}@${host}' to exist, found none`);
    }
    const closedSessions = closeUserSessions(server, host, username, "Account deleted");
    purgeAccount(server, host, username);
    return { state: "purged", closedSessions };
  }
  const pendingSince = server.accounts.deletedAt(host, username);
  if (pendingSince === undefined) server.accounts.markDeleted(host, username, now);
  const closedSessions = closeUserSessions(server, host, username, "Account deleted");
  return { state: "pending", purgeAt: (pendingSince ?? now) + graceMs, closedSessions };
}

/**
 * Cancels a pending deletion within its grace period and enables the account again. Throws
 * an Error saying why when there is no such account, nothing pending, or the period is over.
 */
export function restoreAccount(server: ServerContext, host: string, username: string): void {
  if (!server.accounts.exists(host, username)) {
    throw new Error(`Cannot restore '${username}@${host}': no such account (already purged?)`);
  }
  const deletedAt = server.accounts.deletedAt(host, username);
  if (deletedAt === undefined) {
    throw new Error(`Cannot restore '${username}@${host}': it is not pending deletion`);
  }
  if (Date.now() >= deletedAt + gracePeriodMs(server, host)) {
    throw new Error(
      `Cannot restore '${username}@${host}': its grace period is over and it awaits purging`,
    );
  }
  server.accounts.unmarkDeleted(host, username);
}

/** Purges every account whose grace period ended by `now` on every local host; returns their JIDs. */
export function purgeExpiredAccounts(server: ServerContext, now: number = Date.now()): string[] {
  const purged: string[] = [];
  for (const host of server.config.hosts) {
    const domain = host.domain;
    for (
      const username of server.accounts.deletedBefore(domain, now - gracePeriodMs(server, domain))
    ) {
      try {
        if (purgeAccount(server, domain, username)) purged.push(`${username}@${domain}`);
      } catch (error) {
        log.error("Cannot purge {user}@{host}: {error}", { user: username, host: domain, error });
      }
    }
  }
  server.accounts.dropExpiredTombstones(now);
  return purged;
}

/**
 * Runs `purgeExpiredAccounts` now and then daily. Returns the function that stops it (call
 * it on shutdown, before storage closes).
 *
 * @example
 * ```ts
 * const stopMaintenance = startAccountMaintenance(server);
 * // … on shutdown:
 * stopMaintenance();
 * ```
 */
export function startAccountMaintenance(
  server: ServerContext,
  intervalMs: number = MAINTENANCE_INTERVAL_MS,
): () => void {
  const run = () => {
    try {
      purgeExpiredAccounts(server);
    } catch (error) {
      log.error("Account maintenance failed: {error}", { error });
    }
  };
  run();
  // A daily timer must not keep a process (or a test) alive on its own.
  return server.timers.schedule(intervalMs, run, {
    owner: "core",
    label: "account maintenance (purges accounts past their deletion grace period)",
    repeat: true,
    unref: true,
  });
}
