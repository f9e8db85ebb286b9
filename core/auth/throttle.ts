// Login throttle against password guessing: failed logins are counted per (address, account),
// per address and per account, and past a free allowance each further attempt of a counted key
// waits an exponentially growing, capped delay before it is checked. A right password from an
// address that has not failed for that account never waits for the account's count, so guessing
// from one address cannot lock the real user out from another; and since the delay is capped and
// counted from the last failure, the user behind the guessing address gets in within the cap
// once the guessing stops.

/** Options for `AuthThrottle`. */
export interface AuthThrottleOptions {
  /** Failures of one account from one address before its attempts wait. */
  maxFailures: number;
  /** Failures from one address, whatever the account, before its attempts wait. */
  addressFailures: number;
  /**
   * Failures of one account, from any address, before attempts wait; this count only holds
   * back addresses that have themselves failed for the account (or have an attempt running).
   */
  accountFailures: number;
  /** The first delay in milliseconds; each further failure doubles it. */
  delayMs: number;
  /** The longest delay in milliseconds. */
  maxDelayMs: number;
  /** A count is forgotten this many milliseconds after its last failure. */
  windowMs: number;
}

/** Which count holds an attempt back. */
export type ThrottleScope = "address+account" | "address" | "account";

/** One counted key, as the admin shell lists it. */
export interface ThrottleEntry {
  scope: ThrottleScope;
  /** The address (IPv6 by /64), the account, or `address account`. */
  key: string;
  failures: number;
  /** Attempts being checked right now. */
  running: number;
  /** Milliseconds until an attempt of this key is no longer delayed (0: not delayed). */
  waitMs: number;
  /** Milliseconds since the last failure. */
  sinceLastMs: number;
}

/** Why an attempt must wait, and for how long when that is known. */
export interface ThrottleWait {
  scope: ThrottleScope;
  /** Failures counted for the key that holds the attempt back. */
  failures: number;
  /** Milliseconds until the delay has passed; undefined while another attempt is being checked. */
  ms: number | undefined;
}

/** Options for `AuthThrottle.admit`. */
export interface AdmitOptions {
  /**
   * Refuse once the attempt would have waited this long in total; default twice the longest
   * delay (at least a second), so a queue of concurrent attempts does not hold a login long.
   */
  maxWaitMs?: number;
  /** Checked after each wait: true abandons the attempt (the connection closed). */
  abandoned?: () => boolean;
  /** Told once, when the attempt starts waiting. */
  onWait?: (wait: ThrottleWait) => void;
}

/** The outcome of `AuthThrottle.admit`. */
export type Admission =
  | { kind: "admitted"; attempt: ThrottleAttempt; waitedMs: number }
  | { kind: "refused"; wait: ThrottleWait }
  | { kind: "abandoned" };

interface Entry {
  failures: number;
  running: number;
  last: number;
}

/** Entries kept per scope; past this, expired ones and then the oldest are dropped. */
const MAX_ENTRIES = 100_000;
/** Longest account name used as a key (longer ones are cut). */
const MAX_ACCOUNT_CHARS = 256;
/** While another attempt of the key is being checked, look again at least this often. */
const RUNNING_RECHECK_MS = 1000;

/**
 * The key an address is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64
 * prefix, since one subscriber usually holds a whole /64.
 */
export function throttleAddress(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1];
  if (!ip.includes(":")) return ip;
  const groups = expandIpv6(ip.replace(/%.*$/, ""));
  return groups === undefined ? ip : `${groups.slice(0, 4).join(":")}::/64`;
}

/** The eight groups of an IPv6 address, without leading zeros; undefined when malformed. */
function expandIpv6(ip: string): string[] | undefined {
  const halves = ip.toLowerCase().split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string) => part === "" ? [] : part.split(":");
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  // An embedded IPv4 address in the last group stands for two groups.
  const last = tail.length > 0 ? tail : head;
  if (last.length > 0 && last[last.length - 1].includes(".")) last.splice(-1, 1, "0", "0");
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.replace(/^0+(?=.)/, ""));
}

/**
 * One admitted attempt: it counts as running until it is settled, so that concurrent
 * attempts of a throttled key are checked one at a time.
 */
export class ThrottleAttempt {
  #throttle: AuthThrottle;
  #keys: [Map<string, Entry>, string][];
  #pair: string;
  #settled = false;

  constructor(throttle: AuthThrottle, keys: [Map<string, Entry>, string][], pair: string) {
    this.#throttle = throttle;
    this.#keys = keys;
    this.#pair = pair;
  }

  /** The credentials were rejected: one more failure for each of the attempt's keys. */
  failed(now = Date.now()): void {
    this.#settle((map, key, entry) => {
      entry.failures++;
      entry.last = now;
      // Re-inserted, so the map stays in order of last failure for eviction.
      map.delete(key);
      map.set(key, entry);
    });
  }

  /**
   * The credentials were accepted: the address's failures for this account are forgotten.
   * The address's and the account's counts stay, so that logging in to one's own account
   * does not reset a guesser's count on others, nor the real user's login a guesser's.
   */
  succeeded(): void {
    this.#settle(() => {});
    this.#throttle.forget(this.#pair);
  }

  /** No verdict on the credentials (a challenge, a protocol error, an abort): nothing counted. */
  released(): void {
    this.#settle(() => {});
  }

  #settle(apply: (map: Map<string, Entry>, key: string, entry: Entry) => void): void {
    if (this.#settled) return;
    this.#settled = true;
    for (const [map, key] of this.#keys) {
      const entry = map.get(key);
      if (!entry) continue;
      entry.running = Math.max(0, entry.running - 1);
      apply(map, key, entry);
      // A key is remembered only while it has failures (or attempts running): a login that
      // went right leaves nothing behind.
      if (entry.failures === 0 && entry.running === 0) map.delete(key);
    }
    this.#throttle.notifySettled();
  }
}

/** Counts failed logins and decides how long each new attempt waits. */
export class AuthThrottle {
  #pairs = new Map<string, Entry>();
  #addresses = new Map<string, Entry>();
  #accounts = new Map<string, Entry>();
  #options: AuthThrottleOptions;
  #settled = Promise.withResolvers<void>();

  constructor(options: AuthThrottleOptions) {
    this.#options = { ...options };
  }

  /** Applies new limits (config reload); counts already recorded are kept. */
  configure(options: AuthThrottleOptions): void {
    this.#options = { ...options };
  }

  /** The delay owed after `failures` failures of a key allowed `free` of them. */
  #delay(failures: number, free: number): number {
    if (failures < free) return 0;
    const { delayMs, maxDelayMs } = this.#options;
    return Math.min(maxDelayMs, delayMs * 2 ** Math.min(failures - free, 30));
  }

  #entry(map: Map<string, Entry>, key: string, now: number): Entry | undefined {
    const entry = map.get(key);
    if (entry && entry.running === 0 && now - entry.last >= this.#options.windowMs) {
      map.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Why `entry` holds a new attempt back, or undefined when it does not. */
  #holds(
    entry: Entry | undefined,
    free: number,
    scope: ThrottleScope,
    now: number,
  ): ThrottleWait | undefined {
    if (!entry || entry.failures + entry.running < free) return undefined;
    if (entry.running > 0) return { scope, failures: entry.failures, ms: undefined };
    const ms = entry.last + this.#delay(entry.failures, free) - now;
    return ms > 0 ? { scope, failures: entry.failures, ms } : undefined;
  }

  #keys(ip: string, account: string) {
    const address = throttleAddress(ip);
    const name = account.slice(0, MAX_ACCOUNT_CHARS);
    return { address, account: name, pair: `${address} ${name}` };
  }

  /**
   * Starts an attempt now, or says why it must wait. `account` is the prepared username the
   * client gave (or "" when it gave none). Synchronous, so that of concurrent attempts of a
   * throttled key only one starts.
   */
  tryStart(ip: string, account: string, now = Date.now()): ThrottleAttempt | ThrottleWait {
    const keys = this.#keys(ip, account);
    const o = this.#options;
    const pair = this.#entry(this.#pairs, keys.pair, now);
    const address = this.#entry(this.#addresses, keys.address, now);
    const accountEntry = this.#entry(this.#accounts, keys.account, now);
    // The account's count across addresses applies only where this address has failed for it
    // (or is checking an attempt for it): a clean address is never held back by it.
    const dirty = pair !== undefined && (pair.failures > 0 || pair.running > 0);
    const wait = this.#holds(pair, o.maxFailures, "address+account", now) ??
      this.#holds(address, o.addressFailures, "address", now) ??
      (dirty ? this.#holds(accountEntry, o.accountFailures, "account", now) : undefined);
    if (wait) return wait;
    const started: [Map<string, Entry>, string][] = [
      [this.#pairs, keys.pair],
      [this.#addresses, keys.address],
      [this.#accounts, keys.account],
    ];
    for (const [map, key] of started) {
      const entry = map.get(key);
      if (entry) entry.running++;
      else {
        map.set(key, { failures: 0, running: 1, last: now });
        if (map.size > MAX_ENTRIES) this.#evict(map, now);
      }
    }
    return new ThrottleAttempt(this, started, keys.pair);
  }

  /**
   * Waits until the attempt may start (or `maxWaitMs` has passed, or it is abandoned), then
   * starts it. The caller settles the returned attempt with its verdict.
   */
  async admit(ip: string, account: string, options: AdmitOptions): Promise<Admission> {
    const began = Date.now();
    const maxWaitMs = options.maxWaitMs ?? Math.max(1000, 2 * this.#options.maxDelayMs);
    let told = false;
    for (;;) {
      const now = Date.now();
      const result = this.tryStart(ip, account, now);
      if (result instanceof ThrottleAttempt) {
        return { kind: "admitted", attempt: result, waitedMs: now - began };
      }
      const left = maxWaitMs - (now - began);
      if (left <= 0 || (result.ms !== undefined && result.ms > left)) {
        return { kind: "refused", wait: result };
      }
      if (!told) {
        told = true;
        options.onWait?.(result);
      }
      const sleep = Math.min(result.ms ?? RUNNING_RECHECK_MS, left);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const wakes = [new Promise<void>((resolve) => timer = setTimeout(resolve, sleep))];
      if (result.ms === undefined) wakes.push(this.#settled.promise);
      await Promise.race(wakes);
      clearTimeout(timer);
      if (options.abandoned?.()) return { kind: "abandoned" };
    }
  }

  /** Wakes the attempts waiting for a running one to finish. */
  notifySettled(): void {
    this.#settled.resolve();
    this.#settled = Promise.withResolvers<void>();
  }

  /** Forgets the failures of one `address account` pair (after its right password). */
  forget(pair: string): void {
    const entry = this.#pairs.get(pair);
    if (entry && entry.running === 0) this.#pairs.delete(pair);
    else if (entry) entry.failures = 0;
  }

  /**
   * Forgets every count of an address (by `throttleAddress`) or an account: the operator's
   * way to let someone in at once. Returns how many counts were dropped.
   */
  clear(target: string): number {
    const address = throttleAddress(target);
    let dropped = 0;
    for (
      const [map, matches] of [
        [this.#pairs, (k: string) => k.startsWith(`${address} `) || k.endsWith(` ${target}`)],
        [this.#addresses, (k: string) => k === address],
        [this.#accounts, (k: string) => k === target],
      ] as const
    ) {
      for (const [key, entry] of map) {
        if (!matches(key) || entry.failures === 0) continue;
        entry.failures = 0;
        if (entry.running === 0) map.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** The counts with failures, the most recent first, for the admin shell. */
  entries(now = Date.now()): ThrottleEntry[] {
    const o = this.#options;
    const rows: ThrottleEntry[] = [];
    for (
      const [scope, map, free] of [
        ["address+account", this.#pairs, o.maxFailures],
        ["address", this.#addresses, o.addressFailures],
        ["account", this.#accounts, o.accountFailures],
      ] as const
    ) {
      for (const key of [...map.keys()]) {
        const entry = this.#entry(map, key, now);
        if (!entry || entry.failures === 0) continue;
        rows.push({
          scope,
          key,
          failures: entry.failures,
          running: entry.running,
          waitMs: Math.max(0, entry.last + this.#delay(entry.failures, free) - now),
          sinceLastMs: now - entry.last,
        });
      }
    }
    return rows.sort((a, b) => a.sinceLastMs - b.sinceLastMs);
  }

  /** How many keys are remembered (the three scopes together). */
  get size(): number {
    return this.#pairs.size + this.#addresses.size + this.#accounts.size;
  }

  /** Drops expired counts. */
  prune(now = Date.now()): void {
    for (const map of [this.#pairs, this.#addresses, this.#accounts]) {
      for (const key of [...map.keys()]) this.#entry(map, key, now);
    }
  }

  #evict(map: Map<string, Entry>, now: number): void {
    for (const key of [...map.keys()]) this.#entry(map, key, now);
    // Still full of live counts: drop the ones that failed longest ago (insertion order).
    for (const [key, entry] of map) {
      if (map.size <= MAX_ENTRIES * 0.9) break;
      if (entry.running === 0) map.delete(key);
    }
  }
}
