// Rate limits against floods: a token bucket per connection for the bytes it may send us (reads
// pause while the bucket is in debt, so TCP backpressure slows the peer and nothing is dropped),
// and buckets per account for the stanzas its sessions send (message, presence, iq).

/** Bytes in one unit of a rate or burst: Prosody's units (kb is 1000 bytes), and binary ones. */
const UNIT_BYTES: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

const RATE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*\/\s*s\s*$/i;
const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;
const SECONDS_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*s\s*$/i;

/** The value of a rate option that turns the limit off. */
export const UNLIMITED = "unlimited";

/**
 * Parses a byte rate as Prosody's mod_limits writes it (`"10kb/s"`, `"1.5mb/s"`, `"512b/s"`;
 * kb = 1000 bytes, KiB = 1024) into bytes per second; `"unlimited"` gives undefined.
 *
 * @example
 * ```ts
 * parseByteRate("10kb/s"); // 10000
 * ```
 */
export function parseByteRate(text: string): number | undefined {
  if (text.trim().toLowerCase() === UNLIMITED) return undefined;
  const match = RATE_PATTERN.exec(text);
  const unit = match ? UNIT_BYTES[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new Error(
      `Cannot read the rate '${text}': expected a number of bytes per second such as "10kb/s" or "unlimited"`,
    );
  }
  const bytes = Number(match[1]) * unit;
  if (bytes < 1) throw new Error(`Cannot read the rate '${text}': at least 1 byte per second`);
  return bytes;
}

/**
 * Parses a burst: seconds of the rate (`"2s"`, as Prosody's mod_limits) or a size (`"64kb"`),
 * into bytes.
 */
export function parseBurst(text: string, bytesPerSecond: number): number {
  const seconds = SECONDS_PATTERN.exec(text);
  if (seconds) return Math.max(1, Number(seconds[1]) * bytesPerSecond);
  const match = SIZE_PATTERN.exec(text);
  const unit = match ? UNIT_BYTES[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new Error(
      `Cannot read the burst '${text}': expected seconds of the rate such as "2s" or a size such as "64kb"`,
    );
  }
  return Math.max(1, Number(match[1]) * unit);
}

/** Config check of a rate option: a message, or undefined when `item` reads. */
export function checkByteRate(item: string, name: string): string | undefined {
  try {
    parseByteRate(item);
    return undefined;
  } catch (error) {
    return `option '${name}': ${(error as Error).message}`;
  }
}

/** Config check of a burst option: a message, or undefined when `item` reads. */
export function checkBurst(item: string, name: string): string | undefined {
  try {
    parseBurst(item, 1);
    return undefined;
  } catch (error) {
    return `option '${name}': ${(error as Error).message}`;
  }
}

/** A read limit: how fast a connection may send, and how much at once after a quiet time. */
export interface ReadRate {
  /** Sustained bytes per second. */
  bytesPerSecond: number;
  /** Bytes the bucket holds when full (read at once without pausing). */
  burstBytes: number;
}

/**
 * Reads a rate and burst pair of options (`limits_c2s_rate`, `limits_c2s_burst`) into a
 * {@link ReadRate}; undefined when the rate is "unlimited".
 */
export function readRate(rate: string, burst: string): ReadRate | undefined {
  const bytesPerSecond = parseByteRate(rate);
  if (bytesPerSecond === undefined) return undefined;
  return { bytesPerSecond, burstBytes: parseBurst(burst, bytesPerSecond) };
}

/**
 * A token bucket: it refills at `ratePerSecond` up to `capacity`; taking more than it holds
 * leaves it in debt, and {@link take} says how long until the debt is paid. Time is passed in
 * (ms epoch) so that callers reuse the clock reading they already have.
 *
 * @example
 * ```ts
 * const bucket = new TokenBucket(10_000, 20_000); // 10 kB/s, 20 kB burst
 * const waitMs = bucket.take(chunk.length, Date.now());
 * if (waitMs > 0) pauseReadingFor(waitMs);
 * ```
 */
export class TokenBucket {
  #perMs: number;
  #capacity: number;
  #tokens: number;
  #updated: number;

  /** A full bucket. */
  constructor(ratePerSecond: number, capacity: number, now: number = Date.now()) {
    this.#perMs = ratePerSecond / 1000;
    this.#capacity = capacity;
    this.#tokens = capacity;
    this.#updated = now;
  }

  /** Changes rate and capacity, keeping what the bucket holds (at most the new capacity). */
  reconfigure(ratePerSecond: number, capacity: number, now: number = Date.now()): void {
    this.#refill(now);
    this.#perMs = ratePerSecond / 1000;
    this.#capacity = capacity;
    if (this.#tokens > capacity) this.#tokens = capacity;
  }

  /**
   * Takes `amount` tokens, even more than the bucket holds; returns 0 when it held enough, else
   * the ms until the debt is paid (the bucket back at zero).
   */
  take(amount: number, now: number): number {
    let tokens = this.#tokens + (now - this.#updated) * this.#perMs;
    if (tokens > this.#capacity) tokens = this.#capacity;
    tokens -= amount;
    this.#tokens = tokens;
    this.#updated = now;
    return tokens >= 0 ? 0 : Math.ceil(-tokens / this.#perMs);
  }

  /** Gives back tokens taken by {@link take} (a stanza refused after all). */
  giveBack(amount: number): void {
    this.#tokens = Math.min(this.#capacity, this.#tokens + amount);
  }

  /** True when the bucket has refilled completely (the peer was quiet long enough). */
  isFull(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.#capacity;
  }

  /** Tokens held now (negative: debt), for the admin shell and tests. */
  level(now: number): number {
    this.#refill(now);
    return this.#tokens;
  }

  #refill(now: number): void {
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#updated) * this.#perMs);
    this.#updated = now;
  }
}

/** The stanza kinds limited per account. */
export type StanzaKind = "message" | "presence" | "iq";

/** Stanzas per second per account, and how long a stanza may be delayed before it is refused. */
export interface StanzaRates {
  /** Per kind: stanzas per second; 0 = unlimited. */
  message: number;
  presence: number;
  iq: number;
  /** Seconds of each rate the account may send at once after a quiet time. */
  burstSeconds: number;
  /** A stanza that would wait longer than this (seconds) is refused with policy-violation. */
  maxDelaySeconds: number;
}

/** No stanza is limited. */
export const NO_STANZA_LIMITS: StanzaRates = {
  message: 0,
  presence: 0,
  iq: 0,
  burstSeconds: 1,
  maxDelaySeconds: 0,
};

interface AccountBuckets {
  sessions: number;
  message?: TokenBucket;
  presence?: TokenBucket;
  iq?: TokenBucket;
}

/** What {@link AccountStanzaLimits.reserve} decided for one stanza. */
export type StanzaVerdict =
  /** Handle it now. */
  | 0
  /** Refused: it would wait longer than the maximum delay. */
  | -1
  /** Handle it after this many ms. */
  | number;

/**
 * Per-account stanza buckets shared by all the account's sessions: every message, presence and
 * iq a session sends takes a token of its kind; one that finds none waits (its session stops
 * reading) until one refills, or is refused when the wait would pass the maximum delay. An
 * account's buckets live while it has sessions ({@link attach}/{@link detach}).
 */
export class AccountStanzaLimits {
  #accounts = new Map<string, AccountBuckets>();
  #rates: StanzaRates;
  /** What the rates were last read from (the configuration object), so readers re-read a new one. */
  configuredFrom: unknown;

  /** Limits with these rates (changed later by {@link configure}); none by default. */
  constructor(rates: StanzaRates = NO_STANZA_LIMITS) {
    this.#rates = rates;
  }

  /** The rates in force. */
  get rates(): StanzaRates {
    return this.#rates;
  }

  /** Takes up new rates (after a reload); buckets are rebuilt as stanzas arrive. */
  configure(rates: StanzaRates): void {
    const r = this.#rates;
    if (
      r.message === rates.message && r.presence === rates.presence && r.iq === rates.iq &&
      r.burstSeconds === rates.burstSeconds && r.maxDelaySeconds === rates.maxDelaySeconds
    ) return;
    this.#rates = rates;
    for (const buckets of this.#accounts.values()) {
      buckets.message = buckets.presence = buckets.iq = undefined;
    }
  }

  /** A session of `account` (bare JID) starts sending stanzas. */
  attach(account: string): void {
    const buckets = this.#accounts.get(account);
    if (buckets) buckets.sessions++;
    else this.#accounts.set(account, { sessions: 1 });
  }

  /** A session of `account` ended: its buckets go with the last one. */
  detach(account: string): void {
    const buckets = this.#accounts.get(account);
    if (!buckets) return;
    if (--buckets.sessions <= 0) this.#accounts.delete(account);
  }

  /** Accounts with buckets now. */
  get size(): number {
    return this.#accounts.size;
  }

  /**
   * Takes a token for a stanza of `kind` from `account`: 0 to handle it now, the ms it must
   * wait, or -1 when that wait would pass the maximum delay (no token is then taken).
   */
  reserve(account: string, kind: StanzaKind, now: number): StanzaVerdict {
    const rate = this.#rates[kind];
    if (!(rate > 0)) return 0;
    const buckets = this.#accounts.get(account);
    if (!buckets) return 0;
    const bucket = buckets[kind] ??= new TokenBucket(
      rate,
      Math.max(1, rate * this.#rates.burstSeconds),
      now,
    );
    const wait = bucket.take(1, now);
    if (wait > this.#rates.maxDelaySeconds * 1000) {
      bucket.giveBack(1);
      return -1;
    }
    return wait;
  }
}
