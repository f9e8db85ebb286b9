// A remote XMPP server reduced to a script, for tests of Lilt's outbound streams: it accepts a
// connection, answers the stream header with STARTTLS, does TLS with a certificate the test
// chooses, offers the features the test chooses, closes its stream when Lilt closes its own, and
// records what Lilt sends on each layer, parsed by our own stream parser, so a test asserts on
// exactly what a peer would see.

import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import * as tls from "node:tls";
import type { Element } from "../../core/xml/element.ts";
import { StreamParser } from "../../core/xml/parser.ts";

const NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_STREAM = "http://etherx.jabber.org/streams";

/** Options of {@link ScriptedS2SPeer.start}. */
export interface ScriptedS2SPeerOptions {
  /** The domain the peer answers for (its stream headers' `from`). */
  domain: string;
  /** The PEM certificate (chain) and key the peer presents in TLS. */
  certificate: { cert: string; key: string };
  /**
   * The inner XML of `<stream:features>` after TLS. Default: dialback only (no SASL EXTERNAL).
   */
  secureFeatures?: string;
}

/** What one layer (plain TCP, then TLS) of a connection carried from Lilt to the peer. */
export interface PeerLayer {
  /** The raw text received on this layer. */
  text: string;
  /** Stream headers received on this layer, in order. */
  headers: Element[];
  /** Top-level elements received on this layer (stream errors included), in order. */
  elements: Element[];
  /** Lilt closed the stream (`</stream:stream>`) on this layer. */
  streamClosed: boolean;
  /** XML errors our parser found on this layer (a peer would call them not well-formed). */
  parseErrors: string[];
}

/** One connection Lilt opened to the peer. */
export class PeerConnection {
  /** What arrived before STARTTLS. */
  readonly plain: PeerLayer = emptyLayer();
  /** What arrived over TLS. */
  readonly secure: PeerLayer = emptyLayer();
  /** The TCP connection is closed. */
  ended = false;
  #waiters: (() => void)[] = [];

  /** Wakes waiters; called on every change. */
  changed(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves once the connection is closed (rejects after `timeoutMs`). */
  async waitEnded(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `The connection stayed open; received over TLS: ${this.secure.text.slice(-2000)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}

function emptyLayer(): PeerLayer {
  return { text: "", headers: [], elements: [], streamClosed: false, parseErrors: [] };
}

/** A scripted receiving server on 127.0.0.1 (port 0). */
export class ScriptedS2SPeer {
  /** Every connection accepted, in order. */
  readonly connections: PeerConnection[] = [];
  readonly #server: Server;
  readonly #tls: tls.Server;
  readonly #options: ScriptedS2SPeerOptions;
  readonly #sockets = new Set<Socket>();
  #waiters: (() => void)[] = [];

  private constructor(options: ScriptedS2SPeerOptions) {
    this.#options = options;
    this.#tls = tls.createServer({
      cert: options.certificate.cert,
      key: options.certificate.key,
      requestCert: true,
      rejectUnauthorized: false,
    });
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /** Starts listening on an ephemeral loopback port. */
  static async start(options: ScriptedS2SPeerOptions): Promise<ScriptedS2SPeer> {
    const peer = new ScriptedS2SPeer(options);
    await new Promise<void>((resolve) => peer.#server.listen(0, "127.0.0.1", resolve));
    return peer;
  }

  /** The listening port. */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Resolves with the first connection (waits for it when none came yet). */
  async firstConnection(timeoutMs = 10_000): Promise<PeerConnection> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("Lilt never connected to the scripted peer");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.connections[0];
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #accept(raw: Socket): void {
    this.#sockets.add(raw);
    const connection = new PeerConnection();
    this.connections.push(connection);
    for (const wake of this.#waiters.splice(0)) wake();
    raw.on("error", () => {});
    raw.on("close", () => {
      connection.ended = true;
      connection.changed();
    });
    const onData = this.#reader(connection, connection.plain, raw, (el) => {
      if (el.name !== "starttls" || el.ns !== NS_TLS) return;
      raw.off("data", onData);
      raw.write(`<proceed xmlns='${NS_TLS}'/>`);
      this.#tls.once("secureConnection", (secure: tls.TLSSocket) => {
        this.#sockets.add(secure);
        secure.on("error", () => {});
        secure.on("data", this.#reader(connection, connection.secure, secure, () => {}));
      });
      this.#tls.emit("connection", raw);
    });
    raw.on("data", onData);
  }

  /**
   * A data listener that parses one layer: answers each stream header with ours and the
   * layer's features, records elements, and hands each element to `onElement`.
   */
  #reader(
    connection: PeerConnection,
    layer: PeerLayer,
    socket: Socket,
    onElement: (el: Element) => void,
  ): (chunk: Uint8Array) => void {
    const secure = layer === connection.secure;
    const parser = new StreamParser({
      streamOpen: (header) => {
        layer.headers.push(header);
        const features = secure
          ? this.#options.secureFeatures ??
            "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
          : `<starttls xmlns='${NS_TLS}'><required/></starttls>`;
        socket.write(
          `<?xml version='1.0'?><stream:stream xmlns='jabber:server' ` +
            `xmlns:stream='${NS_STREAM}' xmlns:db='jabber:server:dialback' ` +
            `id='${crypto.randomUUID()}' from='${this.#options.domain}' version='1.0'>` +
            `<stream:features>${features}</stream:features>`,
        );
        connection.changed();
      },
      stanza: (el) => {
        layer.elements.push(el);
        onElement(el);
        connection.changed();
      },
      streamClose: () => {
        // Like a real server: close our stream in answer, then the connection.
        layer.streamClosed = true;
        socket.end("</stream:stream>");
        connection.changed();
      },
      error: (error) => {
        layer.parseErrors.push(error.message);
        connection.changed();
      },
    }, { maxStanzaBytes: 1_000_000 });
    return (chunk) => {
      layer.text += new TextDecoder().decode(chunk);
      parser.feed(chunk);
    };
  }
}
