// The prioritised event bus every host owns: the router fires stanza events on it, modules
// hook them, and a handler that returns true (handled) stops the rest from running.

import { getLogger } from "./log.ts";

const log = getLogger("events");

/** What a handler returns: true means "handled, stop propagation"; a promise counts as handled. */
export type HandlerResult = boolean | void | undefined | Promise<unknown>;

/** An event handler. */
export type EventHandler<P> = (payload: P) => HandlerResult;

interface Registration {
  handler: EventHandler<never>;
  priority: number;
  seq: number;
}

/**
 * A prioritised, synchronous event emitter. Handlers with higher priority run first; equal
 * priorities run in registration order. `fire` returns true when a handler returned true
 * (or a promise, whose rejection is logged).
 *
 * @example
 * ```ts
 * const bus = new EventBus<{ ping: { n: number } }>();
 * const off = bus.on("ping", ({ n }) => n > 1);
 * bus.fire("ping", { n: 2 }); // true
 * off();
 * ```
 */
export class EventBus<Events extends object = Record<string, unknown>> {
  #handlers = new Map<string, Registration[]>();
  #seq = 0;

  /** Adds a handler; returns a function that removes it. Default priority 0. */
  on<K extends keyof Events & string>(
    name: K,
    handler: EventHandler<Events[K]>,
    priority = 0,
  ): () => void {
    const list = this.#handlers.get(name) ?? [];
    const registration: Registration = {
      handler: handler as EventHandler<never>,
      priority,
      seq: this.#seq++,
    };
    list.push(registration);
    list.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    this.#handlers.set(name, list);
    return () => this.#remove(name, registration);
  }

  /** Removes a handler added with `on`. */
  off<K extends keyof Events & string>(name: K, handler: EventHandler<Events[K]>): void {
    const list = this.#handlers.get(name);
    const found = list?.find((r) => r.handler === (handler as EventHandler<never>));
    if (found) this.#remove(name, found);
  }

  #remove(name: string, registration: Registration): void {
    const list = this.#handlers.get(name);
    if (!list) return;
    const index = list.indexOf(registration);
    if (index >= 0) list.splice(index, 1);
    if (list.length === 0) this.#handlers.delete(name);
  }

  /** Runs the handlers of an event in priority order; true when one handled it. */
  fire<K extends keyof Events & string>(name: K, payload: Events[K]): boolean {
    const list = this.#handlers.get(name);
    if (!list) return false;
    // Copy: handlers may unhook themselves while running.
    for (const registration of list.length === 1 ? list : list.slice()) {
      let result: HandlerResult;
      try {
        result = (registration.handler as EventHandler<Events[K]>)(payload);
      } catch (error) {
        log.error("Handler for {event} threw: {error}", { event: name, error });
        return true;
      }
      if (result === true) return true;
      if (result instanceof Promise) {
        result.catch((error) =>
          log.error("Async handler for {event} failed: {error}", { event: name, error })
        );
        return true;
      }
    }
    return false;
  }

  /** True when at least one handler listens for the event. */
  has(name: string): boolean {
    return this.#handlers.has(name);
  }

  /** Number of handlers across all events (tests check nothing is left behind). */
  get size(): number {
    let total = 0;
    for (const list of this.#handlers.values()) total += list.length;
    return total;
  }

  /** Names of events that have handlers. */
  eventNames(): string[] {
    return [...this.#handlers.keys()];
  }
}
