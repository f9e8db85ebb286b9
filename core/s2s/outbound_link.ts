// One local->remote domain pair's way out: finds the remote server (SRV, Happy Eyeballs), holds
// a bounded queue while the stream is set up, bounces it when the link fails or times out, and
// carries dialback verification requests for that pair.

import { getLogger } from "../log.ts";
import { ConnectError, happyEyeballs } from "../net/connect.ts";
import type { ServerTarget } from "../net/dns.ts";
import { bounce } from "../router.ts";
import type { Session } from "../sessions.ts";
import type { Element } from "../xml/element.ts";
import type { S2SContext } from "./context.ts";
import { type S2SFailure, S2SOut } from "./s2s_out.ts";
import type { S2SAuthMethod } from "./s2s_stream.ts";

const log = getLogger("s2s");

/** Where a link is. */
export type LinkState = "resolving" | "connecting" | "negotiating" | "ready" | "failed" | "closed";

interface Queued {
  stanza: Element;
  origin: Session;
}

interface PendingVerify {
  streamId: string;
  key: string;
  resolve: (valid: boolean) => void;
  reject: (error: Error) => void;
}

/** The outbound side of federation for one (local, remote) pair. */
export class OutboundLink {
  readonly local: string;
  readonly remote: string;
  readonly startedAt = Date.now();
  state: LinkState = "resolving";
  /** The stream once connected. */
  stream: S2SOut | undefined;
  /** Why the link failed, when it did. */
  failure: string | undefined;
  /** How we authenticated for this pair, once ready. */
  authMethod: S2SAuthMethod | undefined;
  /** The stream is another pair's, shared by dialback piggybacking (XEP-0220 §2.4). */
  shared = false;
  #ctx: S2SContext;
  #queue: Queued[] = [];
  #verifies: PendingVerify[] = [];
  #abort = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #onEnd: (link: OutboundLink) => void;

  /** `onEnd` is called once when the link is finished (failed or closed). */
  constructor(ctx: S2SContext, local: string, remote: string, onEnd: (link: OutboundLink) => void) {
    this.#ctx = ctx;
    this.local = local;
    this.remote = remote;
    this.#onEnd = onEnd;
  }

  /** Stanzas waiting for the link. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves and connects; failures bounce the queue. */
  start(): void {
    const config = this.#ctx.config();
    this.#startTimer(
      (config.get<number>("s2s_connect_timeout") + config.get<number>("s2s_auth_timeout")) * 1000,
    );
    this.#connect().catch((error) => {
      this.#fail(
        "remote-server-not-found",
        `Cannot connect to '${this.remote}': ${(error as Error).message}`,
      );
    });
  }

  /** Sends now when ready, else queues (bounded: overflow bounces the stanza). */
  send(stanza: Element, origin: Session): void {
    if (this.state === "ready" && this.stream) {
      this.stream.send(stanza);
      return;
    }
    const limit = this.#ctx.config().get<number>("s2s_queue_limit");
    if (this.#queue.length >= limit) {
      bounce(
        stanza,
        origin,
        "remote-server-timeout",
        `Too many stanzas are waiting for the link to '${this.remote}'`,
      );
      return;
    }
    this.#queue.push({ stanza, origin });
  }

  /** Asks the remote server whether it sent `key` on our stream `streamId`. */
  verify(streamId: string, key: string): Promise<boolean> {
    if (this.stream?.negotiable) return this.stream.sendVerify(this.local, streamId, key);
    return new Promise((resolve, reject) => {
      this.#verifies.push({ streamId, key, resolve, reject });
    });
  }

  /**
   * Authenticates this pair over `stream`, another local domain's ready link to the same
   * remote server, by dialback instead of opening a connection; falls back to a connection
   * of its own when the remote refuses.
   */
  piggyback(stream: S2SOut): void {
    this.state = "negotiating";
    this.shared = true;
    this.stream = stream;
    this.#startTimer(this.#ctx.config().get<number>("s2s_auth_timeout") * 1000);
    stream.whenGone(() => {
      if (this.stream === stream) this.#onGone();
    });
    stream.authenticateAlso(this.local).then(() => {
      if (this.#ended) return;
      log.info("Link {local} -> {remote} ready (dialback on the link of {other})", {
        local: this.local,
        remote: this.remote,
        other: stream.local,
      });
      this.authMethod = "dialback";
      this.#onReady();
    }, (error) => {
      if (this.#ended || stream.closed) return;
      log.info("Cannot share the link to {remote} with {local}: {error}; connecting", {
        remote: this.remote,
        local: this.local,
        error: (error as Error).message,
      });
      this.shared = false;
      this.stream = undefined;
      this.state = "resolving";
      clearTimeout(this.#timer);
      this.start();
    });
  }

  /** Closes the link politely (a shared stream stays for the domain that opened it). */
  close(reason = "Closed by the administrator"): void {
    if (this.state === "failed" || this.state === "closed") return;
    if (!this.stream) {
      this.#fail("remote-server-not-found", reason);
      return;
    }
    if (this.shared) {
      this.#onGone();
      return;
    }
    this.stream.closeReason ??= reason;
    this.stream.close();
  }

  /** Fails the link with remote-server-timeout unless it is ready within `ms`. */
  #startTimer(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#fail(
        "remote-server-timeout",
        `No authenticated link to '${this.remote}' after ${Math.round(ms / 1000)} s`,
      );
    }, ms);
  }

  async #connect(): Promise<void> {
    const ctx = this.#ctx;
    const found = await ctx.resolver.xmppServerTargets(this.remote);
    if (this.#ended) return;
    if (found.targets.length === 0) {
      this.#fail("remote-server-not-found", found.reason);
      return;
    }
    log.debug("Connecting {local} -> {remote}: {reason}", {
      local: this.local,
      remote: this.remote,
      reason: found.reason,
    });
    this.state = "connecting";
    let result;
    try {
      result = await happyEyeballs<ServerTarget>(found.targets, {
        resolver: ctx.resolver,
        timeoutMs: ctx.config().get<number>("s2s_connect_timeout") * 1000,
        signal: this.#abort.signal,
      });
    } catch (error) {
      if (this.#ended) return;
      // RFC 6120 §10.4.3: not found when no name resolved, timeout when connecting failed.
      const unresolved = error instanceof ConnectError &&
        error.attempts.every((attempt) => attempt.outcome === "unresolved");
      this.#fail(
        unresolved ? "remote-server-not-found" : "remote-server-timeout",
        `Cannot connect to '${this.remote}': ${(error as Error).message}`,
      );
      return;
    }
    if (this.#ended) {
      result.socket.destroy();
      return;
    }
    this.state = "negotiating";
    const target = result.target;
    const stream = new S2SOut(result.socket, ctx, {
      local: this.local,
      remote: this.remote,
      directTls: target.directTls,
      target: `${target.host}:${target.port} (${result.address})`,
      events: {
        negotiable: (s) => this.#sendVerifies(s),
        ready: (s) => {
          this.authMethod = s.authMethod;
          this.#onReady();
        },
        failed: (_s, condition, reason) => this.#fail(condition, reason),
        gone: () => this.#onGone(),
      },
    });
    this.stream = stream;
    await stream.start();
  }

  get #ended(): boolean {
    return this.state === "failed" || this.state === "closed";
  }

  #sendVerifies(stream: S2SOut): void {
    const verifies = this.#verifies;
    this.#verifies = [];
    for (const { streamId, key, resolve, reject } of verifies) {
      stream.sendVerify(this.local, streamId, key).then(resolve, reject);
    }
  }

  #onReady(): void {
    clearTimeout(this.#timer);
    this.state = "ready";
    const stream = this.stream!;
    const queue = this.#queue;
    this.#queue = [];
    for (const { stanza } of queue) stream.send(stanza);
  }

  #fail(condition: S2SFailure, reason: string): void {
    if (this.#ended) return;
    this.state = "failed";
    this.failure = reason;
    clearTimeout(this.#timer);
    this.#abort.abort();
    if (this.stream && !this.shared) {
      this.stream.fail(condition, reason);
    } else {
      log.warn("Link {local} -> {remote} failed: {reason}", {
        local: this.local,
        remote: this.remote,
        reason,
      });
      this.#ctx.refused({ direction: "out", local: this.local, remote: this.remote, reason });
    }
    const queue = this.#queue;
    this.#queue = [];
    for (const { stanza, origin } of queue) bounce(stanza, origin, condition, reason);
    this.#rejectVerifies(reason);
    this.#onEnd(this);
  }

  #onGone(): void {
    if (this.#ended) return;
    this.state = "closed";
    clearTimeout(this.#timer);
    const reason = this.stream?.closeReason ?? "The link closed";
    // A shared stream can go away while this pair is still authenticating on it.
    const queue = this.#queue;
    this.#queue = [];
    for (const { stanza, origin } of queue) {
      bounce(stanza, origin, "remote-server-timeout", reason);
    }
    this.#rejectVerifies(reason);
    this.#onEnd(this);
  }

  #rejectVerifies(reason: string): void {
    const verifies = this.#verifies;
    this.#verifies = [];
    for (const pending of verifies) pending.reject(new Error(reason));
  }
}
