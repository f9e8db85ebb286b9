// Stream-level output shared by every XML stream Lilt serves or opens (clients, servers,
// external components): the opening header, the prefixed stream elements (<stream:features>,
// <stream:error>) and the coalescing output queue.

import type { Socket } from "node:net";
import type { Element } from "../xml/element.ts";
import { escapeAttr, escapeText, serialize } from "../xml/serializer.ts";
import { NS_STREAM, streamError, type StreamErrorCondition } from "../xml/stanza.ts";

/** What goes into a stream header the server sends. */
export interface StreamHeaderOptions {
  /** The stream's content namespace (`jabber:client`, `jabber:component:accept`). */
  ns: string;
  /** The stream id (omitted when empty: an initiating entity sends none). */
  id: string;
  /** The server's domain, when known. */
  from?: string;
  /** The peer's address, when known. */
  to?: string;
  /** Write `version='1.0'` and `xml:lang` (RFC 6120 streams; XEP-0114 streams have none). */
  version?: boolean;
  /** Declare the dialback prefix `db` (XEP-0220 server streams). */
  dialback?: boolean;
}

/** The XML declaration and opening `<stream:stream>` tag the server sends. */
export function streamHeader(options: StreamHeaderOptions): string {
  const from = options.from ? ` from='${escapeAttr(options.from)}'` : "";
  const to = options.to ? ` to='${escapeAttr(options.to)}'` : "";
  const version = options.version ? ` version='1.0' xml:lang='en'` : "";
  const db = options.dialback ? ` xmlns:db='jabber:server:dialback'` : "";
  const id = options.id ? ` id='${escapeAttr(options.id)}'` : "";
  return `<?xml version='1.0'?><stream:stream xmlns='${escapeAttr(options.ns)}'` +
    ` xmlns:stream='${NS_STREAM}'${db}${id}${from}${to}${version}>`;
}

/** Serializes a stream-level element (`<stream:features>`, `<stream:error>`) with its prefix. */
export function serializeStreamLevel(el: Element): string {
  let inner = "";
  for (const child of el.children) {
    inner += typeof child === "string" ? escapeText(child) : serialize(child, NS_STREAM);
  }
  return `<stream:${el.name}>${inner}</stream:${el.name}>`;
}

/**
 * What ends a stream: the stream error when a condition is given (the header must have been
 * sent by then), then the closing tag once a header went out.
 */
export function closingTags(
  headerSent: boolean,
  condition?: StreamErrorCondition,
  text?: string,
): string {
  const error = condition ? serializeStreamLevel(streamError(condition, text)) : "";
  return headerSent ? `${error}</stream:stream>` : error;
}

/** A stanza a {@link StreamWriter} still held when its peer stopped taking output. */
export interface UnsentStanza {
  stanza: Element;
  /** When it was queued (ms epoch), for the delay stamp of a later delivery. */
  queuedAt: number;
}

/** Most text handed to the socket at once while it drains a backlog. */
const MAX_BATCH_CHARS = 65536;

/**
 * A stream's output queue: text written during one event-loop turn goes out in a single
 * socket write (each write costs a few µs), and `end` closes the stream politely, destroying
 * the socket if the peer does not close within 3 s.
 *
 * Output waits here, not in the socket, while the socket's own buffer is full (a peer that
 * reads slower than we write): the socket gets more on `drain`, in batches. Once what waits
 * passes {@link StreamWriter.maxQueuedChars} (see `#overStalled`), the queue is dropped and `onOverflow` gets the
 * stanzas in it, which never reached the socket (the caller closes the stream and hands them
 * back), so memory stays bounded whatever a peer stops reading.
 */
export class StreamWriter {
  #socket: Socket;
  #queue: string[] = [];
  /** The stanza each queued text is, when it is one (aligned with #queue). */
  #stanzas: (Element | undefined)[] = [];
  /** When each queued text was queued (aligned with #queue). */
  #times: number[] = [];
  #queuedChars = 0;
  /** Output queued since the socket last took some (while it waits for `drain`). */
  #stalledChars = 0;
  /**
   * Queued output written while the socket was taking all it was given (offline messages at
   * login, an archive page): a burst the peer has not yet had time to read, not a sign that it
   * reads nothing. Flushed first (the queue is in order), so it shrinks as batches leave.
   */
  #burstChars = 0;
  #scheduled = false;
  /** The socket's buffer is full: nothing more goes to it until `drain`. */
  #waiting = false;
  #ended = false;
  /** Set once the limit was passed: stanzas written until the owner closes the stream. */
  #unsent: UnsentStanza[] | undefined;
  #peerClosed: (() => void) | undefined;
  #drained = () => {
    this.#waiting = false;
    this.#stalledChars = 0;
    this.flush();
  };

  /**
   * Most output (UTF-16 units) that may be queued for a peer that reads nothing, and half of
   * what may wait in all (queued here plus bytes buffered in the socket); Infinity for no
   * limit.
   */
  maxQueuedChars = Infinity;
  /** Told once when the output waiting passed {@link maxQueuedChars}, with what never left. */
  onOverflow: ((unsent: UnsentStanza[]) => void) | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Writes to a new socket from now on (after STARTTLS). */
  set socket(socket: Socket) {
    if (this.#waiting) {
      this.#socket.off("drain", this.#drained);
      this.#waiting = false;
    }
    this.#socket = socket;
  }

  /** Output waiting for the peer, in UTF-16 units here plus bytes in the socket's buffer. */
  get pending(): number {
    return this.#queuedChars + this.#socket.writableLength;
  }

  /** Queues text (`stanza` when the text is one); ignored once the stream has ended. */
  write(text: string, stanza?: Element): void {
    if (this.#ended) return;
    if (this.#unsent !== undefined) {
      if (stanza !== undefined) this.#unsent.push({ stanza, queuedAt: Date.now() });
      return;
    }
    this.#queue.push(text);
    this.#stanzas.push(stanza);
    this.#times.push(stanza === undefined ? 0 : Date.now());
    this.#queuedChars += text.length;
    if (this.#waiting) {
      this.#stalledChars += text.length;
      if (this.#overStalled()) this.#overflow();
      return;
    }
    this.#burstChars += text.length;
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Writes what is queued now, as much as the socket takes. */
  flush(): void {
    this.#scheduled = false;
    const socket = this.#socket;
    if (this.#queue.length === 0 || this.#waiting || socket.destroyed) return;
    if (socket.writableNeedDrain) return this.#waitForDrain();
    if (this.#queuedChars <= MAX_BATCH_CHARS) {
      const data = this.#takeAll();
      if (!socket.write(data)) this.#waitForDrain();
      return;
    }
    // A backlog: hand it over in batches, so that what the socket buffers stays small and
    // the rest can still be taken back on overflow.
    let count = 0;
    let chars = 0;
    while (count < this.#queue.length && (count === 0 || chars < MAX_BATCH_CHARS)) {
      chars += this.#queue[count++].length;
    }
    const data = this.#queue.splice(0, count).join("");
    this.#stanzas.splice(0, count);
    this.#times.splice(0, count);
    this.#queuedChars -= chars;
    this.#burstChars = Math.max(0, this.#burstChars - chars);
    if (!socket.write(data)) return this.#waitForDrain();
    this.#scheduled = true;
    queueMicrotask(() => this.flush());
  }

  #takeAll(): string {
    const queue = this.#queue;
    const data = queue.length === 1 ? queue[0] : queue.join("");
    this.#queue = [];
    this.#stanzas = [];
    this.#times = [];
    this.#queuedChars = 0;
    this.#burstChars = 0;
    return data;
  }

  #waitForDrain(): void {
    this.#waiting = true;
    this.#socket.once("drain", this.#drained);
  }

  /**
   * The peer is not reading: more than the limit was queued since the socket last took
   * anything, or twice the limit waits in all (a peer that reads a trickle). A burst queued
   * while the socket was taking output (offline messages at login, an archive page) does not
   * count: a client that reads it at its own pace while other stanzas arrive is not cut off.
   */
  #overStalled(): boolean {
    const max = this.maxQueuedChars;
    return this.#stalledChars > max ||
      this.#queuedChars - this.#burstChars + this.#socket.writableLength > 2 * max;
  }

  #overflow(): void {
    const unsent: UnsentStanza[] = [];
    for (let i = 0; i < this.#stanzas.length; i++) {
      const stanza = this.#stanzas[i];
      if (stanza !== undefined) unsent.push({ stanza, queuedAt: this.#times[i] });
    }
    this.#takeAll();
    this.#unsent = unsent;
    // Told outside the write that passed the limit (often in the middle of routing a stanza
    // from another session); stanzas written meanwhile join the list.
    queueMicrotask(() => {
      const handler = this.onOverflow;
      this.onOverflow = undefined;
      handler?.(unsent);
    });
  }

  /** Hands everything queued and `closing` to the socket at once, backlog or not. */
  #writeFinal(closing: string): void {
    const data = this.#takeAll() + closing;
    if (data && !this.#socket.destroyed) this.#socket.write(data);
  }

  /** Writes `closing` (stream error, closing tag) and ends the socket. */
  end(closing: string): void {
    if (this.#ended) return;
    this.#writeFinal(closing);
    this.#ended = true;
    endSocket(this.#socket);
  }

  /**
   * Writes `closing` and ends the socket once the peer has closed its stream too, or after
   * `waitMs` (RFC 6120 §4.4: the sender of the closing tag waits for the other side's). A peer
   * that reads our stream error while the connection is already going down may log only the
   * lost connection (ejabberd does), not the error's reason.
   */
  endAfterPeer(closing: string, waitMs: number): void {
    if (this.#ended) return;
    if (!closing) return this.end("");
    this.#writeFinal(closing);
    this.#ended = true;
    const socket = this.#socket;
    const finish = () => {
      clearTimeout(timer);
      this.#peerClosed = undefined;
      endSocket(socket);
    };
    const timer = setTimeout(finish, waitMs);
    this.#peerClosed = finish;
    socket.once("end", finish);
    socket.once("close", () => clearTimeout(timer));
  }

  /** The peer closed its stream: a pending {@link StreamWriter.endAfterPeer} ends now. */
  peerClosed(): void {
    this.#peerClosed?.();
  }

  /** Forgets queued output (the connection is gone). */
  drop(): void {
    this.#ended = true;
    this.#takeAll();
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.drop();
    this.#socket.destroy();
  }
}

/** Ends a socket politely, and destroys it if the peer has not closed it within 3 s. */
function endSocket(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  const timer = setTimeout(() => socket.destroy(), 3000);
  socket.once("close", () => clearTimeout(timer));
}
