// An outbound server-to-server stream (RFC 6120): we connected to a remote server to send it
// stanzas for one local domain. It negotiates TLS, checks the remote certificate against policy,
// then authenticates us by SASL EXTERNAL (XEP-0178) or dialback (XEP-0220). It also carries our
// dialback verification requests to that server when it is the authoritative one.

import type { Socket } from "node:net";
import * as tls from "node:tls";
import { getLogger } from "../log.ts";
import { peerChain, verifyPeerCertificate } from "../net/peer_certificate.ts";
import { Element, NS_SERVER } from "../xml/element.ts";
import {
  conditionName,
  NS_SASL,
  NS_STREAM,
  NS_TLS,
  type StreamErrorCondition,
} from "../xml/stanza.ts";
import type { S2SContext } from "./context.ts";
import { dialbackKey, NS_DIALBACK, NS_DIALBACK_FEATURE } from "./dialback.ts";
import { describeStreamError, type S2SAuthMethod, S2SStream } from "./s2s_stream.ts";

const log = getLogger("s2s");

/**
 * Stanza error conditions an outbound failure bounces queued stanzas with (RFC 6120 §10.4.3):
 * the remote domain did not resolve, or it did but no stream could be negotiated.
 */
export type S2SFailure = "remote-server-not-found" | "remote-server-timeout";

/** What the owning link learns from its stream. */
export interface S2SOutEvents {
  /** TLS (when required) is done: dialback verification requests may be sent. */
  negotiable(stream: S2SOut): void;
  /** Authenticated: stanzas may flow. */
  ready(stream: S2SOut): void;
  /** The stream cannot be used; `reason` is the exact cause. */
  failed(stream: S2SOut, condition: S2SFailure, reason: string): void;
  /** The stream is gone (after `failed`, idle close, or the remote closing). */
  gone(stream: S2SOut): void;
}

/** Options of one outbound stream. */
export interface S2SOutOptions {
  /** The local domain we speak for. */
  local: string;
  /** The remote domain. */
  remote: string;
  /** TLS right after connecting (an `_xmpps-server` SRV target, XEP-0368). */
  directTls: boolean;
  /** Where the TCP connection goes, for logs ("host:port"). */
  target: string;
  /** Callbacks to the owning link. */
  events: S2SOutEvents;
}

/** A connection we opened to a remote server for one local domain. */
export class S2SOut extends S2SStream {
  readonly kind = "s2sout" as const;
  readonly local: string;
  readonly #remote: string;
  readonly directTls: boolean;
  readonly target: string;
  /** How we authenticated, once we did. */
  authMethod: S2SAuthMethod | undefined;
  /** Stanzas may be sent. */
  ready = false;
  /** Dialback verification requests may be sent. */
  negotiable = false;
  #events: S2SOutEvents;
  #remoteStreamId = "";
  #dialbackOffered = false;
  #failed = false;
  /** Our `<db:verify/>` requests waiting for an answer, by "local id". */
  #verifies = new Map<string, { resolve: (valid: boolean) => void; reject: (e: Error) => void }>();
  /** Other local domains authenticating over this stream by dialback (XEP-0220 §2.4). */
  #extra = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  #goneListeners = new Set<() => void>();

  constructor(socket: Socket, ctx: S2SContext, options: S2SOutOptions) {
    super(socket, ctx, "s2sout");
    this.local = options.local;
    this.#remote = options.remote;
    this.directTls = options.directTls;
    this.target = options.target;
    this.#events = options.events;
  }

  get remote(): string {
    return this.#remote;
  }

  /** Starts the stream (after TLS first for a direct TLS target). */
  async start(): Promise<void> {
    if (this.directTls) {
      if (!await this.#startTls(this.transport.takeSocket())) return;
    } else {
      await this.transport.start(undefined);
    }
    this.#open();
  }

  #open(): void {
    this.sendHeader({ id: "", from: this.local, to: this.#remote });
  }

  protected sendHeaderBeforeError(): void {
    this.#open();
  }

  /** Sends a stanza (only once ready: the link queues before that). */
  send(stanza: Element): void {
    if (this.closed) return;
    this.writeElement(stanza);
    this.ctx.server.metrics.stanzasOut.count(stanza.name);
  }

  /**
   * Asks the remote (authoritative) server whether it sent `key` on the stream `streamId`
   * that it opened to `local` (XEP-0220 §2.1.3); resolves with its answer, rejects when the
   * stream goes away first. Only once `negotiable`.
   */
  sendVerify(local: string, streamId: string, key: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const verify = new Element("verify", {
        xmlns: NS_DIALBACK,
        from: local,
        to: this.#remote,
        id: streamId,
      });
      verify.t(key);
      this.#verifies.set(`${local} ${streamId}`, { resolve, reject });
      this.writeElement(verify);
    });
  }

  /**
   * True when another local domain may authenticate over this ready stream by dialback
   * (the remote offered dialback, so it accepts more domain pairs on one stream).
   */
  get multiplexable(): boolean {
    return this.ready && this.#dialbackOffered && !this.closed;
  }

  /** Authenticates one more local domain on this stream by dialback (piggybacking). */
  authenticateAlso(local: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#extra.set(local, { resolve, reject });
      this.#dialback(local);
    });
  }

  /** Calls `listener` once when the stream is gone. */
  whenGone(listener: () => void): void {
    this.#goneListeners.add(listener);
  }

  /**
   * Marks the stream failed: the link bounces its queue, then the stream closes, with a stream
   * error carrying `reason` when `streamError` is given (we refuse the remote server by policy).
   */
  fail(condition: S2SFailure, reason: string, streamError?: StreamErrorCondition): void {
    if (this.#failed) return;
    this.#failed = true;
    this.closeReason = reason;
    log.warn("Link {local} -> {remote} failed: {reason}", {
      local: this.local,
      remote: this.#remote,
      reason,
    });
    this.ctx.refused({ direction: "out", local: this.local, remote: this.#remote, reason });
    this.#events.failed(this, condition, reason);
    if (streamError) this.close(streamError, reason);
    else this.close();
  }

  protected onGone(): void {
    const why = new Error(this.closeReason ?? "The link closed");
    for (const pending of [...this.#verifies.values(), ...this.#extra.values()]) {
      pending.reject(why);
    }
    this.#verifies.clear();
    this.#extra.clear();
    for (const listener of this.#goneListeners) listener();
    if (!this.ready && !this.#failed) {
      this.#failed = true;
      const reason = this.closeReason ?? "The remote server closed the connection";
      this.#events.failed(this, "remote-server-timeout", reason);
    }
    this.#events.gone(this);
  }

  protected onStreamOpen(header: Element, defaultNs: string | undefined): void {
    if (header.name !== "stream" || header.ns !== NS_STREAM || defaultNs !== NS_SERVER) {
      this.fail("remote-server-timeout", "The remote server did not open a jabber:server stream");
      return;
    }
    this.#remoteStreamId = header.attrs.id ?? "";
    if (header.attrs.version === undefined) {
      // A pre-RFC 6120 server: no features, no TLS; dialback straight away if policy allows.
      if (this.ctx.policy.requireEncryption(this.local)) {
        this.fail(
          "remote-server-timeout",
          `'${this.#remote}' does not support TLS, and s2s_require_encryption is on`,
          "policy-violation",
        );
        return;
      }
      if (this.#certificateRequired()) return;
      if (this.#dialbackOff("does not support SASL EXTERNAL (no XMPP 1.0 stream)")) return;
      this.#dialback();
    }
  }

  protected onElement(el: Element): void {
    if (el.ns === NS_STREAM) {
      if (el.name === "features") return this.#onFeatures(el);
      if (el.name === "error") {
        this.fail(
          "remote-server-timeout",
          `Stream error from '${this.#remote}': ${describeStreamError(el)}`,
        );
        return;
      }
    }
    if (el.ns === NS_TLS) {
      if (el.name === "proceed") {
        const raw = this.transport.takeSocket();
        this.#startTls(raw).then((ok) => ok && this.#open());
        return;
      }
      this.fail("remote-server-timeout", `'${this.#remote}' refused STARTTLS`);
      return;
    }
    if (el.ns === NS_SASL) return this.#onSasl(el);
    if (el.ns === NS_DIALBACK) {
      if (el.name === "result") return this.#onDialbackResult(el);
      if (el.name === "verify") {
        const key = `${el.attrs.to ?? ""} ${el.attrs.id ?? ""}`;
        const pending = this.#verifies.get(key);
        if (pending && el.attrs.from === this.#remote) {
          this.#verifies.delete(key);
          pending.resolve(el.attrs.type === "valid");
        }
        return;
      }
    }
    // Streams are one-way (RFC 6120 §8.3): nothing else is expected on an outbound stream.
    log.debug("Ignoring <{name}> on outbound stream {id}", { name: el.name, id: this.id });
  }

  #onFeatures(features: Element): void {
    if (this.authenticated) {
      // After SASL: whether dialback (for more domain pairs) is still on offer.
      this.#dialbackOffered = features.getChild("dialback", NS_DIALBACK_FEATURE) !== undefined;
      this.#becomeReady();
      return;
    }
    if (!this.secure) {
      if (features.getChild("starttls", NS_TLS)) {
        this.write(`<starttls xmlns='${NS_TLS}'/>`);
        return;
      }
      if (this.ctx.policy.requireEncryption(this.local)) {
        this.fail(
          "remote-server-timeout",
          `'${this.#remote}' does not offer STARTTLS, and s2s_require_encryption is on`,
          "policy-violation",
        );
        return;
      }
      if (this.#certificateRequired()) return;
    }
    this.negotiable = true;
    this.#events.negotiable(this);
    this.#dialbackOffered = features.getChild("dialback", NS_DIALBACK_FEATURE) !== undefined;
    const mechanisms = features.getChild("mechanisms", NS_SASL);
    const external = mechanisms?.getChildren("mechanism").some((m) => m.text() === "EXTERNAL");
    if (external && this.secure) {
      const auth = new Element("auth", { xmlns: NS_SASL, mechanism: "EXTERNAL" });
      auth.t(btoa(this.local));
      this.writeElement(auth);
      return;
    }
    if (this.#dialbackOff(this.secure ? "does not offer SASL EXTERNAL" : "offers no TLS")) {
      return;
    }
    if (this.#dialbackOffered) {
      this.#dialback();
      return;
    }
    this.fail(
      "remote-server-timeout",
      `'${this.#remote}' accepts neither our certificate (SASL EXTERNAL) nor dialback`,
    );
  }

  /**
   * Fails the stream when dialback is the only way left and it is off for our domain;
   * `why` says why certificates cannot be used.
   */
  #dialbackOff(why: string): boolean {
    if (this.ctx.policy.dialbackEnabled(this.local)) return false;
    this.fail(
      "remote-server-timeout",
      `'${this.#remote}' ${why}, and dialback is off for '${this.local}' (s2s_dialback = false)`,
      "policy-violation",
    );
    return true;
  }

  /** Fails the stream when policy wants a valid certificate and the remote has none. */
  #certificateRequired(): boolean {
    const rule = this.ctx.policy.certificateRequiredBy(this.local, this.#remote);
    if (rule === undefined) return false;
    const verdict = this.certificate;
    if (verdict?.status === "valid") return false;
    const why = verdict?.reason ?? `'${this.#remote}' presented no certificate (no TLS)`;
    this.fail(
      "remote-server-timeout",
      `${why}; a valid certificate is required (${rule})`,
      "policy-violation",
    );
    return true;
  }

  async #startTls(raw: Socket): Promise<boolean> {
    const certificate = this.ctx.certificateFor(this.local);
    let secure: tls.TLSSocket;
    try {
      secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const socket = tls.connect({
          socket: raw,
          servername: this.#remote,
          cert: certificate?.certPem,
          key: certificate?.keyPem,
          rejectUnauthorized: false,
          minVersion: "TLSv1.2",
          ALPNProtocols: this.directTls ? ["xmpp-server"] : undefined,
        });
        const onError = (error: Error) => reject(error);
        socket.once("error", onError);
        socket.once("secureConnect", () => {
          socket.off("error", onError);
          resolve(socket);
        });
      });
    } catch (error) {
      this.fail(
        "remote-server-timeout",
        `TLS with '${this.#remote}' failed: ${(error as Error).message}`,
      );
      return false;
    }
    if (this.closed) {
      secure.destroy();
      return false;
    }
    this.transport.useTlsSocket(secure);
    this.certificate = verifyPeerCertificate(peerChain(secure), this.#remote, this.ctx.trust());
    if (this.#certificateRequired()) return false;
    return true;
  }

  #onSasl(el: Element): void {
    if (el.name === "success") {
      this.authenticated = true;
      this.authMethod = "sasl-external";
      this.transport.restart();
      this.#open();
      return;
    }
    if (el.name === "failure") {
      const condition = conditionName(el) ?? "failure";
      const text = el.getChildText("text", NS_SASL);
      const why = `'${this.#remote}' refused our certificate (SASL EXTERNAL ${condition}${
        text ? `: ${text}` : ""
      })`;
      if (this.#dialbackOffered && this.ctx.policy.dialbackEnabled(this.local)) {
        log.info("{why}; trying dialback", { why });
        this.#dialback();
        return;
      }
      this.fail("remote-server-timeout", why);
      return;
    }
    this.fail("remote-server-timeout", `Unexpected SASL element <${el.name}>`);
  }

  #dialback(local = this.local): void {
    const result = new Element("result", {
      xmlns: NS_DIALBACK,
      from: local,
      to: this.#remote,
    });
    result.t(dialbackKey(this.ctx.secret, this.#remote, local, this.#remoteStreamId));
    this.writeElement(result);
  }

  #onDialbackResult(el: Element): void {
    if (el.attrs.from !== this.#remote) return;
    const type = el.attrs.type;
    const extra = this.#extra.get(el.attrs.to ?? "");
    if (extra) {
      this.#extra.delete(el.attrs.to!);
      if (type === "valid") extra.resolve();
      else extra.reject(new Error(`'${this.#remote}' refused dialback for '${el.attrs.to}'`));
      return;
    }
    if (el.attrs.to !== this.local) return;
    if (type === "valid") {
      this.authenticated = true;
      this.authMethod = "dialback";
      this.#becomeReady();
      return;
    }
    const error = el.getChild("error");
    const detail = error
      ? `: ${conditionName(error) ?? "error"}${
        error.getChildText("text") ? ` (${error.getChildText("text")})` : ""
      }`
      : "";
    this.fail("remote-server-timeout", `'${this.#remote}' refused dialback (${type}${detail})`);
  }

  #becomeReady(): void {
    if (this.ready) return;
    this.ready = true;
    log.info("Link {local} -> {remote} ready ({method}, {tls}, {target})", {
      local: this.local,
      remote: this.#remote,
      method: this.authMethod,
      tls: this.tlsVersion ?? "no TLS",
      target: this.target,
    });
    this.#events.ready(this);
  }
}
