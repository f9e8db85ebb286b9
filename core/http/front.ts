// The connection side of HTTPS (and of plain HTTP reachable from other machines): node:tls
// accepts the connection and picks each host's certificate by SNI (the platform server takes one
// certificate only), then the bytes go unchanged to the platform HTTP server on a loopback port.
// Holding the outer socket also gives what that server lacks: a deadline for a request's
// headers (slowloris) and an idle keep-alive timeout. The backend learns the real peer from the
// port its inbound connection came from.

import * as net from "node:net";
import type * as tls from "node:tls";
import { getLogger } from "../log.ts";
import { nativeReads } from "../net/native_reads.ts";
import type { TlsContexts } from "../net/tls.ts";

const log = getLogger("http");

/** Deadlines of a fronted connection, in milliseconds (read per connection). */
export interface FrontTimeouts {
  /** From a request's first byte until its headers are complete. */
  headerMs: number;
  /** Without a request in flight (keep-alive), before the connection is closed. */
  idleMs: number;
}

/** What the backend knows of a connection that came through the front. */
export interface FrontPeer {
  /** The client's address (of the outer connection). */
  readonly ip: string;
  /** The outer connection is TLS. */
  readonly secure: boolean;
  /** The backend started handling a request (headers are in). */
  requestStarted(): void;
  /** That request's response was sent; `upgraded` when it switched protocols (WebSocket). */
  requestEnded(upgraded: boolean): void;
}

/** Options for {@link HttpFront}. */
export interface HttpFrontOptions {
  /** The listener's kind for logs ("https", "http"). */
  kind: string;
  /** TLS with SNI for HTTPS; absent for plain HTTP. */
  tls?: TlsContexts;
  timeouts: () => FrontTimeouts;
}

/** One outer connection and its deadlines. */
class FrontConnection implements FrontPeer {
  readonly ip: string;
  readonly secure: boolean;
  #outer: net.Socket;
  #timeouts: FrontTimeouts;
  #inFlight = 0;
  #upgraded = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #waitingForHeaders = false;

  constructor(outer: net.Socket, ip: string, secure: boolean, timeouts: FrontTimeouts) {
    this.#outer = outer;
    this.ip = ip;
    this.secure = secure;
    this.#timeouts = timeouts;
    this.#arm(timeouts.idleMs, "idle");
  }

  /** Bytes arrived from the client. */
  clientData(): void {
    if (this.#inFlight > 0 || this.#upgraded || this.#waitingForHeaders) return;
    this.#waitingForHeaders = true;
    this.#arm(this.#timeouts.headerMs, "headers");
  }

  requestStarted(): void {
    this.#inFlight++;
    this.#waitingForHeaders = false;
    this.#disarm();
  }

  requestEnded(upgraded: boolean): void {
    this.#inFlight = Math.max(0, this.#inFlight - 1);
    if (upgraded) this.#upgraded = true;
    if (this.#upgraded) this.#disarm();
    else if (this.#inFlight === 0 && !this.#waitingForHeaders) {
      this.#arm(this.#timeouts.idleMs, "idle");
    }
  }

  /** The connection is gone. */
  closed(): void {
    this.#disarm();
  }

  #arm(ms: number, what: "idle" | "headers"): void {
    this.#disarm();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      log.debug("HTTP connection from {ip} closed: {what} timeout after {ms} ms", {
        ip: this.ip,
        what,
        ms,
      });
      this.#outer.destroy();
    }, ms);
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Accepts outer connections and relays them to the backend HTTP server.
 *
 * @example
 * ```ts
 * const front = new HttpFront({ kind: "https", tls, timeouts });
 * front.backendPort = backend.port;
 * await listen("https", address, (socket) => front.accept(socket));
 * // in the backend's handler:
 * const peer = front.peer(info.remoteAddr.port); // undefined: not from the front
 * ```
 */
export class HttpFront {
  #options: HttpFrontOptions;
  /** Backend-side local port of each relayed connection -> its outer connection. */
  #byPort = new Map<number, FrontConnection>();
  #sockets = new Set<net.Socket>();
  /** Where the platform HTTP server listens (on loopback); set before the first accept. */
  backendPort = 0;

  constructor(options: HttpFrontOptions) {
    this.#options = options;
  }

  /** Number of outer connections open now. */
  get connections(): number {
    return this.#byPort.size;
  }

  /** The outer connection a backend connection relays (by its port as the backend sees it). */
  peer(backendRemotePort: number): FrontPeer | undefined {
    return this.#byPort.get(backendRemotePort);
  }

  /** Takes an accepted socket: TLS first when configured, then the relay. */
  accept(raw: net.Socket): void {
    const ip = raw.remoteAddress ?? "";
    raw.on("error", () => {});
    const tls = this.#options.tls;
    if (!tls) {
      this.#relay(raw, ip, false);
      return;
    }
    tls.upgrade(raw).then(
      (secure: tls.TLSSocket) => this.#relay(secure, ip, true),
      (error: Error) => {
        log.debug("HTTPS handshake from {ip} failed: {error}", { ip, error: error.message });
      },
    );
  }

  /** Closes every relayed connection (server shutdown, after the backend stopped). */
  closeAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  #relay(outer: net.Socket, ip: string, secure: boolean): void {
    if (outer.destroyed) return;
    outer.on("error", () => {});
    const connection = new FrontConnection(outer, ip, secure, this.#options.timeouts());
    const inner = net.connect({ host: "127.0.0.1", port: this.backendPort });
    inner.setNoDelay(true);
    let port: number | undefined;
    this.#sockets.add(outer);
    inner.on("error", (error) => {
      log.warning("Relay of an {kind} connection to the HTTP server failed: {error}", {
        kind: this.#options.kind,
        error: error.message,
      });
      outer.destroy();
    });
    inner.once("connect", () => {
      port = inner.localPort;
      if (port === undefined || outer.destroyed) {
        inner.destroy();
        return;
      }
      this.#byPort.set(port, connection);
      // Backpressure by hand rather than outer.pipe(inner): pausing Deno's TLS socket stops
      // only its plaintext events while the TCP socket beneath it goes on reading and
      // decrypting, and resuming hands over all of that in one chunk, so an upload faster
      // than the backend writes it to disk would sit in memory whole. The socket beneath
      // stops reading with it.
      const beneath = nativeReads(outer);
      outer.on("data", (chunk: Uint8Array) => {
        connection.clientData();
        if (!inner.write(chunk)) {
          outer.pause();
          beneath?.readStop();
        }
      });
      inner.on("drain", () => {
        beneath?.readStart();
        outer.resume();
      });
      outer.once("end", () => inner.end());
      inner.pipe(outer);
    });
    outer.once("close", () => {
      this.#sockets.delete(outer);
      connection.closed();
      if (port !== undefined && this.#byPort.get(port) === connection) this.#byPort.delete(port);
      inner.destroy();
    });
    // The backend closed its side: let the response already written reach the client first,
    // then close (a TLS socket that was only ended can stay open until the idle deadline).
    inner.once("close", () => {
      if (outer.destroyed) return;
      outer.once("finish", () => outer.destroy());
      outer.end();
    });
  }
}
