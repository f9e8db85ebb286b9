// The XEP-0206 transport: one XMPP client stream carried by a BOSH session (XEP-0124), i.e. a
// series of HTTP requests whose `<body/>` wrappers hold the stanzas. Requests are taken in `rid`
// order, the last ones held open until output can ride on them, and their answers kept for
// replay; the session's own C2SSession sees an ordinary stream (header, elements, close).

import { getLogger } from "../log.ts";
import { Element, NS_CLIENT } from "../xml/element.ts";
import { DEFAULT_XML_LIMITS, type XmlLimits, XmlStreamError } from "../xml/parser.ts";
import { escapeAttr, serialize } from "../xml/serializer.ts";
import { NS_STREAM, streamError, type StreamErrorCondition } from "../xml/stanza.ts";
import { serializeStreamLevel, type StreamHeaderOptions, type UnsentStanza } from "./stream.ts";
import { reportOutputOverflow, type StreamReceiver, type Transport } from "./transport.ts";

const log = getLogger("net");

/** The XEP-0124 namespace of `<body/>`. */
export const NS_HTTPBIND = "http://jabber.org/protocol/httpbind";
/** The XEP-0206 namespace of `xmpp:version`, `xmpp:restart` and `xmpp:restartlogic`. */
export const NS_XBOSH = "urn:xmpp:xbosh";
/** The XEP-0124 version this connection manager speaks. */
export const BOSH_VERSION = "1.11";

/** The largest `rid` XEP-0124 allows (2^53 - 1). */
const MAX_RID = Number.MAX_SAFE_INTEGER;

/** Stream error conditions that are also XEP-0124 terminal binding conditions of that name. */
const SHARED_CONDITIONS: ReadonlySet<string> = new Set([
  "host-gone",
  "host-unknown",
  "improper-addressing",
  "internal-server-error",
  "policy-violation",
  "remote-connection-failed",
  "system-shutdown",
  "undefined-condition",
]);

/** Terminal binding conditions a legacy client (no `ver`) gets as HTTP status codes instead. */
const LEGACY_STATUS: Readonly<Record<string, number>> = {
  "bad-request": 400,
  "policy-violation": 403,
  "item-not-found": 404,
};

/** What a BOSH request gets back: an HTTP status and the `<body/>` text. */
export interface BoshResponse {
  status: number;
  body: string;
}

/** How a {@link BoshTransport} starts (the negotiated session parameters). */
export interface BoshTransportOptions {
  /** The session id (unpredictable). */
  sid: string;
  /** The address of the request that created the session. */
  ip: string;
  /** Whether the session counts as encrypted (HTTPS, or a loopback peer). */
  secure: boolean;
  /** Seconds a held request may wait for output (already capped). */
  wait: number;
  /** 0 for a polling session, else 1: how many requests are held at most. */
  hold: 0 | 1;
  /** Seconds without any request before the session is gone. */
  inactivity: number;
  /** The shortest allowed interval in seconds between empty requests. */
  polling: number;
  /** The client named no `ver`: binding errors go out as HTTP status codes. */
  legacy: boolean;
  /** Largest stanza accepted until the stream says otherwise. */
  maxStanzaBytes?: number;
  /** Called once when the session is gone (to forget its sid). */
  onEnd?: () => void;
}

/** A request that was processed and waits for its answer. */
interface HeldRequest {
  rid: number;
  resolvers: ((response: BoshResponse) => void)[];
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Answer at the next flush even without output (session creation, polling). */
  immediate: boolean;
}

/** A request that arrived before the one preceding it (out of order). */
interface WaitingRequest {
  body: Element;
  resolvers: ((response: BoshResponse) => void)[];
}

/** One BOSH session, as the transport of one client stream. */
export class BoshTransport implements Transport {
  readonly kind = "bosh" as const;
  readonly ip: string;
  readonly port: number | undefined = undefined;
  readonly secure: boolean;
  readonly tlsVersion: string | undefined = undefined;
  readonly canStartTls = false;
  /** The session id clients name in each request. */
  readonly sid: string;
  /** The negotiated session parameters, as sent in the session creation response. */
  readonly wait: number;
  readonly hold: 0 | 1;
  readonly requests: number;
  readonly inactivity: number;
  readonly polling: number;
  lastActivity = Date.now();
  headerSent = false;
  receiver: StreamReceiver;

  #limits: XmlLimits;
  #legacy: boolean;
  #onEnd: (() => void) | undefined;
  /** Serialized output waiting for a request to carry it. */
  #queue: string[] = [];
  /** The stanza each queued text is, when it is one, and when it was queued (aligned). */
  #queueStanzas: (Element | undefined)[] = [];
  #queueTimes: number[] = [];
  #queuedChars = 0;
  /** Most output that may wait for a client that sends no request (c2s_max_send_buffer). */
  #maxSend = Infinity;
  /** Set once the limit was passed: stanzas written until the stream closes. */
  #unsent: UnsentStanza[] | undefined;
  #flushScheduled = false;
  #held: HeldRequest[] = [];
  #waiting = new Map<number, WaitingRequest>();
  /** The rid of the last request processed. */
  #lastRid: number;
  /** Answers to the latest requests, by rid, for clients that repeat one (broken connection). */
  #replay = new Map<number, string>();
  /** Attributes the next answer carries (the session creation response). */
  #pendingAttrs = "";
  #streamId = "";
  #from = "";
  /** The creation request's `to` and `xmpp:version`, for restarts that leave them out. */
  #creation: Element | undefined;
  #closed = false;
  #gone = false;
  /** The `type='terminate'` answer once our side ended the session. */
  #terminateBody: string | undefined;
  #terminateStatus = 200;
  #inactivityTimer: ReturnType<typeof setTimeout> | undefined;
  #lastArrival = 0;
  #lastWasEmpty = false;
  #lastAnswerEmpty = false;

  constructor(receiver: StreamReceiver, firstRid: number, options: BoshTransportOptions) {
    this.receiver = receiver;
    this.sid = options.sid;
    this.ip = options.ip;
    this.secure = options.secure;
    this.wait = options.wait;
    this.hold = options.hold;
    this.requests = options.hold + 1;
    this.inactivity = options.inactivity;
    this.polling = options.polling;
    this.#legacy = options.legacy;
    this.#onEnd = options.onEnd;
    this.#lastRid = firstRid - 1;
    this.#limits = {
      ...DEFAULT_XML_LIMITS,
      ...(options.maxStanzaBytes === undefined ? {} : { maxStanzaBytes: options.maxStanzaBytes }),
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True once the session is over and its sid forgotten. */
  get gone(): boolean {
    return this.#gone;
  }

  /** How many requests are held open waiting for output. */
  get heldRequests(): number {
    return this.#held.length;
  }

  get limits(): XmlLimits {
    return this.#limits;
  }

  setLimits(limits: Partial<XmlLimits>): void {
    this.#limits = { ...this.#limits, ...limits };
  }

  // ---------- input ----------

  /**
   * Starts the session with its creation request (already validated by the route): the
   * stream opens with a header made from the body's attributes, and the answer carries the
   * session parameters and the stream features.
   */
  create(body: Element): Promise<BoshResponse> {
    const rid = Number(body.attrs.rid);
    this.lastActivity = Date.now();
    this.#lastArrival = this.lastActivity;
    return new Promise((resolve) => {
      this.#lastRid = rid;
      this.#creation = body;
      const entry = this.#holdRequest(rid, resolve, true);
      this.#guard(() => this.receiver.streamOpen(streamHeaderFrom(body, body), NS_CLIENT));
      if (this.#gone) return;
      this.#pendingAttrs = this.#creationAttrs(body);
      if (this.#terminateBody !== undefined) this.#answerAll();
      else if (this.#held.includes(entry)) this.#scheduleFlush();
    });
  }

  /** Handles a request of this session (its `rid` already checked to be a number). */
  request(body: Element): Promise<BoshResponse> {
    this.lastActivity = Date.now();
    const rid = Number(body.attrs.rid);
    return new Promise((resolve) => {
      if (this.#gone) {
        resolve(this.#bindingError("item-not-found"));
        return;
      }
      if (rid <= this.#lastRid) {
        this.#repeat(rid, resolve);
        return;
      }
      if (rid > this.#lastRid + this.requests) {
        log.info("BOSH session {sid}: rid {rid} is outside the window after {last}", {
          sid: this.sid,
          rid,
          last: this.#lastRid,
        });
        resolve(this.#terminate("item-not-found"));
        return;
      }
      const waiting = this.#waiting.get(rid);
      if (waiting) {
        waiting.resolvers.push(resolve);
        return;
      }
      this.#waiting.set(rid, { body, resolvers: [resolve] });
      // Requests are processed strictly in rid order: this one, and any that waited for it.
      for (let next = this.#waiting.get(this.#lastRid + 1); next !== undefined && !this.#gone;) {
        this.#waiting.delete(this.#lastRid + 1);
        this.#process(this.#lastRid + 1, next);
        next = this.#waiting.get(this.#lastRid + 1);
      }
    });
  }

  /** A rid already processed: its buffered answer, the held request it is, or an error. */
  #repeat(rid: number, resolve: (response: BoshResponse) => void): void {
    const cached = this.#replay.get(rid);
    if (cached !== undefined) {
      resolve({ status: 200, body: cached });
      return;
    }
    const held = this.#held.find((h) => h.rid === rid);
    if (held) {
      // The client gave up on the first copy (a broken connection): both get the answer.
      held.resolvers.push(resolve);
      return;
    }
    resolve(this.#terminate("item-not-found"));
  }

  #process(rid: number, request: WaitingRequest): void {
    const { body } = request;
    const now = Date.now();
    const type = body.attrs.type;
    const restart = xboshAttr(body, "restart") === "true";
    const payload = body.children.filter((c): c is Element => typeof c !== "string");
    const empty = payload.length === 0 && !restart && type !== "terminate" &&
      body.attrs.pause === undefined;
    if (this.#terminateBody !== undefined) {
      // Our side already ended the stream: this request carries the news.
      this.#lastRid = rid;
      const response = { status: this.#terminateStatus, body: this.#terminateBody };
      for (const resolve of request.resolvers) resolve(response);
      this.#answerAll();
      return;
    }
    const sinceLast = now - this.#lastArrival;
    const tooSoon = this.polling > 0 && sinceLast < this.polling * 1000;
    this.#lastRid = rid;
    // XEP-0124 §11 and §12: empty requests faster than `polling` break the session rules.
    const overactive = empty && tooSoon &&
      (this.hold === 0
        ? this.#lastWasEmpty && this.#lastAnswerEmpty
        : this.#held.length + 1 >= this.requests);
    this.#lastArrival = now;
    this.#lastWasEmpty = empty;
    if (overactive) {
      log.info("BOSH session {sid}: empty requests {ms} ms apart, faster than polling", {
        sid: this.sid,
        ms: sinceLast,
      });
      const answer = this.#terminate("policy-violation");
      for (const resolve of request.resolvers) resolve(answer);
      return;
    }
    this.#clearInactivity();
    let entry: HeldRequest | undefined;
    for (const resolve of request.resolvers) {
      if (entry) entry.resolvers.push(resolve);
      else entry = this.#holdRequest(rid, resolve, this.hold === 0);
    }
    if (restart) {
      const header = streamHeaderFrom(body, this.#creation ?? body);
      this.#guard(() => this.receiver.streamOpen(header, NS_CLIENT));
    }
    for (const el of payload) {
      if (this.#closed) break;
      this.#guard(() => this.#element(el));
    }
    if (type === "terminate" && !this.#closed) {
      this.#guard(() => this.receiver.streamClose());
      // A receiver that did not close the stream: the client has left all the same.
      if (!this.#closed) this.close();
    }
    if (this.#terminateBody !== undefined) {
      this.#answerAll();
      return;
    }
    if (this.#queue.length > 0 || this.hold === 0) this.#scheduleFlush();
  }

  /** Hands one payload element to the stream, as a client stream would see it. */
  #element(el: Element): void {
    if (el.ns === NS_HTTPBIND) toClientNamespace(el);
    const bytes = new TextEncoder().encode(serialize(el, "")).byteLength;
    if (bytes > this.#limits.maxStanzaBytes) {
      this.receiver.inputError(
        new XmlStreamError(
          "policy-violation",
          `Stanza of ${bytes} bytes exceeds the limit of ${this.#limits.maxStanzaBytes}`,
        ),
      );
      return;
    }
    if (el.ns === NS_STREAM || (el.name === "stream" && el.ns !== NS_CLIENT)) {
      this.receiver.inputError(
        new XmlStreamError("bad-format", `<${el.name}/> cannot be sent inside a BOSH body`),
      );
      return;
    }
    this.receiver.element(el);
  }

  /** Runs receiver code; a bug there ends this stream with internal-server-error. */
  #guard(run: () => void): void {
    try {
      run();
    } catch (error) {
      log.error("Internal error on BOSH session {sid} from {ip}: {error}", {
        sid: this.sid,
        ip: this.ip,
        error,
      });
      try {
        this.receiver.internalError(error);
      } catch {
        // Ending the stream below is all that is left.
      }
      this.close("internal-server-error");
    }
  }

  #holdRequest(
    rid: number,
    resolve: (response: BoshResponse) => void,
    immediate: boolean,
  ): HeldRequest {
    const entry: HeldRequest = { rid, resolvers: [resolve], timer: undefined, immediate };
    this.#held.push(entry);
    // More requests than `hold`: the older ones go back now (empty unless output waits).
    while (this.#held.length > Math.max(this.hold, 1)) this.#answer(this.#held[0]);
    if (!immediate) {
      entry.timer = setTimeout(() => this.#answer(entry), this.wait * 1000);
    }
    return entry;
  }

  // ---------- answers ----------

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#gone) return;
    this.#flushScheduled = true;
    // Output of one event-loop turn (a stanza and the acks that follow it) shares one answer.
    setTimeout(() => {
      this.#flushScheduled = false;
      this.flush();
    }, 0);
  }

  /** Answers the oldest held request with the output queued so far. */
  flush(): void {
    const entry = this.#held[0];
    if (!entry || this.#gone) return;
    if (this.#queue.length === 0 && !entry.immediate) return;
    this.#answer(entry);
  }

  /** Answers a held request with what is queued (and the creation attributes, once). */
  #answer(entry: HeldRequest): void {
    const index = this.#held.indexOf(entry);
    if (index < 0) return;
    this.#held.splice(index, 1);
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    const content = this.#takeQueue().join("");
    const text = bodyXml(this.#pendingAttrs, content);
    this.#pendingAttrs = "";
    this.#lastAnswerEmpty = content === "";
    this.#replay.set(entry.rid, text);
    for (const rid of this.#replay.keys()) {
      if (this.#replay.size <= this.requests) break;
      this.#replay.delete(rid);
    }
    for (const resolve of entry.resolvers) resolve({ status: 200, body: text });
    if (this.#held.length === 0 && !this.#gone) this.#armInactivity();
  }

  /** Answers every held request with the terminate body, then ends the session. */
  #answerAll(): void {
    const response = { status: this.#terminateStatus, body: this.#terminateBody! };
    for (const entry of this.#held.splice(0)) {
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      for (const resolve of entry.resolvers) resolve(response);
    }
    this.#end();
  }

  /** A binding error answer (HTTP status for legacy clients, else `type='terminate'`). */
  #bindingError(condition: string): BoshResponse {
    const status = this.#legacy ? LEGACY_STATUS[condition] ?? 200 : 200;
    return { status, body: bodyXml(` type='terminate' condition='${condition}'`, "") };
  }

  /** Ends the session on a binding error of the client's; returns the answer for it. */
  #terminate(condition: string): BoshResponse {
    const response = this.#bindingError(condition);
    if (this.#gone) return response;
    if (!this.#closed) {
      this.#closed = true;
      this.#terminateBody = response.body;
      this.#terminateStatus = response.status;
    }
    this.#answerAll();
    return response;
  }

  #armInactivity(): void {
    this.#clearInactivity();
    this.#inactivityTimer = setTimeout(() => {
      this.#inactivityTimer = undefined;
      if (this.#held.length > 0) return;
      log.info("BOSH session {sid} from {ip}: no request for {seconds} s, session gone", {
        sid: this.sid,
        ip: this.ip,
        seconds: this.inactivity,
      });
      this.#closed = true;
      this.#end();
    }, this.inactivity * 1000);
  }

  #clearInactivity(): void {
    if (this.#inactivityTimer !== undefined) clearTimeout(this.#inactivityTimer);
    this.#inactivityTimer = undefined;
  }

  /** The session is over: requests still open get the terminate body, the sid is forgotten. */
  #end(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#closed = true;
    this.#clearInactivity();
    const response = {
      status: this.#terminateStatus,
      body: this.#terminateBody ?? bodyXml(" type='terminate'", ""),
    };
    for (const entry of this.#held.splice(0)) {
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      for (const resolve of entry.resolvers) resolve(response);
    }
    for (const waiting of this.#waiting.values()) {
      for (const resolve of waiting.resolvers) resolve(response);
    }
    this.#waiting.clear();
    this.#takeQueue();
    this.#onEnd?.();
    this.receiver.transportClosed();
  }

  // ---------- output ----------

  /** The attributes of the session creation response (XEP-0124 §7.2, XEP-0206 §3). */
  #creationAttrs(body: Element): string {
    const attrs: Record<string, string> = {
      sid: this.sid,
      wait: String(this.wait),
      requests: String(this.requests),
      hold: String(this.hold),
      inactivity: String(this.inactivity),
      polling: String(this.polling),
      ver: BOSH_VERSION,
      from: this.#from || body.attrs.to || "",
      authid: this.#streamId,
      secure: "true",
      "xmlns:xmpp": NS_XBOSH,
      "xmpp:version": "1.0",
      "xmpp:restartlogic": "true",
    };
    let out = "";
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== "") out += ` ${name}='${escapeAttr(value)}'`;
    }
    return out;
  }

  openStream(options: StreamHeaderOptions): void {
    // The session creation (or restart) answer stands for the stream header.
    this.#streamId = options.id;
    if (options.from) this.#from = options.from;
    this.headerSent = true;
  }

  /** Queues `text` (`stanza` when it is one) for the next answer. */
  #write(text: string, stanza?: Element): void {
    if (this.#gone) return;
    if (this.#unsent !== undefined) {
      if (stanza !== undefined) this.#unsent.push({ stanza, queuedAt: Date.now() });
      return;
    }
    this.#queue.push(text);
    this.#queueStanzas.push(stanza);
    this.#queueTimes.push(stanza === undefined ? 0 : Date.now());
    this.#queuedChars += text.length;
    if (this.#queuedChars > this.#maxSend) this.#checkOverflow();
    if (this.#held.length > 0) this.#scheduleFlush();
  }

  /** Empties the output queue; returns its texts. */
  #takeQueue(): string[] {
    const texts = this.#queue;
    this.#queue = [];
    this.#queueStanzas = [];
    this.#queueTimes = [];
    this.#queuedChars = 0;
    return texts;
  }

  /**
   * More than the limit waits: with no request held the client stopped asking for its output
   * (a held request takes the whole queue at the end of this event-loop turn, so a burst
   * written at once to a client that polls does not count). The queue is dropped and the
   * receiver told, outside this write, of the stanzas in it, which no answer carried.
   */
  #checkOverflow(): void {
    const max = this.#maxSend;
    if (this.#held.length > 0) return;
    const stanzas = this.#queueStanzas;
    const times = this.#queueTimes;
    this.#takeQueue();
    const unsent: UnsentStanza[] = [];
    for (let i = 0; i < stanzas.length; i++) {
      const stanza = stanzas[i];
      if (stanza !== undefined) unsent.push({ stanza, queuedAt: times[i] });
    }
    this.#unsent = unsent;
    log.info("BOSH session {sid} from {ip}: more than {limit} bytes of output unasked for", {
      sid: this.sid,
      ip: this.ip,
      limit: max,
    });
    queueMicrotask(() => reportOutputOverflow(this, unsent, max));
  }

  /** Changes how much output may wait for the client before the session is ended. */
  setSendLimit(maxBytes: number): void {
    this.#maxSend = maxBytes;
  }

  /** Output waiting for a request to carry it. */
  get pendingOutput(): number {
    return this.#queuedChars;
  }

  send(el: Element): void {
    if (this.#closed) return;
    // An empty context namespace: every top-level element declares its own.
    this.#write(serialize(el, ""), el);
  }

  sendStreamLevel(el: Element): void {
    if (this.#closed) return;
    this.#write(streamLevel(el));
  }

  sendRaw(text: string): void {
    if (this.#closed) return;
    this.#write(text);
  }

  restart(): void {
    this.headerSent = false;
  }

  close(condition?: StreamErrorCondition, text?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    let attrs = " type='terminate'";
    // After an overflow the queue is already gone (its stanzas went back to the account).
    let content = this.#takeQueue().join("");
    if (condition) {
      const binding = SHARED_CONDITIONS.has(condition) ? condition : "remote-stream-error";
      attrs += ` condition='${binding}'`;
      // XEP-0206 §7: the stream error itself rides in the terminate body.
      content += streamLevel(streamError(condition, text));
    }
    this.#terminateBody = bodyXml(attrs, content);
    // Without a held request the next one (or the inactivity timeout) ends the session.
    if (this.#held.length > 0) this.#answerAll();
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

/** A `<body/>` wrapper with the given attribute text and content. */
function bodyXml(attrs: string, content: string): string {
  const open = `<body xmlns='${NS_HTTPBIND}'${attrs}`;
  return content === "" ? `${open}/>` : `${open}>${content}</body>`;
}

/** A stream-level element with its `stream` prefix declared (the body does not declare it). */
function streamLevel(el: Element): string {
  return serializeStreamLevel(el).replace(/^<stream:[a-z-]+/, `$& xmlns:stream='${NS_STREAM}'`);
}

/** The value of an attribute in the XEP-0206 namespace (`xmpp:version`), whatever its prefix. */
export function xboshAttr(body: Element, name: string): string | undefined {
  for (const [key, value] of Object.entries(body.attrs)) {
    if (key.startsWith("xmlns:") && value === NS_XBOSH) {
      const found = body.attrs[`${key.slice(6)}:${name}`];
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/**
 * The stream header a creation or restart request stands for; a restart names no version
 * (and may leave out `to`), so those come from the creation request.
 */
function streamHeaderFrom(body: Element, creation: Element): Element {
  const attrs: Record<string, string> = { xmlns: NS_STREAM };
  const to = body.attrs.to ?? creation.attrs.to;
  if (to !== undefined) attrs.to = to;
  if (body.attrs.from !== undefined) attrs.from = body.attrs.from;
  if (body.attrs["xml:lang"] !== undefined) attrs["xml:lang"] = body.attrs["xml:lang"];
  const version = xboshAttr(body, "version") ?? xboshAttr(creation, "version");
  if (version !== undefined) attrs.version = version;
  return new Element("stream", attrs);
}

/**
 * Moves a payload element that inherited the body's namespace (a client that left out
 * `xmlns='jabber:client'`) into `jabber:client`, with its children that inherited it too.
 */
function toClientNamespace(el: Element): void {
  el.ns = NS_CLIENT;
  for (const child of el.children) {
    if (typeof child !== "string" && child.ns === NS_HTTPBIND) toClientNamespace(child);
  }
}

/** Whether a `rid` attribute is a usable request id (a positive integer below 2^53). */
export function validRid(value: string | undefined): boolean {
  if (value === undefined || !/^\d{1,16}$/.test(value)) return false;
  const rid = Number(value);
  return rid > 0 && rid <= MAX_RID;
}
