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

/**
 * A stream's output queue: text written during one event-loop turn goes out in a single
 * socket write (each write costs a few µs), and `end` closes the stream politely, destroying
 * the socket if the peer does not close within 3 s.
 */
export class StreamWriter {
  #socket: Socket;
  #queue: string[] = [];
  #scheduled = false;
  #ended = false;
  #peerClosed: (() => void) | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /** Writes to a new socket from now on (after STARTTLS). */
  set socket(socket: Socket) {
    this.#socket = socket;
  }

  /** Queues text; ignored once the stream has ended. */
  write(text: string): void {
    if (this.#ended) return;
    this.#queue.push(text);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Writes what is queued now. */
  flush(): void {
    this.#scheduled = false;
    if (this.#queue.length === 0 || this.#socket.destroyed) return;
    const data = this.#queue.length === 1 ? this.#queue[0] : this.#queue.join("");
    this.#queue = [];
    this.#socket.write(data);
  }

  /** Writes `closing` (stream error, closing tag) and ends the socket. */
  end(closing: string): void {
    if (this.#ended) return;
    if (closing) this.write(closing);
    this.flush();
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
    this.write(closing);
    this.flush();
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
    this.#queue = [];
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
