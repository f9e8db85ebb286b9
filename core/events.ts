// The prioritised event bus every host owns: the router fires stanza events on it, modules
// hook them, and a handler that returns true (handled) stops the rest from running.

import { getLogger } from "./log.ts";

const log = getLogger("events");

/**
 * What a handler returns: true means "handled, stop propagation". A promise also stops
 * propagation: the async handler has taken the event, and if the promise rejects the bus
 * reports the failure (see {@link HandlerFailure}) instead of treating it as handled.
 */
export type HandlerResult = boolean | void | undefined | Promise<unknown>;

/** An event handler. */
export type EventHandler<P> = (payload: P) => HandlerResult;

/** Where a handler comes from and where it runs among the others. */
export interface HookOptions {
  /** Higher runs first; default 0. */
  priority?: number;
  /** Who registered it (a module name), named in the log when it fails. */
  owner?: string;
}

/** A handler that threw, or whose promise rejected. */
export interface HandlerFailure<P = unknown> {
  /** The event being fired. */
  event: string;
  /** The handler's owner (module name), when it registered with one. */
  owner?: string;
  /** The payload the handler received. */
  payload: P;
  /** What was thrown or rejected with. */
  error: unknown;
  /** True when a returned promise rejected, false when the handler threw. */
  async: boolean;
}

/** Options for {@link EventBus}. */
export interface EventBusOptions {
  /**
   * Called after a failing handler was logged, e.g. to answer an iq that nobody else will.
   * Propagation stops at the failed handler either way.
   */
  onHandlerFailure?: (failure: HandlerFailure) => void;
}

interface Registration {
  handler: EventHandler<never>;
  priority: number;
  seq: number;
  owner: string | undefined;
}

/**
 * A prioritised, synchronous event emitter. Handlers with higher priority run first; equal
 * priorities run in registration order. `fire` returns true when a handler returned true,
 * returned a promise, or threw; a throw or a rejection is logged with the handler's owner and
 * passed to `onHandlerFailure`.
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
  #onHandlerFailure: ((failure: HandlerFailure) => void) | undefined;

  /** Creates an empty bus. */
  constructor(options: EventBusOptions = {}) {
    this.#onHandlerFailure = options.onHandlerFailure;
  }

  /**
   * Adds a handler; returns a function that removes it. `options` is the priority (default 0)
   * or {@link HookOptions}.
   */
  on<K extends keyof Events & string>(
    name: K,
    handler: EventHandler<Events[K]>,
    options: number | HookOptions = 0,
  ): () => void {
    const list = this.#handlers.get(name) ?? [];
    const registration: Registration = {
      handler: handler as EventHandler<never>,
      priority: typeof options === "number" ? options : options.priority ?? 0,
      seq: this.#seq++,
      owner: typeof options === "number" ? undefined : options.owner,
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
        this.#failed({ event: name, owner: registration.owner, payload, error, async: false });
        return true;
      }
      if (result === true) return true;
      if (result instanceof Promise) {
        const owner = registration.owner;
        result.catch((error) => this.#failed({ event: name, owner, payload, error, async: true }));
        return true;
      }
    }
    return false;
  }

  #failed(failure: HandlerFailure): void {
    const { event, error } = failure;
    const owner = failure.owner ?? "an unnamed handler";
    if (failure.async) {
      log.error("Async handler of {owner} for {event} failed: {error}", { owner, event, error });
    } else log.error("Handler of {owner} for {event} threw: {error}", { owner, event, error });
    try {
      this.#onHandlerFailure?.(failure);
    } catch (reportError) {
      log.error("Handling the failure of {owner} for {event} threw: {error}", {
        owner,
        event,
        error: reportError,
      });
    }
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
