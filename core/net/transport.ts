// The boundary between a connection and the XML stream it carries. A transport turns bytes or
// frames into stream events (header, elements, close) and stream output back into bytes or
// frames; streams (client, component) never touch a socket. TCP with STARTTLS and direct TLS
// is one transport (socket_transport.ts); WebSocket (RFC 7395) and BOSH (XEP-0206) are each
// another implementation of the same interface: `<open/>`/`<close/>` framing instead of
// `<stream:stream>`, and every element written with its namespace declared.

import type { Element } from "../xml/element.ts";
import type { XmlLimits, XmlStreamError } from "../xml/parser.ts";
import type { StreamErrorCondition } from "../xml/stanza.ts";
import type { StreamHeaderOptions, UnsentStanza } from "./stream.ts";
import type { TlsContexts } from "./tls.ts";
import type { ReadRate } from "./rate_limit.ts";

/** How a client reached the server, for logs and the admin shell. */
export type TransportKind = "tcp" | "direct-tls" | "websocket" | "bosh";

/** What a transport reports to the stream that reads it. */
export interface StreamReceiver {
  /** The peer opened (or restarted) its stream; `contentNamespace` is its default namespace. */
  streamOpen(header: Element, contentNamespace: string | undefined): void;
  /** A top-level element (stanza or nonza) arrived. */
  element(el: Element): void;
  /** The peer closed its stream. */
  streamClose(): void;
  /** The peer's input broke a rule (malformed XML, a limit): the stream must close. */
  inputError(error: XmlStreamError): void;
  /** The connection is gone (closed by either side, or failed). Called once. */
  transportClosed(): void;
  /** The connection failed (before `transportClosed`), for logs and close reasons. */
  transportError?(error: Error): void;
  /**
   * Handling the peer's input threw (a bug of ours): the stream must end with
   * `internal-server-error`, and the server go on.
   */
  internalError(error: unknown): void;
  /**
   * The peer stopped reading and the output waiting for it passed `limit`: the stream must
   * close, and `unsent` (stanzas that never reached the connection) go elsewhere. Without this
   * the transport closes with `resource-constraint` and the stanzas are dropped.
   */
  outputOverflow?(unsent: UnsentStanza[], limit: number): void;
}

/**
 * A transport's output passed its limit: the receiver's `outputOverflow` decides, or, when it
 * has none, the transport closes with `resource-constraint` (the stanzas are then dropped).
 */
export function reportOutputOverflow(
  transport: Pick<Transport, "receiver" | "close">,
  unsent: UnsentStanza[],
  limit: number,
): void {
  if (transport.receiver.outputOverflow) transport.receiver.outputOverflow(unsent, limit);
  else transport.close("resource-constraint", `More than ${limit} bytes of output waited unread`);
}

/** The receiver a transport has until a session takes it (never called). */
export const NO_RECEIVER: StreamReceiver = {
  streamOpen() {},
  element() {},
  streamClose() {},
  inputError() {},
  internalError() {},
  transportClosed() {},
};

/** A connection carrying one XML stream at a time (a new one after STARTTLS and SASL). */
export interface Transport {
  readonly kind: TransportKind;
  /** The peer's address. */
  readonly ip: string;
  /** The peer's port, when the transport has one. */
  readonly port: number | undefined;
  /** The connection is encrypted. */
  readonly secure: boolean;
  /** The TLS protocol version once encrypted. */
  readonly tlsVersion: string | undefined;
  /** When input last arrived (ms epoch). */
  readonly lastActivity: number;
  /** True once our side of the stream was opened (a stream error can then follow). */
  readonly headerSent: boolean;
  /** True once the transport is closing or closed; output is then dropped. */
  readonly closed: boolean;
  /** Where stream events go; replaced when a session takes the transport over (resumption). */
  receiver: StreamReceiver;
  /** The input limits in force (stanza size and depth). */
  readonly limits: XmlLimits;
  /** Changes the input limits, from the next element on. */
  setLimits(limits: Partial<XmlLimits>): void;
  /**
   * Limits how fast the peer may send (rate_limit.ts); undefined lifts the limit. Input over
   * the rate is slowed (reading pauses, or WebSocket messages wait), never dropped.
   */
  setReadRate?(rate: ReadRate | undefined): void;
  /**
   * Stops handing input to the receiver (true) until released (false): the session holds
   * stanzas that wait for the account's stanza rate, and the peer must not add more meanwhile.
   */
  holdInput?(held: boolean): void;
  /**
   * Changes how much output may wait for a peer that stops reading before `outputOverflow`
   * (TCP and WebSocket streams and BOSH sessions bound their output this way).
   */
  setSendLimit?(maxBytes: number): void;

  /** Opens our side of the stream (a header, or an `<open/>` frame). */
  openStream(options: StreamHeaderOptions): void;
  /** Writes an element in the stream's content namespace. */
  send(el: Element): void;
  /** Writes a stream-level element (`<stream:features>`, `<stream:error>`). */
  sendStreamLevel(el: Element): void;
  /** Writes markup that is already serialized for this stream (a nonza such as `<r/>`). */
  sendRaw(text: string): void;
  /** Writes what is queued now instead of at the end of this event-loop turn. */
  flush(): void;
  /**
   * The peer will open a new stream (after STARTTLS or SASL success): forget the old one on
   * both sides (until our new header goes out, a stream error is preceded by one).
   */
  restart(): void;
  /**
   * Ends the stream: a stream error first when a condition is given, then the closing tag,
   * then the connection. `waitForPeerMs` keeps the connection until the peer closes its stream
   * too, for at most that long (RFC 6120 §4.4).
   */
  close(condition?: StreamErrorCondition, text?: string, waitForPeerMs?: number): void;
  /** Drops the connection at once, without a closing tag. */
  destroy(): void;

  /** True when the transport can be upgraded with STARTTLS (plain TCP). */
  readonly canStartTls: boolean;
  /**
   * Sends `<proceed/>` and runs the server side of the TLS handshake. Resolves true once TLS is
   * up (a new stream follows), false when the handshake failed (the connection is then gone).
   */
  startTls(tls: TlsContexts, expectedServername: string | undefined): Promise<boolean>;
  /** RFC 5929 tls-server-end-point data for SCRAM-*-PLUS, when the transport can give it. */
  endpointBinding(tls: TlsContexts): Uint8Array | undefined;
}
