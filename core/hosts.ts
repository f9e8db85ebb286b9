// Virtual hosts and internal components: each has its own event bus, disco registry and set
// of loaded modules. The router finds a stanza's destination here by domain.

import { EventBus, type HandlerFailure } from "./events.ts";
import type { UnsentStanza } from "./net/stream.ts";
import type { Session } from "./sessions.ts";
import type { Element } from "./xml/element.ts";
import { errorReply, wasAnswered } from "./xml/stanza.ts";

/** Payload of every stanza event (`message/bare`, `iq-get/host/urn:xmpp:ping:ping`, ...). */
export interface StanzaEvent {
  /** The stanza being routed; `from` is already stamped and validated. */
  stanza: Element;
  /** Where it came from; reply with `origin.send(...)`. */
  origin: Session;
  /** The host whose bus fired the event. */
  host: Host;
}

/** Payload of `resource-bind` and `resource-unbind`. */
export interface SessionEvent {
  session: Session;
  host: Host;
}

/**
 * Payload of `stanzas-unsent`: a bound client session stopped reading and is being cut off;
 * `stanzas` never reached its connection. A handler returning true hands them back itself
 * (stream management, from its unacknowledged queue); otherwise the core delivers them again
 * (core/redelivery.ts) once the resource is unbound.
 */
export interface UnsentStanzasEvent extends SessionEvent {
  stanzas: readonly UnsentStanza[];
}

/** Payload of `account-purged`: an account and its stored data are gone for good. */
export interface AccountPurgedEvent {
  user: string;
  host: Host;
}

/** Payload of `stream-features`: modules append their post-authentication features. */
export interface StreamFeaturesEvent {
  session: Session;
  features: Element;
  host: Host;
}

/** Payload of `stream-element`: a non-stanza top-level element on an authenticated c2s stream. */
export interface StreamElementEvent {
  session: Session;
  element: Element;
  host: Host;
}

/**
 * Payload of `sasl2-inline-features` and `bind2-inline-features`: the `<inline/>` list offered
 * with SASL2 (XEP-0388) or Bind2 (XEP-0386); modules add what they can do inline (for Bind2,
 * `<feature var='NAMESPACE'/>`; for SASL2, their own elements such as `<sm/>` or `<fast/>`).
 */
export interface InlineFeaturesEvent {
  session: Session;
  inline: Element;
  host: Host;
}

/**
 * Payload of `sasl2-inline`: a SASL2 `<authenticate/>` that succeeded, and the `<success/>`
 * being built. A module acts on its own children of `request` and adds its answer to
 * `success`; one that returns true took the session over (stream management resumption), so
 * no resource is bound.
 */
export interface Sasl2InlineEvent {
  session: Session;
  request: Element;
  success: Element;
  host: Host;
}

/**
 * Payload of `bind2-bound`: a Bind2 `<bind/>` request whose resource is now bound, and the
 * `<bound/>` answer; a module acts on its own children of `request` (carbons `<enable/>`, stream
 * management `<enable/>`, client state `<inactive/>`) and adds its answer to `bound`.
 */
export interface Bind2Event {
  session: Session;
  request: Element;
  bound: Element;
  host: Host;
}

/** Payload of `message-delivered`: a message the router handed to local sessions. */
export interface MessageDeliveredEvent {
  stanza: Element;
  origin: Session;
  host: Host;
  /** The sessions that received the message itself. */
  recipients: Session[];
}

/** Payload of `unauthenticated-stanza`: a stanza on a stream before authentication. */
export interface UnauthenticatedStanzaEvent {
  session: Session;
  stanza: Element;
  host: Host;
}

/** Payload of `config-reloaded`: a new configuration is in force. */
export interface ConfigReloadedEvent {
  host: Host;
  /**
   * Options whose value for this host changed (global ones included), as written in the file
   * (`offline_max_messages`, `log.level`); options that need a restart are not listed.
   */
  changed: string[];
}

/**
 * Named host events; stanza events are every name with a `/` in it.
 * - `resource-bind` / `resource-unbind`: a full JID was bound / went away.
 * - `resource-available`: a session sent its initial presence (fired by the presence module).
 * - `stream-features`: before and after authentication (check `session.authenticated`).
 * - `stream-element`: a non-stanza element on an authenticated client stream, bound or not
 *   (stream management enables and resumes before binding).
 * - `transport-lost`: a bound client session's connection went away without a closing tag; a
 *   handler returning true keeps the session (stream management hibernation) and must end it
 *   later, otherwise it ends now. `transport-attached`: such a session was moved onto a new
 *   connection (after the resumption's own answer went out).
 * - `sasl2-inline-features`, `bind2-inline-features`: the inline features offered with SASL2
 *   and Bind2; `sasl2-inline`: a SASL2 authentication succeeded (stream management resumes
 *   here); `bind2-bound`: a Bind2 request bound its resource (carbons, stream management and
 *   client state are enabled inline here).
 * - `unauthenticated-stanza`: a stanza before authentication (e.g. in-band registration);
 *   unhandled ones close the stream with `not-authorized`.
 * - `message-delivered`: after the router delivered a message to local sessions (carbons).
 * - `config-reloaded`: after `config reload` or SIGHUP applied a new configuration; a module
 *   that keeps values derived from options re-reads them here (return nothing: every module
 *   must see it).
 * - `account-purged`: an account was purged (its key-value, map and archive data are already
 *   deleted); a module with tables of its own deletes the account's rows here.
 */
export interface NamedHostEvents {
  "resource-bind": SessionEvent;
  "resource-unbind": SessionEvent;
  "resource-available": SessionEvent;
  "stream-features": StreamFeaturesEvent;
  "stream-element": StreamElementEvent;
  "transport-lost": SessionEvent;
  "stanzas-unsent": UnsentStanzasEvent;
  "transport-attached": SessionEvent;
  "sasl2-inline-features": InlineFeaturesEvent;
  "sasl2-inline": Sasl2InlineEvent;
  "bind2-inline-features": InlineFeaturesEvent;
  "bind2-bound": Bind2Event;
  "unauthenticated-stanza": UnauthenticatedStanzaEvent;
  "message-delivered": MessageDeliveredEvent;
  "config-reloaded": ConfigReloadedEvent;
  "account-purged": AccountPurgedEvent;
}

/**
 * Events modules declare for each other (a MUC module's `muc-occupant-joined`, say), by
 * augmenting this interface from their own file:
 *
 * ```ts
 * declare module "../core/hosts.ts" {
 *   interface ModuleEvents {
 *     "muc-occupant-joined": OccupantEvent;
 *   }
 * }
 * ```
 */
// deno-lint-ignore no-empty-interface
export interface ModuleEvents {}

/** How a stanza's `to` relates to the server (see router.ts). */
export type ToType = "host" | "bare" | "full" | "self";

/**
 * Stanza event names, as the router fires them: `pre-<kind>/<to-type>` on the sender's host,
 * then `message/<to-type>` and `presence/<to-type>`, or for iqs `iq/<to-type>` and
 * `iq-get|set/<to-type>/<payload-ns>:<payload-name>` or `iq-result|error/<to-type>/<id>`;
 * `message/offline` when a message finds no resource. A name outside these (a typo such as
 * `iq-get/hots/…`) does not type-check.
 */
export type StanzaEventName =
  | `pre-${"message" | "presence" | "iq"}/${ToType}`
  | `${"message" | "presence"}/${ToType}`
  | "message/offline"
  | `iq/${ToType}`
  | `iq-${"get" | "set"}/${ToType}/${string}:${string}`
  | `iq-${"result" | "error"}/${ToType}/${string}`;

/** The full event map of a host bus: named events, modules' own events and stanza events. */
export type HostEvents =
  & NamedHostEvents
  & ModuleEvents
  & { [K in StanzaEventName]: StanzaEvent };

/** A disco#info identity (XEP-0030). */
export interface DiscoIdentity {
  category: string;
  type: string;
  name?: string;
}

/** A disco#items entry (XEP-0030 §4). */
export interface DiscoItem {
  jid: string;
  node?: string;
  name?: string;
}

/**
 * What disco#info and disco#items report for one kind of entity (the host itself, or every
 * account's bare JID), as modules contributed it: reference counted, so that unloading a module
 * removes exactly what it added.
 */
export class DiscoRegistry {
  #features = new Map<string, number>();
  #identities: DiscoIdentity[] = [];
  #extensions: Element[] = [];
  #items: DiscoItem[] = [];

  /** Adds a disco#items entry; returns a function removing it. */
  addItem(item: DiscoItem): () => void {
    this.#items.push(item);
    return () => {
      const i = this.#items.indexOf(item);
      if (i >= 0) this.#items.splice(i, 1);
    };
  }

  /** Items in the order added. */
  items(): DiscoItem[] {
    return [...this.#items];
  }

  /** Adds a feature var; returns a function removing this contribution. */
  addFeature(feature: string): () => void {
    this.#features.set(feature, (this.#features.get(feature) ?? 0) + 1);
    return () => {
      const n = (this.#features.get(feature) ?? 0) - 1;
      if (n <= 0) this.#features.delete(feature);
      else this.#features.set(feature, n);
    };
  }

  /** Adds an identity; returns a function removing it. */
  addIdentity(identity: DiscoIdentity): () => void {
    this.#identities.push(identity);
    return () => {
      const i = this.#identities.indexOf(identity);
      if (i >= 0) this.#identities.splice(i, 1);
    };
  }

  /** Adds an extension form (XEP-0128); returns a function removing it. */
  addExtension(form: Element): () => void {
    this.#extensions.push(form);
    return () => {
      const i = this.#extensions.indexOf(form);
      if (i >= 0) this.#extensions.splice(i, 1);
    };
  }

  /** Sorted feature vars. */
  features(): string[] {
    return [...this.#features.keys()].sort();
  }

  /** Identities in the order added. */
  identities(): DiscoIdentity[] {
    return [...this.#identities];
  }

  /** Extension forms. */
  extensions(): Element[] {
    return [...this.#extensions];
  }
}

/**
 * Answers an iq get/set whose handler threw or rejected before answering it: the requester
 * gets `internal-server-error` instead of waiting for a reply that never comes.
 */
function answerFailedIq(failure: HandlerFailure): void {
  const { stanza, origin } = failure.payload as Partial<StanzaEvent>;
  if (stanza?.name !== "iq" || origin === undefined) return;
  const type = stanza.attrs.type;
  if ((type !== "get" && type !== "set") || wasAnswered(stanza)) return;
  origin.send(
    errorReply(stanza, "internal-server-error", {
      text: "The server failed while handling this request",
    }),
  );
}

/** A virtual host (`local`) or a component (internal, or external with `external` set). */
export class Host {
  /** The host's domain (prepared). */
  readonly domain: string;
  readonly kind: "local" | "component";
  /** The host's event bus (stanza and named events). */
  readonly events: EventBus<HostEvents> = new EventBus<HostEvents>({
    onHandlerFailure: answerFailedIq,
  });
  /** What disco#info and disco#items on the host report. */
  readonly disco: DiscoRegistry = new DiscoRegistry();
  /** Services modules provide each other on this host (see `ModuleAPI.provide`). */
  readonly services = new Map<string, { owner: string; service: unknown }>();
  /**
   * What disco#info and disco#items on an account's bare JID report, for every account of the
   * host (XEP-0030 §3.1: the server answers for the account); PEP and MAM add theirs here.
   */
  readonly accountDisco: DiscoRegistry = new DiscoRegistry();

  /**
   * True for an external component (XEP-0114, a `[[component]]` with a `secret`): the router
   * hands stanzas for this domain to the attached connection instead of firing events here.
   */
  external = false;
  #connection: Session | undefined;

  constructor(domain: string, kind: "local" | "component") {
    this.domain = domain;
    this.kind = kind;
  }

  /** The attached external component connection, if one is connected and authenticated. */
  get connection(): Session | undefined {
    return this.#connection;
  }

  /**
   * Attaches an authenticated external component connection. Returns false (and attaches
   * nothing) when another connection is already attached: the first one keeps the domain.
   */
  attach(session: Session): boolean {
    if (this.#connection && this.#connection !== session) return false;
    this.#connection = session;
    return true;
  }

  /** Detaches the connection if it is the attached one (on disconnect). */
  detach(session: Session): void {
    if (this.#connection === session) this.#connection = undefined;
  }
}
