// A client session (RFC 6120): the stream negotiation on whatever transport the client came in
// on (features, STARTTLS, SASL or SASL2, binding or Bind2), then the bound resource the router
// delivers to. One instance per login; it may outlive its connection (stream management).

import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import {
  FAST_MECHANISMS,
  type FastMechanismName,
  fastMechanisms,
  type FastTokens,
  HtMechanism,
} from "../auth/fast.ts";
import type { AuthThrottle, ThrottleAttempt, ThrottleWait } from "../auth/throttle.ts";
import {
  advertisedMechanisms,
  initialUsername,
  isCredentialFailure,
  type SaslContext,
  type SaslFailureReason,
  type SaslMechanism,
  saslOffer,
  type SaslStep,
  startMechanism,
} from "../auth/sasl.ts";
import { decodeBase64, encodeBase64, type SaslOffer } from "../auth/scram.ts";
import type { HostOptionName } from "../config_schema.ts";
import { whenUnhandled } from "../events.ts";
import type { ServerContext } from "../context.ts";
import { type JID, JidError, parseJid, prepLocal, tryParseJid } from "../jid.ts";
import { getLogger } from "../log.ts";
import { generateResource, type Session } from "../sessions.ts";
import { Element, NS_CLIENT } from "../xml/element.ts";
import type { XmlStreamError } from "../xml/parser.ts";
import {
  errorReply,
  isStanza,
  NS_BIND,
  NS_SASL,
  NS_SESSION,
  NS_STREAM,
  NS_TLS,
  reply,
  type StreamErrorCondition,
} from "../xml/stanza.ts";
import { redeliver, redeliveryOrigin } from "../redelivery.ts";
import { SocketTransport } from "./socket_transport.ts";
import type { UnsentStanza } from "./stream.ts";
import type { TlsContexts } from "./tls.ts";
import type { Config } from "../config.ts";
import {
  type AccountStanzaLimits,
  type ReadRate,
  readRate,
  type StanzaKind,
  type StanzaRates,
} from "./rate_limit.ts";
import {
  NO_RECEIVER,
  type StreamReceiver,
  type Transport,
  type TransportKind,
} from "./transport.ts";

const log = getLogger("c2s");

/** A stanza waiting for its account's rate, or for its turn to be refused. */
interface HeldStanza {
  stanza: Element;
  /** When it may be handled (ms epoch). */
  due: number;
  /** Set when the stanza is to be refused (it would have waited too long), not handled. */
  refusal?: { kind: StanzaKind; rates: StanzaRates; arrived: number };
}

/** XEP-0440 channel binding type capability namespace. */
const NS_SASL_CB = "urn:xmpp:sasl-cb:0";
/** XEP-0388 SASL2, XEP-0386 Bind2 and XEP-0484 FAST namespaces. */
const NS_SASL2 = "urn:xmpp:sasl:2";
const NS_BIND2 = "urn:xmpp:bind:0";
const NS_FAST = "urn:xmpp:fast:0";
/** XEP-0478 stream limits namespace. */
const NS_STREAM_LIMITS = "urn:xmpp:stream-limits:0";

/** The per-account stanza rates the configuration sets (`limits_*_rate`). */
export function stanzaRates(config: Config): StanzaRates {
  return {
    message: config.get<number>("limits_message_rate"),
    presence: config.get<number>("limits_presence_rate"),
    iq: config.get<number>("limits_iq_rate"),
    burstSeconds: config.get<number>("limits_stanza_burst"),
    maxDelaySeconds: config.get<number>("limits_stanza_max_delay"),
  };
}

/** Which stanza rate a stanza draws from; errors and iq results answer others and draw none. */
function rateKind(stanza: Element): StanzaKind | undefined {
  const type = stanza.attrs.type;
  if (type === "error") return undefined;
  if (stanza.name === "iq") return type === "get" || type === "set" ? "iq" : undefined;
  return stanza.name === "message" || stanza.name === "presence" ? stanza.name : undefined;
}

/** How a refused login reads in the log, by the mechanism's reason. */
const FAILURE_REASONS: Record<SaslFailureReason, string> = {
  "wrong-password": "wrong password",
  "unknown-user": "unknown user",
  "invalid-username": "invalid username",
  "no-credentials": "no stored credentials for this mechanism",
  "disabled-account": "disabled account",
  "invalid-authzid": "authorization identity is another user",
  "unsupported-channel-binding": "unsupported channel binding type",
  "channel-binding-downgrade": "channel binding downgrade",
  "channel-binding-mismatch": "channel binding does not match",
  "malformed-request": "malformed request",
};

/** Why the login throttle holds an attempt back, for the log. */
function throttleReason(wait: ThrottleWait): string {
  const of = wait.scope === "address+account"
    ? "this account from this address"
    : wait.scope === "address"
    ? "this address"
    : "this account";
  const until = wait.ms === undefined
    ? "another attempt is being checked"
    : `${(wait.ms / 1000).toFixed(1)} s to wait`;
  return `${wait.failures} failed logins of ${of}, ${until}`;
}

/** Longest username quoted in a log line; longer ones are cut. */
const MAX_LOGGED_USERNAME = 100;
/** Longest mechanism name logged (a client may send any text as one). */
const MAX_LOGGED_MECHANISM = 40;

/** What a c2s stream needs from the server. */
export interface C2SDeps {
  server: ServerContext;
  tls: TlsContexts;
  throttle: AuthThrottle;
  /** Per-account stanza rates, shared by all client sessions of the server. */
  stanzaLimits: AccountStanzaLimits;
  /** XEP-0484 tokens. */
  fast: FastTokens;
}

/** The SASL2 user-agent id of an `<authenticate/>` (at most 128 characters), if any. */
function userAgentId(authenticate: Element): string | undefined {
  const id = authenticate.getChild("user-agent", NS_SASL2)?.attrs.id?.trim();
  return id && id.length <= 128 ? id : undefined;
}

let sessionCounter = 0;

/** Sees every stanza a client session writes, after it went to the transport (SM counting). */
export type SendFilter = (stanza: Element) => void;

/** Decides whether a stanza is written now (true) or held by its owner for later (false). */
export type SendGate = (stanza: Element) => boolean;

/** Adds `item` to `list`; the returned function removes it and calls `empty` when none is left. */
function addTo<T>(list: T[], item: T, empty: () => void): () => void {
  list.push(item);
  return () => {
    const at = list.indexOf(item);
    if (at === -1) return;
    list.splice(at, 1);
    if (list.length === 0) empty();
  };
}

/**
 * One client session: the stream negotiation (features, STARTTLS, SASL, binding) on whatever
 * transport the client came in on, then the bound resource the router delivers to. Created for
 * each accepted connection; registers itself with the session manager and removes itself when
 * it ends. A module may keep a bound session when its transport is lost (`transport-lost`) and
 * later attach it to another transport (stream management resumption); stanzas sent meanwhile
 * pass the send filters and are not written anywhere.
 */
export class C2SSession implements Session, StreamReceiver {
  readonly id: string;
  readonly kind = "c2s" as const;
  readonly connectedAt = Date.now();
  host = "";
  jid: JID | undefined;
  authenticated = false;

  #deps: C2SDeps;
  #transport: Transport | undefined;
  /** The last transport's address and activity, kept while detached. */
  #ip: string;
  #lastActivity = Date.now();
  #secure = false;
  #tlsVersion: string | undefined;
  #transportKind: TransportKind;
  #filters: SendFilter[] | undefined;
  #gates: SendGate[] | undefined;
  /**
   * Stanzas received from the client and handled (stream management counts from here); one
   * held for the account's stanza rate counts once it is handled or refused.
   */
  stanzasReceived = 0;
  /** Lines modules add to `c2s show` (stream management, client state), computed when shown. */
  readonly info = new Map<string, () => string>();
  #bound = false;
  #closed = false;
  #streamId = "";
  #username: string | undefined;
  #sasl: SaslMechanism | undefined;
  #saslChain: Promise<void> = Promise.resolve();
  /** What the last features advertised for SASL, which SCRAM's XEP-0474 hash covers. */
  #saslOffer: SaslOffer | undefined;
  /** The SASL2 `<authenticate/>` of the exchange running, for its inline requests. */
  #sasl2Request: Element | undefined;
  /** The account whose stanza buckets this bound session draws from (rate_limit.ts). */
  #rateAccount: string | undefined;
  /** Stanzas waiting for the account's stanza rate, in arrival order, with their due times. */
  #held: HeldStanza[] | undefined;
  #heldTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the first stanza of the flood going on was refused, and the last one (ms epoch). */
  #refusingSince: number | undefined;
  #lastRefusal = 0;

  /** A session on a transport that is about to start (see {@link acceptC2S}). */
  constructor(transport: Transport, deps: C2SDeps) {
    this.id = `c2s${++sessionCounter}`;
    this.#deps = deps;
    this.#transport = transport;
    this.#ip = transport.ip;
    this.#transportKind = transport.kind;
    transport.receiver = this;
    deps.server.sessions.add(this);
    transport.setReadRate?.(this.#readRate());
  }

  /** The peer's address (the last transport's while detached). */
  get ip(): string {
    return this.#ip;
  }

  /** When input last arrived, on this or an earlier transport (ms epoch). */
  get lastActivity(): number {
    return this.#transport ? this.#transport.lastActivity : this.#lastActivity;
  }

  /** The transport is (or the last one was) encrypted. */
  get secure(): boolean {
    return this.#transport ? this.#transport.secure : this.#secure;
  }

  /** The TLS protocol version once encrypted (for the admin shell). */
  get tlsVersion(): string | undefined {
    return this.#transport ? this.#transport.tlsVersion : this.#tlsVersion;
  }

  /** How the client is (or was last) connected. */
  get transportKind(): TransportKind {
    return this.#transport?.kind ?? this.#transportKind;
  }

  /** The transport the session is on; undefined while detached. */
  get transport(): Transport | undefined {
    return this.#transport;
  }

  /** The stream id the client got in our stream header (SM resumption ids are separate). */
  get streamId(): string {
    return this.#streamId;
  }

  /** The authenticated username (before and after binding). */
  get username(): string | undefined {
    return this.#username;
  }

  /** True once the resource is bound (and until the session ends). */
  get bound(): boolean {
    return this.#bound;
  }

  // ---------- output ----------

  /**
   * Queues a stanza; output is flushed with one write per event-loop turn. Send gates see it
   * first and may hold it (client state indication); then it is written and the send filters
   * see it (stream management counting).
   */
  send(stanza: Element): void {
    if (this.#closed) return;
    const gates = this.#gates;
    if (gates !== undefined) { for (const gate of gates) if (!gate(stanza)) return; }
    this.release(stanza);
  }

  /** Writes a stanza past the send gates (one a gate held and now lets go), then filters it. */
  release(stanza: Element): void {
    if (this.#closed) return;
    this.#transport?.send(stanza);
    this.#deps.server.metrics.stanzasOut.count(stanza.name);
    // After the write, so that a filter's own output (an ack request) follows the stanza.
    const filters = this.#filters;
    if (filters !== undefined) { for (const filter of filters) filter(stanza); }
  }

  /**
   * Writes an element without gates or filters: a nonza (stream management `<r/>`, `<a/>`),
   * or a stanza sent again after resumption.
   */
  sendNonza(el: Element): void {
    if (this.#closed) return;
    this.#transport?.send(el);
  }

  /** Adds a filter every stanza written passes (stream management counting); returns its removal. */
  addSendFilter(filter: SendFilter): () => void {
    return addTo(this.#filters ??= [], filter, () => this.#filters = undefined);
  }

  /**
   * Adds a gate every stanza sent passes before it is written: returning false holds it (the
   * gate then owns it and passes it to {@link release} later). Returns the gate's removal.
   */
  addSendGate(gate: SendGate): () => void {
    return addTo(this.#gates ??= [], gate, () => this.#gates = undefined);
  }

  #sendHeader(to: string | undefined): void {
    this.#streamId = crypto.randomUUID();
    this.#transport?.openStream({
      ns: NS_CLIENT,
      id: this.#streamId,
      from: this.host || undefined,
      to,
      version: true,
    });
  }

  /**
   * Closes the stream: a stream error first when a condition is given, then the closing
   * tag; the connection is ended and destroyed if the peer does not close within 3 s. A
   * detached session just ends.
   */
  close(condition?: StreamErrorCondition, text?: string): void {
    if (this.#closed) return;
    const transport = this.#transport;
    if (condition) {
      if (transport && !transport.headerSent) this.#sendHeader(undefined);
      log.info("Closing {id} ({jid}) with {condition}{text}", {
        id: this.id,
        jid: this.jid?.toString() ?? this.ip,
        condition,
        text: text ? `: ${text}` : "",
      });
    }
    this.#closed = true;
    this.#unbindAndForget();
    transport?.close(condition, text);
  }

  /** Drops the connection at once (after `close`, when the server stops). */
  destroy(): void {
    this.#closed = true;
    this.#unbindAndForget();
    this.#transport?.destroy();
  }

  /** True once the stream is closing or closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Leaves the transport without closing it, for another session that takes it over (the
   * client resumed that one on this connection). This session ends quietly: it was never bound.
   */
  handOver(): Transport | undefined {
    const transport = this.#transport;
    if (this.#bound || !transport) return undefined;
    this.#transport = undefined;
    this.#closed = true;
    this.#deps.server.sessions.remove(this);
    return transport;
  }

  /**
   * Moves the session onto `transport` (resumption). The transport the session was on, if any,
   * is dropped without a closing tag: the client has left it.
   */
  attach(transport: Transport): void {
    const old = this.#transport;
    if (old && old !== transport) {
      this.#rememberTransport(old);
      this.#transport = undefined;
      old.receiver = NO_RECEIVER; // its close must not end this session
      old.destroy();
    }
    this.#transport = transport;
    this.#transportKind = transport.kind;
    this.#ip = transport.ip;
    transport.receiver = this;
    // Stanzas still wait for the account's rate: the new connection waits behind them.
    if (this.#held !== undefined) transport.holdInput?.(true);
    // After the caller's own output (a resumption's <resumed/> and the stanzas sent again).
    queueMicrotask(() => {
      const host = this.#deps.server.hosts.get(this.host);
      if (host && this.#transport === transport && !this.#closed) {
        host.events.fire("transport-attached", { session: this, host });
      }
    });
  }

  #rememberTransport(transport: Transport): void {
    this.#lastActivity = transport.lastActivity;
    this.#secure = transport.secure;
    this.#tlsVersion = transport.tlsVersion;
    this.#transportKind = transport.kind;
  }

  /** The transport is gone: a bound session may be kept by a module, otherwise it ends. */
  transportClosed(): void {
    const transport = this.#transport;
    if (!transport) return;
    this.#rememberTransport(transport);
    this.#transport = undefined;
    if (this.#closed) return;
    const host = this.#bound ? this.#deps.server.hosts.get(this.host) : undefined;
    const kept = host ? host.events.fire("transport-lost", { session: this, host }) : false;
    if (kept !== false) {
      log.info("Session {id} for {jid} lost its connection and waits to be resumed", {
        id: this.id,
        jid: this.jid!.toString(),
      });
    }
    whenUnhandled(kept, () => {
      if (this.#closed || this.#transport) return;
      this.#closed = true;
      this.#unbindAndForget();
    });
  }

  #unbindAndForget(): void {
    const server = this.#deps.server;
    this.#detachRates();
    // Also true for a session replaced by a new login with the same resource: it must still
    // announce that it went away (unavailable presence, directed presence cleanup).
    const wasBound = this.#bound;
    this.#bound = false;
    server.sessions.remove(this);
    if (wasBound) {
      const host = server.hosts.get(this.host);
      if (host) host.events.fire("resource-unbind", { session: this, host });
      // The account's logout is when its last session ends (last activity, list_inactive).
      const user = this.jid!.local!;
      if (server.sessions.userSessions(this.host, user).length === 0) {
        server.accounts.touchLogout(this.host, user);
      }
      log.info("Session {id} for {jid} ended", { id: this.id, jid: this.jid!.toString() });
    }
  }

  /**
   * The client stopped reading and its output passed `c2s_max_send_buffer`: the stream closes
   * with `resource-constraint`, and the stanzas that never reached its connection go to the
   * account again (other resources, offline storage), unless stream management hands them back
   * from its own queue.
   */
  outputOverflow(unsent: UnsentStanza[], limit: number): void {
    const server = this.#deps.server;
    server.metrics.counter("c2s.slow_readers_cut").inc();
    const wasBound = this.#bound;
    const host = wasBound ? server.hosts.get(this.host) : undefined;
    const taken = host
      ? host.events.fire("stanzas-unsent", { session: this, host, stanzas: unsent })
      : false;
    this.close(
      "resource-constraint",
      `The client did not read its stream: more than ${limit} bytes of output waited`,
    );
    if (!wasBound) return;
    whenUnhandled(taken, () => {
      const origin = redeliveryOrigin(server, this.host);
      for (const { stanza, queuedAt } of unsent) {
        redeliver(stanza, { server, domain: this.host, origin, queuedAt });
      }
    });
  }

  // ---------- input ----------

  internalError(): void {
    this.close("internal-server-error");
  }

  inputError(error: XmlStreamError): void {
    log.info("XML error from {ip}: {message}", { ip: this.ip, message: error.message });
    this.close(error.condition, error.message);
  }

  streamOpen(header: Element, defaultNs: string | undefined): void {
    const server = this.#deps.server;
    const toAttr = header.attrs.to;
    const fromAttr = header.attrs.from;
    let to: JID | undefined;
    try {
      to = toAttr ? parseJid(toAttr) : undefined;
    } catch {
      to = undefined;
    }
    const host = to && to.local === undefined && to.resource === undefined
      ? server.hosts.get(to.domain)
      : undefined;
    if (this.host === "" && host?.kind === "local") {
      this.host = host.domain;
      this.applyConfig();
    }
    this.#sendHeader(fromAttr && tryParseJid(fromAttr) ? fromAttr : undefined);
    if (header.name !== "stream" || header.ns !== NS_STREAM) {
      this.close("invalid-namespace", "The stream root must be <stream:stream>");
      return;
    }
    if (defaultNs !== NS_CLIENT) {
      this.close("invalid-namespace", `Client streams use the '${NS_CLIENT}' namespace`);
      return;
    }
    if (header.attrs.version === undefined || !/^1\.\d+$/.test(header.attrs.version)) {
      this.close("unsupported-version", "This server speaks XMPP version 1.0");
      return;
    }
    if (!toAttr) {
      this.close("host-unknown", "The stream header has no 'to' address");
      return;
    }
    if (!host || host.kind !== "local" || host.domain !== this.host) {
      this.close("host-unknown", `This server does not serve '${toAttr}'`);
      return;
    }
    this.#sendFeatures();
  }

  #option<T>(name: HostOptionName): T {
    return this.#deps.server.config.hostOption<T>(this.host, name) as T;
  }

  /** Takes up the host's options that the stream holds (its stanza size limit), after a reload. */
  applyConfig(): void {
    this.#transport?.setReadRate?.(this.#readRate());
    if (this.host === "") return;
    this.#applyStanzaLimit();
    this.#transport?.setSendLimit?.(this.#deps.server.config.get<number>("c2s_max_send_buffer"));
  }

  /**
   * The host's stanza size limit, or before authentication the smaller
   * `c2s_preauth_stanza_size_limit`: a connection that has not logged in cannot make the
   * parser hold more (hundreds of them, each growing a stanza that never ends).
   */
  #applyStanzaLimit(): void {
    const limit = this.#option<number>("c2s_stanza_size_limit");
    this.#transport?.setLimits({
      maxStanzaBytes: this.authenticated
        ? limit
        : Math.min(limit, this.#deps.server.config.get<number>("c2s_preauth_stanza_size_limit")),
    });
  }

  #sendFeatures(): void {
    const transport = this.#transport;
    if (!transport) return;
    const features = new Element("features", { xmlns: NS_STREAM });
    const requireTls = this.#option<boolean>("c2s_require_encryption");
    if (!this.authenticated) {
      if (transport.canStartTls) {
        const starttls = features.c("starttls", { xmlns: NS_TLS });
        if (requireTls) starttls.c("required");
      }
      this.#saslOffer = undefined;
      if (this.secure || !requireTls) {
        const ctx = this.#saslContext();
        const mechanisms = features.c("mechanisms", { xmlns: NS_SASL });
        const names = advertisedMechanisms(ctx);
        for (const name of names) mechanisms.c("mechanism").t(name);
        this.#sasl2Feature(features, names, ctx);
        if (ctx.channelBinding) {
          // XEP-0440: say which channel binding type the -PLUS mechanisms use.
          features.c("sasl-channel-binding", { xmlns: NS_SASL_CB })
            .c("channel-binding", { type: ctx.channelBinding.type });
        }
        // SASL and SASL2 list the same mechanisms, so one offer serves XEP-0474 for both.
        this.#saslOffer = saslOffer(ctx);
      }
    } else {
      features.c("bind", { xmlns: NS_BIND });
      features.c("session", { xmlns: NS_SESSION }).c("optional");
    }
    const host = this.#deps.server.hosts.get(this.host);
    if (host) host.events.fire("stream-features", { session: this, features, host });
    const limits = features.c("limits", { xmlns: NS_STREAM_LIMITS });
    limits.c("max-bytes").t(String(transport.limits.maxStanzaBytes));
    const idle = this.authenticated ? this.#option<number>("c2s_idle_timeout") : 0;
    if (idle > 0) limits.c("idle-seconds").t(String(idle));
    transport.sendStreamLevel(features);
  }

  /**
   * XEP-0388 `<authentication/>`: the same mechanisms, and what can be done inline: Bind2 with
   * the modules' inline features, FAST tokens, and whatever modules add (stream management).
   */
  #sasl2Feature(features: Element, names: string[], ctx: SaslContext): void {
    const host = this.#deps.server.hosts.get(this.host);
    if (!host) return;
    const authentication = features.c("authentication", { xmlns: NS_SASL2 });
    for (const name of names) authentication.c("mechanism").t(name);
    const inline = authentication.c("inline");
    const bindInline = inline.c("bind", { xmlns: NS_BIND2 }).c("inline");
    host.events.fire("bind2-inline-features", { session: this, inline: bindInline, host });
    if (this.#fastLifetimeMs() > 0) {
      const fast = inline.c("fast", { xmlns: NS_FAST });
      for (const name of fastMechanisms(ctx)) fast.c("mechanism").t(name);
    }
    host.events.fire("sasl2-inline-features", { session: this, inline, host });
  }

  streamClose(): void {
    log.debug("Client closed stream {id}", { id: this.id });
    // What the client sent before closing is handled, however fast it came.
    this.#releaseHeld(true);
    this.close();
  }

  element(el: Element): void {
    if (this.#closed) return;
    if (el.ns === NS_TLS && el.name === "starttls") return this.#onStartTls();
    if (el.ns === NS_SASL || el.ns === NS_SASL2) return this.#onSasl(el);
    if (!this.authenticated) {
      // Modules may serve some stanzas before login (in-band registration), never in the
      // clear when encryption is required.
      const host = this.#deps.server.hosts.get(this.host);
      const allowed = this.secure || !this.#option<boolean>("c2s_require_encryption");
      const served = host && allowed && isStanza(el)
        ? host.events.fire("unauthenticated-stanza", { session: this, stanza: el, host })
        : false;
      whenUnhandled(
        served,
        () => this.close("not-authorized", "Authenticate before sending stanzas"),
      );
      return;
    }
    if (!isStanza(el) || (el.ns !== NS_CLIENT)) {
      // Stream management (enable before or after binding, resume before it) and the like.
      const host = this.#deps.server.hosts.get(this.host)!;
      whenUnhandled(
        host.events.fire("stream-element", { session: this, element: el, host }),
        () =>
          this.close("unsupported-stanza-type", `Unexpected element <${el.name}> in '${el.ns}'`),
      );
      return;
    }
    if (!this.jid) {
      this.stanzasReceived++;
      if (el.name === "iq" && el.attrs.type === "set") {
        const bind = el.getChild("bind", NS_BIND);
        if (bind) return this.#onBind(el, bind);
      }
      this.close("not-authorized", "Bind a resource before sending stanzas");
      return;
    }
    // A stanza held for the account's rate is counted when it is handled: stream management
    // must not acknowledge one that a crash would still lose.
    if (this.#rateAccount !== undefined && !this.#passesRate(el)) return;
    this.stanzasReceived++;
    this.#onStanza(el);
  }

  // ---------- rate limits ----------

  /** The read rate for the session's state: before or after authentication. */
  #readRate(): ReadRate | undefined {
    const config = this.#deps.server.config;
    return this.authenticated
      ? readRate(config.get<string>("limits_c2s_rate"), config.get<string>("limits_c2s_burst"))
      : readRate(
        config.get<string>("limits_c2s_unauthed_rate"),
        config.get<string>("limits_c2s_unauthed_burst"),
      );
  }

  /** The account's stanza buckets, with the rates of the configuration in force. */
  #stanzaLimits(): AccountStanzaLimits {
    const limits = this.#deps.stanzaLimits;
    const config = this.#deps.server.config;
    if (limits.configuredFrom !== config) {
      limits.configure(stanzaRates(config));
      limits.configuredFrom = config;
    }
    return limits;
  }

  /** The session is bound: its stanzas draw from its account's buckets from now on. */
  #attachRates(jid: JID): void {
    if (this.#rateAccount !== undefined) return;
    this.#rateAccount = `${jid.local}@${jid.domain}`;
    this.#deps.stanzaLimits.attach(this.#rateAccount);
  }

  #detachRates(): void {
    clearTimeout(this.#heldTimer);
    this.#heldTimer = undefined;
    this.#held = undefined;
    if (this.#rateAccount === undefined) return;
    this.#deps.stanzaLimits.detach(this.#rateAccount);
    this.#rateAccount = undefined;
  }

  /**
   * True when the stanza may be handled now; otherwise it waits for its account's rate (the
   * session then stops reading), or is refused with policy-violation when it would wait too
   * long. Stanzas keep their order: once one waits, all that follow wait behind it.
   */
  #passesRate(stanza: Element): boolean {
    const now = Date.now();
    const kind = rateKind(stanza);
    if (kind === undefined) {
      if (this.#held === undefined) return true;
      this.#hold(stanza, now);
      return false;
    }
    const limits = this.#stanzaLimits();
    const wait = limits.reserve(this.#rateAccount!, kind, now);
    if (wait < 0) {
      const held = this.#held;
      if (held === undefined) this.#refuse(stanza, kind, now, limits.rates);
      // Refused in its turn, after the stanzas held before it: stream management's count
      // must not pass a held stanza that a crash would still lose, and the error replies keep
      // the order of the stanzas they answer.
      else {
        this.#hold(stanza, held[held.length - 1].due, { kind, rates: limits.rates, arrived: now });
      }
      return false;
    }
    if (wait === 0 && this.#held === undefined) return true;
    this.#hold(stanza, now + wait);
    return false;
  }

  #hold(stanza: Element, due: number, refusal?: HeldStanza["refusal"]): void {
    const held = this.#held ??= [];
    held.push({ stanza, due, refusal });
    if (held.length > 1) return;
    this.#deps.server.metrics.counter("c2s.rate_delayed").inc();
    this.#transport?.holdInput?.(true);
    this.#heldTimer = setTimeout(() => this.#releaseHeld(false), Math.max(0, due - Date.now()));
  }

  /** Handles the held stanzas that are due (all of them when `all`), in order. */
  #releaseHeld(all: boolean): void {
    clearTimeout(this.#heldTimer);
    this.#heldTimer = undefined;
    const held = this.#held;
    if (held === undefined) return;
    const now = Date.now();
    try {
      while (held.length > 0 && !this.#closed && (all || held[0].due <= now)) {
        const { stanza, refusal } = held.shift()!;
        // A flood is timed by when its stanzas arrived, not by when their turn came.
        if (refusal) this.#refuse(stanza, refusal.kind, refusal.arrived, refusal.rates);
        else {
          this.stanzasReceived++;
          this.#onStanza(stanza);
        }
      }
    } catch (error) {
      // A bug while handling a held stanza must not take the server down.
      log.error("Internal error on a held stanza of {id}: {error}", { id: this.id, error });
      this.close("internal-server-error");
      return;
    }
    if (held.length > 0 && !this.#closed) {
      this.#heldTimer = setTimeout(
        () => this.#releaseHeld(false),
        Math.max(0, held[0].due - Date.now()),
      );
      return;
    }
    this.#held = undefined;
    this.#transport?.holdInput?.(false);
  }

  /**
   * A stanza over its account's rate would wait too long: it is refused with policy-violation.
   * Refusals less than twice the maximum delay (at least 1 s) apart make one flood (a flood
   * is read again only once the stanzas held before it went through); a flood that lasts
   * longer than that delay closes the session with a policy-violation stream error.
   */
  #refuse(stanza: Element, kind: StanzaKind, now: number, rates: StanzaRates): void {
    const server = this.#deps.server;
    server.metrics.counter("c2s.rate_refused").inc();
    const text = `Too many ${kind} stanzas: an account may send ${rates[kind]} per second`;
    const patience = Math.max(1, rates.maxDelaySeconds) * 1000;
    if (this.#refusingSince === undefined || now - this.#lastRefusal > 2 * patience) {
      this.#refusingSince = now;
    }
    this.#lastRefusal = now;
    const since = this.#refusingSince;
    if (now - since >= patience) {
      server.metrics.counter("c2s.rate_closed").inc();
      this.close("policy-violation", `${text}, and this session went on for ${now - since} ms`);
      return;
    }
    this.stanzasReceived++; // handled: answered with an error
    this.send(errorReply(stanza, "policy-violation", { type: "wait", text }));
  }

  // ---------- STARTTLS ----------

  #onStartTls(): void {
    const transport = this.#transport!;
    if (!transport.canStartTls || this.authenticated) {
      // RFC 6120 §5.4.2.2: answer <failure/> and close the stream.
      transport.sendRaw(`<failure xmlns='${NS_TLS}'/>`);
      this.close();
      return;
    }
    transport.startTls(this.#deps.tls, this.host || undefined).catch((error) => {
      log.error("STARTTLS failed on {id}: {error}", { id: this.id, error });
    });
  }

  // ---------- SASL ----------

  #saslContext(): SaslContext {
    const server = this.#deps.server;
    // -PLUS only where the operator says the clients read XEP-0440: the others assume
    // tls-unique, which TLS 1.3 lacks and this server cannot compute, and fail.
    const binding = this.secure && this.#option<boolean>("sasl_offer_channel_binding")
      ? this.#transport?.endpointBinding(this.#deps.tls)
      : undefined;
    return {
      host: this.host,
      secure: this.secure,
      allowPlainInsecure: this.#option<boolean>("allow_unencrypted_plain_auth"),
      accounts: server.accounts,
      isDisabled: (username) => server.accounts.isDisabled(this.host, username),
      channelBinding: binding ? { type: "tls-server-end-point", data: binding } : undefined,
      rejectChannelBindingDowngrade: this.#option<boolean>("sasl_reject_channel_binding_downgrade"),
      offer: this.#saslOffer,
      prepUsername: (raw) => {
        try {
          return prepLocal(raw);
        } catch {
          return undefined;
        }
      },
    };
  }

  #onSasl(el: Element): void {
    // SASL steps are asynchronous (PBKDF2); keep them in order.
    this.#saslChain = this.#saslChain.then(() => this.#handleSasl(el)).catch((error) => {
      log.error("SASL handling failed on {id}: {error}", { id: this.id, error });
      this.close("internal-server-error");
    });
  }

  /**
   * Logs a refused login with what an operator acts on: the username tried, the address, the
   * mechanism and the reason.
   */
  #logFailedLogin(mechanism: string, username: string | undefined, reason: string): void {
    let user = "(none)";
    if (username !== undefined) {
      user = JSON.stringify(
        username.length > MAX_LOGGED_USERNAME
          ? `${username.slice(0, MAX_LOGGED_USERNAME)}…`
          : username,
      );
    }
    log.info("Failed login as {user} on {host} from {ip} with {mechanism}: {reason}", {
      user,
      host: this.host,
      ip: this.ip,
      mechanism: mechanism === "" ? "(none)" : mechanism.slice(0, MAX_LOGGED_MECHANISM),
      reason,
    });
  }

  /** Sends a SASL failure in the profile the exchange uses (RFC 6120 or SASL2). */
  #saslFailure(condition: string, text?: string, sasl2 = false): void {
    const failure = new Element("failure", { xmlns: sasl2 ? NS_SASL2 : NS_SASL });
    failure.c(condition, sasl2 ? { xmlns: NS_SASL } : {});
    if (text) failure.c("text", sasl2 ? {} : { "xml:lang": "en" }).t(text);
    this.#transport?.send(failure);
  }

  /** The mechanisms a start element may name: SASL's, and FAST's on SASL2 when enabled. */
  #mechanismsFor(ctx: SaslContext, sasl2: boolean): string[] {
    const names = advertisedMechanisms(ctx);
    return sasl2 && this.#fastLifetimeMs() > 0 ? [...names, ...fastMechanisms(ctx)] : names;
  }

  #fastLifetimeMs(): number {
    return this.#option<number>("sasl_fast_token_lifetime") * 1000;
  }

  /**
   * One SASL element, in the RFC 6120 profile (`<auth/>`, `<response/>`, `<abort/>`) or the
   * SASL2 one (`<authenticate/>` with its inline requests, `<response/>`, `<abort/>`).
   */
  async #handleSasl(el: Element): Promise<void> {
    if (this.#closed) return;
    const sasl2 = el.ns === NS_SASL2;
    if (this.authenticated) {
      this.close("policy-violation", "Already authenticated");
      return;
    }
    if (el.name === "abort") {
      this.#sasl = undefined;
      this.#saslFailure("aborted", undefined, sasl2);
      return;
    }
    const starting = el.name === (sasl2 ? "authenticate" : "auth");
    let input: Uint8Array | undefined;
    const data = sasl2 && starting ? el.getChild("initial-response", NS_SASL2) : el;
    const text = data === undefined ? "" : data.text().trim();
    if (text === "=" || (sasl2 && data !== undefined && text === "")) input = new Uint8Array(0);
    else if (text !== "") {
      input = decodeBase64(text.replace(/\s+/g, ""));
      if (!input) {
        const running = starting ? undefined : this.#sasl;
        const mechanism = running?.name ?? el.attrs.mechanism ?? "";
        this.#logFailedLogin(mechanism, running?.username, "incorrect base64 encoding");
        this.#sasl = undefined;
        this.#saslFailure("incorrect-encoding", undefined, sasl2);
        return;
      }
    }
    if (starting) {
      if (!this.secure && this.#option<boolean>("c2s_require_encryption")) {
        this.#saslFailure("encryption-required", "Use STARTTLS before authenticating", sasl2);
        return;
      }
      const name = el.attrs.mechanism ?? "";
      const ctx = this.#saslContext();
      if (!this.#mechanismsFor(ctx, sasl2).includes(name)) {
        const plainRefused = name === "PLAIN" && !this.secure;
        this.#logFailedLogin(
          name,
          initialUsername(name, input),
          plainRefused ? "PLAIN refused without TLS" : "mechanism not offered",
        );
        this.#saslFailure(
          plainRefused ? "encryption-required" : "invalid-mechanism",
          plainRefused ? "PLAIN is only offered over TLS" : undefined,
          sasl2,
        );
        return;
      }
      this.#sasl2Request = sasl2 ? el : undefined;
      if (name.startsWith("HT-")) {
        const agent = userAgentId(el);
        if (agent === undefined) {
          this.#logFailedLogin(name, undefined, "no user-agent id for a FAST token");
          this.#saslFailure("malformed-request", "A FAST token needs the user-agent id", true);
          return;
        }
        this.#sasl = new HtMechanism(name as FastMechanismName, ctx, {
          tokens: this.#deps.fast,
          agent,
        });
      } else {
        this.#sasl = startMechanism(name, ctx);
      }
      if (!this.#sasl) {
        this.#saslFailure("invalid-mechanism", undefined, sasl2);
        return;
      }
    } else if (el.name === "response") {
      if (!this.#sasl || (this.#sasl2Request !== undefined) !== sasl2) {
        this.#saslFailure("malformed-request", "No authentication in progress", sasl2);
        return;
      }
    } else {
      this.close("unsupported-stanza-type", `Unexpected SASL element <${el.name}>`);
      return;
    }
    const mechanism = this.#sasl;
    const attempt = await this.#admitLogin(mechanism, input, sasl2);
    if (attempt === undefined) return;
    let step: SaslStep;
    try {
      step = await mechanism.step(input);
    } catch (error) {
      attempt.released();
      throw error;
    }
    // Settled before anything else, also when the client has gone meanwhile.
    if (step.kind === "success") attempt.succeeded();
    else if (step.kind === "failure" && isCredentialFailure(step.reason)) attempt.failed();
    else attempt.released();
    if (this.#closed) return;
    if (step.kind === "challenge") {
      const challenge = new Element("challenge", { xmlns: sasl2 ? NS_SASL2 : NS_SASL });
      if (step.data.length > 0) challenge.t(encodeBase64(step.data));
      this.#transport?.send(challenge);
      return;
    }
    this.#sasl = undefined;
    if (step.kind === "failure") {
      const reason = FAILURE_REASONS[step.reason];
      const credential = isCredentialFailure(step.reason);
      this.#logFailedLogin(
        mechanism.name,
        mechanism.username,
        credential || step.text === undefined ? reason : `${reason} (${step.text})`,
      );
      // Only a rejected password counts and waits: a client whose channel binding or syntax
      // was refused may retry at once on this stream without being locked out.
      if (credential) {
        this.#deps.server.metrics.counter("c2s.auth_failures").inc();
        const delay = this.#option<number>("auth_failure_delay") * 1000;
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
        if (this.#closed) return;
      }
      this.#saslFailure(step.condition, step.text, sasl2);
      return;
    }
    this.#deps.server.metrics.counter("c2s.logins").inc();
    this.#username = step.username;
    this.authenticated = true;
    this.#applyStanzaLimit();
    this.#transport?.setReadRate?.(this.#readRate());
    this.#deps.server.accounts.touchLogin(this.host, step.username);
    log.info("{user}@{host} authenticated from {ip} with {mechanism}", {
      user: step.username,
      host: this.host,
      ip: this.ip,
      mechanism: mechanism.name,
    });
    if (sasl2) {
      this.#sasl2Succeeded(step.data, mechanism);
      return;
    }
    const success = new Element("success", { xmlns: NS_SASL });
    if (step.data && step.data.length > 0) success.t(encodeBase64(step.data));
    this.#transport?.send(success);
    this.#transport?.restart();
  }

  /**
   * Passes a SASL step through the login throttle (core/auth/throttle.ts): an attempt whose
   * address or account has failed too often waits before it is checked, so any client just sees
   * a slower answer; one that would wait longer than the throttle allows is refused with
   * `temporary-auth-failure` and the seconds to wait. Undefined when the step does not run.
   */
  async #admitLogin(
    mechanism: SaslMechanism,
    input: Uint8Array | undefined,
    sasl2: boolean,
  ): Promise<ThrottleAttempt | undefined> {
    const raw = mechanism.username ?? initialUsername(mechanism.name, input);
    let name = raw ?? "";
    try {
      name = prepLocal(name);
    } catch {
      // An unpreparable name is counted as sent; the mechanism refuses it.
    }
    const metrics = this.#deps.server.metrics;
    const admission = await this.#deps.throttle.admit(this.ip, `${name}@${this.host}`, {
      abandoned: () => this.#closed,
      onWait: (wait) => {
        metrics.counter("c2s.auth_delayed").inc();
        log.info("Login as {user} on {host} from {ip} with {mechanism} waits: {why}", {
          user: JSON.stringify((raw ?? "").slice(0, MAX_LOGGED_USERNAME)),
          host: this.host,
          ip: this.ip,
          mechanism: mechanism.name,
          why: throttleReason(wait),
        });
      },
    });
    if (admission.kind === "admitted") return admission.attempt;
    this.#sasl = undefined;
    this.#sasl2Request = undefined;
    if (admission.kind === "abandoned") return undefined;
    metrics.counter("c2s.auth_throttled").inc();
    this.#logFailedLogin(mechanism.name, raw, `throttled (${throttleReason(admission.wait)})`);
    const seconds = Math.max(1, Math.ceil((admission.wait.ms ?? 1000) / 1000));
    this.#saslFailure(
      "temporary-auth-failure",
      `Too many failed logins for this account or from this address; try again in ${seconds} s`,
      sasl2,
    );
    return undefined;
  }

  /**
   * A SASL2 authentication succeeded (XEP-0388): FAST tokens, then the inline requests
   * (stream management resumption, Bind2 with its inline features), then one `<success/>`
   * naming who the client now is. The stream is not restarted.
   */
  #sasl2Succeeded(data: Uint8Array | undefined, mechanism: SaslMechanism): void {
    const request = this.#sasl2Request!;
    this.#sasl2Request = undefined;
    const server = this.#deps.server;
    const host = server.hosts.get(this.host)!;
    const success = new Element("success", { xmlns: NS_SASL2 });
    if (data && data.length > 0) success.c("additional-data").t(encodeBase64(data));
    const identifier = success.c("authorization-identifier").t(`${this.#username}@${this.host}`);
    this.#fastInline(request, success, mechanism);
    // A handler that returns true resumed another session on this transport and has sent the
    // success itself (stream management); this session is over.
    whenUnhandled(
      host.events.fire("sasl2-inline", { session: this, request, success, host }),
      () => this.#sasl2Bind(request, success, identifier),
    );
  }

  /** The rest of a SASL2 success when no module took the session over: Bind2, then `<success/>`. */
  #sasl2Bind(request: Element, success: Element, identifier: Element): void {
    if (this.#closed) return;
    const bind = request.getChild("bind", NS_BIND2);
    if (bind) {
      const bound = this.#bind2(bind, request);
      if (bound) {
        identifier.children = [this.jid!.toString()];
        success.children.push(bound);
      }
    }
    this.#transport?.send(success);
  }

  /** XEP-0484: a token requested, invalidated or rotated inside `<authenticate/>`. */
  #fastInline(request: Element, success: Element, mechanism: SaslMechanism): void {
    const lifetime = this.#fastLifetimeMs();
    const agent = userAgentId(request);
    if (lifetime <= 0 || agent === undefined) return;
    const tokens = this.#deps.fast;
    const user = this.#username!;
    const fast = request.getChild("fast", NS_FAST);
    if (mechanism instanceof HtMechanism && fast?.attrs.invalidate === "true") {
      tokens.invalidate(this.host, user, agent);
      return;
    }
    const wanted = request.getChild("request-token", NS_FAST)?.attrs.mechanism;
    let issue: FastMechanismName | undefined;
    if (wanted !== undefined && (FAST_MECHANISMS as readonly string[]).includes(wanted)) {
      issue = wanted as FastMechanismName;
    } else if (mechanism instanceof HtMechanism && mechanism.matched === "previous") {
      // The client logged in with the token it had before the last rotation: it never got
      // the new one, so it gets one now.
      issue = mechanism.name;
    }
    if (issue === "HT-SHA-256-ENDP" && !fastMechanisms(this.#saslContext()).includes(issue)) {
      issue = undefined;
    }
    if (!issue) return;
    const { token, expiresAt } = tokens.issue(this.host, user, agent, issue, lifetime);
    success.c("token", {
      xmlns: NS_FAST,
      token,
      expiry: new Date(expiresAt).toISOString().replace(/\.\d+Z$/, "Z"),
    });
  }

  /**
   * XEP-0386: binds a resource chosen by the server (the client's tag and a suffix stable for
   * its user-agent id), then lets modules act on the inline requests. Returns the `<bound/>`
   * answer, or undefined when binding failed (the client may bind the RFC 6120 way).
   */
  #bind2(bind: Element, request: Element): Element | undefined {
    const server = this.#deps.server;
    const tag = (bind.getChildText("tag") ?? "").trim().replace(/[^\p{L}\p{N}._-]+/gu, "")
      .slice(0, 32);
    const agent = userAgentId(request);
    const suffix = agent === undefined
      ? generateResource().slice("lilt-".length, "lilt-".length + 8)
      : createHash("sha256").update(`${this.host}\0${this.#username}\0${agent}`).digest("hex")
        .slice(0, 8);
    let jid: JID;
    try {
      jid = parseJid(`${this.#username}@${this.host}`).withResource(`${tag || "lilt"}.${suffix}`);
    } catch {
      return undefined;
    }
    if (server.accounts.isDisabled(this.host, this.#username!)) return undefined;
    if (!server.sessions.bind(this, jid).ok) return undefined;
    this.jid = jid;
    this.#bound = true;
    this.#attachRates(jid);
    log.info("Bound {jid} ({id}) with Bind2", { jid: jid.toString(), id: this.id });
    const host = server.hosts.get(this.host)!;
    host.events.fire("resource-bind", { session: this, host });
    const bound = new Element("bound", { xmlns: NS_BIND2 });
    host.events.fire("bind2-bound", { session: this, request: bind, bound, host });
    return bound;
  }

  // ---------- binding and stanzas ----------

  #onBind(iq: Element, bind: Element): void {
    const server = this.#deps.server;
    const requested = bind.getChildText("resource")?.trim() ?? "";
    let jid: JID;
    try {
      const bare = parseJid(`${this.#username}@${this.host}`);
      jid = bare.withResource(requested === "" ? generateResource() : requested);
    } catch (error) {
      const text = error instanceof JidError ? error.message : "Invalid resource";
      this.send(errorReply(iq, "bad-request", { text }));
      return;
    }
    if (!server.accounts.exists(this.host, this.#username!)) {
      this.close("not-authorized", "The account no longer exists");
      return;
    }
    if (server.accounts.isDisabled(this.host, this.#username!)) {
      this.close("not-authorized", "Account disabled");
      return;
    }
    const result = server.sessions.bind(this, jid);
    if (!result.ok) {
      this.send(errorReply(iq, "not-allowed", { text: result.reason }));
      return;
    }
    this.jid = jid;
    this.#bound = true;
    this.#attachRates(jid);
    const answer = reply(iq);
    delete answer.attrs.from;
    delete answer.attrs.to;
    answer.c("bind", { xmlns: NS_BIND }).c("jid").t(jid.toString());
    this.send(answer);
    log.info("Bound {jid} ({id})", { jid: jid.toString(), id: this.id });
    const host = server.hosts.get(this.host)!;
    host.events.fire("resource-bind", { session: this, host });
  }

  #onStanza(stanza: Element): void {
    const jid = this.jid!;
    const from = stanza.attrs.from;
    if (from !== undefined) {
      const claimed = tryParseJid(from);
      const ok = claimed !== undefined && claimed.domain === jid.domain &&
        claimed.local === jid.local &&
        (claimed.resource === undefined || claimed.resource === jid.resource);
      if (!ok) {
        this.close("invalid-from", `The 'from' address '${from}' is not yours`);
        return;
      }
    }
    stanza.attrs.from = jid.toString();
    if (stanza.name === "iq") {
      const type = stanza.attrs.type;
      if (
        !stanza.attrs.id ||
        (type !== "get" && type !== "set" && type !== "result" && type !== "error")
      ) {
        if (type !== "error" && type !== "result") {
          this.send(errorReply(stanza, "bad-request", { text: "An iq needs an id and a type" }));
        }
        return;
      }
      if ((type === "get" || type === "set") && stanza.elements().length !== 1) {
        this.send(errorReply(stanza, "bad-request", { text: "An iq get/set has one payload" }));
        return;
      }
      // Legacy session establishment (RFC 3921) is a no-op kept for old clients.
      if (type === "set" && stanza.getChild("session", NS_SESSION)) {
        const answer = reply(stanza);
        delete answer.attrs.from;
        this.send(answer);
        return;
      }
    }
    this.#deps.server.route(stanza, this);
  }
}

/**
 * Starts a client session on an accepted TCP connection: reading at once on a STARTTLS port,
 * after the TLS handshake on a direct TLS port.
 */
export function acceptC2S(socket: Socket, directTls: boolean, deps: C2SDeps): C2SSession {
  const transport = new SocketTransport(socket, NO_RECEIVER, {
    namespace: NS_CLIENT,
    // The top-level limit until the stream header names the host (`applyConfig`).
    maxStanzaBytes: Math.min(
      deps.server.config.hostDefault("c2s_stanza_size_limit"),
      deps.server.config.get<number>("c2s_preauth_stanza_size_limit"),
    ),
    maxSendBuffer: deps.server.config.get<number>("c2s_max_send_buffer"),
    directTls,
  });
  const session = new C2SSession(transport, deps);
  transport.start(deps.tls).catch((error) => {
    log.error("Session {id} failed to start: {error}", { id: session.id, error });
  });
  return session;
}
