// The RFC 7395 transport: an XMPP client stream over a WebSocket, one complete element per
// text message. `<open/>` and `<close/>` in the framing namespace stand for the stream header
// and closing tag, every element carries its namespace, and there is no STARTTLS (the
// connection is as secure as the HTTP listener it came through).

import { getLogger } from "../log.ts";
import { Element, NS_CLIENT } from "../xml/element.ts";
import { DEFAULT_XML_LIMITS, parseElement, type XmlLimits, XmlStreamError } from "../xml/parser.ts";
import { escapeAttr, serialize } from "../xml/serializer.ts";
import { NS_STREAM, streamError, type StreamErrorCondition } from "../xml/stanza.ts";
import { serializeStreamLevel, type StreamHeaderOptions, type UnsentStanza } from "./stream.ts";
import { reportOutputOverflow, type StreamReceiver, type Transport } from "./transport.ts";
import { type ReadRate, TokenBucket } from "./rate_limit.ts";

const log = getLogger("net");

/** The RFC 7395 framing namespace of `<open/>` and `<close/>`. */
export const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";

/**
 * Bytes Deno's WebSocket may hold unsent before output waits in the transport's own queue
 * instead (where it can still be taken back when the peer is cut off).
 */
const SOCKET_BUFFER_HIGH = 65536;
/**
 * How often a backlog is looked at while the socket takes nothing (Deno's WebSocket has
 * `bufferedAmount` but no drain event); while it takes output the next look is at once, and
 * no timer runs without a backlog. A socket that took nothing for this long is stalled.
 */
const BACKLOG_POLL_MS = 25;

/** The most the socket may hold after one look at the backlog (like a kernel's buffer). */
const MAX_BUDGET = 1048576;

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
  /**
   * Output waiting while the socket's buffer is over SOCKET_BUFFER_HIGH (a peer that reads
   * slower than we write); undefined while there is none, so a send costs one comparison.
   */
  #backlog: string[] | undefined;
  /** The stanza each backlog text is, when it is one, and when it was queued (aligned). */
  #backlogStanzas: (Element | undefined)[] = [];
  #backlogTimes: number[] = [];
  #backlogChars = 0;
  /**
   * The socket took nothing for BACKLOG_POLL_MS (its buffered amount did not fall between
   * looks at the backlog): output queued from then on counts in #stalledChars. Deno's
   * `bufferedAmount` counts every frame of a burst sent in one event-loop turn, even those the
   * kernel takes at once, so only a later look tells a peer that reads from one that does not.
   */
  #stalled = false;
  #stalledChars = 0;
  /**
   * Backlog queued before its first look (offline messages at login, an archive page): a
   * burst the peer has not had time to read, not a sign that it reads nothing. Sent first (the
   * backlog is in order), so it shrinks as the socket takes it.
   */
  #burstChars = 0;
  #looked = false;
  #lastBuffered = 0;
  /** How much the socket may buffer at the next look at the backlog. */
  #budget = SOCKET_BUFFER_HIGH;
  /** When the socket last took output while a backlog waited (ms epoch). */
  #lastProgress = 0;
  #backlogTimer: ReturnType<typeof setTimeout> | undefined;
  /** Most output that may wait for a peer that reads nothing (c2s_max_send_buffer). */
  #maxSend = Infinity;
  /** Set once the limit was passed: stanzas written until the stream closes. */
  #unsent: UnsentStanza[] | undefined;

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
    this.#takeBacklog();
    if (this.#gone) return;
    this.#gone = true;
    this.receiver.transportClosed();
  }

  /** Sends `text` (`stanza` when it is one), or queues it while the socket's buffer is full. */
  #write(text: string, stanza?: Element): void {
    if (this.#backlog === undefined && this.#socket.bufferedAmount < SOCKET_BUFFER_HIGH) {
      if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(text);
      return;
    }
    this.#queue(text, stanza);
  }

  #queue(text: string, stanza: Element | undefined): void {
    if (this.#unsent !== undefined) {
      if (stanza !== undefined) this.#unsent.push({ stanza, queuedAt: Date.now() });
      return;
    }
    if (this.#socket.readyState !== WebSocket.OPEN) return;
    if (this.#backlog === undefined) {
      this.#backlog = [];
      this.#stalled = false;
      this.#stalledChars = 0;
      this.#looked = false;
      this.#lastBuffered = this.#socket.bufferedAmount;
      this.#lastProgress = Date.now();
      this.#backlogTimer = setTimeout(() => this.#drainBacklog(), 0);
    }
    this.#backlog.push(text);
    this.#backlogStanzas.push(stanza);
    this.#backlogTimes.push(stanza === undefined ? 0 : Date.now());
    this.#backlogChars += text.length;
    if (!this.#looked) this.#burstChars += text.length;
    if (!this.#stalled) return;
    this.#stalledChars += text.length;
    if (this.#overStalled()) this.#overflow();
  }

  /**
   * The peer is not reading: more than the limit was queued since the socket stalled, or
   * twice the limit waits in the backlog besides the burst it began with (a peer that reads a
   * trickle), as for TCP (stream.ts). What the socket itself holds is bounded by MAX_BUDGET and
   * may be that burst, so it does not count.
   */
  #overStalled(): boolean {
    const max = this.#maxSend;
    return this.#stalledChars > max || this.#backlogChars - this.#burstChars > 2 * max;
  }

  /** Hands the backlog on while the socket's buffer has room; stops the timer once empty. */
  #drainBacklog(): void {
    const backlog = this.#backlog;
    if (backlog === undefined) return;
    const socket = this.#socket;
    if (socket.readyState !== WebSocket.OPEN) {
      this.#takeBacklog();
      return;
    }
    this.#looked = true;
    const now = Date.now();
    const progress = socket.bufferedAmount < this.#lastBuffered;
    if (progress) {
      this.#lastProgress = now;
      this.#stalled = false;
      this.#stalledChars = 0;
    } else if (now - this.#lastProgress >= BACKLOG_POLL_MS) {
      this.#stalled = true;
    }
    // A socket that took all it had may take twice as much by the next look (a busy event
    // loop looks seldom), up to MAX_BUDGET; one that did not is given the threshold.
    this.#budget = socket.bufferedAmount === 0
      ? Math.min(2 * this.#budget, MAX_BUDGET)
      : SOCKET_BUFFER_HIGH;
    let sent = 0;
    while (sent < backlog.length && socket.bufferedAmount < this.#budget) {
      socket.send(backlog[sent]);
      this.#backlogChars -= backlog[sent].length;
      this.#burstChars = Math.max(0, this.#burstChars - backlog[sent].length);
      sent++;
    }
    backlog.splice(0, sent);
    this.#backlogStanzas.splice(0, sent);
    this.#backlogTimes.splice(0, sent);
    this.#lastBuffered = socket.bufferedAmount;
    if (backlog.length === 0) this.#takeBacklog();
    else {
      this.#backlogTimer = setTimeout(() => this.#drainBacklog(), progress ? 0 : BACKLOG_POLL_MS);
    }
  }

  /** Empties the backlog and stops its timer; returns what was in it. */
  #takeBacklog(): { texts: string[]; stanzas: (Element | undefined)[]; times: number[] } {
    const taken = {
      texts: this.#backlog ?? [],
      stanzas: this.#backlogStanzas,
      times: this.#backlogTimes,
    };
    if (this.#backlogTimer !== undefined) clearTimeout(this.#backlogTimer);
    this.#backlogTimer = undefined;
    this.#backlog = undefined;
    this.#backlogStanzas = [];
    this.#backlogTimes = [];
    this.#backlogChars = 0;
    this.#burstChars = 0;
    this.#stalled = false;
    this.#stalledChars = 0;
    return taken;
  }

  /** Drops the backlog and tells the receiver, outside this write, of the stanzas in it. */
  #overflow(): void {
    const { stanzas, times } = this.#takeBacklog();
    const unsent: UnsentStanza[] = [];
    for (let i = 0; i < stanzas.length; i++) {
      const stanza = stanzas[i];
      if (stanza !== undefined) unsent.push({ stanza, queuedAt: times[i] });
    }
    this.#unsent = unsent;
    const limit = this.#maxSend;
    log.info("WebSocket output for {ip} passed {limit} bytes: the peer does not read", {
      ip: this.ip,
      limit,
    });
    // Often in the middle of routing another session's stanza; stanzas written meanwhile
    // join the list.
    queueMicrotask(() => reportOutputOverflow(this, unsent, limit));
  }

  /** Changes how much output may wait for the peer before the stream is cut off. */
  setSendLimit(maxBytes: number): void {
    this.#maxSend = maxBytes;
  }

  /** Output waiting for the peer (queued here and buffered in the socket). */
  get pendingOutput(): number {
    return this.#backlogChars + this.#socket.bufferedAmount;
  }

  /** Sends `text` past the backlog (the backlog was handed on or dropped first). */
  #sendNow(text: string): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(text);
  }

  // ---------- output ----------

  openStream(options: StreamHeaderOptions): void {
    this.#write(openFrame(options));
    this.headerSent = true;
  }

  send(el: Element): void {
    if (this.#closed) return;
    // An empty context namespace: every top-level element declares its own (RFC 7395 §3.3.3).
    this.#write(serialize(el, ""), el);
  }

  sendStreamLevel(el: Element): void {
    this.#write(streamLevel(el));
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
    // What waits in the backlog goes first, then the closing frames, whatever the socket
    // buffers (after an overflow the backlog is already gone).
    for (const queued of this.#takeBacklog().texts) this.#sendNow(queued);
    if (condition) {
      if (!this.headerSent) {
        this.#sendNow(openFrame({ ns: NS_CLIENT, id: "", version: true }));
        this.headerSent = true;
      }
      this.#sendNow(streamLevel(streamError(condition, text)));
    }
    this.#sendNow(`<close xmlns='${NS_FRAMING}'/>`);
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

/** A stream-level element with its `stream` prefix declared (each message stands alone). */
function streamLevel(el: Element): string {
  return serializeStreamLevel(el).replace(/^<stream:[a-z-]+/, `$& xmlns:stream='${NS_STREAM}'`);
}

/** The `<open/>` frame our side of the stream starts with. */
function openFrame(options: StreamHeaderOptions): string {
  const from = options.from ? ` from='${escapeAttr(options.from)}'` : "";
  const to = options.to ? ` to='${escapeAttr(options.to)}'` : "";
  const id = options.id ? ` id='${escapeAttr(options.id)}'` : "";
  return `<open xmlns='${NS_FRAMING}'${id}${from}${to} version='1.0' xml:lang='en'/>`;
}
