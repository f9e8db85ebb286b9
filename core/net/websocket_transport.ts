// The RFC 7395 transport: an XMPP client stream over a WebSocket, one complete element per
// text message. `<open/>` and `<close/>` in the framing namespace stand for the stream header
// and closing tag, every element carries its namespace, and there is no STARTTLS (the
// connection is as secure as the HTTP listener it came through).

import { getLogger } from "../log.ts";
import { Element, NS_CLIENT } from "../xml/element.ts";
import { DEFAULT_XML_LIMITS, parseElement, type XmlLimits, XmlStreamError } from "../xml/parser.ts";
import { escapeAttr, serialize } from "../xml/serializer.ts";
import { NS_STREAM, streamError, type StreamErrorCondition } from "../xml/stanza.ts";
import { serializeStreamLevel, type StreamHeaderOptions } from "./stream.ts";
import type { StreamReceiver, Transport } from "./transport.ts";
import { type ReadRate, TokenBucket } from "./rate_limit.ts";

const log = getLogger("net");

/** The RFC 7395 framing namespace of `<open/>` and `<close/>`. */
export const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";

/** How a {@link WebSocketTransport} starts. */
export interface WebSocketTransportOptions {
  /** The peer's address and port. */
  ip: string;
  port?: number;
  /** Whether the connection counts as encrypted (wss, or a loopback peer). */
  secure: boolean;
  /** Largest stanza accepted until the stream says otherwise. */
  maxStanzaBytes?: number;
}

/** An XMPP stream over an RFC 7395 WebSocket. */
export class WebSocketTransport implements Transport {
  readonly kind = "websocket" as const;
  readonly ip: string;
  readonly port: number | undefined;
  readonly secure: boolean;
  readonly tlsVersion: string | undefined = undefined;
  readonly canStartTls = false;
  lastActivity = Date.now();
  headerSent = false;
  receiver: StreamReceiver;

  #socket: WebSocket;
  #limits: XmlLimits;
  #opened = false;
  #closed = false;
  #peerClosed = false;
  #gone = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Deno's WebSocket cannot stop reading, so input over the read rate (or while the session
   * holds input) waits here unhandled, in order; past what may wait the stream is closed.
   */
  #readBucket: TokenBucket | undefined;
  #burstBytes = 0;
  #waiting: string[] | undefined;
  #waitingChars = 0;
  #rateTimer: ReturnType<typeof setTimeout> | undefined;
  #held = false;

  constructor(socket: WebSocket, receiver: StreamReceiver, options: WebSocketTransportOptions) {
    this.#socket = socket;
    this.receiver = receiver;
    this.ip = options.ip;
    this.port = options.port;
    this.secure = options.secure;
    this.#limits = {
      ...DEFAULT_XML_LIMITS,
      ...(options.maxStanzaBytes === undefined ? {} : { maxStanzaBytes: options.maxStanzaBytes }),
    };
    socket.addEventListener("message", (event) => this.#onMessage(event.data));
    socket.addEventListener("error", (event) => {
      const message = event instanceof ErrorEvent ? event.message : "WebSocket error";
      log.debug("WebSocket error from {ip}: {error}", { ip: this.ip, error: message });
      this.receiver.transportError?.(new Error(message));
    });
    socket.addEventListener("close", () => this.#lost());
  }

  get closed(): boolean {
    return this.#closed;
  }

  get limits(): XmlLimits {
    return this.#limits;
  }

  setLimits(limits: Partial<XmlLimits>): void {
    this.#limits = { ...this.#limits, ...limits };
  }

  setReadRate(rate: ReadRate | undefined): void {
    if (rate === undefined) {
      this.#readBucket = undefined;
      this.#burstBytes = 0;
      if (this.#rateTimer !== undefined) this.#rateDue();
    } else {
      this.#burstBytes = rate.burstBytes;
      if (this.#readBucket) this.#readBucket.reconfigure(rate.bytesPerSecond, rate.burstBytes);
      else this.#readBucket = new TokenBucket(rate.bytesPerSecond, rate.burstBytes);
    }
  }

  holdInput(held: boolean): void {
    this.#held = held;
    if (!held) this.#drain();
  }

  #onMessage(data: unknown): void {
    const now = Date.now();
    this.lastActivity = now;
    if (this.#closed) return;
    if (this.#held || this.#waiting !== undefined) {
      this.#wait(data);
      return;
    }
    this.#take(data, now);
    this.#dispatch(data);
  }

  /** Takes a message's size from the read bucket; in debt, later messages wait. */
  #take(data: unknown, now: number): void {
    const bucket = this.#readBucket;
    if (bucket === undefined || typeof data !== "string") return;
    const waitMs = bucket.take(data.length, now);
    if (waitMs <= 0 || this.#rateTimer !== undefined) return;
    this.#waiting ??= [];
    this.#rateTimer = setTimeout(() => this.#rateDue(), waitMs);
  }

  #wait(data: unknown): void {
    if (typeof data !== "string") {
      this.#dispatch(data); // refused at once (binary)
      return;
    }
    (this.#waiting ??= []).push(data);
    this.#waitingChars += data.length;
    const most = this.#burstBytes + 2 * this.#limits.maxStanzaBytes;
    if (this.#waitingChars > most) {
      log.info("WebSocket client {ip} sent {size} bytes more than it may; closing", {
        ip: this.ip,
        size: this.#waitingChars,
      });
      this.#waiting = undefined;
      this.#waitingChars = 0;
      this.receiver.inputError(
        new XmlStreamError(
          "policy-violation",
          `Sending faster than the server reads: more than ${most} bytes waited`,
        ),
      );
    }
  }

  #rateDue(): void {
    clearTimeout(this.#rateTimer);
    this.#rateTimer = undefined;
    this.#drain();
  }

  /** Handles waiting messages while neither the rate nor the session holds them back. */
  #drain(): void {
    const waiting = this.#waiting;
    while (waiting !== undefined && !this.#closed && !this.#held && this.#rateTimer === undefined) {
      const data = waiting.shift();
      if (data === undefined) break;
      this.#waitingChars -= data.length;
      this.#take(data, Date.now());
      this.#dispatch(data);
    }
    if (
      this.#waiting !== undefined && this.#waiting.length === 0 && this.#rateTimer === undefined
    ) {
      this.#waiting = undefined;
      this.#waitingChars = 0;
    }
  }

  #dispatch(data: unknown): void {
    if (this.#closed) return;
    try {
      this.#handle(data);
    } catch (error) {
      // A bug while handling this peer's input must not take the server down.
      log.error("Internal error on a WebSocket stream from {ip}: {error}", {
        ip: this.ip,
        error,
      });
      this.receiver.internalError(error);
      this.close("internal-server-error");
    }
  }

  #handle(data: unknown): void {
    if (typeof data !== "string") {
      this.receiver.inputError(
        new XmlStreamError("bad-format", "RFC 7395 streams use text messages, not binary ones"),
      );
      return;
    }
    const max = this.#limits.maxStanzaBytes;
    // A UTF-16 code unit is 1 to 3 UTF-8 bytes: only a message near the limit is measured.
    if (data.length * 3 > max) {
      const bytes = utf8Bytes(data);
      if (bytes > max) {
        this.receiver.inputError(
          new XmlStreamError(
            "policy-violation",
            `Stanza of ${bytes} bytes exceeds the limit of ${max}`,
          ),
        );
        return;
      }
    }
    let el: Element;
    try {
      el = parseElement(data, this.#limits);
    } catch (error) {
      if (!(error instanceof XmlStreamError)) throw error;
      this.receiver.inputError(error);
      return;
    }
    if (el.ns === NS_FRAMING && el.name === "open") {
      this.#opened = true;
      // The session reads an `<open/>` as the stream header it stands for.
      const header = new Element("stream", { xmlns: NS_STREAM, ...el.attrs });
      this.receiver.streamOpen(header, NS_CLIENT);
      return;
    }
    if (el.ns === NS_FRAMING && el.name === "close") {
      this.#peerClosed = true;
      this.receiver.streamClose();
      if (this.#closed) this.#end();
      return;
    }
    if (el.name === "open" || el.name === "close" || el.name === "stream") {
      this.receiver.inputError(
        new XmlStreamError(
          "invalid-namespace",
          `<${el.name}/> must be in the '${NS_FRAMING}' namespace`,
        ),
      );
      return;
    }
    if (!this.#opened) {
      this.receiver.inputError(new XmlStreamError("bad-format", "Expected <open/> first"));
      return;
    }
    this.receiver.element(el);
  }

  #lost(): void {
    this.#closed = true;
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    clearTimeout(this.#rateTimer);
    this.#waiting = undefined;
    if (this.#gone) return;
    this.#gone = true;
    this.receiver.transportClosed();
  }

  #write(text: string): void {
    if (this.#socket.readyState !== WebSocket.OPEN) return;
    this.#socket.send(text);
  }

  // ---------- output ----------

  openStream(options: StreamHeaderOptions): void {
    this.#write(openFrame(options));
    this.headerSent = true;
  }

  send(el: Element): void {
    if (this.#closed) return;
    // An empty context namespace: every top-level element declares its own (RFC 7395 §3.3.3).
    this.#write(serialize(el, ""));
  }

  sendStreamLevel(el: Element): void {
    this.#write(
      serializeStreamLevel(el).replace(/^<stream:[a-z-]+/, `$& xmlns:stream='${NS_STREAM}'`),
    );
  }

  sendRaw(text: string): void {
    if (this.#closed) return;
    this.#write(text);
  }

  flush(): void {
    // Each element goes out as its own message at once.
  }

  restart(): void {
    this.#opened = false;
    this.headerSent = false;
  }

  close(condition?: StreamErrorCondition, text?: string, waitForPeerMs?: number): void {
    if (this.#closed) return;
    this.#closed = true;
    if (condition) {
      if (!this.headerSent) this.openStream({ ns: NS_CLIENT, id: "", version: true });
      this.sendStreamLevel(streamError(condition, text));
    }
    this.#write(`<close xmlns='${NS_FRAMING}'/>`);
    if (waitForPeerMs === undefined || this.#peerClosed) {
      this.#end();
      return;
    }
    this.#closeTimer = setTimeout(() => this.#end(), waitForPeerMs);
  }

  /** Closes the WebSocket (its closing handshake follows what was already sent). */
  #end(): void {
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
    try {
      this.#socket.close(1000);
    } catch {
      // Already closing.
    }
  }

  destroy(): void {
    this.#closed = true;
    this.#end();
  }

  startTls(): Promise<boolean> {
    return Promise.resolve(false);
  }

  endpointBinding(): Uint8Array | undefined {
    return undefined;
  }
}

const encoder = new TextEncoder();

/** The UTF-8 size of a text message. */
function utf8Bytes(text: string): number {
  return encoder.encode(text).byteLength;
}

/** The `<open/>` frame our side of the stream starts with. */
function openFrame(options: StreamHeaderOptions): string {
  const from = options.from ? ` from='${escapeAttr(options.from)}'` : "";
  const to = options.to ? ` to='${escapeAttr(options.to)}'` : "";
  const id = options.id ? ` id='${escapeAttr(options.id)}'` : "";
  return `<open xmlns='${NS_FRAMING}'${id}${from}${to} version='1.0' xml:lang='en'/>`;
}
