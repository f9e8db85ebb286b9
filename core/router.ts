// The one place every stanza crosses: it resolves the destination, fires the stanza events
// modules hook, and applies RFC 6121 §8 delivery rules for local JIDs when nobody handled it.

import type { ServerContext } from "./context.ts";
import { type FireResult, whenUnhandled } from "./events.ts";
import type { Host, StanzaEvent, ToType } from "./hosts.ts";
import { type JID, tryParseJid } from "./jid.ts";
import { getLogger } from "./log.ts";
import type { Session } from "./sessions.ts";
import type { Element } from "./xml/element.ts";
import { errorReply, isError, type StanzaErrorCondition } from "./xml/stanza.ts";
import { presenceOf } from "./presence_state.ts";

const log = getLogger("router");

export type { ToType } from "./hosts.ts";

/** A hook into routing for observers (admin shell `watch stanzas`, counters). */
export type RouteObserver = (stanza: Element, origin: Session) => void;

/**
 * Takes a stanza for an internal component that another cluster node serves (returns true),
 * or leaves it to this node (false). Set only on a cluster node (core/cluster/).
 */
export type ComponentForwarder = (stanza: Element, host: Host) => boolean;

/**
 * Routes stanzas between sessions and hosts. Event order for a stanza of kind K to type T:
 * `pre-K/T` on the origin's host (may stop it), then on the destination host: for messages
 * and presence `K/T`; for iqs `iq/T` (filters), then for get/set
 * `iq-<type>/T/<payload-ns>:<payload-name>` and for result/error `iq-<type>/T/<id>`.
 * Unhandled stanzas get the RFC 6121 §8.5 default. Stanzas for an external component
 * (XEP-0114) go to its connection after the origin's `pre-` events, without events of its own.
 */
export class Router {
  #server: ServerContext;
  #observers = new Set<RouteObserver>();
  #forwarder: ComponentForwarder | undefined;

  constructor(server: ServerContext) {
    this.#server = server;
  }

  /** Adds an observer of every routed stanza; returns a function removing it. */
  observe(observer: RouteObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  /**
   * Lets `forwarder` take the stanzas for internal components (after the sender's `pre-`
   * events) before this node's component hosts see them; undefined ends it.
   */
  forwardComponents(forwarder: ComponentForwarder | undefined): void {
    this.#forwarder = forwarder;
  }

  /**
   * Routes a stanza another cluster node forwarded here: its sender's `pre-` events ran there,
   * so only the destination host's events and delivery run, and it is never forwarded again.
   */
  routeForwarded(stanza: Element, origin: Session): void {
    for (const observer of this.#observers) observer(stanza, origin);
    const to = stanza.attrs.to === undefined ? undefined : tryParseJid(stanza.attrs.to);
    if (!to) return; // the sending node checked it
    const kind = stanza.name as "message" | "presence" | "iq";
    this.#toDestination(stanza, origin, to, this.#toType(stanza, to, origin), kind, true);
  }

  /** Routes one stanza whose `from` the origin's session has already stamped. */
  route(stanza: Element, origin: Session): void {
    for (const observer of this.#observers) observer(stanza, origin);
    const toAttr = stanza.attrs.to;
    let to: JID | undefined;
    if (toAttr !== undefined) {
      to = tryParseJid(toAttr);
      if (!to) {
        bounce(stanza, origin, "jid-malformed", "The 'to' address is not a valid JID");
        return;
      }
      // Normalise so modules and sessions see the prepared form.
      stanza.attrs.to = to.toString();
    }
    const toType = this.#toType(stanza, to, origin);
    // Only stanzas reach the router (the streams check), so the name is one of the three.
    const kind = stanza.name as "message" | "presence" | "iq";
    // The sender's host sees every stanza first, local or remote destination alike.
    const originHost = origin.host ? this.#server.hosts.get(origin.host) : undefined;
    // Each stage goes on only if nobody took the stanza (at once, or once an async handler
    // declined: see whenUnhandled).
    const next = () => this.#toDestination(stanza, origin, to, toType, kind);
    if (!originHost) return next();
    whenUnhandled(
      originHost.events.fire(`pre-${kind}/${toType}`, { stanza, origin, host: originHost }),
      next,
    );
  }

  /** After the sender's host: the destination host's events, then RFC 6121 §8.5 delivery. */
  #toDestination(
    stanza: Element,
    origin: Session,
    to: JID | undefined,
    toType: ToType,
    kind: "message" | "presence" | "iq",
    forwarded = false,
  ): void {
    const host = this.#server.hosts.get(to ? to.domain : origin.host);
    if (!host) {
      this.#routeRemote(stanza, origin, to?.domain ?? "");
      return;
    }
    if (host.external) {
      this.#deliverToComponent(stanza, origin, host);
      return;
    }
    if (host.kind === "component" && !forwarded && this.#forwarder?.(stanza, host)) return;
    const event: StanzaEvent = { stanza, origin, host };
    if (kind !== "iq") {
      whenUnhandled(
        host.events.fire(`${kind}/${toType}`, event),
        () => this.#deliverDefault(event, to, toType),
      );
      return;
    }
    // Filters (blocking, privacy) see every iq before the namespaced handlers do.
    whenUnhandled(
      host.events.fire(`iq/${toType}`, event),
      () => this.#iqHandlers(event, to, toType),
    );
  }

  /** The handler of an iq's payload (get/set) or of its id (result/error), else the default. */
  #iqHandlers(event: StanzaEvent, to: JID | undefined, toType: ToType): void {
    const { stanza, host } = event;
    const type = stanza.attrs.type;
    let handled: FireResult = false;
    if (type === "get" || type === "set") {
      const payload = stanza.firstElement();
      if (payload) {
        handled = host.events.fire(`iq-${type}/${toType}/${payload.ns}:${payload.name}`, event);
      }
    } else if ((type === "result" || type === "error") && stanza.attrs.id !== undefined) {
      handled = host.events.fire(`iq-${type}/${toType}/${stanza.attrs.id}`, event);
    }
    whenUnhandled(handled, () => this.#deliverDefault(event, to, toType));
  }

  #toType(stanza: Element, to: JID | undefined, origin: Session): ToType {
    if (!to) return origin.kind === "c2s" ? "self" : "host";
    if (to.resource !== undefined) return to.local === undefined ? "host" : "full";
    if (to.local === undefined) return "host";
    // An iq to the sender's own bare JID is handled by the server for the account.
    if (
      stanza.name === "iq" && origin.kind === "c2s" && origin.jid?.local === to.local &&
      origin.jid.domain === to.domain
    ) {
      return "self";
    }
    return "bare";
  }

  #routeRemote(stanza: Element, origin: Session, domain: string): void {
    const remote = this.#server.remote;
    if (remote) {
      remote.send(stanza, origin);
      return;
    }
    // A name under one of our hosts (conference.example.org while only example.org is served)
    // is a service this server does not have, not a remote server (RFC 6120 §10.4.3).
    const parent = this.#localParent(domain);
    if (parent !== undefined) {
      bounce(stanza, origin, "remote-server-not-found", `No service '${domain}' on ${parent}`);
      return;
    }
    bounce(stanza, origin, "service-unavailable", "Federation is off on this server");
  }

  /** The local host that `domain` is a sub-domain of, if any. */
  #localParent(domain: string): string | undefined {
    for (let dot = domain.indexOf("."); dot >= 0; dot = domain.indexOf(".", dot + 1)) {
      const parent = domain.slice(dot + 1);
      if (this.#server.hosts.has(parent)) return parent;
    }
    return undefined;
  }

  /** Hands a stanza to an external component's connection; bounces it when none is attached. */
  #deliverToComponent(stanza: Element, origin: Session, host: Host): void {
    const connection = host.connection;
    if (connection) {
      connection.send(stanza);
      return;
    }
    bounce(stanza, origin, "service-unavailable", `The service '${host.domain}' is offline`);
  }

  /** RFC 6121 §8.5 (local user) and RFC 6120 §10.4 (server) defaults. */
  #deliverDefault(event: StanzaEvent, to: JID | undefined, toType: ToType): void {
    const { stanza, origin } = event;
    const kind = stanza.name;
    const type = stanza.attrs.type;
    if (kind === "iq") {
      if (toType === "full" && to) {
        const session = this.#server.sessions.get(to);
        if (session) {
          session.send(stanza);
          return;
        }
      }
      if (type === "get" || type === "set") bounce(stanza, origin, "service-unavailable");
      return; // results and errors nobody waits for are dropped
    }
    if (toType === "host" || toType === "self" || !to?.local) {
      // Messages to the server itself (RFC 6120 §10.3.1) that no module handles.
      if (kind === "message" && (type === undefined || type === "normal" || type === "chat")) {
        bounce(stanza, origin, "service-unavailable");
      }
      return;
    }
    if (kind === "message") this.#deliverMessage(stanza, origin, to, toType);
    else this.#deliverPresence(stanza, to, toType);
  }

  /** Sends a message to local sessions and tells modules (carbons) who got it. */
  #deliverTo(recipients: Session[], stanza: Element, origin: Session, to: JID): void {
    for (const session of recipients) session.send(stanza);
    const host = this.#server.hosts.get(to.domain);
    if (host) host.events.fire("message-delivered", { stanza, origin, host, recipients });
  }

  #deliverMessage(stanza: Element, origin: Session, to: JID, toType: ToType): void {
    const type = stanza.attrs.type ?? "normal";
    const sessions = this.#server.sessions;
    if (toType === "full") {
      const session = sessions.get(to);
      if (session) {
        this.#deliverTo([session], stanza, origin, to);
        return;
      }
      // §8.5.3.2.1: no such resource.
      if (type === "error" || type === "headline") return;
      if (type === "groupchat") {
        bounce(stanza, origin, "service-unavailable");
        return;
      }
      // chat and normal are treated as if addressed to the bare JID.
    }
    if (type === "error") return;
    if (type === "groupchat") {
      bounce(stanza, origin, "service-unavailable");
      return;
    }
    const available = sessions.userSessions(to.domain, to.local!).filter((s) => {
      const p = presenceOf(s);
      return p.available && p.priority >= 0;
    });
    if (available.length > 0) {
      if (type === "headline") {
        this.#deliverTo(available, stanza, origin, to);
        return;
      }
      // chat/normal: every resource sharing the highest non-negative priority.
      const top = Math.max(...available.map((s) => presenceOf(s).priority));
      this.#deliverTo(
        available.filter((s) => presenceOf(s).priority === top),
        stanza,
        origin,
        to,
      );
      return;
    }
    if (type === "headline") return;
    // Offline storage (a module) may take a message for an existing account; otherwise the
    // answer is the same whether or not the account exists (RFC 6121 §8.5.1, §8.5.2.2.1).
    const host = this.#server.hosts.get(to.domain)!;
    if (!this.#server.accounts.exists(to.domain, to.local!)) {
      bounce(stanza, origin, "service-unavailable");
      return;
    }
    whenUnhandled(
      host.events.fire("message/offline", { stanza, origin, host }),
      () => bounce(stanza, origin, "service-unavailable"),
    );
  }

  #deliverPresence(stanza: Element, to: JID, toType: ToType): void {
    const sessions = this.#server.sessions;
    if (toType === "full") {
      const session = sessions.get(to);
      if (session) session.send(stanza);
      return;
    }
    const type = stanza.attrs.type;
    if (type === "probe") return; // answered by the presence module when loaded
    for (const s of sessions.userSessions(to.domain, to.local!)) {
      if (presenceOf(s).available) s.send(stanza);
    }
  }
}

/**
 * Sends an error reply for a stanza back to its origin, unless it is an error itself or a
 * stanza that gets no error (iq results, presence other than directed available/unavailable,
 * the server's own presence broadcasts).
 */
export function bounce(
  stanza: Element,
  origin: Session,
  condition: StanzaErrorCondition,
  text?: string,
): void {
  if (isError(stanza)) return;
  // The server's own broadcasts (presence to remote contacts) are not answered to itself.
  if (stanza.name === "presence" && origin.kind === "internal") return;
  if (stanza.name === "iq" && stanza.attrs.type !== "get" && stanza.attrs.type !== "set") return;
  if (stanza.name === "presence" && stanza.attrs.type !== undefined) {
    // Presence errors only make sense for directed available presence.
    if (stanza.attrs.type !== "unavailable") return;
  }
  log.debug("Bouncing {kind} to {to}: {condition}", {
    kind: stanza.name,
    to: stanza.attrs.to,
    condition,
  });
  const error = errorReply(stanza, condition, { text, includeOriginal: true });
  if (!error.attrs.from) error.attrs.from = origin.host;
  origin.send(error);
}
