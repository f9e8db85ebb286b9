// What inbound and outbound server-to-server streams share: the socket and its output queue,
// the XML parser, TLS state and the remote certificate's verdict, and closing with a stream error.

import type { Socket } from "node:net";
import { getLogger } from "../log.ts";
import type { PeerCertificateVerdict } from "../net/peer_certificate.ts";
import { SocketTransport } from "../net/socket_transport.ts";
import { readRate } from "../net/rate_limit.ts";
import { serializeStreamLevel, type UnsentStanza } from "../net/stream.ts";
import type { StreamReceiver } from "../net/transport.ts";
import { tryParseJid } from "../jid.ts";
import { bounce } from "../router.ts";
import type { Session } from "../sessions.ts";
import { type Element, NS_SERVER } from "../xml/element.ts";
import type { XmlStreamError } from "../xml/parser.ts";
import { escapeAttr, escapeText, serialize } from "../xml/serializer.ts";
import { conditionName, type StreamErrorCondition } from "../xml/stanza.ts";
import type { S2SContext } from "./context.ts";
import { NS_DIALBACK } from "./dialback.ts";

const log = getLogger("s2s");

let streamCounter = 0;

/** How long a closed stream waits for the peer to close its side before ending the socket. */
const PEER_CLOSE_WAIT_MS = 2000;

/**
 * How a remote domain proved its identity on a stream: SASL EXTERNAL with its certificate
 * (XEP-0178), dialback accepted on a valid certificate without calling back (XEP-0344, inbound
 * only), or dialback verified by the authoritative server (XEP-0220).
 */
export type S2SAuthMethod = "sasl-external" | "dialback-certificate" | "dialback";

/**
 * The base of {@link S2SIn} and {@link S2SOut}: one TCP connection with a remote server, read
 * and written through the same TCP transport client and component streams use.
 */
export abstract class S2SStream implements Session, StreamReceiver {
  readonly id: string;
  abstract readonly kind: "s2sin" | "s2sout";
  readonly ip: string;
  /** The remote TCP port (for inbound streams, the peer's ephemeral port). */
  readonly port: number | undefined;
  readonly connectedAt = Date.now();
  /** Remote streams belong to no local host as a sender (no `pre-` events for them). */
  readonly host = "";
  readonly jid = undefined;
  authenticated = false;
  /** The remote certificate checked against the remote domain, once TLS is up. */
  certificate: PeerCertificateVerdict | undefined;
  /** Why the stream ended (or failed), for logs and the admin shell. */
  closeReason: string | undefined;

  protected readonly ctx: S2SContext;
  protected readonly transport: SocketTransport;
  #lastWrite = Date.now();
  #closed = false;

  constructor(socket: Socket, ctx: S2SContext, prefix: string) {
    this.id = `${prefix}${++streamCounter}`;
    this.ctx = ctx;
    this.transport = new SocketTransport(socket, this, {
      namespace: NS_SERVER,
      maxStanzaBytes: ctx.config().get<number>("s2s_stanza_size_limit"),
      maxSendBuffer: ctx.config().get<number>("s2s_max_send_buffer"),
    });
    this.ip = this.transport.ip;
    this.port = this.transport.port;
    this.#applyReadRate();
    ctx.server.sessions.add(this);
  }

  /** TLS is active. */
  get secure(): boolean {
    return this.transport.secure;
  }

  /** The TLS protocol version once encrypted. */
  get tlsVersion(): string | undefined {
    return this.transport.tlsVersion;
  }

  /** Last time bytes went either way (ms epoch), for the idle timeout. */
  get lastActivity(): number {
    return Math.max(this.#lastWrite, this.transport.lastActivity);
  }

  /**
   * Takes up a changed `s2s_stanza_size_limit` (from the next stanza on) and
   * `s2s_max_send_buffer` after a reload.
   */
  applyConfig(): void {
    this.transport.setLimits({ maxStanzaBytes: this.ctx.config().get("s2s_stanza_size_limit") });
    this.transport.setSendLimit(this.ctx.config().get<number>("s2s_max_send_buffer"));
    this.#applyReadRate();
  }

  /** How fast the remote server may send on this stream (`limits_s2s_rate`, both directions). */
  #applyReadRate(): void {
    const config = this.ctx.config();
    this.transport.setReadRate(
      readRate(config.get<string>("limits_s2s_rate"), config.get<string>("limits_s2s_burst")),
    );
  }

  /** The remote domain (the first one authenticated, or the one the stream is for). */
  abstract get remote(): string;

  /** A stream header arrived (again after STARTTLS and SASL). */
  protected abstract onStreamOpen(header: Element, defaultNs: string | undefined): void;

  /** A top-level element arrived. */
  protected abstract onElement(el: Element): void;

  /** Called once when the stream is gone, whatever the cause. */
  protected abstract onGone(): void;

  /** True once the stream is closing or closed. */
  get closed(): boolean {
    return this.#closed;
  }

  // ---------- what the transport reports ----------

  streamOpen(header: Element, contentNamespace: string | undefined): void {
    this.onStreamOpen(header, contentNamespace);
  }

  element(el: Element): void {
    if (!this.#closed) this.onElement(el);
  }

  streamClose(): void {
    if (this.#closed) return;
    log.debug("Remote closed stream {id}", { id: this.id });
    this.closeReason ??= "Closed by the remote server";
    this.close();
  }

  internalError(): void {
    this.close("internal-server-error");
  }

  inputError(error: XmlStreamError): void {
    log.info("XML error from {remote}: {message}", {
      remote: this.remote || this.ip,
      message: error.message,
    });
    this.close(error.condition, error.message);
  }

  transportError(error: Error): void {
    this.closeReason ??= `Connection error: ${error.message}`;
  }

  transportClosed(): void {
    this.#closed = true;
    this.#forget();
  }

  /**
   * The remote server stopped reading and the output waiting for it passed
   * `s2s_max_send_buffer`: the link closes with `resource-constraint` (the next stanza for the
   * domain sets up a new one), and the stanzas that never reached the connection bounce to
   * their senders with `remote-server-timeout`.
   */
  outputOverflow(unsent: UnsentStanza[], limit: number): void {
    this.ctx.server.metrics.counter("s2s.slow_readers_cut").inc();
    this.close("resource-constraint", `More than ${limit} bytes of output waited unread`);
    const reason = `The link to ${this.remote || this.ip} stopped taking stanzas`;
    for (const { stanza } of unsent) {
      const local = tryParseJid(stanza.attrs.from ?? "")?.domain;
      if (!local || !this.ctx.server.hosts.has(local)) continue;
      bounce(stanza, this.ctx.server.hostSession(local), "remote-server-timeout", reason);
    }
  }

  // ---------- output ----------

  /** Writes raw text (stream-level elements, dialback). */
  protected write(text: string): void {
    this.#lastWrite = Date.now();
    this.transport.sendRaw(text);
  }

  /** Writes an element in the `jabber:server` stream namespace (dialback ones prefixed). */
  protected writeElement(el: Element): void {
    this.#lastWrite = Date.now();
    if (el.ns === NS_DIALBACK) this.transport.sendRaw(serializeDialback(el));
    else this.transport.send(el); // a stanza, handed back if it never leaves (outputOverflow)
  }

  /** Sends a stream header in the jabber:server namespace with the dialback prefix. */
  protected sendHeader(options: { id: string; from?: string; to?: string }): void {
    this.#lastWrite = Date.now();
    this.transport.openStream({ ns: NS_SERVER, version: true, dialback: true, ...options });
  }

  /** True once our side of the current stream is open (a stream error can follow). */
  protected get headerSent(): boolean {
    return this.transport.headerSent;
  }

  /** Opens our side of the stream so that a stream error can follow (RFC 6120 §4.9.1.2). */
  protected abstract sendHeaderBeforeError(): void;

  /** Writes `<stream:features>`. */
  protected sendFeatures(features: Element): void {
    this.write(serializeStreamLevel(features));
  }

  /** Queues a stanza for the peer. */
  abstract send(stanza: Element): void;

  /**
   * Closes the stream: a stream error first when a condition is given, then the closing tag;
   * the socket is ended once the peer closes its stream too (or after 2 s), and destroyed if
   * the peer does not close the connection within 3 s more.
   */
  close(condition?: StreamErrorCondition, text?: string): void {
    if (this.#closed) return;
    if (condition) {
      if (!this.headerSent) this.sendHeaderBeforeError();
      log.info("Closing {id} ({remote}) with {condition}{text}", {
        id: this.id,
        remote: this.remote || this.ip,
        condition,
        text: text ? `: ${text}` : "",
      });
      this.closeReason ??= text ? `${condition}: ${text}` : condition;
    }
    this.#closed = true;
    this.#forget();
    this.transport.close(condition, text, PEER_CLOSE_WAIT_MS);
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.#closed = true;
    this.#forget();
    this.transport.destroy();
  }

  #gone = false;

  #forget(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.ctx.server.sessions.remove(this);
    this.onGone();
  }
}

/** The condition and text of a received `<stream:error>`, as one sentence. */
export function describeStreamError(el: Element): string {
  const condition = conditionName(el) ?? "undefined";
  const text = el.getChildText("text", "urn:ietf:params:xml:ns:xmpp-streams");
  return text ? `${condition} (${text})` : condition;
}

/**
 * `<db:result/>` and `<db:verify/>` with the `db` prefix every s2s stream header declares, as
 * XEP-0220 writes them: ejabberd matches the literal name "db:result" and drops an element that
 * is in the dialback namespace without the prefix. Children built in the dialback namespace
 * (`<error/>`) are written unqualified, so they are in the stream's `jabber:server`, as in the
 * XEP's examples.
 */
function serializeDialback(el: Element): string {
  let out = `<db:${el.name}`;
  for (const [key, value] of Object.entries(el.attrs)) out += ` ${key}='${escapeAttr(value)}'`;
  if (el.children.length === 0) return `${out}/>`;
  out += ">";
  for (const child of el.children) {
    out += typeof child === "string" ? escapeText(child) : serialize(child, NS_DIALBACK);
  }
  return `${out}</db:${el.name}>`;
}
