// The prioritised event bus every host owns: the router fires stanza events on it, modules
// hook them, and a handler that returns true (handled) stops the rest from running. A handler
// may finish later: its promise is awaited, and only when it resolves true is the event taken.

import { getLogger } from "./log.ts";

const log = getLogger("events");

/**
 * What a handler returns: true means "handled, stop propagation". A promise is awaited before
 * the next handler runs: resolving true means handled, anything else lets the event go on to
 * the next handler (and the caller's default). A rejection is reported (see
 * {@link HandlerFailure}) and counts as handled, like a throw.
 */
export type HandlerResult = boolean | void | undefined | Promise<unknown>;

/**
 * What `fire` returns: whether a handler took the event, or, once a handler answered with a
 * promise, a promise of that. Use {@link whenUnhandled} to go on only when nobody took it.
 */
export type FireResult = boolean | Promise<boolean>;

/**
 * Runs `next` when the event was not handled: at once for a synchronous answer, or after the
 * asynchronous handlers declined.
 */
export function whenUnhandled(result: FireResult, next: () => void): void {
  if (result === false) next();
  else if (result !== true) result.then((handled) => handled || next());
}

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
 * A prioritised event emitter. Handlers with higher priority run first; equal priorities run in
 * registration order. `fire` returns true when a handler returned true or threw, false when none
 * took the event, and a promise of that when a handler returned a promise: the remaining
 * handlers then run after it resolved (not true). A throw or a rejection is logged with the
 * handler's owner and passed to `onHandlerFailure`.
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

  /**
   * Runs the handlers of an event in priority order: true when one handled it, or a promise of
   * that once a handler answered with a promise (see {@link whenUnhandled}).
   */
  fire<K extends keyof Events & string>(name: K, payload: Events[K]): FireResult {
    const list = this.#handlers.get(name);
    if (!list) return false;
    // Copy: handlers may unhook themselves while running.
    return this.#run(list.length === 1 ? list : list.slice(), 0, name, payload);
  }

  #run<K extends keyof Events & string>(
    list: Registration[],
    from: number,
    name: K,
    payload: Events[K],
  ): FireResult {
    for (let i = from; i < list.length; i++) {
      const registration = list[i];
      let result: HandlerResult;
      try {
        result = (registration.handler as EventHandler<Events[K]>)(payload);
      } catch (error) {
        this.#failed({ event: name, owner: registration.owner, payload, error, async: false });
        return true;
      }
      if (result === true) return true;
      if (result instanceof Promise) return this.#await(result, list, i, name, payload);
    }
    return false;
  }

  async #await<K extends keyof Events & string>(
    pending: Promise<unknown>,
    list: Registration[],
    at: number,
    name: K,
    payload: Events[K],
  ): Promise<boolean> {
    try {
      if (await pending === true) return true;
    } catch (error) {
      const owner = list[at].owner;
      this.#failed({ event: name, owner, payload, error, async: true });
      return true;
    }
    return await this.#run(list, at + 1, name, payload);
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
