// The server's scheduled timers, kept in one list so the shell's `debug timers` (Prosody's
// `debug:timers()`) can show them: Deno has no list of pending timers, so the timers modules
// and the core set through here are the ones the server can name.

/** Options for {@link ScheduledTimers.schedule}. */
export interface ScheduleOptions {
  /** Who set it: a module's name, or "core". */
  owner: string;
  /** The host it serves, when it serves one. */
  host?: string;
  /** What it does, for the listing (e.g. "archive expiry"); empty when not said. */
  label?: string;
  /** Run every `ms` until cancelled, instead of once. */
  repeat?: boolean;
  /** Do not keep the process alive for this timer alone (daily jobs). */
  unref?: boolean;
}

/** One pending timer as `debug timers` shows it. */
export interface TimerInfo {
  owner: string;
  host: string | null;
  label: string;
  /** The period of a repeating timer, or null for a one-off. */
  everyMs: number | null;
  /** When it is next due (ms epoch). */
  dueAt: number;
}

interface Entry extends TimerInfo {}

/**
 * Pending timers with who set them, for what, and when they are next due.
 *
 * @example
 * ```ts
 * const timers = new ScheduledTimers();
 * const cancel = timers.schedule(60_000, sweep, { owner: "core", label: "sweep", repeat: true });
 * timers.list(); // [{ owner: "core", label: "sweep", everyMs: 60000, dueAt: ..., host: null }]
 * cancel();
 * ```
 */
export class ScheduledTimers {
  #entries = new Set<Entry>();

  /** Runs `fn` after `ms` (every `ms` with `repeat`); returns a function cancelling it. */
  schedule(ms: number, fn: () => void, options: ScheduleOptions): () => void {
    const entry: Entry = {
      owner: options.owner,
      host: options.host ?? null,
      label: options.label ?? "",
      everyMs: options.repeat ? ms : null,
      dueAt: Date.now() + ms,
    };
    this.#entries.add(entry);
    let id: ReturnType<typeof setTimeout>;
    if (options.repeat) {
      id = setInterval(() => {
        entry.dueAt = Date.now() + ms;
        fn();
      }, ms);
    } else {
      id = setTimeout(() => {
        this.#entries.delete(entry);
        fn();
      }, ms);
    }
    if (options.unref) Deno.unrefTimer(id);
    return () => {
      clearTimeout(id);
      clearInterval(id);
      this.#entries.delete(entry);
    };
  }

  /** The pending timers, soonest due first. */
  list(): TimerInfo[] {
    return [...this.#entries].map((entry) => ({ ...entry })).sort((a, b) => a.dueAt - b.dueAt);
  }

  /** How many timers are pending. */
  get size(): number {
    return this.#entries.size;
  }
}
