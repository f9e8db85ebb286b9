// The TCP transport: an XML stream over a node:net socket, in the clear until STARTTLS or
// encrypted from the first byte (direct TLS, XEP-0368). It owns the socket, the streaming parser
// and the coalescing output queue, so client and component streams share one implementation of
// reading, writing, upgrading and closing.

import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { getLogger } from "../log.ts";
import type { Element } from "../xml/element.ts";
import { StreamParser, type XmlLimits } from "../xml/parser.ts";
import { serialize } from "../xml/serializer.ts";
import { NS_TLS, type StreamErrorCondition } from "../xml/stanza.ts";
import {
  closingTags,
  serializeStreamLevel,
  streamHeader,
  type StreamHeaderOptions,
  StreamWriter,
  type UnsentStanza,
} from "./stream.ts";
import type { TlsContexts } from "./tls.ts";
import { reportOutputOverflow, type StreamReceiver, type Transport } from "./transport.ts";
import { nativeReads } from "./native_reads.ts";
import { type ReadRate, TokenBucket } from "./rate_limit.ts";

const log = getLogger("net");

/** Why reading is paused: the read rate's bucket is in debt, or the session holds input. */
const PAUSED_BY_RATE = 1;
const PAUSED_BY_HOLD = 2;

/** How a {@link SocketTransport} starts. */
export interface SocketTransportOptions {
  /** The stream's content namespace (`jabber:client`, `jabber:component:accept`). */
  namespace: string;
  /** Largest stanza accepted until the stream says otherwise (default: the parser's). */
  maxStanzaBytes?: number;
  /** The connection came in on a direct TLS port: handshake before any XML. */
  directTls?: boolean;
  /**
   * Most output that may wait for a peer that stops reading (see {@link StreamWriter});
   * past it the receiver's `outputOverflow` is told (default: no limit).
   */
  maxSendBuffer?: number;
}

/** An XML stream over a TCP socket, with STARTTLS or direct TLS. */
export class SocketTransport implements Transport {
  readonly ip: string;
  readonly port: number | undefined;
  readonly kind: "tcp" | "direct-tls";
  secure = false;
  tlsVersion: string | undefined;
  lastActivity = Date.now();
  headerSent = false;
  receiver: StreamReceiver;

  #socket: Socket;
  #namespace: string;
  #out: StreamWriter;
  #parser: StreamParser;
  #closed = false;
  #gone = false;
  /** The read rate's bucket; undefined: unlimited. */
  #readBucket: TokenBucket | undefined;
  /** PAUSED_BY_* bits; reading is paused while any is set. */
  #pausedBy = 0;
  #rateTimer: ReturnType<typeof setTimeout> | undefined;
  /** The stream was closed without waiting for the peer's: its input is no longer parsed. */
  #deaf = false;
  #onData = (chunk: Uint8Array) => {
    if (this.#deaf) return;
    const now = Date.now();
    this.lastActivity = now;
    const bucket = this.#readBucket;
    if (bucket !== undefined) {
      // The chunk is read whatever the bucket holds (nothing is dropped); in debt, the socket
      // stops reading until the debt is paid, and TCP slows the peer meanwhile.
      const waitMs = bucket.take(chunk.length, now);
      if (waitMs > 0) this.#pauseForRate(waitMs);
    }
    try {
      this.#parser.feed(chunk);
    } catch (error) {
      // A bug while handling this peer's input must not take the server down.
      log.error("Internal error on a stream from {ip}: {error}", { ip: this.ip, error });
      this.receiver.internalError(error);
      this.close("internal-server-error"); // when the receiver did not close it already
    }
  };

  constructor(socket: Socket, receiver: StreamReceiver, options: SocketTransportOptions) {
    this.#socket = socket;
    this.receiver = receiver;
    this.#namespace = options.namespace;
    this.kind = options.directTls ? "direct-tls" : "tcp";
    this.ip = socket.remoteAddress ?? "unknown";
    this.port = socket.remotePort;
    this.#out = new StreamWriter(socket);
    if (options.maxSendBuffer !== undefined) this.setSendLimit(options.maxSendBuffer);
    this.#out.onOverflow = (unsent) => this.#overflowed(unsent);
    socket.setNoDelay?.(true);
    this.#parser = new StreamParser({
      streamOpen: (header) => this.receiver.streamOpen(header, this.#parser.contentNamespace),
      stanza: (el) => this.receiver.element(el),
      streamClose: () => {
        this.receiver.streamClose();
        this.#out.peerClosed(); // both streams are closed: the connection can go
      },
      error: (error) => this.receiver.inputError(error),
    }, options.maxStanzaBytes === undefined ? {} : { maxStanzaBytes: options.maxStanzaBytes });
  }

  /**
   * Starts reading: at once on a plain port, after the handshake on a direct TLS port. Resolves
   * false when that handshake failed (the connection is then gone and the receiver told).
   */
  start(tls: TlsContexts | undefined): Promise<boolean> {
    this.#attach(this.#socket);
    if (this.kind === "direct-tls" && tls) return this.#upgrade(tls, undefined);
    return Promise.resolve(true);
  }

  get closed(): boolean {
    return this.#closed;
  }

  get limits(): XmlLimits {
    return this.#parser.limits;
  }

  setLimits(limits: Partial<XmlLimits>): void {
    this.#parser.setLimits(limits);
  }

  setReadRate(rate: ReadRate | undefined): void {
    if (rate === undefined) {
      this.#readBucket = undefined;
      clearTimeout(this.#rateTimer);
      this.#rateTimer = undefined;
      this.#resume(PAUSED_BY_RATE);
    } else if (this.#readBucket) {
      this.#readBucket.reconfigure(rate.bytesPerSecond, rate.burstBytes);
    } else {
      this.#readBucket = new TokenBucket(rate.bytesPerSecond, rate.burstBytes);
    }
  }

  holdInput(held: boolean): void {
    if (held) this.#pause(PAUSED_BY_HOLD);
    else this.#resume(PAUSED_BY_HOLD);
  }

  /** True while reading is paused (read rate or held input), for tests and the shell. */
  get readingPaused(): boolean {
    return this.#pausedBy !== 0;
  }

  #pauseForRate(waitMs: number): void {
    if (this.#rateTimer !== undefined || this.#closed) return;
    this.#pause(PAUSED_BY_RATE);
    this.#rateTimer = setTimeout(() => {
      this.#rateTimer = undefined;
      this.#resume(PAUSED_BY_RATE);
    }, waitMs);
  }

  #pause(reason: number): void {
    const before = this.#pausedBy;
    this.#pausedBy |= reason;
    if (before === 0) this.#stopReading(this.#socket);
  }

  #resume(reason: number): void {
    if ((this.#pausedBy & reason) === 0) return;
    this.#pausedBy &= ~reason;
    if (this.#pausedBy === 0 && !this.#closed) this.#startReading(this.#socket);
  }

  #stopReading(socket: Socket): void {
    socket.pause();
    if (this.secure) nativeReads(socket)?.readStop();
  }

  #startReading(socket: Socket): void {
    if (this.secure) nativeReads(socket)?.readStart();
    socket.resume();
  }

  /** Output waiting for the peer (queued here and buffered in the socket). */
  get pendingOutput(): number {
    return this.#out.pending;
  }

  /** Changes how much output may wait for the peer before the stream is cut off. */
  setSendLimit(maxBytes: number): void {
    this.#out.maxQueuedChars = maxBytes;
  }

  #overflowed(unsent: UnsentStanza[]): void {
    const limit = this.#out.maxQueuedChars;
    log.info("Output for {ip} passed {limit} bytes: the peer does not read", {
      ip: this.ip,
      limit,
    });
    reportOutputOverflow(this, unsent, limit);
  }

  get canStartTls(): boolean {
    return !this.secure && !this.#closed;
  }

  /** The socket the stream is on now (the TLS socket once encrypted). */
  get socket(): Socket {
    return this.#socket;
  }

  #attach(socket: Socket): void {
    socket.on("data", this.#onData);
    socket.on("error", (error: Error) => {
      log.debug("Socket error from {ip}: {error}", { ip: this.ip, error: error.message });
      this.receiver.transportError?.(error);
    });
    socket.on("close", () => this.#lost());
  }

  #detach(): Socket {
    const raw = this.#socket;
    // The TLS handshake must go on even while reading is paused; the TLS socket that replaces
    // this one is paused again (#useSecure).
    if (this.#pausedBy !== 0) raw.resume();
    raw.off("data", this.#onData);
    raw.removeAllListeners("close");
    raw.removeAllListeners("error");
    raw.on("error", () => {});
    return raw;
  }

  #lost(): void {
    this.#closed = true;
    clearTimeout(this.#rateTimer);
    this.#out.drop();
    if (this.#gone) return;
    this.#gone = true;
    this.receiver.transportClosed();
  }

  // ---------- output ----------

  openStream(options: StreamHeaderOptions): void {
    this.#out.write(streamHeader(options));
    this.headerSent = true;
  }

  send(el: Element): void {
    if (this.#closed) return;
    this.#out.write(serialize(el, this.#namespace), el);
  }

  sendStreamLevel(el: Element): void {
    this.#out.write(serializeStreamLevel(el));
  }

  sendRaw(text: string): void {
    this.#out.write(text);
  }

  flush(): void {
    this.#out.flush();
  }

  restart(): void {
    this.#parser.reset();
    this.headerSent = false;
  }

  close(condition?: StreamErrorCondition, text?: string, waitForPeerMs?: number): void {
    if (this.#closed) return;
    this.#closed = true;
    const closing = closingTags(this.headerSent, condition, text);
    if (waitForPeerMs !== undefined) this.#out.endAfterPeer(closing, waitForPeerMs);
    else {
      this.#stopInput();
      this.#out.end(closing);
    }
  }

  destroy(): void {
    this.#closed = true;
    this.#stopInput();
    this.#out.destroy();
  }

  /**
   * Parses no more input: neither the rest of the chunk being parsed (a peer closed for its
   * first stanza before authentication may have sent 2,000 in one write) nor what follows,
   * which nobody would handle. Hundreds of such connections a second otherwise fill the heap
   * with elements built for nothing.
   */
  #stopInput(): void {
    this.#deaf = true;
    this.#parser.reset();
  }

  // ---------- TLS ----------

  startTls(tls: TlsContexts, expectedServername: string | undefined): Promise<boolean> {
    this.#out.write(`<proceed xmlns='${NS_TLS}'/>`);
    this.#out.flush();
    // From here the bytes are TLS records: stop feeding the XML parser from the raw socket,
    // and drop whatever followed <starttls/> in this chunk.
    this.#socket.off("data", this.#onData);
    this.restart();
    return this.#upgrade(tls, expectedServername);
  }

  /**
   * Stops reading and hands the raw socket out, for a TLS handshake the caller runs as the
   * client (outbound s2s); {@link useTlsSocket} then takes the encrypted socket back. A new
   * stream follows.
   */
  takeSocket(): Socket {
    this.restart();
    return this.#detach();
  }

  /** Reads and writes through `secure` from now on (after {@link takeSocket}). */
  useTlsSocket(secure: TLSSocket): void {
    this.#useSecure(secure);
  }

  async #upgrade(tls: TlsContexts, expectedServername: string | undefined): Promise<boolean> {
    const raw = this.#detach();
    let secure: TLSSocket;
    try {
      secure = await tls.upgrade(raw, { expectedServername });
    } catch (error) {
      log.info("TLS handshake with {ip} failed: {error}", {
        ip: this.ip,
        error: (error as Error).message,
      });
      raw.destroy();
      this.#lost();
      return false;
    }
    if (this.#closed) {
      secure.destroy();
      this.#lost();
      return false;
    }
    this.#useSecure(secure);
    return true;
  }

  #useSecure(secure: TLSSocket): void {
    this.#socket = secure;
    this.#out.socket = secure;
    this.secure = true;
    this.tlsVersion = secure.getProtocol() ?? undefined;
    this.restart();
    this.#attach(secure);
    if (this.#pausedBy !== 0) this.#stopReading(secure);
  }

  endpointBinding(tls: TlsContexts): Uint8Array | undefined {
    return this.secure ? tls.endpointBinding(this.#socket as TLSSocket) : undefined;
  }
}
