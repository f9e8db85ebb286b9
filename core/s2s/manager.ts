// Federation for the whole server: accepts remote servers' connections, keeps one outbound link
// per local/remote domain pair, applies policy to every stanza leaving for a remote domain, closes
// idle links, and answers the admin shell (s2s show/close, xmpp ping).

import type { Socket } from "node:net";
import type { Config } from "../config.ts";
import type { RemoteDelivery, ServerContext } from "../context.ts";
import { tryParseJid } from "../jid.ts";
import { getLogger } from "../log.ts";
import type { LoadedCertificate } from "../net/certificates.ts";
import { Resolver } from "../net/dns.ts";
import type { TrustStore } from "../net/peer_certificate.ts";
import type { TlsContexts } from "../net/tls.ts";
import { bounce } from "../router.ts";
import type { Session } from "../sessions.ts";
import type { Element } from "../xml/element.ts";
import type { S2SContext, S2SRefusal } from "./context.ts";
import { OutboundLink } from "./outbound_link.ts";
import { S2SPolicy } from "./policy.ts";
import { S2SIn } from "./s2s_in.ts";
import type { S2SOut } from "./s2s_out.ts";
import { S2SStream } from "./s2s_stream.ts";

const log = getLogger("s2s");

/** How many refusals `s2s show` remembers. */
const REFUSALS_KEPT = 50;

/** What the manager needs from the server assembly. */
export interface S2SManagerOptions {
  /** The running server. */
  server: ServerContext;
  /** Server-side TLS asking peers for certificates, ALPN `xmpp-server`. */
  tls: TlsContexts;
  /** Trust anchors for remote certificates. */
  trust: TrustStore;
  /** The certificate presented for a local domain. */
  certificateFor: (local: string) => LoadedCertificate | undefined;
  /** DNS resolver (tests point it at a responder on loopback). */
  resolver?: Resolver;
  /**
   * The dialback secret when `s2s_dialback_secret` is empty (cluster nodes share one from
   * their store); otherwise a random one for this process.
   */
  defaultSecret?: string;
}

/** One line of `s2s show`. */
export interface S2SLinkInfo {
  /** Session or link id. */
  id: string;
  /** "in" (they connected to us) or "out". */
  direction: "in" | "out";
  /** Local domain. */
  local: string;
  /** Remote domain. */
  remote: string;
  /** "ready", "authenticating", or an outbound link's setup state. */
  state: string;
  /**
   * How the remote domain (inbound) or we (outbound) authenticated: "sasl-external",
   * "dialback-certificate" (inbound dialback accepted on a valid certificate without calling
   * back, XEP-0344), "dialback", or "" before authentication.
   */
  auth: string;
  /** TLS version, or "" without TLS. */
  tls: string;
  /** The remote certificate's status ("valid", "self-signed", ...), or "". */
  certificate: string;
  /** Why the certificate is not valid, when it is not. */
  certificateReason: string;
  /** Seconds since the last traffic. */
  idle: number;
  /** The peer's address and port for inbound streams, or the SRV target for outbound links. */
  address: string;
  /** Stanzas waiting (outbound links being set up). */
  queued: number;
}

/** Federation: the server's {@link RemoteDelivery}. */
export class S2SManager implements RemoteDelivery {
  readonly policy: S2SPolicy;
  readonly resolver: Resolver;
  #server: ServerContext;
  #ctx: S2SContext;
  #trust: TrustStore;
  #links = new Map<string, OutboundLink>();
  #refusals: S2SRefusal[] = [];
  #sweeper: ReturnType<typeof setInterval>;

  constructor(options: S2SManagerOptions) {
    const server = options.server;
    this.#server = server;
    this.#trust = options.trust;
    const config = () => server.config;
    this.policy = new S2SPolicy(config);
    this.resolver = options.resolver ?? new Resolver({
      nameservers: server.config.get<string[]>("dns_nameservers"),
    });
    const configured = server.config.get<string>("s2s_dialback_secret");
    const secret = configured !== ""
      ? configured
      : options.defaultSecret ?? crypto.randomUUID() + crypto.randomUUID();
    this.#ctx = {
      server,
      config,
      policy: this.policy,
      tls: options.tls,
      trust: () => this.#trust,
      secret,
      certificateFor: options.certificateFor,
      resolver: this.resolver,
      verifyKey: (local, remote, streamId, key) => this.#link(local, remote).verify(streamId, key),
      sendRemote: (stanza, origin) => this.send(stanza, origin),
      refused: (refusal) => this.#refused(refusal),
    };
    this.#sweeper = setInterval(() => this.#sweep(), this.#sweepEveryMs(server.config));
  }

  /** Replaces the trust anchors (reload). */
  setTrust(trust: TrustStore): void {
    this.#trust = trust;
  }

  /** Applies a new configuration's timers (reload). */
  reconfigure(config: Config): void {
    clearInterval(this.#sweeper);
    this.#sweeper = setInterval(() => this.#sweep(), this.#sweepEveryMs(config));
    this.resolver.setServers(config.get<string[]>("dns_nameservers"));
  }

  /** Takes a connection a remote server opened. */
  accept(socket: Socket, directTls: boolean): void {
    const stream = new S2SIn(socket, this.#ctx);
    stream.start(directTls).catch((error) => {
      log.error("Inbound stream {id} failed to start: {error}", { id: stream.id, error });
    });
  }

  /** Sends a stanza to its remote domain, or bounces it with the reason it cannot go. */
  send(stanza: Element, origin: Session): void {
    const from = tryParseJid(stanza.attrs.from ?? "");
    const to = tryParseJid(stanza.attrs.to ?? "");
    if (!from || !to) {
      bounce(stanza, origin, "jid-malformed", "Remote stanzas need valid 'from' and 'to'");
      return;
    }
    const local = from.domain;
    const remote = to.domain;
    if (!this.#server.hosts.has(local)) {
      bounce(stanza, origin, "not-allowed", `This server does not relay for '${local}'`);
      return;
    }
    const refusal = this.policy.refusal(local, remote);
    if (refusal) {
      log.debug("Not sending to {remote}: {refusal}", { remote, refusal });
      bounce(stanza, origin, "service-unavailable", refusal);
      return;
    }
    this.#link(local, remote).send(stanza, origin);
  }

  #link(local: string, remote: string): OutboundLink {
    const key = `${local} ${remote}`;
    let link = this.#links.get(key);
    if (link && link.stream?.closed && link.state === "ready") {
      this.#links.delete(key);
      link = undefined;
    }
    if (!link) {
      link = new OutboundLink(this.#ctx, local, remote, (ended) => {
        if (this.#links.get(key) === ended) this.#links.delete(key);
      });
      this.#links.set(key, link);
      const donor = this.#shareableStream(local, remote);
      if (donor) link.piggyback(donor);
      else link.start();
    }
    return link;
  }

  /**
   * A ready stream of another local domain to `remote` that `local` may join by dialback:
   * dialback is on for `local`, the remote offered it, and `local`'s policy accepts the
   * remote's certificate.
   */
  #shareableStream(local: string, remote: string): S2SOut | undefined {
    if (!this.policy.dialbackEnabled(local)) return undefined;
    const certificateNeeded = this.policy.authRequirement(local, remote) === "certificate";
    for (const link of this.#links.values()) {
      const stream = link.stream;
      if (link.remote !== remote || link.shared || !stream?.multiplexable) continue;
      if (certificateNeeded && stream.certificate?.status !== "valid") continue;
      if (this.policy.requireEncryption(local) && !stream.secure) continue;
      return stream;
    }
    return undefined;
  }

  #refused(refusal: Omit<S2SRefusal, "at">): void {
    this.#refusals.push({ at: Date.now(), ...refusal });
    if (this.#refusals.length > REFUSALS_KEPT) this.#refusals.shift();
  }

  /** Recent refusals and failures, oldest first. */
  refusals(): S2SRefusal[] {
    return [...this.#refusals];
  }

  /** Every inbound stream and outbound link, for `s2s show`. */
  links(): S2SLinkInfo[] {
    const now = Date.now();
    const out: S2SLinkInfo[] = [];
    for (const session of this.#server.sessions.all()) {
      if (!(session instanceof S2SIn)) continue;
      const base = {
        id: session.id,
        direction: "in" as const,
        tls: session.tlsVersion ?? "",
        idle: Math.round((now - session.lastActivity) / 1000),
        address: addressWithPort(session.ip, session.port),
        queued: 0,
      };
      if (session.pairs.length === 0) {
        const verdict = session.from ? session.verdictFor(session.from) : undefined;
        out.push({
          ...base,
          local: session.local,
          remote: session.from,
          state: "authenticating",
          auth: "",
          certificate: verdict?.status ?? "",
          certificateReason: verdict?.status === "valid" ? "" : verdict?.reason ?? "",
        });
      }
      for (const pair of session.pairs) {
        const verdict = session.verdictFor(pair.remote);
        out.push({
          ...base,
          local: pair.local,
          remote: pair.remote,
          state: "ready",
          auth: pair.method,
          certificate: verdict?.status ?? "",
          certificateReason: verdict?.status === "valid" ? "" : verdict?.reason ?? "",
        });
      }
    }
    for (const link of this.#links.values()) {
      const stream = link.stream;
      const verdict = stream?.certificate;
      out.push({
        id: stream
          ? (link.shared ? `${stream.id}+${link.local}` : stream.id)
          : `link:${link.local}>${link.remote}`,
        direction: "out",
        local: link.local,
        remote: link.remote,
        state: link.state,
        auth: link.authMethod ?? "",
        tls: stream?.tlsVersion ?? "",
        certificate: verdict?.status ?? "",
        certificateReason: verdict?.status === "valid" ? "" : verdict?.reason ?? "",
        idle: Math.round((now - (stream?.lastActivity ?? link.startedAt)) / 1000),
        address: stream?.target ?? "",
        queued: link.queued,
      });
    }
    return out;
  }

  /** Closes the links between `local` and `remote` both ways; returns how many. */
  close(local: string, remote: string, reason = "Closed by the administrator"): number {
    let count = 0;
    const link = this.#links.get(`${local} ${remote}`);
    if (link) {
      link.close(reason);
      count++;
    }
    for (const session of this.#server.sessions.all()) {
      if (session instanceof S2SIn && session.closePair(remote, local)) count++;
    }
    return count;
  }

  /** Closes every link of a local domain (every remote domain); returns how many. */
  closeAll(local: string, reason = "Closed by the administrator"): number {
    let count = 0;
    for (const link of [...this.#links.values()]) {
      if (link.local !== local) continue;
      link.close(reason);
      count++;
    }
    for (const session of this.#server.sessions.all()) {
      if (!(session instanceof S2SIn)) continue;
      for (const pair of [...session.pairs]) {
        if (pair.local === local && session.closePair(pair.remote, local)) count++;
      }
    }
    return count;
  }

  /** Stops timers and closes outbound links that are still being set up. */
  shutdown(): void {
    clearInterval(this.#sweeper);
    for (const link of [...this.#links.values()]) {
      if (!link.stream) link.close("The server is shutting down");
    }
    this.resolver.cancel();
  }

  #sweepEveryMs(config: Config): number {
    const shortest = Math.min(
      config.get<number>("s2s_auth_timeout"),
      config.get<number>("s2s_idle_timeout"),
    );
    return Math.min(5000, Math.max(250, shortest * 250));
  }

  /** Closes idle streams and inbound streams that never authenticated in time. */
  #sweep(): void {
    const config = this.#server.config;
    const now = Date.now();
    const idleMs = config.get<number>("s2s_idle_timeout") * 1000;
    const authMs = config.get<number>("s2s_auth_timeout") * 1000;
    for (const stream of this.#server.sessions.all()) {
      if (!(stream instanceof S2SStream)) continue;
      if (!stream.authenticated && stream.kind === "s2sin") {
        if (now - stream.connectedAt > authMs) {
          stream.closeReason = "Authentication took too long";
          stream.close("connection-timeout", "Authentication took too long");
        }
        continue;
      }
      if (now - stream.lastActivity > idleMs) {
        stream.closeReason = "Idle";
        stream.close();
      }
    }
  }
}

/** "192.0.2.1:40312" or "[2001:db8::1]:40312"; the address alone when the port is unknown. */
function addressWithPort(ip: string, port: number | undefined): string {
  if (port === undefined) return ip;
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}
