// Server-side TLS for accepted sockets (STARTTLS after <proceed/>, or direct TLS): one node:tls
// server used only as a context picks each host's certificate by SNI and remembers which one it
// presented, since channel binding (tls-server-end-point) must hash exactly that certificate.

import { createHash } from "node:crypto";
import type * as net from "node:net";
import * as tls from "node:tls";
import {
  certificateMatchesName,
  type LoadedCertificate,
  tlsServerEndPointHash,
} from "./certificates.ts";

/** A virtual host and the certificate to present for it. */
export interface TlsHostEntry {
  /** The host's domain; a client asking for it (or a subdomain of it) by SNI gets `cert`. */
  domain: string;
  /** The certificate and key presented for this host. */
  cert: LoadedCertificate;
}

/** What a certificate reload did for one host or component (`cert reload`, SIGHUP). */
export interface CertificateChange {
  /** The host or component. */
  domain: string;
  /** The certificate it had before; undefined when it had none of its own. */
  before?: LoadedCertificate;
  /** The certificate it has now; undefined when it no longer has one of its own. */
  after?: LoadedCertificate;
  /** False when the same certificate and key were read again. */
  changed: boolean;
}

/** Options for {@link TlsContexts}. */
export interface TlsContextsOptions {
  /** ALPN protocols offered (XEP-0368). Default `["xmpp-client"]`. */
  alpn?: string[];
  /** Ask the client for a certificate (SASL EXTERNAL, s2s); never rejects for lack of one. */
  requestCert?: boolean;
  /** How long a handshake may take before the upgrade fails, in ms. Default 10000. */
  handshakeTimeoutMs?: number;
}

/** Options for {@link TlsContexts.upgrade}. */
export interface UpgradeOptions {
  /** The host the client asked for before TLS (stream `to`); its certificate is used without SNI. */
  expectedServername?: string;
}

type SniCallback = (
  servername: string,
  callback: (error: Error | null, context?: tls.SecureContext) => void,
) => void;

interface PendingUpgrade {
  raw: net.Socket;
  expected: string;
  /** The certificate our SNI callback handed to this handshake, when it ran for it. */
  presented?: LoadedCertificate;
  timer: ReturnType<typeof setTimeout>;
  onClose: () => void;
  resolve: (socket: tls.TLSSocket) => void;
  reject: (error: Error) => void;
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const MIN_VERSION = "TLSv1.2";

/**
 * The TLS side of client connections: upgrades accepted raw sockets to TLS with the right
 * certificate per virtual host and answers which certificate a connection got, for channel
 * binding. Certificates can be replaced at run time without touching open connections.
 *
 * @example
 * ```ts
 * const contexts = new TlsContexts([{ domain: "localhost", cert }]);
 * net.createServer(async (raw) => {
 *   const secure = await contexts.upgrade(raw); // direct TLS (XEP-0368)
 *   const binding = contexts.endpointBinding(secure); // for SCRAM-SHA-256-PLUS
 * });
 * ```
 */
export class TlsContexts {
  #entries: TlsHostEntry[] = [];
  #server: tls.Server;
  #handshakeTimeoutMs: number;
  #contexts = new WeakMap<LoadedCertificate, tls.SecureContext>();
  #bindings = new WeakMap<LoadedCertificate, Uint8Array | null>();
  #presented = new WeakMap<tls.TLSSocket, LoadedCertificate>();
  #pending = new Map<net.Socket, PendingUpgrade>();
  #sharedSni: SniCallback;
  /** Every host presents the same certificate (the server's default one). */
  #oneCertificate = false;

  /** Creates the context for `entries` (at least one); the first is the default host. */
  constructor(entries: TlsHostEntry[], options: TlsContextsOptions = {}) {
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.#setEntries(entries);
    const first = this.#entries[0].cert;
    this.#sharedSni = (name, callback) => this.#answerSni(name, undefined, callback);
    this.#server = tls.createServer({
      key: first.keyPem,
      cert: first.certPem,
      minVersion: MIN_VERSION,
      ALPNProtocols: options.alpn ?? ["xmpp-client"],
      requestCert: options.requestCert ?? false,
      rejectUnauthorized: false,
      SNICallback: this.#sharedSni,
    });
    this.#server.on("secureConnection", (socket: tls.TLSSocket) => this.#onSecure(socket));
    this.#server.on("tlsClientError", (error: Error, socket: unknown) => {
      this.#onClientError(error, socket);
    });
  }

  /**
   * Replaces the hosts and certificates (SIGHUP reload). Open connections and handshakes in
   * progress keep the certificate they were given; new handshakes use the new entries.
   */
  update(entries: TlsHostEntry[]): void {
    this.#setEntries(entries);
    const first = this.#entries[0].cert;
    this.#server.setSecureContext({
      key: first.keyPem,
      cert: first.certPem,
      minVersion: MIN_VERSION,
    });
  }

  /**
   * Runs the server side of a TLS handshake on an accepted socket: right after accept for
   * direct TLS, or after sending `<proceed/>` for STARTTLS (stop reading plaintext first).
   * Resolves with the TLS socket; rejects with an Error (and destroys the socket) when the
   * handshake fails, the peer closes, or it takes longer than the handshake timeout.
   */
  upgrade(raw: net.Socket, options: UpgradeOptions = {}): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      if (raw.destroyed) {
        reject(new Error("Cannot start TLS: expected an open socket, found a closed one"));
        return;
      }
      const pending: PendingUpgrade = {
        raw,
        expected: options.expectedServername ?? "",
        timer: setTimeout(() => {
          this.#fail(
            pending,
            new Error(`TLS handshake did not finish within ${this.#handshakeTimeoutMs} ms`),
          );
        }, this.#handshakeTimeoutMs),
        onClose: () => this.#fail(pending, new Error("Connection closed during the TLS handshake")),
        resolve,
        reject,
      };
      this.#pending.set(raw, pending);
      raw.once("close", pending.onClose);
      raw.setNoDelay(true);
      // Deno's server reads its `_SNICallback` while it wraps the socket during this emit, so a
      // per-upgrade callback knows which handshake it serves. Where that property is not used
      // (Node), the shared callback runs instead and #onSecure re-derives the choice.
      // With one certificate for every host there is nothing to choose, and leaving the SNI
      // callback out saves about 22 KiB per connection: Deno builds a TLS configuration of its
      // own (session cache included) for each connection whose SNI callback ran.
      const server = this.#server as unknown as { _SNICallback?: SniCallback };
      const perSocket = server._SNICallback === this.#sharedSni;
      if (perSocket) {
        server._SNICallback = this.#oneCertificate
          ? undefined
          : (name, callback) => this.#answerSni(name, pending, callback);
      }
      try {
        this.#server.emit("connection", raw);
      } catch (error) {
        this.#fail(pending, new Error(`TLS handshake failed: ${messageOf(error)}`));
      } finally {
        if (perSocket) server._SNICallback = this.#sharedSni;
      }
    });
  }

  /**
   * RFC 5929 tls-server-end-point channel binding for a socket from {@link upgrade}: the hash
   * of the certificate we presented on it (SHA-256 when it is signed with MD5 or SHA-1, else its
   * signature's hash). Undefined for a foreign socket or a certificate whose signature
   * algorithm defines no such hash (Ed25519, Ed448).
   */
  endpointBinding(socket: tls.TLSSocket): Uint8Array | undefined {
    const cert = this.#presented.get(socket);
    if (!cert) return undefined;
    let binding = this.#bindings.get(cert);
    if (binding === undefined) {
      const hash = tlsServerEndPointHash(cert.der);
      binding = hash ? new Uint8Array(createHash(hash).update(cert.der).digest()) : null;
      this.#bindings.set(cert, binding);
    }
    return binding ? binding.slice() : undefined;
  }

  /** The certificate SNI chose for a socket from {@link upgrade} (undefined for others). */
  certificateFor(socket: tls.TLSSocket): LoadedCertificate | undefined {
    return this.#presented.get(socket);
  }

  /**
   * The certificate presented for a name: the same choice SNI makes (exact host, a covering
   * certificate, the parent domain's host, else the first host). Outbound s2s links present it
   * as their client certificate.
   */
  certificateForName(name: string): LoadedCertificate {
    return this.#select(name);
  }

  #setEntries(entries: TlsHostEntry[]): void {
    if (entries.length === 0) {
      throw new Error("Expected at least one TLS host with a certificate, found none");
    }
    this.#entries = entries.map((entry) => ({
      domain: normalizeName(entry.domain),
      cert: entry.cert,
    }));
    const first = this.#entries[0].cert;
    this.#oneCertificate = this.#entries.every(({ cert }) =>
      cert === first || (cert.certPem === first.certPem && cert.keyPem === first.keyPem)
    );
  }

  #answerSni(
    servername: string,
    pending: PendingUpgrade | undefined,
    callback: (error: Error | null, context?: tls.SecureContext) => void,
  ): void {
    try {
      const cert = this.#select(servername || pending?.expected || "");
      if (pending) pending.presented = cert;
      callback(null, this.#contextFor(cert));
    } catch (error) {
      callback(error instanceof Error ? error : new Error(String(error)));
    }
  }

  // Exact host, then a host whose certificate covers the name (wildcard), then the nearest
  // parent domain's host (conference.localhost -> localhost), else the first host.
  #select(servername: string): LoadedCertificate {
    const name = normalizeName(servername);
    const entries = this.#entries;
    if (name !== "") {
      const exact = entries.find((entry) => entry.domain === name);
      if (exact) return exact.cert;
      const parents: string[] = [];
      for (let dot = name.indexOf("."); dot !== -1; dot = name.indexOf(".", dot + 1)) {
        parents.push(name.slice(dot + 1));
      }
      for (const parent of parents) {
        const entry = entries.find((e) =>
          e.domain === parent && certificateMatchesName(e.cert, name)
        );
        if (entry) return entry.cert;
      }
      const covering = entries.find((entry) => certificateMatchesName(entry.cert, name));
      if (covering) return covering.cert;
      for (const parent of parents) {
        const entry = entries.find((e) => e.domain === parent);
        if (entry) return entry.cert;
      }
    }
    return entries[0].cert;
  }

  #contextFor(cert: LoadedCertificate): tls.SecureContext {
    let context = this.#contexts.get(cert);
    if (!context) {
      context = tls.createSecureContext({
        key: cert.keyPem,
        cert: cert.certPem,
        minVersion: MIN_VERSION,
      });
      this.#contexts.set(cert, context);
    }
    return context;
  }

  #onSecure(socket: tls.TLSSocket): void {
    const pending = this.#pendingFor(socket);
    if (!pending) {
      socket.destroy(); // not started by upgrade(): nobody would own it
      return;
    }
    this.#settle(pending);
    // Without a per-upgrade SNI callback the shared one (or, with no SNI, the default context,
    // which is the first host's) chose the certificate: derive the same choice again.
    const cert = pending.presented ?? this.#select(socket.servername || "");
    this.#presented.set(socket, cert);
    socket.setNoDelay(true);
    pending.resolve(socket);
  }

  #onClientError(error: Error, socket: unknown): void {
    const pending = this.#pendingFor(socket);
    if (pending) this.#fail(pending, new Error(`TLS handshake failed: ${error.message}`));
    if (socket && typeof socket === "object" && "destroy" in socket) {
      (socket as net.Socket).destroy();
    }
  }

  // The TLS socket's `_parent` is the raw socket it wraps (Deno and Node); the address pair
  // is a fallback that is unique among live connections.
  #pendingFor(socket: unknown): PendingUpgrade | undefined {
    if (!socket || typeof socket !== "object") return undefined;
    const direct = this.#pending.get(socket as net.Socket);
    if (direct) return direct;
    const parent = (socket as { _parent?: net.Socket })._parent;
    if (parent) {
      const viaParent = this.#pending.get(parent);
      if (viaParent) return viaParent;
    }
    const wrapped = socket as net.Socket;
    for (const pending of this.#pending.values()) {
      const raw = pending.raw;
      if (
        raw.remotePort === wrapped.remotePort && raw.remoteAddress === wrapped.remoteAddress &&
        raw.localPort === wrapped.localPort && raw.localAddress === wrapped.localAddress &&
        wrapped.remotePort !== undefined
      ) {
        return pending;
      }
    }
    return undefined;
  }

  #settle(pending: PendingUpgrade): boolean {
    if (this.#pending.get(pending.raw) !== pending) return false;
    this.#pending.delete(pending.raw);
    clearTimeout(pending.timer);
    pending.raw.off("close", pending.onClose);
    return true;
  }

  #fail(pending: PendingUpgrade, error: Error): void {
    if (!this.#settle(pending)) return;
    pending.raw.destroy();
    pending.reject(error);
  }
}

function normalizeName(name: string): string {
  const lower = name.trim().toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
