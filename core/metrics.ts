// Server counters: cheap named counters that modules and the core bump on their hot paths, read
// as one snapshot by the shell's `stats counters` (and some of them by /metrics and `stats show`).

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

/**
 * Counts stanzas by kind (message, presence, iq) under `PREFIX.KIND` counters looked up once,
 * so counting on a hot path (each stanza a stream writes) is one comparison and one addition.
 */
export class StanzaCounter {
  #message: Counter;
  #presence: Counter;
  #iq: Counter;

  /** Creates (or reuses) the counters `prefix.message`, `prefix.presence` and `prefix.iq`. */
  constructor(metrics: Metrics, prefix: string) {
    this.#message = metrics.counter(`${prefix}.message`);
    this.#presence = metrics.counter(`${prefix}.presence`);
    this.#iq = metrics.counter(`${prefix}.iq`);
  }

  /** Counts one stanza by its element name; other names are ignored. */
  count(name: string): void {
    if (name === "message") this.#message.inc();
    else if (name === "presence") this.#presence.inc();
    else if (name === "iq") this.#iq.inc();
  }
}

/** Named counters, created on first use. */
export class Metrics {
  #counters = new Map<string, SimpleCounter>();
  /**
   * Stanzas the server wrote to client, server-to-server and component streams, by kind
   * (`stanzas_out.message`, ...); routed stanzas are `stanzas.KIND`.
   */
  readonly stanzasOut: StanzaCounter = new StanzaCounter(this, "stanzas_out");

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
