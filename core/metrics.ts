// Server counters for `stats show` in the admin shell: cheap named counters that modules and
// the core bump on their hot paths, read as one snapshot.

/** A monotonically increasing counter. */
export interface Counter {
  /** Adds `n` (default 1). */
  inc(n?: number): void;
  /** The current value. */
  readonly value: number;
}

class SimpleCounter implements Counter {
  value = 0;
  inc(n = 1): void {
    this.value += n;
  }
}

/** Named counters, created on first use. */
export class Metrics {
  #counters = new Map<string, SimpleCounter>();

  /** The counter with this name (e.g. "c2s.auth_failures"), created at 0 on first use. */
  counter(name: string): Counter {
    let counter = this.#counters.get(name);
    if (!counter) this.#counters.set(name, counter = new SimpleCounter());
    return counter;
  }

  /** Every counter's value, sorted by name. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of [...this.#counters.keys()].sort()) {
      out[name] = this.#counters.get(name)!.value;
    }
    return out;
  }
}
