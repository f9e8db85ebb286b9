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
  sent: boolean;
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
    const limitMs = (config.get<number>("s2s_connect_timeout") +
      config.get<number>("s2s_auth_timeout")) * 1000;
    this.#timer = setTimeout(() => {
      this.#fail(
        "remote-server-timeout",
        `No authenticated link to '${this.remote}' after ${Math.round(limitMs / 1000)} s`,
      );
    }, limitMs);
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
    return new Promise((resolve, reject) => {
      const pending: PendingVerify = { streamId, key, sent: false, resolve, reject };
      this.#verifies.push(pending);
      if (this.stream?.negotiable) this.#sendVerifies(this.stream);
    });
  }

  /** Closes the link politely. */
  close(reason = "Closed by the administrator"): void {
    if (this.state === "failed" || this.state === "closed") return;
    if (!this.stream) {
      this.#fail("remote-server-not-found", reason);
      return;
    }
    this.stream.closeReason ??= reason;
    this.stream.close();
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
        ready: () => this.#onReady(),
        failed: (_s, condition, reason) => this.#fail(condition, reason),
        verified: (id, valid) => this.#onVerified(id, valid),
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
    for (const pending of this.#verifies) {
      if (pending.sent) continue;
      pending.sent = true;
      stream.sendVerify(pending.streamId, pending.key);
    }
  }

  #onVerified(streamId: string, valid: boolean): void {
    const index = this.#verifies.findIndex((p) => p.sent && p.streamId === streamId);
    if (index < 0) return;
    const [pending] = this.#verifies.splice(index, 1);
    pending.resolve(valid);
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
    if (this.stream) {
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
    this.#rejectVerifies(this.stream?.closeReason ?? "The link closed");
    this.#onEnd(this);
  }

  #rejectVerifies(reason: string): void {
    const verifies = this.#verifies;
    this.#verifies = [];
    for (const pending of verifies) pending.reject(new Error(reason));
  }
}
