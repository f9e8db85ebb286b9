// Outbound TCP for federation: Happy Eyeballs (RFC 8305) over an ordered list of targets, so a
// dead address or family costs one attempt delay instead of a full connect timeout.

import * as net from "node:net";
import { type HostAddresses, Resolver } from "./dns.ts";

/** A place to connect to: a host name or IP literal and a port. */
export interface ConnectTarget {
  /** Host name (resolved to AAAA and A) or IP literal. */
  host: string;
  /** TCP port. */
  port: number;
}

/** What {@link HappyEyeballsOptions.connectFn} is asked to connect to (always an IP literal). */
export interface ConnectRequest {
  /** IP address. */
  host: string;
  /** TCP port. */
  port: number;
  /** Address family of `host`. */
  family: 4 | 6;
}

/** Options for {@link happyEyeballs}. */
export interface HappyEyeballsOptions {
  /** Resolves host names; default a new system {@link Resolver}. */
  resolver?: Pick<Resolver, "addresses">;
  /** Milliseconds before the next attempt starts while earlier ones are pending. Default 250. */
  attemptDelayMs?: number;
  /** Milliseconds for the whole race (DNS included). Default 10000. */
  timeoutMs?: number;
  /** Aborts the race: every attempt is destroyed and the promise rejects. */
  signal?: AbortSignal;
  /** Starts one TCP connection; default `net.connect`. Tests inject sockets that never connect. */
  connectFn?: (request: ConnectRequest) => net.Socket;
}

/** What happened to one address (or to a target whose name did not resolve). */
export interface AttemptReport {
  /** The target's host as given. */
  host: string;
  /** The port. */
  port: number;
  /** The IP address tried; absent when the host did not resolve. */
  address?: string;
  /** Family of `address`. */
  family?: 4 | 6;
  /** How the attempt ended. */
  outcome: "connected" | "failed" | "cancelled" | "unresolved";
  /** Why it failed or was cancelled. */
  reason?: string;
  /** "first", "delay" (the previous attempt was still pending) or "failure" (it had failed). */
  startedBy?: "first" | "delay" | "failure";
}

/** The winner of {@link happyEyeballs}. */
export interface HappyEyeballsResult<T extends ConnectTarget> {
  /** The connected socket; every other attempt has been destroyed. */
  socket: net.Socket;
  /** The target the winning address belongs to. */
  target: T;
  /** The IP address connected to. */
  address: string;
  /** Its family. */
  family: 4 | 6;
  /** Every attempt in the order started, the winner included. */
  attempts: AttemptReport[];
}

/** No target could be reached; `attempts` holds each address's failure. */
export class ConnectError extends Error {
  /** Every attempt and unresolved target, in order. */
  readonly attempts: AttemptReport[];
  /** The overall timeout ended the race. */
  readonly timedOut: boolean;

  constructor(summary: string, attempts: AttemptReport[], timedOut: boolean) {
    const details = attempts.map(describeAttempt).join("; ");
    super(details ? `${summary}: ${details}` : summary);
    this.name = "ConnectError";
    this.attempts = attempts;
    this.timedOut = timedOut;
  }
}

const DEFAULT_ATTEMPT_DELAY_MS = 250;
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Connects to the first reachable address of `targets`, in order: each target's addresses are
 * interleaved IPv6 first (RFC 8305 §4), one attempt starts, and the next starts after
 * `attemptDelayMs` or as soon as the pending one fails (§5). The first connection wins and every
 * other attempt is destroyed. A target's name is resolved only when the addresses before it have
 * all been tried. Plain TCP: STARTTLS or direct TLS is the caller's business.
 *
 * Simplification: AAAA and A of one name are awaited together (no Resolution Delay, §3).
 *
 * @example
 * ```ts
 * const { socket, target } = await happyEyeballs(resolved.targets, { resolver });
 * ```
 */
export function happyEyeballs<T extends ConnectTarget>(
  targets: readonly T[],
  options: HappyEyeballsOptions = {},
): Promise<HappyEyeballsResult<T>> {
  return new Race(targets, options).run();
}

interface Candidate<T> {
  target: T;
  address: string;
  family: 4 | 6;
}

interface Attempt<T> extends Candidate<T> {
  socket: net.Socket;
  report: AttemptReport;
  cleanup: () => void;
}

class Race<T extends ConnectTarget> {
  #targets: readonly T[];
  #resolver: Pick<Resolver, "addresses">;
  #attemptDelayMs: number;
  #timeoutMs: number;
  #signal?: AbortSignal;
  #connect: (request: ConnectRequest) => net.Socket;

  #nextTarget = 0;
  #queue: Candidate<T>[] = [];
  #reports: AttemptReport[] = [];
  #active = new Set<Attempt<T>>();
  #pulling = false;
  #exhausted = false;
  #done = false;
  #delayTimer?: ReturnType<typeof setTimeout>;
  #timeoutTimer?: ReturnType<typeof setTimeout>;
  #onAbort = () => this.#fail("Connection attempts aborted", false);
  #resolve!: (result: HappyEyeballsResult<T>) => void;
  #reject!: (error: Error) => void;

  constructor(targets: readonly T[], options: HappyEyeballsOptions) {
    this.#targets = targets;
    this.#resolver = options.resolver ?? new Resolver();
    this.#attemptDelayMs = options.attemptDelayMs ?? DEFAULT_ATTEMPT_DELAY_MS;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#signal = options.signal;
    this.#connect = options.connectFn ??
      ((request) =>
        net.connect({ host: request.host, port: request.port, family: request.family }));
  }

  run(): Promise<HappyEyeballsResult<T>> {
    const promise = new Promise<HappyEyeballsResult<T>>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    if (this.#signal?.aborted) {
      this.#fail("Connection attempts aborted", false);
      return promise;
    }
    if (this.#targets.length === 0) {
      this.#fail("No targets to connect to", false);
      return promise;
    }
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    this.#timeoutTimer = setTimeout(
      () => this.#fail(`Connection attempts timed out after ${this.#timeoutMs} ms`, true),
      this.#timeoutMs,
    );
    void this.#startNext("first");
    return promise;
  }

  /** Starts the next attempt unless one is already being prepared (its start covers this). */
  async #startNext(startedBy: "first" | "delay" | "failure"): Promise<void> {
    if (this.#done || this.#pulling) return;
    clearTimeout(this.#delayTimer);
    this.#delayTimer = undefined;
    this.#pulling = true;
    let candidate: Candidate<T> | undefined;
    try {
      candidate = await this.#nextCandidate();
    } finally {
      this.#pulling = false;
    }
    if (this.#done) return;
    if (!candidate) {
      this.#exhausted = true;
      this.#failIfFinished();
      return;
    }
    this.#start(candidate, startedBy);
    this.#delayTimer = setTimeout(() => void this.#startNext("delay"), this.#attemptDelayMs);
  }

  async #nextCandidate(): Promise<Candidate<T> | undefined> {
    while (this.#queue.length === 0 && this.#nextTarget < this.#targets.length) {
      const target = this.#targets[this.#nextTarget++];
      let addresses: HostAddresses;
      try {
        addresses = await this.#resolver.addresses(target.host);
      } catch (error) {
        this.#reports.push({
          host: target.host,
          port: target.port,
          outcome: "unresolved",
          reason: error instanceof Error ? error.message : String(error),
        });
        if (this.#done) return undefined;
        continue;
      }
      if (this.#done) return undefined;
      this.#queue.push(...interleave(target, addresses));
    }
    return this.#queue.shift();
  }

  #start(candidate: Candidate<T>, startedBy: "first" | "delay" | "failure"): void {
    const report: AttemptReport = {
      host: candidate.target.host,
      port: candidate.target.port,
      address: candidate.address,
      family: candidate.family,
      outcome: "failed",
      startedBy,
    };
    this.#reports.push(report);
    let socket: net.Socket;
    try {
      socket = this.#connect({
        host: candidate.address,
        port: candidate.target.port,
        family: candidate.family,
      });
    } catch (error) {
      report.reason = error instanceof Error ? error.message : String(error);
      queueMicrotask(() => void this.#startNext("failure"));
      return;
    }
    const onConnect = () => this.#win(attempt);
    const onError = (error: Error) => this.#lose(attempt, error);
    const onClose = () => this.#lose(attempt, new Error("Connection closed before connecting"));
    const attempt: Attempt<T> = {
      ...candidate,
      socket,
      report,
      cleanup: () => {
        socket.removeListener("connect", onConnect);
        socket.removeListener("error", onError);
        socket.removeListener("close", onClose);
      },
    };
    socket.once("connect", onConnect);
    socket.on("error", onError);
    socket.once("close", onClose);
    this.#active.add(attempt);
  }

  #win(attempt: Attempt<T>): void {
    if (this.#done) return;
    this.#active.delete(attempt);
    attempt.cleanup();
    attempt.report.outcome = "connected";
    this.#finish("Another attempt connected first");
    this.#resolve({
      socket: attempt.socket,
      target: attempt.target,
      address: attempt.address,
      family: attempt.family,
      attempts: this.#reports,
    });
  }

  #lose(attempt: Attempt<T>, error: Error): void {
    if (!this.#active.delete(attempt)) return;
    attempt.cleanup();
    attempt.socket.destroy();
    attempt.report.reason = describeSocketError(error);
    if (this.#done) return;
    void this.#startNext("failure");
  }

  #failIfFinished(): void {
    if (this.#exhausted && this.#active.size === 0 && !this.#pulling && !this.#done) {
      this.#fail("Cannot connect to any address", false);
    }
  }

  #fail(summary: string, timedOut: boolean): void {
    if (this.#done) return;
    this.#finish(timedOut ? "Timed out" : "Aborted");
    this.#reject(new ConnectError(summary, this.#reports, timedOut));
  }

  /** Stops timers and destroys every pending attempt, marking it cancelled with `reason`. */
  #finish(reason: string): void {
    this.#done = true;
    clearTimeout(this.#delayTimer);
    clearTimeout(this.#timeoutTimer);
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const attempt of this.#active) {
      attempt.cleanup();
      // A late error from a destroyed socket must not become an unhandled 'error' event.
      attempt.socket.on("error", () => {});
      attempt.socket.destroy();
      attempt.report.outcome = "cancelled";
      attempt.report.reason = reason;
    }
    this.#active.clear();
  }
}

/** Alternates families, IPv6 first (RFC 8305 §4 with a First Address Family Count of 1). */
function interleave<T>(target: T, addresses: HostAddresses): Candidate<T>[] {
  const out: Candidate<T>[] = [];
  const length = Math.max(addresses.v6.length, addresses.v4.length);
  for (let i = 0; i < length; i++) {
    if (i < addresses.v6.length) out.push({ target, address: addresses.v6[i], family: 6 });
    if (i < addresses.v4.length) out.push({ target, address: addresses.v4[i], family: 4 });
  }
  return out;
}

function describeSocketError(error: Error): string {
  const code = (error as { code?: string }).code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ENETUNREACH" || code === "EHOSTUNREACH") return "unreachable";
  if (code === "ETIMEDOUT") return "timed out";
  return error.message;
}

function describeAttempt(report: AttemptReport): string {
  if (report.address === undefined) return `${report.host}: ${report.reason ?? "not resolved"}`;
  const where = report.family === 6
    ? `[${report.address}]:${report.port}`
    : `${report.address}:${report.port}`;
  const name = report.host === report.address ? where : `${report.host} (${where})`;
  return `${name} ${report.outcome === "cancelled" ? "cancelled" : "failed"}: ${
    report.reason ?? "unknown reason"
  }`;
}
