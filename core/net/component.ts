// An external component's stream (XEP-0114, `jabber:component:accept`): the stream header and
// the shared-secret handshake, then stanzas to and from the component's domain.

import { createHash, timingSafeEqual } from "node:crypto";
import type { Socket } from "node:net";
import type { ServerContext } from "../context.ts";
import { type JID, parseJid, tryParseJid } from "../jid.ts";
import { getLogger } from "../log.ts";
import type { Session } from "../sessions.ts";
import { type Element, NS_CLIENT } from "../xml/element.ts";
import type { XmlStreamError } from "../xml/parser.ts";
import { NS_COMPONENT } from "../xml/serializer.ts";
import {
  errorReply,
  isStanza,
  NS_STREAM,
  type StreamErrorCondition,
  toClientNamespace,
} from "../xml/stanza.ts";
import { SocketTransport } from "./socket_transport.ts";
import { readRate } from "./rate_limit.ts";
import type { StreamReceiver } from "./transport.ts";

const log = getLogger("component");

/** What a component stream needs from the server. */
export interface ComponentDeps {
  server: ServerContext;
}

let sessionCounter = 0;

/** Lowercase hex SHA-1 of the stream id and secret: the XEP-0114 handshake value. */
export function handshakeDigest(streamId: string, secret: string): string {
  return createHash("sha1").update(streamId + secret, "utf8").digest("hex");
}

/** Compares two strings without leaking where they differ through timing. */
function sameSecret(a: string, b: string): boolean {
  const left = new TextEncoder().encode(a);
  const right = new TextEncoder().encode(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * One external component connection. Only one connection serves a domain: once one has
 * completed the handshake, a second one with the right secret is refused with `conflict`
 * (the first keeps the domain, so a stray duplicate cannot take over a working component).
 */
export class ComponentSession implements Session, StreamReceiver {
  readonly id: string;
  readonly kind = "component" as const;
  readonly ip: string;
  readonly connectedAt = Date.now();
  /** The component's domain once the stream header named a configured one. */
  host = "";
  /** The component's domain as a JID, once the handshake succeeded. */
  jid: JID | undefined;
  readonly secure = false;
  authenticated = false;

  #deps: ComponentDeps;
  #transport: SocketTransport;
  #closed = false;
  #attached = false;
  #streamId = "";

  constructor(socket: Socket, deps: ComponentDeps) {
    this.id = `component${++sessionCounter}`;
    this.#deps = deps;
    this.#transport = new SocketTransport(socket, this, {
      namespace: NS_COMPONENT,
    });
    this.ip = this.#transport.ip;
    this.applyConfig();
    deps.server.sessions.add(this);
    this.#transport.start(undefined);
  }

  /** Takes up the read rate (`limits_component_rate`, `limits_component_burst`), after a reload too. */
  applyConfig(): void {
    const config = this.#deps.server.config;
    this.#transport.setReadRate(
      readRate(
        config.get<string>("limits_component_rate"),
        config.get<string>("limits_component_burst"),
      ),
    );
  }

  /** Last time any bytes arrived (ms epoch). */
  get lastActivity(): number {
    return this.#transport.lastActivity;
  }

  // ---------- output ----------

  /** Queues a stanza for the component, in its stream's namespace. */
  send(stanza: Element): void {
    if (this.#closed) return;
    this.#transport.send(stanza);
    this.#deps.server.metrics.stanzasOut.count(stanza.name);
  }

  #sendHeader(): void {
    this.#streamId = crypto.randomUUID();
    this.#transport.openStream({
      ns: NS_COMPONENT,
      id: this.#streamId,
      from: this.host || undefined,
    });
  }

  /**
   * Closes the stream (with a stream error when a condition is given) and detaches the
   * component from its domain; the socket is destroyed if the peer does not close within 3 s.
   */
  close(condition?: StreamErrorCondition, text?: string): void {
    if (this.#closed) return;
    if (condition) {
      if (!this.#transport.headerSent) this.#sendHeader();
      log.info("Closing component stream {id} ({host}) with {condition}{text}", {
        id: this.id,
        host: this.host || this.ip,
        condition,
        text: text ? `: ${text}` : "",
      });
    }
    this.#closed = true;
    this.#detachAndForget();
    this.#transport.close(condition, text);
  }

  /** Drops the connection at once (end of shutdown). */
  destroy(): void {
    this.#closed = true;
    this.#transport.destroy();
  }

  /** True once the stream is closing or closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The connection is gone. */
  transportClosed(): void {
    this.#closed = true;
    this.#detachAndForget();
  }

  #detachAndForget(): void {
    const server = this.#deps.server;
    server.sessions.remove(this);
    if (!this.#attached) return;
    this.#attached = false;
    server.hosts.get(this.host)?.detach(this);
    log.info("Component {host} disconnected ({id})", { host: this.host, id: this.id });
  }

  // ---------- input ----------

  /** The component closed its stream. */
  streamClose(): void {
    this.close();
  }

  internalError(): void {
    this.close("internal-server-error");
  }

  inputError(error: XmlStreamError): void {
    log.info("XML error from component {ip}: {message}", { ip: this.ip, message: error.message });
    this.close(error.condition, error.message);
  }

  /** The secret configured for a domain, when it is an external component. */
  #secret(domain: string): string | undefined {
    const component = this.#deps.server.config.components.find((c) => c.domain === domain);
    return component?.secret || undefined;
  }

  streamOpen(header: Element, defaultNs: string | undefined): void {
    const toAttr = header.attrs.to;
    const to = toAttr ? tryParseJid(toAttr) : undefined;
    const host = to?.isDomain() ? this.#deps.server.hosts.get(to.domain) : undefined;
    const known = host?.external === true && this.#secret(host.domain) !== undefined;
    if (known) this.host = host!.domain;
    this.#sendHeader();
    if (header.name !== "stream" || header.ns !== NS_STREAM) {
      this.close("invalid-namespace", "The stream root must be <stream:stream>");
      return;
    }
    if (defaultNs !== NS_COMPONENT) {
      this.close("invalid-namespace", `Component streams use the '${NS_COMPONENT}' namespace`);
      return;
    }
    if (!known) {
      const what = toAttr ? `'${toAttr}' is not an external component here` : "No 'to' address";
      this.close("host-unknown", what);
    }
  }

  element(el: Element): void {
    if (this.#closed) return;
    if (!this.authenticated) {
      if (el.name === "handshake" && el.ns === NS_COMPONENT) return this.#onHandshake(el);
      this.close("not-authorized", "Send the handshake before anything else");
      return;
    }
    if (!isStanza(el) || (el.ns !== NS_COMPONENT && el.ns !== NS_CLIENT)) {
      this.close("unsupported-stanza-type", `Unexpected element <${el.name}> in '${el.ns}'`);
      return;
    }
    toClientNamespace(el, NS_COMPONENT);
    this.#onStanza(el);
  }

  #onHandshake(el: Element): void {
    const secret = this.#secret(this.host);
    const expected = secret === undefined ? undefined : handshakeDigest(this.#streamId, secret);
    if (expected === undefined || !sameSecret(el.text().trim().toLowerCase(), expected)) {
      this.#deps.server.metrics.counter("component.auth_failures").inc();
      this.close("not-authorized", "The handshake does not match the shared secret");
      return;
    }
    const host = this.#deps.server.hosts.get(this.host);
    if (!host?.external) {
      this.close("host-unknown", `'${this.host}' is not an external component here`);
      return;
    }
    if (!host.attach(this)) {
      this.close("conflict", `Another connection already serves '${this.host}'`);
      return;
    }
    this.#attached = true;
    this.authenticated = true;
    this.jid = parseJid(this.host);
    this.#transport.sendRaw(`<handshake/>`);
    log.info("Component {host} connected from {ip} ({id})", {
      host: this.host,
      ip: this.ip,
      id: this.id,
    });
  }

  #onStanza(stanza: Element): void {
    const { from, to, type } = stanza.attrs;
    if (from === undefined || to === undefined) {
      // A stanza error, not a stream error: one bad stanza should not cut the service off.
      if (type !== "error" && type !== "result") {
        const error = errorReply(stanza, "bad-request", {
          text: "Stanzas from a component need both 'from' and 'to'",
        });
        error.attrs.from = this.host;
        this.send(error);
      }
      return;
    }
    if (tryParseJid(from)?.domain !== this.host) {
      this.close("invalid-from", `The 'from' address '${from}' is not in '${this.host}'`);
      return;
    }
    this.#deps.server.route(stanza, this);
  }
}
