// The session registry: which client sessions are bound to which full JIDs, so the router
// can find them. Sessions themselves (c2s streams, later s2s) implement the Session shape.

import type { JID } from "./jid.ts";
import type { Element } from "./xml/element.ts";
import type { StreamErrorCondition } from "./xml/stanza.ts";

/** Kinds of session the router can deliver to. */
export type SessionKind = "c2s" | "s2sin" | "s2sout" | "component" | "internal";

/** What every session offers to the router and modules. */
export interface Session {
  /** Unique id for logs and the admin shell. */
  readonly id: string;
  readonly kind: SessionKind;
  /** The local virtual host this session belongs to ("" before the stream header names one). */
  readonly host: string;
  /** Full JID once a resource is bound. */
  readonly jid: JID | undefined;
  /** Peer address. */
  readonly ip: string;
  /** TLS is active. */
  readonly secure: boolean;
  /** Authenticated (SASL success). */
  readonly authenticated: boolean;
  /** When the session connected (ms epoch). */
  readonly connectedAt: number;
  /** When bytes last arrived from the peer (ms epoch), for idle checks and keepalive pings. */
  readonly lastActivity: number;
  /** Queues a stanza for the peer. */
  send(stanza: Element): void;
  /** Closes the stream, with a stream error when a condition is given. */
  close(condition?: StreamErrorCondition, text?: string): void;
  /** Drops the connection at once, without waiting for the peer (end of shutdown). */
  destroy?(): void;
  /** Takes up changed options the stream holds (e.g. its stanza size limit) after a reload. */
  applyConfig?(): void;
}

/** The result of binding a resource. */
export type BindResult = { ok: true; jid: JID } | { ok: false; reason: string };

/** Characters used for server-generated resources. */
const RESOURCE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Generates a random resource string (server-generated binding, RFC 6120 §7.6). */
export function generateResource(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  let out = "lilt-";
  for (const b of bytes) out += RESOURCE_ALPHABET[b % RESOURCE_ALPHABET.length];
  return out;
}

/** Told of every binding that starts or ends (the cluster announces local ones). */
export interface BindObserver {
  /** `session` is now bound under `jid` (its `jid` field may be set only after this call). */
  bound(session: Session, jid: JID): void;
  /** `session` is no longer bound (unbound or removed; not when replaced by another bind). */
  unbound(session: Session): void;
}

/**
 * Registry of bound client sessions per host and user. Binding a resource that is already
 * bound replaces the old session, which is closed with a `conflict` stream error
 * (RFC 6120 §7.7.2.2, "override" policy).
 */
export class SessionManager {
  /** host -> username -> resource -> session */
  #bound = new Map<string, Map<string, Map<string, Session>>>();
  /** Every live session, bound or not. */
  #all = new Set<Session>();

  /** Registers a connected session (bound or not). */
  add(session: Session): void {
    this.#all.add(session);
  }

  #removed = new Set<(session: Session) => void>();
  /** At most one, and none on a single node: a bind costs one undefined check. */
  #bindObserver: BindObserver | undefined;

  /** Sets (or with undefined, removes) the observer of bindings. */
  observeBindings(observer: BindObserver | undefined): void {
    this.#bindObserver = observer;
  }

  /** Calls `fn` for every session that goes away; returns a function removing it. */
  onRemove(fn: (session: Session) => void): () => void {
    this.#removed.add(fn);
    return () => this.#removed.delete(fn);
  }

  /** Forgets a session (on disconnect); unbinds it first. */
  remove(session: Session): void {
    this.unbind(session);
    if (this.#all.delete(session)) { for (const fn of this.#removed) fn(session); }
  }

  /**
   * Binds the session's full JID. `jid` must be a full JID on the session's host. An existing
   * session with the same full JID is unbound and closed with `conflict`.
   */
  bind(session: Session, jid: JID): BindResult {
    if (!jid.local || !jid.resource) return { ok: false, reason: "A full JID is required" };
    let users = this.#bound.get(jid.domain);
    if (!users) this.#bound.set(jid.domain, users = new Map());
    let resources = users.get(jid.local);
    if (!resources) users.set(jid.local, resources = new Map());
    const previous = resources.get(jid.resource);
    if (previous && previous !== session) {
      resources.delete(jid.resource);
      previous.close("conflict", "Replaced by a new connection with the same resource");
    }
    resources.set(jid.resource, session);
    this.#bindObserver?.bound(session, jid);
    return { ok: true, jid };
  }

  /** Removes the session's binding, if it has one and it is still the bound one. */
  unbind(session: Session): void {
    const jid = session.jid;
    if (!jid?.local || !jid.resource) return;
    const users = this.#bound.get(jid.domain);
    const resources = users?.get(jid.local);
    if (resources?.get(jid.resource) === session) {
      resources.delete(jid.resource);
      if (resources.size === 0) users!.delete(jid.local);
      this.#bindObserver?.unbound(session);
    }
  }

  /** The sessions bound for an account (any resource). */
  userSessions(host: string, username: string): Session[] {
    const resources = this.#bound.get(host)?.get(username);
    return resources ? [...resources.values()] : [];
  }

  /** True when the account has at least one bound resource (so it exists). */
  hasBound(host: string, username: string): boolean {
    return (this.#bound.get(host)?.get(username)?.size ?? 0) > 0;
  }

  /** The session bound to a full JID, if any. */
  get(jid: JID): Session | undefined {
    if (!jid.local || !jid.resource) return undefined;
    return this.#bound.get(jid.domain)?.get(jid.local)?.get(jid.resource);
  }

  /** True when the resource is bound for this account. */
  isBound(host: string, username: string, resource: string): boolean {
    return this.#bound.get(host)?.get(username)?.has(resource) ?? false;
  }

  /** Every live session. */
  all(): Session[] {
    return [...this.#all];
  }

  /** Number of live sessions. */
  get count(): number {
    return this.#all.size;
  }
}
