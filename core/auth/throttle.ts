// Per-IP authentication failure throttle: after too many failed logins from one address in a
// window, further attempts from it are refused until the window has passed.

/** Options for `AuthThrottle`. */
export interface AuthThrottleOptions {
  /** Failures allowed per window before the address is refused. */
  maxFailures: number;
  /** Window length in milliseconds. */
  windowMs: number;
}

interface Entry {
  failures: number;
  windowStart: number;
}

/** Counts authentication failures per IP address in fixed windows. */
export class AuthThrottle {
  #entries = new Map<string, Entry>();
  #options: AuthThrottleOptions;

  constructor(options: AuthThrottleOptions) {
    this.#options = { ...options };
  }

  /** Applies new limits (config reload); counts already recorded are kept. */
  configure(options: AuthThrottleOptions): void {
    this.#options = { ...options };
  }

  #entry(ip: string, now: number): Entry | undefined {
    const entry = this.#entries.get(ip);
    if (entry && now - entry.windowStart >= this.#options.windowMs) {
      this.#entries.delete(ip);
      return undefined;
    }
    return entry;
  }

  /** True when the address has used up its failures in the current window. */
  isBlocked(ip: string, now = Date.now()): boolean {
    const entry = this.#entry(ip, now);
    return entry !== undefined && entry.failures >= this.#options.maxFailures;
  }

  /** Records one failed attempt from the address. */
  recordFailure(ip: string, now = Date.now()): void {
    const entry = this.#entry(ip, now);
    if (entry) entry.failures++;
    else this.#entries.set(ip, { failures: 1, windowStart: now });
    if (this.#entries.size > 100_000) this.prune(now);
  }

  /** Forgets an address's failures (after a successful login). */
  recordSuccess(ip: string): void {
    this.#entries.delete(ip);
  }

  /** Drops expired windows. */
  prune(now = Date.now()): void {
    for (const [ip, entry] of this.#entries) {
      if (now - entry.windowStart >= this.#options.windowMs) this.#entries.delete(ip);
    }
  }
}
